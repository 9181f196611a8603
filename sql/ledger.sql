-- ledger.sql: the double-entry ledger. Every centavo and satoshi moves here.
--
-- core.post_entry is the only writer of postings and cached balances; holds
-- (core.place_hold / resolve_hold / split_hold) and idempotency
-- (core.claim_idempotency) are built on it. Domain files (deposits, market,
-- p2p…) call these helpers from their own api.* functions. Customers reach
-- the ledger through api.get_wallet, api.get_statement and api.transfer;
-- operators through admin.adjust_balance, admin.freeze_user and
-- admin.check_books; auditors through the reporting views at the end.

-- ---------------------------------------------------------------------------
-- Internal helpers (security invoker; called from definer functions)
-- ---------------------------------------------------------------------------

create or replace function core.setting(setting_name text) returns text
language sql stable as $$
  select value from core.settings where name = setting_name
$$;
comment on function core.setting(text) is 'Value of a row of core.settings (a DBA edits that table).';

drop function if exists core.check_amount(text, numeric, text);
create or replace function core.check_amount(currency text, amount numeric, field text default 'amount',
                                             scale int default null)
returns int
language plpgsql stable as $$
declare
  v_scale int;
begin
  -- The common case in one expression (each PL/pgSQL expression is compiled
  -- again in every transaction): a caller that has already read the currency
  -- passes its scale. NaN sorts above Infinity.
  if amount > 0 and amount <= 1e15 and amount = round(amount, scale) then
    return scale;
  end if;
  v_scale := scale;
  if v_scale is null then
    select c.scale into v_scale from core.currencies c where c.code = check_amount.currency;
  end if;
  if v_scale is null then
    raise exception 'Moeda desconhecida: %.', coalesce(currency, '(vazia)')
      using errcode = 'BSN01', column = 'currency';
  end if;
  if amount is null or amount <= 0 then
    raise exception 'O valor deve ser maior que zero.' using errcode = 'BSV03', column = field;
  end if;
  if amount = 'NaN'::numeric or amount = 'Infinity'::numeric then
    raise exception 'Informe um valor numérico válido.' using errcode = 'BSV01', column = field;
  end if;
  if amount > 1e15 then
    -- no amount of any currency comes near this; a bound keeps every page and sum finite
    raise exception 'Valor grande demais.' using errcode = 'BSV01', column = field;
  end if;
  if amount <> round(amount, v_scale) then
    raise exception 'Valor com casas decimais demais: % aceita no máximo % casas.', currency, v_scale
      using errcode = 'BSV02', column = field;
  end if;
  return v_scale;
end
$$;
comment on function core.check_amount(text, numeric, text, int) is
  'Refuses a missing, non-positive, absurdly large (over 10^15) or off-scale amount for a currency (its scale read, unless given); returns the currency scale.';

create or replace function core.assert_active_user(user_id bigint) returns core.users
language plpgsql stable as $$
declare
  v_user core.users;
begin
  select * into v_user from core.users u where u.id = assert_active_user.user_id;
  if not found then
    raise exception 'Cliente não encontrado.' using errcode = 'BSN01';
  end if;
  if v_user.status = 'frozen' then
    raise exception 'Conta bloqueada para movimentações. Fale com o suporte.' using errcode = 'BSA02';
  elsif v_user.status = 'closed' then
    raise exception 'Esta conta foi encerrada.' using errcode = 'BSA03';
  end if;
  return v_user;
end
$$;
comment on function core.assert_active_user(bigint) is 'The user row; refuses unknown, frozen (BSA02) or closed (BSA03) users.';

create or replace function core.assert_admin(admin_id bigint) returns core.users
language plpgsql stable as $$
declare
  v_user core.users;
begin
  select * into v_user from core.users u where u.id = assert_admin.admin_id;
  if not found or v_user.role <> 'admin' or v_user.status <> 'active' then
    raise exception 'Apenas administradores podem fazer isso.' using errcode = 'BSA01';
  end if;
  -- An admin can move any customer's money: never on a password alone.
  if not exists (select from core.user_totp t where t.user_id = assert_admin.admin_id and t.confirmed_at is not null) then
    raise exception 'Administradores precisam da verificação em duas etapas ativa: ative-a em Segurança da conta.'
      using errcode = 'BSA01', hint = 'twofactor_required';
  end if;
  return v_user;
end
$$;
comment on function core.assert_admin(bigint) is 'The admin row; refuses anyone who is not an active admin with 2FA enabled (BSA01).';

create or replace function core.user_account(user_id bigint, currency text, purpose text default 'available')
returns bigint
language sql stable as $$
  select a.id from core.accounts a
  where coalesce(a.user_id, 0) = user_account.user_id and a.currency = user_account.currency
    and a.purpose = user_account.purpose and a.shard = 0
$$;
comment on function core.user_account(bigint, text, text) is 'Id of a customer''s available or locked account in a currency.';

create or replace function core.system_account(purpose text, currency text, shard int default 0)
returns bigint
language sql stable as $$
  select a.id from core.accounts a
  where coalesce(a.user_id, 0) = 0 and a.currency = system_account.currency
    and a.purpose = system_account.purpose and a.shard = system_account.shard
$$;
comment on function core.system_account(text, text, int) is 'Id of a system account (fees, clearing_*, binance_omnibus, adjustments).';

create or replace function core.fee_account(currency text, routing_key text) returns bigint
language sql stable as $$
  -- Fee revenue is spread over `fee_shards` sub-accounts so that concurrent
  -- fee-paying operations do not queue on one hot row (ledger-guide §4.2).
  -- The shard is a pure function of the routing key, so a retry lands on the
  -- same row as the first attempt.
  select core.system_account('fees', currency,
                             (abs(hashtext(routing_key)::bigint) % core.setting('fee_shards')::int)::int)
$$;
comment on function core.fee_account(text, text) is 'The fee revenue sub-account for a currency, chosen deterministically from a routing key.';

create or replace function core.new_entry_id() returns bigint
language sql volatile as $$
  -- a plain nextval: the planner inlines this call, so it costs nothing
  select nextval('core.entries_id_seq')
$$;
comment on function core.new_entry_id() is 'Pre-allocates an entry id, so an idempotency record can name its entry before it is written.';

-- ---------------------------------------------------------------------------
-- Posting: the only writer of postings and cached balances
-- ---------------------------------------------------------------------------

create or replace function core.post_entry(
  kind text, reference text, user_id bigint, account_ids bigint[], amounts numeric[],
  description text default null, entry_id bigint default null, resolves_hold_id bigint default null)
returns bigint
language plpgsql volatile
-- Generic plans: a custom plan for these array arguments was re-planned on
-- every call, the largest single cost of a posting (docs/PERFORMANCE.md).
set plan_cache_mode = force_generic_plan
as $$
-- Every PL/pgSQL expression is compiled again in each transaction, so the
-- common case runs as few of them as possible: each group of checks is one
-- combined test, and the detailed ones run only when it fails.
declare
  v_entry bigint := coalesce(post_entry.entry_id, core.new_entry_id());
  v_net_ids bigint[];
  v_net numeric[];
  v_at int;
  v_accounts core.accounts[];
  v_a core.accounts;
  v_delta numeric;
  v_locked bigint[];
  v_moves numeric[];
  v_owner_moves boolean;
  v_off_scale text;
  v_short text;
begin
  if cardinality(account_ids) is distinct from cardinality(amounts)
     or not coalesce(kind ~ '^[a-z][a-z0-9_]*$', false) then
    if cardinality(account_ids) is distinct from cardinality(amounts) then
      raise exception 'post_entry: % accounts but % amounts', cardinality(account_ids), cardinality(amounts)
        using errcode = 'BSX01';
    end if;
    raise exception 'post_entry: entry kind % is not a snake_case name', kind using errcode = 'BSX01';
  end if;

  -- Every account of the entry is locked in (user_id, id) order with system
  -- accounts last (the lock is taken above the sort): no deadlocks, and the
  -- shared rows are held for the shortest time. The balances tested below
  -- are the locked, current ones.
  v_accounts := array(select a from core.accounts a where a.id = any(account_ids)
                      order by a.user_id nulls last, a.id for no key update);
  if cardinality(v_accounts) <> cardinality(account_ids) then
    -- An account named twice (its amounts are netted) or one that does not
    -- exist. (A handful of legs: plain PL/pgSQL beats a grouping query.)
    for i in 1 .. cardinality(account_ids) loop
      v_at := array_position(v_net_ids, account_ids[i]);
      if v_at is null then
        v_net_ids := v_net_ids || account_ids[i];
        v_net := v_net || amounts[i];
      else
        v_net[v_at] := v_net[v_at] + amounts[i];
      end if;
    end loop;
    if cardinality(v_accounts) < cardinality(v_net_ids) then
      raise exception 'post_entry: unknown account in %', account_ids using errcode = 'BSX01';
    end if;
    account_ids := v_net_ids;
    amounts := v_net;
  end if;

  foreach v_a in array v_accounts loop
    v_delta := amounts[array_position(account_ids, v_a.id)];
    if v_delta = 0 or scale(v_delta) > 2 or (v_a.must_not_go_negative and v_a.balance + v_delta < 0) then
      -- A leg that nets to nothing is left out. Every currency has at least
      -- two places (currencies_scale_check): only a leg with more reads its
      -- currency's scale.
      continue when v_delta = 0;
      if scale(v_delta) > 2
         and v_delta <> round(v_delta, (select c.scale from core.currencies c where c.code = v_a.currency)) then
        v_off_scale := coalesce(v_off_scale, v_a.currency);
      end if;
      if v_a.must_not_go_negative and v_a.balance + v_delta < 0 then
        v_short := coalesce(v_short, v_a.currency);
      end if;
    end if;
    v_owner_moves := v_owner_moves or v_a.user_id = post_entry.user_id;
    v_locked := v_locked || v_a.id;
    v_moves := v_moves || v_delta;
  end loop;
  if v_off_scale is not null or v_short is not null or v_locked[2] is null
     or (post_entry.user_id is not null and v_owner_moves is not true) then
    if v_off_scale is not null then
      raise exception 'Valor com casas decimais demais: % aceita no máximo % casas.', v_off_scale,
        (select c.scale from core.currencies c where c.code = v_off_scale) using errcode = 'BSV02';
    elsif v_short is not null then
      raise exception 'Saldo insuficiente em %.', v_short using errcode = 'BSF01', column = 'amount';
    elsif v_locked[2] is null then
      raise exception 'An entry must move money between at least two accounts (kind %).', kind
        using errcode = 'BSX01';
    end if;
    raise exception 'post_entry: customer % owns none of the accounts of this % entry', user_id, kind
      using errcode = 'BSX01';
  end if;

  -- A hold is resolved once, whatever month: the key of core.hold_resolutions
  -- refuses a second resolving entry (a partitioned table cannot hold the
  -- global unique index entries.resolves_hold_id had).
  if post_entry.resolves_hold_id is not null then
    insert into core.hold_resolutions (hold_id, entry_id, user_id)
    values (post_entry.resolves_hold_id, v_entry, post_entry.user_id);
  end if;

  -- The entry, each account row written once, and all postings of the entry
  -- in one statement (the statement trigger on postings proves them
  -- balanced), legs in lock order, each with its account's new version and
  -- balance. Built this way, every posting names the entry written with it
  -- and an account that exists, in that account's currency. The table CHECK
  -- still refuses a negative customer balance, whatever the code above does.
  with entry as (
    insert into core.entries (id, kind, reference, description, user_id, resolves_hold_id)
    values (v_entry, post_entry.kind, post_entry.reference, post_entry.description, post_entry.user_id,
            post_entry.resolves_hold_id)
  ), moved as (
    update core.accounts a
       set balance = a.balance + v_moves[array_position(v_locked, a.id)], version = a.version + 1
     where a.id = any(v_locked)
    returning a.id, a.currency, a.version, a.balance, a.user_id)
  insert into core.postings (entry_id, leg, account_id, currency, amount, account_version, balance_after, user_id)
  select v_entry, array_position(v_locked, m.id), m.id, m.currency, v_moves[array_position(v_locked, m.id)],
         m.version, m.balance, m.user_id
    from moved m;

  return v_entry;
end
$$;
comment on function core.post_entry(text, text, bigint, bigint[], numeric[], text, bigint, bigint) is
  'Writes one journal entry: nets amounts per account, locks the accounts in (user_id, id) order (system accounts last), refuses unknown accounts, a customer who owns none of them, a malformed kind (BSX01), off-scale amounts (BSV02), overdrafts (BSF01) and a second entry resolving the same hold (23505 on core.hold_resolutions), then writes the entry, updates each account once and appends the postings with version and balance after, in one statement. Long: the ledger''s one write path and its hottest function: it locks, checks and inserts an entry and its postings in the fewest statements, and every extra PL/pgSQL call shows in the instructions per transfer (bench/instructions.py, docs/PERFORMANCE.md).';

-- The database itself checks every statement that inserts postings, in one
-- query over the rows it inserted: each entry must sum to zero per currency
-- (so it has at least two legs), without a posting of zero. That a posting
-- names an entry that exists and an account of its own currency holds by
-- construction (core.post_entry, the only writer, takes both from the rows
-- it writes in the same statement); admin.check_books reports any posting
-- written otherwise (orphan_posting, currency_mismatch).
drop trigger if exists postings_balanced on core.postings;
drop function if exists core.tg_postings__balanced();
create or replace function core.tg_postings__checked() returns trigger
-- Security invoker (only the owner can insert postings) with schema-qualified
-- tables: it runs once per entry written, and a SET clause would cost every one.
language plpgsql as $$
declare
  v_bad record;
begin
  select n.entry_id, n.currency, sum(n.amount) as total, count(*) as legs, bool_or(n.amount = 0) as zero_leg
    into v_bad
  from new_postings n
  group by n.entry_id, n.currency
  having sum(n.amount) <> 0 or bool_or(n.amount = 0);
  if not found then
    return null;
  elsif v_bad.zero_leg then
    raise exception 'Entry %: a posting of zero', v_bad.entry_id using errcode = 'BSX01';
  end if;
  raise exception 'Unbalanced entry %: % postings sum to % %', v_bad.entry_id, v_bad.legs, v_bad.total, v_bad.currency
    using errcode = 'BSX01';
end
$$;
comment on function core.tg_postings__checked() is
  'Statement trigger on postings: refuses any entry whose postings do not sum to zero per currency, and a posting of zero.';

create or replace trigger postings_checked
  after insert on core.postings
  referencing new table as new_postings
  for each statement execute function core.tg_postings__checked();

-- History is append-only, even for the owner: corrections are new entries.
create or replace function core.tg_forbid_change() returns trigger
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
begin
  raise exception '% is append-only: % refused', tg_table_name, tg_op using errcode = 'BSX02';
end
$$;
comment on function core.tg_forbid_change() is 'Refuses UPDATE, DELETE and TRUNCATE on append-only tables.';

create or replace trigger entries_immutable before update or delete on core.entries
  for each row execute function core.tg_forbid_change();
create or replace trigger entries_no_truncate before truncate on core.entries
  for each statement execute function core.tg_forbid_change();
create or replace trigger postings_immutable before update or delete on core.postings
  for each row execute function core.tg_forbid_change();
create or replace trigger postings_no_truncate before truncate on core.postings
  for each statement execute function core.tg_forbid_change();
create or replace trigger admin_audit_log_immutable before update or delete on core.admin_audit_log
  for each row execute function core.tg_forbid_change();
create or replace trigger admin_audit_log_no_truncate before truncate on core.admin_audit_log
  for each statement execute function core.tg_forbid_change();

-- Monthly partitions of entries and postings (migration 0017): created ahead
-- of time by the worker, so a month never starts without its partition.
create or replace function core.create_ledger_partition(month date) returns boolean
language plpgsql volatile as $$
declare
  v_from timestamptz := date_trunc('month', month::timestamp) at time zone 'UTC';
  v_to timestamptz := (date_trunc('month', month::timestamp) + interval '1 month') at time zone 'UTC';
  v_suffix text := to_char(month, 'YYYY_MM');
  v_created boolean := false;
  v_table text;
begin
  foreach v_table in array array['entries', 'postings'] loop
    if to_regclass(format('core.%I', v_table || '_' || v_suffix)) is null then
      execute format('create table core.%I partition of core.%I for values from (%L) to (%L)',
                     v_table || '_' || v_suffix, v_table, v_from, v_to);
      -- Row triggers reach partitions from the parent; TRUNCATE of a partition
      -- by name does not fire the parent's statement trigger: its own does.
      execute format('create trigger %I before truncate on core.%I for each statement execute function core.tg_forbid_change()',
                     v_table || '_no_truncate', v_table || '_' || v_suffix);
      execute format('comment on table core.%I is %L', v_table || '_' || v_suffix,
                     format('Partition of core.%s for %s (UTC).', v_table, to_char(v_from at time zone 'UTC', 'YYYY-MM')));
      v_created := true;
    end if;
  end loop;
  return v_created;
end
$$;
comment on function core.create_ledger_partition(date) is
  'Creates the entries and postings partitions of the month containing `month` (UTC bounds) when missing, each with its TRUNCATE guard; true when it created any. Called by admin.ensure_ledger_partitions and the migration.';

create or replace function admin.ensure_ledger_partitions(months_ahead int default 3)
returns table (month text, created boolean)
language plpgsql volatile security definer
-- Creating a partition locks the parent briefly: never queue behind (and in
-- front of) a long transaction; the hourly job tries again.
set search_path = pg_catalog, pg_temp set lock_timeout = '2s' as $$
declare
  v_month timestamp;
begin
  if months_ahead is null or months_ahead not between 0 and 36 then
    raise exception 'months_ahead must be between 0 and 36.' using errcode = 'BSV01', column = 'months_ahead';
  end if;
  for v_month in select generate_series(date_trunc('month', now() at time zone 'UTC'),
                                        date_trunc('month', now() at time zone 'UTC') + make_interval(months => months_ahead),
                                        interval '1 month') loop
    month := to_char(v_month, 'YYYY-MM');
    created := core.create_ledger_partition(v_month::date);
    return next;
  end loop;
end
$$;
revoke all on function admin.ensure_ledger_partitions(int) from public;
grant execute on function admin.ensure_ledger_partitions(int) to exchange_worker, exchange_admin;
comment on function admin.ensure_ledger_partitions(int) is
  'Makes sure the ledger''s monthly partitions (core.entries_YYYY_MM, core.postings_YYYY_MM) exist from this month (UTC) to months_ahead months ahead; one row per month, created = true when made now. The worker calls it hourly with 3; there is no default partition, so a missing month would stop posting (admin.check_books warns a month ahead: partitions_ahead). BSV01 when months_ahead is outside 0..36.';

-- Accounts are never deleted, and what an account is (owner, currency,
-- purpose, shard, whether it may go negative) never changes (ledger-guide P3,
-- I8): postings name accounts without a foreign key, and these rules are
-- checked once, when an account is opened, instead of on every balance update.
create or replace function core.tg_accounts__valid() returns trigger
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
begin
  if new.purpose is null or new.purpose not in ('available', 'locked', 'fees', 'clearing_mercadopago',
                                                'clearing_inter', 'binance_omnibus', 'adjustments', 'receivables',
                                                'refunds_payable') then
    raise exception 'Unknown account purpose %', new.purpose using errcode = 'BSX01';
  elsif (new.user_id is not null) <> (new.purpose in ('available', 'locked')) then
    raise exception 'Account purpose % is for %', new.purpose,
      case when new.purpose in ('available', 'locked') then 'a customer' else 'the system' end using errcode = 'BSX01';
  elsif new.user_id is not null and not new.must_not_go_negative then
    raise exception 'A customer account must never go negative' using errcode = 'BSX01';
  elsif new.shard is null or new.shard < 0 then
    raise exception 'Account shard must be 0 or more' using errcode = 'BSX01';
  end if;
  return new;
end
$$;
comment on function core.tg_accounts__valid() is
  'Checks a new account: a known purpose, an owner exactly for customer purposes (available, locked), customer accounts never negative, shard >= 0.';

create or replace function core.tg_accounts__fixed() returns trigger
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
begin
  raise exception 'Account %: owner, currency, purpose, shard and overdraft rule never change; open another account instead',
    old.id using errcode = 'BSX02';
end
$$;
comment on function core.tg_accounts__fixed() is 'Refuses changing what an account is (only its balance and version move).';

create or replace trigger accounts_valid before insert on core.accounts
  for each row execute function core.tg_accounts__valid();
create or replace trigger accounts_no_delete before delete on core.accounts
  for each row execute function core.tg_forbid_change();
create or replace trigger accounts_no_truncate before truncate on core.accounts
  for each statement execute function core.tg_forbid_change();
-- `update of`: balance updates do not name these columns, so this trigger
-- costs them nothing.
create or replace trigger accounts_fixed
  before update of id, user_id, currency, purpose, shard, must_not_go_negative on core.accounts
  for each row
  when ((old.id, old.user_id, old.currency, old.purpose, old.shard, old.must_not_go_negative) is distinct from
        (new.id, new.user_id, new.currency, new.purpose, new.shard, new.must_not_go_negative))
  execute function core.tg_accounts__fixed();

-- ---------------------------------------------------------------------------
-- Idempotency
-- ---------------------------------------------------------------------------

create or replace function core.idempotency_digest(operation text, key text) returns uuid
-- stable, as convert_to is: so the planner inlines it into the statement that calls it
language sql stable strict parallel safe as $$
  -- Text never holds a NUL byte: distinct (operation, key) pairs hash distinct inputs.
  select encode(substring(sha256(convert_to(operation, 'UTF8') || '\x00'::bytea || convert_to(key, 'UTF8'))
                          from 1 for 16), 'hex')::uuid
$$;
comment on function core.idempotency_digest(text, text) is
  'The 16-byte key of an idempotency record: the first 16 bytes of SHA-256 over the operation, a NUL byte and the key, as a uuid (core.idempotency_keys.key_digest; migrations/0021_storage.sql says why).';

create or replace function core.claim_idempotency(
  user_id bigint, key text, operation text, request_hash text, result jsonb)
returns jsonb
language plpgsql volatile as $$
declare
  v_prior core.idempotency_keys;
begin
  if key is null or length(key) not between 1 and 200 then
    raise exception 'Chave de idempotência ausente ou inválida.' using errcode = 'BSV01', column = 'idempotency_key';
  end if;
  -- A concurrent duplicate waits here for the first one to commit, then
  -- sees its row: both return the same result and only one moves money.
  -- Keys are scoped per (user, operation): the digest covers both.
  insert into core.idempotency_keys (user_id, key_digest, request_digest, operation, result)
  values (claim_idempotency.user_id, core.idempotency_digest(claim_idempotency.operation, claim_idempotency.key),
          md5(claim_idempotency.request_hash)::uuid, claim_idempotency.operation, claim_idempotency.result)
  on conflict do nothing;
  if found then
    return null;
  end if;
  select * into strict v_prior from core.idempotency_keys k
  where k.user_id = claim_idempotency.user_id
    and k.key_digest = core.idempotency_digest(claim_idempotency.operation, claim_idempotency.key);
  if v_prior.request_digest <> md5(claim_idempotency.request_hash)::uuid then
    raise exception 'Esta operação já foi enviada com outros dados. Recarregue a página e tente de novo.'
      using errcode = 'BSI01', hint = 'idempotency key reused with a different request';
  end if;
  return v_prior.result;
end
$$;
comment on function core.claim_idempotency(bigint, text, text, text, jsonb) is
  'Claims an idempotency key for a user and operation: NULL when claimed now (go ahead), the first result when the same request was already done, BSI01 when the key was used for a different request.';

drop function if exists core.finish_idempotency(bigint, text, jsonb);
create or replace function core.finish_idempotency(user_id bigint, operation text, key text, result jsonb) returns void
language sql volatile as $$
  update core.idempotency_keys k set result = finish_idempotency.result
  where k.user_id = finish_idempotency.user_id
    and k.key_digest = core.idempotency_digest(finish_idempotency.operation, finish_idempotency.key)
$$;
comment on function core.finish_idempotency(bigint, text, text, jsonb) is 'Stores the result of an operation whose result was not known when its key was claimed.';

-- ---------------------------------------------------------------------------
-- Holds: funds moved from available to locked, later captured or released
-- ---------------------------------------------------------------------------

create or replace function core.place_hold(
  user_id bigint, currency text, amount numeric, purpose text, reference text, expires_at timestamptz default null)
returns bigint
language plpgsql volatile as $$
declare
  v_entry bigint;
  v_hold bigint;
begin
  perform core.check_amount(currency, amount);
  v_entry := core.post_entry('hold', reference, user_id,
    array[core.user_account(user_id, currency, 'available'), core.user_account(user_id, currency, 'locked')],
    array[-amount, amount], 'Bloqueio: ' || purpose);
  insert into core.holds (user_id, currency, amount, purpose, reference, created_entry_id, expires_at)
  values (place_hold.user_id, place_hold.currency, place_hold.amount, place_hold.purpose, place_hold.reference,
          v_entry, place_hold.expires_at)
  returning id into v_hold;
  return v_hold;
end
$$;
comment on function core.place_hold(bigint, text, numeric, text, text, timestamptz) is
  'Moves an amount from a customer''s available to locked account and records an open hold naming what it is for. BSF01 when the available balance is short.';

create or replace function core.resolve_hold(
  hold_id bigint, kind text, reference text,
  dest_account_ids bigint[] default '{}', dest_amounts numeric[] default '{}', description text default null)
returns bigint
language plpgsql volatile as $$
declare
  v_hold core.holds;
  v_captured numeric;
  v_entry bigint;
  v_ids bigint[];
  v_amounts numeric[];
begin
  select * into v_hold from core.holds h where h.id = resolve_hold.hold_id for update;
  if not found then
    raise exception 'Bloqueio % não encontrado.', hold_id using errcode = 'BSN01';
  end if;
  if v_hold.status <> 'open' then
    raise exception 'Bloqueio % já foi resolvido (%).', hold_id, v_hold.status using errcode = 'BSH01';
  end if;
  if exists (select from unnest(dest_amounts) a where a is null or a <= 0) then
    raise exception 'Captura com valor não positivo.' using errcode = 'BSV03';
  end if;
  v_captured := coalesce((select sum(a) from unnest(dest_amounts) a), 0);
  if v_captured > 0 and v_hold.expires_at is not null and v_hold.expires_at < now() then
    raise exception 'Bloqueio % expirou e não pode mais ser capturado.', hold_id using errcode = 'BSH02';
  end if;
  if v_captured > v_hold.amount then
    raise exception 'Captura de % maior que o bloqueio de %.', v_captured, v_hold.amount using errcode = 'BSH03';
  end if;

  v_ids := array[core.user_account(v_hold.user_id, v_hold.currency, 'locked')] || dest_account_ids;
  v_amounts := array[-v_hold.amount] || dest_amounts;
  if v_captured < v_hold.amount then
    v_ids := v_ids || core.user_account(v_hold.user_id, v_hold.currency, 'available');
    v_amounts := v_amounts || (v_hold.amount - v_captured);
  end if;

  v_entry := core.post_entry(kind, reference, v_hold.user_id, v_ids, v_amounts,
                             coalesce(description, case when v_captured > 0 then 'Captura' else 'Liberação' end
                                                   || ': ' || v_hold.purpose),
                             null, v_hold.id);
  update core.holds h
     set status = case when v_captured > 0 then 'captured' else 'released' end,
         captured = v_captured, resolved_entry_id = v_entry, resolved_at = now()
   where h.id = v_hold.id;
  return v_entry;
end
$$;
comment on function core.resolve_hold(bigint, text, text, bigint[], numeric[], text) is
  'Resolves an open hold exactly once: captures the given amounts to the destination accounts and releases the rest to the owner''s available balance. BSH01 if already resolved, BSH02 if expired, BSH03 if the capture exceeds the hold.';

create or replace function core.release_hold(hold_id bigint, reference text default null) returns bigint
language sql volatile as $$
  select core.resolve_hold(hold_id, 'hold_release',
                           coalesce(reference, (select h.reference from core.holds h where h.id = hold_id)))
$$;
comment on function core.release_hold(bigint, text) is 'Releases an open hold in full back to the owner''s available balance.';

create or replace function core.split_hold(hold_id bigint, amount numeric, purpose text, reference text)
returns table (taken_hold_id bigint, remainder_hold_id bigint)
language plpgsql volatile as $$
declare
  v_hold core.holds;
  v_taken bigint;
  v_rest bigint;
begin
  select * into v_hold from core.holds h where h.id = split_hold.hold_id for update;
  if not found then
    raise exception 'Bloqueio % não encontrado.', hold_id using errcode = 'BSN01';
  end if;
  if v_hold.status <> 'open' then
    raise exception 'Bloqueio % já foi resolvido (%).', hold_id, v_hold.status using errcode = 'BSH01';
  end if;
  perform core.check_amount(v_hold.currency, amount);
  if amount > v_hold.amount then
    raise exception 'Quantidade maior que a disponível no bloqueio.' using errcode = 'BSH03', column = 'amount';
  end if;
  -- No money moves: the funds stay in the locked account, only what they are
  -- locked for changes. Locked balance = sum of open holds still holds.
  update core.holds h set status = 'split', resolved_at = now() where h.id = v_hold.id;
  insert into core.holds (user_id, currency, amount, purpose, reference, split_from, expires_at)
  values (v_hold.user_id, v_hold.currency, split_hold.amount, split_hold.purpose, split_hold.reference, v_hold.id, null)
  returning id into v_taken;
  if amount < v_hold.amount then
    insert into core.holds (user_id, currency, amount, purpose, reference, split_from, expires_at)
    values (v_hold.user_id, v_hold.currency, v_hold.amount - split_hold.amount, v_hold.purpose, v_hold.reference,
            v_hold.id, v_hold.expires_at)
    returning id into v_rest;
  end if;
  return query select v_taken, v_rest;
end
$$;
comment on function core.split_hold(bigint, numeric, text, text) is
  'Moves part of an open hold to a new hold for another purpose (e.g. from a P2P offer to a trade) without moving money; the rest stays held as a new hold with the original purpose.';

-- ---------------------------------------------------------------------------
-- Customer operations
-- ---------------------------------------------------------------------------

create or replace function api.get_wallet(user_id bigint)
returns table (currency text, name text, scale int, available numeric, locked numeric)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  select c.code, c.name, c.scale,
         coalesce(max(a.balance) filter (where a.purpose = 'available'), 0),
         coalesce(max(a.balance) filter (where a.purpose = 'locked'), 0)
  from core.currencies c
  left join core.accounts a on a.user_id = get_wallet.user_id and a.currency = c.code
  group by c.code, c.name, c.scale, c.sort_order
  order by c.sort_order
$$;
revoke all on function api.get_wallet(bigint) from public;
grant execute on function api.get_wallet(bigint) to exchange_app;
comment on function api.get_wallet(bigint) is
  'Available and locked balance of a customer in every currency, with each currency''s scale.';

create or replace function api.get_statement(user_id bigint, currency text, page int default 1, page_size int default 25)
returns table (entry_id bigint, created_at timestamptz, kind text, description text, reference text,
               bucket text, amount numeric, balance_after numeric, total_rows bigint)
language plpgsql stable security definer set search_path = pg_catalog, pg_temp
-- Generic plans: the page query is the same for every customer and page, and planning it afresh
-- (custom plans, over every month's partition) cost more the larger the ledger: 0.09 ms a call at
-- 10 k entries, 0.6-0.8 ms at 300 k; 0.10 ms with the generic plan (docs/PERFORMANCE.md, "Storage
-- and growth").
set plan_cache_mode = force_generic_plan
as $$
declare
  v_available bigint := core.user_account(get_statement.user_id, get_statement.currency, 'available');
  v_locked bigint := core.user_account(get_statement.user_id, get_statement.currency, 'locked');
  v_total bigint;
begin
  if v_available is null then
    raise exception 'Moeda desconhecida: %.', currency using errcode = 'BSN01', column = 'currency';
  end if;
  if page < 1 or page_size not between 1 and 200 then
    raise exception 'Página inválida.' using errcode = 'BSV01', column = 'page';
  end if;
  -- The account version counts its postings, so the total needs no scan.
  select sum(a.version) into v_total from core.accounts a where a.id in (v_available, v_locked);
  -- Newest first, per account along the (account_id, account_version) index,
  -- then merged: fast however long the history.
  return query
  select p.entry_id, e.created_at, e.kind, e.description, e.reference,
         case when p.account_id = v_available then 'available' else 'locked' end,
         p.amount, p.balance_after, v_total
  from (
    (select * from core.postings q where q.account_id = v_available
      order by q.account_version desc limit page * page_size)
    union all
    (select * from core.postings q where q.account_id = v_locked
      order by q.account_version desc limit page * page_size)
  ) p
  join core.entries e on e.id = p.entry_id and e.created_at = p.created_at
  order by p.entry_id desc, p.account_id
  offset (page - 1) * page_size limit page_size;
end
$$;
revoke all on function api.get_statement(bigint, text, int, int) from public;
grant execute on function api.get_statement(bigint, text, int, int) to exchange_app;
comment on function api.get_statement(bigint, text, int, int) is
  'A customer''s statement in one currency, newest first: every posting on the available and locked accounts with the balance after it, paginated (total_rows on every row).';

create or replace function api.transfer(
  user_id bigint, recipient_email text, currency text, amount numeric, idempotency_key text,
  totp_code text default null)
returns table (entry_id bigint, fee numeric, replayed boolean)
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
  v record;
  v_entry bigint := core.new_entry_id();
  v_scale int;  -- what check_amount returns (an assignment needs no executor, a PERFORM does)
  v_prior jsonb;
begin
  -- Everything the transfer needs to know, in one statement: on this hot path
  -- each statement, and each call of a helper, costs about as much as writing
  -- a posting (docs/PERFORMANCE.md). The checks below are those of
  -- core.assert_active_user, core.check_amount and core.user_account.
  select s.status as sender_status, r.id as to_id, r.status as to_status, c.scale,
         s.status = 'active' and r.status = 'active' and r.id <> s.id and s.email_verified_at is not null
           as parties_ok,
         s.email_verified_at is not null as verified,
         round(transfer.amount * f.value::numeric / 100, c.scale) as fee,
         (select a.id from core.accounts a where coalesce(a.user_id, 0) = s.id
             and a.currency = transfer.currency and a.purpose = 'available' and a.shard = 0) as from_account,
         (select a.id from core.accounts a where coalesce(a.user_id, 0) = r.id
             and a.currency = transfer.currency and a.purpose = 'available' and a.shard = 0) as to_account,
         -- while a PIX credited to the sender may still be clawed back (or
         -- exits are blocked): only then does the exit policy look closer
         s.exposure_until > now() as maturing,
         s.twofactor_on as twofa
    into v
  from core.users s
  left join core.users r on r.email = lower(btrim(recipient_email)) and r.role = 'customer' and r.status <> 'closed'
  left join core.currencies c on c.code = transfer.currency
  left join core.settings f on f.name = 'transfer_fee_percent'
  where s.id = transfer.user_id;
  -- (one test for the common case: each PL/pgSQL expression is compiled
  -- again in every transaction)
  if v.parties_ok is not true then
    if not found then
      raise exception 'Cliente não encontrado.' using errcode = 'BSN01';
    elsif v.sender_status = 'frozen' then
      raise exception 'Conta bloqueada para movimentações. Fale com o suporte.' using errcode = 'BSA02';
    elsif v.sender_status = 'closed' then
      raise exception 'Esta conta foi encerrada.' using errcode = 'BSA03';
    elsif not v.verified then
      perform core.assert_email_verified(transfer.user_id);
    end if;
    v_scale := core.check_amount(transfer.currency, transfer.amount, 'amount', v.scale);  -- its errors come first
    if v.to_id is null then
      raise exception 'Nenhum cliente com o e-mail %.', recipient_email using errcode = 'BSN01', column = 'recipient_email';
    elsif v.to_id = transfer.user_id then
      raise exception 'Não é possível transferir para si mesmo.' using errcode = 'BSV01', column = 'recipient_email';
    end if;
    raise exception 'Conta bloqueada para movimentações. Fale com o suporte.' using errcode = 'BSA02';
  end if;
  v_scale := core.check_amount(transfer.currency, transfer.amount, 'amount', v.scale);

  v_prior := core.claim_idempotency(transfer.user_id, idempotency_key, 'transfer',
               md5(concat_ws('|', v.to_id, transfer.currency, trim_scale(transfer.amount))),
               -- (no fee in the record when there is none: 20 bytes a transfer less)
               case when v.fee <> 0 then jsonb_build_object('entry_id', v_entry, 'fee', v.fee)
                    else jsonb_build_object('entry_id', v_entry) end);
  if v_prior is not null then
    entry_id := (v_prior ->> 'entry_id')::bigint;
    fee := coalesce((v_prior ->> 'fee')::numeric, round(0, v.scale));
    replayed := true;
    return next;
    return;
  end if;

  if v.twofa then
    perform core.assert_step_up(transfer.user_id, totp_code, 'transfer');
  end if;
  if v.maturing then
    perform core.lock_for_exit(transfer.user_id);  -- exits of this customer one at a time
  end if;
  -- (assignments, not PERFORM: a plain expression needs no executor)
  if v.fee > 0 then
    entry_id := core.post_entry('transfer', 'transfer:' || idempotency_key, transfer.user_id,
      array[v.from_account, v.to_account, core.fee_account(transfer.currency, idempotency_key)],
      array[-(transfer.amount + v.fee), transfer.amount, v.fee], 'Transferência entre clientes', v_entry);
  else
    entry_id := core.post_entry('transfer', 'transfer:' || idempotency_key, transfer.user_id,
      array[v.from_account, v.to_account], array[-transfer.amount, transfer.amount],
      'Transferência entre clientes', v_entry);
  end if;
  if v.maturing then
    perform core.assert_exit_covered(transfer.user_id, 'enviar',
                                     (transfer.amount + v.fee) * core.bid_price(transfer.currency));
  end if;
  fee := v.fee;
  replayed := false;
  return next;
end
$$;
revoke all on function api.transfer(bigint, text, text, numeric, text, text) from public;
grant execute on function api.transfer(bigint, text, text, numeric, text, text) to exchange_app;
comment on function api.transfer(bigint, text, text, numeric, text, text) is
  'Sends an amount from the acting customer to another customer by e-mail, plus the transfer fee (setting transfer_fee_percent) to fee revenue. An exit: with 2FA on it needs a fresh TOTP code (totp_code), and while PIX credits may still be clawed back the exit policy applies (sql/exits.sql). Idempotent per (user, key): a replay returns the first entry and moves nothing. Errors: BSN01 unknown (or closed) recipient, BSV01 self or wrong 2FA code, BSV02/BSV03 amount, BSF01 insufficient funds, BSL01 what would remain does not cover PIX still maturing, BSA02 frozen or exits blocked, BSA03 sender closed, BSI01 key reused.';

-- ---------------------------------------------------------------------------
-- Operator operations
-- ---------------------------------------------------------------------------

create or replace function core.audit(admin_id bigint, action text, target_user_id bigint, reason text, details jsonb default '{}')
returns bigint
language plpgsql volatile as $$
declare
  v_id bigint;
begin
  if reason is null or length(btrim(reason)) = 0 then
    raise exception 'Informe o motivo.' using errcode = 'BSV01', column = 'reason';
  end if;
  insert into core.admin_audit_log (admin_id, action, target_user_id, reason, details)
  values (admin_id, action, target_user_id, btrim(reason), coalesce(details, '{}'))
  returning id into v_id;
  return v_id;
end
$$;
comment on function core.audit(bigint, text, bigint, text, jsonb) is 'Appends a row to the admin audit log (who did what, to whom, why).';

create or replace function core.post_adjustment(
  admin_id bigint, user_id bigint, currency text, amount numeric, reason text, idempotency_key text)
returns table (entry_id bigint, replayed boolean)
language plpgsql volatile as $$
declare
  v_entry bigint := core.new_entry_id();
  v_prior jsonb;
begin
  if amount is null or amount = 0 then
    raise exception 'O ajuste não pode ser zero.' using errcode = 'BSV03', column = 'amount';
  end if;
  perform core.check_amount(currency, abs(amount));
  if not exists (select from core.users u where u.id = post_adjustment.user_id and u.role = 'customer') then
    raise exception 'Cliente não encontrado.' using errcode = 'BSN01', column = 'user_id';
  end if;
  if reason is null or length(btrim(reason)) < 5 then
    raise exception 'Informe um motivo (ao menos 5 caracteres).' using errcode = 'BSV01', column = 'reason';
  end if;
  v_prior := core.claim_idempotency(post_adjustment.user_id, 'adjust:' || idempotency_key, 'adjust_balance',
               md5(concat_ws('|', currency, trim_scale(amount), reason)), jsonb_build_object('entry_id', v_entry));
  if v_prior is not null then
    return query select (v_prior ->> 'entry_id')::bigint, true;
    return;
  end if;
  perform core.post_entry('adjustment', 'adjustment:' || idempotency_key, post_adjustment.user_id,
    array[core.user_account(post_adjustment.user_id, currency), core.system_account('adjustments', currency)],
    array[amount, -amount], reason, v_entry);
  perform core.audit(admin_id, 'adjust_balance', post_adjustment.user_id, reason,
                     jsonb_build_object('currency', currency, 'amount', amount, 'entry_id', v_entry));
  return query select v_entry, false;
end
$$;
comment on function core.post_adjustment(bigint, bigint, text, numeric, text, text) is
  'A journaled manual adjustment (see admin.adjust_balance) without the admin check: for admin.adjust_balance and the demo seed.';

create or replace function core.assert_admin_step_up(admin_id bigint, totp_code text, context text) returns void
language plpgsql volatile as $$
begin
  -- Through the web, an admin id is only a number the web passes: the admin
  -- proves it is them with a fresh TOTP code for what creates or frees money.
  -- An operator in psql (exchange_admin, the owner) is authenticated by the
  -- database itself.
  if session_user = 'exchange_app' then
    perform core.assert_step_up(admin_id, totp_code, context);
  end if;
end
$$;
comment on function core.assert_admin_step_up(bigint, text, text) is
  'For admin operations that create or free money (adjustments, unblocking exits): through the web (session role exchange_app) a fresh TOTP code of the admin is required (BSV01 on totp_code); operators connected as themselves are not asked.';

create or replace function admin.adjust_balance(
  admin_id bigint, user_id bigint, currency text, amount numeric, reason text, idempotency_key text,
  totp_code text default null)
returns table (entry_id bigint, replayed boolean)
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
begin
  perform core.assert_admin(admin_id);
  -- (a replay of an adjustment already made moves nothing: no code needed again)
  if not exists (select from core.idempotency_keys k where k.user_id = adjust_balance.user_id
                 and k.key_digest = core.idempotency_digest('adjust_balance', 'adjust:' || adjust_balance.idempotency_key))
  then
    perform core.assert_admin_step_up(admin_id, totp_code, 'adjust_balance');
  end if;
  return query select * from core.post_adjustment(admin_id, user_id, currency, amount, reason, idempotency_key);
end
$$;
revoke all on function admin.adjust_balance(bigint, bigint, text, numeric, text, text, text) from public;
grant execute on function admin.adjust_balance(bigint, bigint, text, numeric, text, text, text) to exchange_app, exchange_admin;
comment on function admin.adjust_balance(bigint, bigint, text, numeric, text, text, text) is
  'Journaled manual adjustment: credits (positive) or debits (negative) a customer''s available balance against the adjustments account, with a mandatory reason, recorded in the admin audit log. Through the web the admin confirms with a fresh TOTP code (totp_code; core.assert_admin_step_up). Idempotent per key. BSA01 not admin, BSV01 wrong code, BSF01 a debit larger than the balance.';

create or replace function admin.set_user_status(admin_id bigint, user_id bigint, status text, reason text)
returns void
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
begin
  perform core.assert_admin(admin_id);
  if status not in ('active', 'frozen') then
    raise exception 'Situação inválida: %.', status using errcode = 'BSV01', column = 'status';
  end if;
  if admin_id = user_id then
    raise exception 'Um administrador não pode alterar a própria conta.' using errcode = 'BSA01';
  end if;
  update core.users u set status = set_user_status.status,
                          frozen_reason = case when set_user_status.status = 'frozen' then reason end
   where u.id = set_user_status.user_id;
  if not found then
    raise exception 'Cliente não encontrado.' using errcode = 'BSN01', column = 'user_id';
  end if;
  perform core.audit(admin_id, case when status = 'frozen' then 'freeze_user' else 'unfreeze_user' end,
                     user_id, reason);
end
$$;
revoke all on function admin.set_user_status(bigint, bigint, text, text) from public;
grant execute on function admin.set_user_status(bigint, bigint, text, text) to exchange_app, exchange_admin;
comment on function admin.set_user_status(bigint, bigint, text, text) is
  'Freezes (status frozen: no money moves in or out) or unfreezes a customer, with a reason in the admin audit log.';

create or replace function admin.find_user(admin_id bigint, email text)
returns table (user_id bigint, email text, display_name text, role text, status text, kyc_level int, created_at timestamptz)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  select u.id, u.email, u.display_name, u.role, u.status, u.kyc_level, u.created_at
  from core.users u, core.assert_admin(find_user.admin_id) a
  where u.email = lower(btrim(find_user.email))
$$;
revoke all on function admin.find_user(bigint, text) from public;
grant execute on function admin.find_user(bigint, text) to exchange_app, exchange_admin;
comment on function admin.find_user(bigint, text) is 'Looks a user up by e-mail (admins only).';

-- ---------------------------------------------------------------------------
-- Reporting (auditors): read-only views; the auditor holds no table rights
-- ---------------------------------------------------------------------------

create view reporting.trial_balance as
select c.code as currency,
       coalesce((select sum(p.amount) from core.postings p where p.currency = c.code), 0) as total,
       coalesce((select sum(a.balance) from core.accounts a where a.currency = c.code), 0) as cached_total
from core.currencies c
order by c.sort_order;
comment on view reporting.trial_balance is
  'Sum of every posting (total) and of every cached balance (cached_total) per currency. Healthy: both are 0 for every currency.';

create view reporting.balance_mismatches as
select a.id as account_id, a.user_id, a.currency, a.purpose, a.balance as cached, coalesce(s.total, 0) as computed
from core.accounts a
left join (select p.account_id, sum(p.amount) as total from core.postings p group by p.account_id) s
  on s.account_id = a.id
where a.balance <> coalesce(s.total, 0);
comment on view reporting.balance_mismatches is
  'Accounts whose cached balance differs from the sum of their postings. Healthy: empty.';

create view reporting.user_balances as
select u.id as user_id, u.email, a.currency,
       sum(a.balance) filter (where a.purpose = 'available') as available,
       sum(a.balance) filter (where a.purpose = 'locked') as locked
from core.users u
join core.accounts a on a.user_id = u.id
group by u.id, u.email, a.currency;
comment on view reporting.user_balances is
  'Available and locked balance of every customer per currency. Healthy: available >= 0 and locked >= 0.';

create view reporting.journal as
select e.id as entry_id, e.created_at, e.kind, e.reference, e.description, p.leg, p.account_id,
       a.user_id, a.purpose, p.currency, p.amount, p.balance_after
from core.entries e
join core.postings p on p.entry_id = e.id and p.created_at = e.created_at
join core.accounts a on a.id = p.account_id;
comment on view reporting.journal is 'Every posting with its entry: the complete, append-only journal.';

create view reporting.system_balances as
select a.purpose, a.currency, sum(a.balance) as balance, count(*) as accounts
from core.accounts a where a.user_id is null
group by a.purpose, a.currency;
comment on view reporting.system_balances is
  'Balance of each system account kind per currency (fee shards summed). Fees are revenue (>= 0); clearing and omnibus accounts mirror money outside the ledger (negative = assets held at the provider).';

create view reporting.open_holds as
select h.id as hold_id, h.user_id, h.currency, h.amount, h.purpose, h.reference, h.expires_at, h.created_at
from core.holds h where h.status = 'open';
comment on view reporting.open_holds is 'Every open hold. Healthy: per customer and currency they sum to the locked balance.';

create view reporting.held_mismatches as
select a.user_id, a.currency, a.balance as locked, coalesce(h.total, 0) as open_holds
from core.accounts a
left join (select h.user_id, h.currency, sum(h.amount) as total from core.holds h where h.status = 'open'
           group by h.user_id, h.currency) h on h.user_id = a.user_id and h.currency = a.currency
where a.purpose = 'locked' and a.balance <> coalesce(h.total, 0);
comment on view reporting.held_mismatches is 'Customers whose locked balance differs from the sum of their open holds. Healthy: empty.';

create view reporting.admin_audit_log as
select l.id, l.created_at, l.admin_id, adm.email as admin_email, l.action, l.target_user_id, l.reason, l.details
from core.admin_audit_log l left join core.users adm on adm.id = l.admin_id;
comment on view reporting.admin_audit_log is 'Append-only log of every admin action: who, what, to whom, when and why.';

-- Every invariant of ledger-guide §5 that can be checked in SQL.
create view reporting.books_health (check_name, detail) as
  -- I1: per currency, all balances sum to zero.
  select 'zero_sum', format('%s: accounts sum to %s', a.currency, sum(a.balance))
  from core.accounts a group by a.currency having sum(a.balance) <> 0
  union all
  -- I2: every entry sums to zero per currency.
  select 'unbalanced_entry', format('entry %s %s sums to %s', p.entry_id, p.currency, sum(p.amount))
  from core.postings p group by p.entry_id, p.currency having sum(p.amount) <> 0
  union all
  -- I3: per-account chain: versions 1..n contiguous, before + amount = after.
  select 'broken_chain', format('account %s version %s: %s', c.account_id, c.account_version, c.problem)
  from (
    select p.account_id, p.account_version,
           case
             when p.account_version <> row_number() over w then 'version gap'
             when coalesce(lag(p.balance_after) over w, 0) + p.amount <> p.balance_after then 'balance_after mismatch'
           end as problem
    from core.postings p
    window w as (partition by p.account_id order by p.account_version)
  ) c where c.problem is not null
  union all
  -- I4: cached balance = sum of postings, and the version = number of postings.
  select 'cached_balance', format('account %s: cached %s (v%s), computed %s (v%s)', a.id, a.balance, a.version,
                                  coalesce(s.total, 0), coalesce(s.n, 0))
  from core.accounts a
  left join (select p.account_id, sum(p.amount) as total, count(*) as n from core.postings p group by p.account_id) s
    on s.account_id = a.id
  where a.balance <> coalesce(s.total, 0) or a.version <> coalesce(s.n, 0)
  union all
  -- I5: no customer balance below zero.
  select 'negative_balance', format('account %s (%s %s) is %s', a.id, a.purpose, a.currency, a.balance)
  from core.accounts a where a.must_not_go_negative and a.balance < 0
  union all
  -- Holds: locked balance = sum of open holds.
  select 'held_mismatch', format('user %s %s: locked %s, open holds %s', a.user_id, a.currency, a.balance,
                                 coalesce(h.total, 0))
  from core.accounts a
  left join (select h.user_id, h.currency, sum(h.amount) as total from core.holds h where h.status = 'open'
             group by h.user_id, h.currency) h on h.user_id = a.user_id and h.currency = a.currency
  where a.purpose = 'locked' and a.balance <> coalesce(h.total, 0)
  union all
  -- I7: a hold resolved at most once, captured within its amount.
  select 'hold_resolution', format('hold %s: status %s, %s resolving entries', h.id, h.status, count(e.id))
  from core.holds h left join core.entries e on e.resolves_hold_id = h.id
  group by h.id, h.status
  having count(e.id) > 1 or (h.status in ('captured', 'released') and count(e.id) <> 1)
      or (h.status in ('open', 'split') and count(e.id) <> 0)
  union all
  -- I9: a posting's currency is its account's currency.
  select 'currency_mismatch', format('entry %s leg %s', p.entry_id, p.leg)
  from core.postings p join core.accounts a on a.id = p.account_id where a.currency <> p.currency
  union all
  -- A posting names its account's owner (null for a system account).
  select 'posting_owner', format('entry %s leg %s: user %s, account owner %s', p.entry_id, p.leg, p.user_id, a.user_id)
  from core.postings p join core.accounts a on a.id = p.account_id where a.user_id is distinct from p.user_id
  union all
  -- Every posting names an entry and an account that exist (core.post_entry
  -- writes them so; this finds any posting written by hand).
  select 'orphan_posting', format('entry %s leg %s: %s', p.entry_id, p.leg,
                                  case when e.id is null then 'no such entry' else 'no such account' end)
  from core.postings p
  left join core.entries e on e.id = p.entry_id and e.created_at = p.created_at
  left join core.accounts a on a.id = p.account_id
  where e.id is null or a.id is null
  union all
  -- An entry's customer owns one of the accounts it moves.
  select 'entry_customer', format('entry %s: customer %s owns none of its accounts', e.id, e.user_id)
  from core.entries e
  where e.user_id is not null
    and not exists (select from core.postings p join core.accounts a on a.id = p.account_id
                    where p.entry_id = e.id and p.created_at = e.created_at and a.user_id = e.user_id)
  union all
  -- Entry ids are unique (drawn from one sequence); the partitioned primary
  -- key (id, created_at) alone would allow one id in two months.
  select 'duplicate_entry_id', format('entry id %s appears %s times', e.id, count(*))
  from core.entries e group by e.id having count(*) > 1
  union all
  -- A hold resolved by an entry is recorded in core.hold_resolutions with it.
  select 'hold_resolution', format('entry %s resolves hold %s without its core.hold_resolutions row', e.id, e.resolves_hold_id)
  from core.entries e
  where e.resolves_hold_id is not null
    and not exists (select from core.hold_resolutions r where r.hold_id = e.resolves_hold_id and r.entry_id = e.id)
  union all
  -- Rows that name a journal entry (no foreign key can refer to the
  -- partitioned entries): the entry exists.
  select 'entry_reference', format('%s %s names entry %s, which does not exist', r.tbl, r.row_id, r.entry_id)
  from (select 'holds' as tbl, h.id as row_id, h.created_entry_id as entry_id from core.holds h
        union all select 'holds', h.id, h.resolved_entry_id from core.holds h
        union all select 'hold_resolutions', r.hold_id, r.entry_id from core.hold_resolutions r
        union all select 'pix_charges', c.id, c.entry_id from core.pix_charges c
        union all select 'market_orders', o.id, o.entry_id from core.market_orders o
        union all select 'p2p_trades', t.id, t.release_entry_id from core.p2p_trades t
        union all select 'p2p_trades', t.id, t.brl_entry_id from core.p2p_trades t
        union all select 'p2p_pix_payments', x.trade_id, x.entry_id from core.p2p_pix_payments x
        union all select 'reversible_credits', x.id, x.entry_id from core.reversible_credits x
        union all select 'pix_clawbacks', x.id, x.entry_id from core.pix_clawbacks x
        union all select 'crypto_deposits', x.id, x.entry_id from core.crypto_deposits x) r
  where r.entry_id is not null and not exists (select from core.entries e where e.id = r.entry_id)
  union all
  -- The ledger's partitions reach at least a month ahead (the worker keeps
  -- three: admin.ensure_ledger_partitions); without one, posting stops.
  select 'partitions_ahead', format('core.%s has no partition for %s (run admin.ensure_ledger_partitions)', t.tbl,
                                    to_char(date_trunc('month', now() at time zone 'UTC') + interval '1 month', 'YYYY-MM'))
  from (values ('entries'), ('postings')) t (tbl)
  where not exists (select from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
                    where n.nspname = 'core' and c.relispartition
                      and c.relname = t.tbl || '_' || to_char(date_trunc('month', now() at time zone 'UTC') + interval '1 month', 'YYYY_MM'))
  union all
  -- The P2P reputation counters (core.p2p_reputation, kept by the P2P state
  -- machine, read by the offer book) equal a recount of the finished trades
  -- and the ratings: this recount is what the counters mean.
  select 'p2p_reputation', format('user %s: counters %s, recount %s', coalesce(k.user_id, c.user_id),
                                  row(k.completed_trades, k.faulted_trades, k.timed_releases, k.release_seconds,
                                      k.positive_ratings, k.negative_ratings),
                                  row(c.completed, c.faulted, c.timed, c.seconds, c.positive, c.negative))
  from core.p2p_reputation k
  full join (
    select coalesce(t.user_id, g.user_id) as user_id, coalesce(t.completed, 0) as completed,
           coalesce(t.faulted, 0) as faulted, coalesce(t.timed, 0) as timed, coalesce(t.seconds, 0) as seconds,
           coalesce(g.positive, 0) as positive, coalesce(g.negative, 0) as negative
    from (
      select x.user_id,
             count(*) filter (where t.status = 'COMPLETED') as completed,
             count(*) filter (where t.status in ('CANCELLED', 'REFUNDED') and t.fault_user_id = x.user_id) as faulted,
             count(*) filter (where t.status = 'COMPLETED' and t.seller_id = x.user_id and t.paid_at is not null
                              and t.resolution is null) as timed,
             sum(extract(epoch from t.completed_at - t.paid_at))
               filter (where t.status = 'COMPLETED' and t.seller_id = x.user_id and t.paid_at is not null
                       and t.resolution is null) as seconds
      from core.p2p_trades t
      cross join lateral (values (t.buyer_id), (t.seller_id)) x (user_id)
      where t.status in ('COMPLETED', 'CANCELLED', 'REFUNDED')
      group by x.user_id) t
    full join (
      select r.rated_id as user_id, count(*) filter (where r.positive) as positive,
             count(*) filter (where not r.positive) as negative
      from core.p2p_ratings r group by r.rated_id) g on g.user_id = t.user_id
  ) c on c.user_id = k.user_id
  where (coalesce(k.completed_trades, 0), coalesce(k.faulted_trades, 0), coalesce(k.timed_releases, 0),
         coalesce(k.release_seconds, 0), coalesce(k.positive_ratings, 0), coalesce(k.negative_ratings, 0))
        is distinct from (coalesce(c.completed, 0), coalesce(c.faulted, 0), coalesce(c.timed, 0),
                          coalesce(c.seconds, 0), coalesce(c.positive, 0), coalesce(c.negative, 0));
comment on view reporting.books_health is 'Failures of admin.check_books() (ledger invariants, and the P2P reputation counters against a recount: p2p_reputation). Healthy: empty.';

grant select on all tables in schema reporting to exchange_auditor, exchange_admin;

create or replace function admin.check_books()
returns table (check_name text, detail text)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  select h.check_name, h.detail from reporting.books_health h
$$;
revoke all on function admin.check_books() from public;
grant execute on function admin.check_books() to exchange_app, exchange_worker, exchange_admin;
comment on function admin.check_books() is
  'Runs the ledger invariants (zero-sum per currency, balanced entries, contiguous balance chains, cached = computed, no negative customer balance, locked = open holds, holds resolved once, currency isolation, postings naming existing entries and accounts and their account''s owner, an entry''s customer owning one of its accounts, entry ids unique, hold resolutions recorded, rows naming existing entries, ledger partitions a month ahead, P2P reputation counters equal to a recount of trades and ratings) and returns one row per failure. Empty means healthy. The checks themselves are the view reporting.books_health.';


create or replace function api.health()
returns table (database_time timestamptz, currencies int)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  select now(), (select count(*)::int from core.currencies)
$$;
revoke all on function api.health() from public;
grant execute on function api.health() to exchange_app;
comment on function api.health() is 'Liveness probe for /healthz: the database answers as exchange_app.';
