-- withdrawals.sql: PIX withdrawals to a customer's PIX key.
--
-- Flow (no provider call inside a transaction):
--   1. api.create_withdrawal validates the key (own CPF, or a saved key past
--      its cooling-off), asks for a TOTP code when 2FA is on, applies the exit
--      policy (sql/exits.sql) and the KYC daily limit,
--      holds the funds (core.place_hold, purpose withdrawal) and records a
--      PENDING withdrawal — AWAITING_APPROVAL above a threshold, until
--      admin.approve_withdrawal / admin.reject_withdrawal;
--   2. the worker (webapp/withdrawals/tasks.py) claims PENDING rows with
--      admin.claim_withdrawals (FOR UPDATE SKIP LOCKED → PROCESSING), commits,
--      sends the payout with the idempotency key wd-<id>;
--   3. admin.complete_withdrawal captures the hold to the provider's clearing
--      account, admin.fail_withdrawal releases it. An unknown outcome stays
--      PROCESSING and admin.withdrawals_to_recheck hands it back to the worker,
--      which looks it up (or resends with the same key), never anew.
-- The customer may cancel while PENDING or AWAITING_APPROVAL (api.cancel_withdrawal).

-- ---------------------------------------------------------------------------
-- Helpers (security invoker)
-- ---------------------------------------------------------------------------

-- The PIX key rules (core.pix_normalize_key, CPF and CNPJ check digits) live in sql/identifiers.sql.

create or replace function core.withdrawals_used_today(user_id bigint) returns numeric
language sql stable as $$
  select coalesce(sum(w.amount), 0) from core.withdrawals w
  where w.user_id = withdrawals_used_today.user_id and w.created_at >= core.rails_today_start()
    and w.status not in ('CANCELLED', 'REJECTED', 'FAILED')
$$;
comment on function core.withdrawals_used_today(bigint) is
  'BRL a customer asked to withdraw today (Brazil time), cancelled, rejected and failed withdrawals excluded: the daily_withdrawal_brl limit.';

create or replace function core.withdrawal_label(status text) returns text
language sql immutable as $$
  select case status
    when 'AWAITING_APPROVAL' then 'aguardando aprovação' when 'PENDING' then 'na fila'
    when 'PROCESSING' then 'em processamento' when 'COMPLETED' then 'concluído' when 'FAILED' then 'falhou'
    when 'CANCELLED' then 'cancelado' when 'REJECTED' then 'recusado' else lower(status) end
$$;
comment on function core.withdrawal_label(text) is 'A withdrawal status in Portuguese, for messages.';

create or replace function core.withdrawal_notify(w core.withdrawals, kind text, message text) returns void
language sql volatile as $$
  select core.notify(w.user_id, kind, 'Saque de ' || core.format_brl(w.amount) || ': ' || message, '/withdrawals')
$$;
comment on function core.withdrawal_notify(core.withdrawals, text, text) is 'In-app notification about a withdrawal.';

create or replace function core.lock_withdrawal(withdrawal_id bigint) returns core.withdrawals
language plpgsql volatile as $$
declare
  v core.withdrawals;
begin
  select * into v from core.withdrawals w where w.id = lock_withdrawal.withdrawal_id for update;
  if not found then
    raise exception 'Saque % não encontrado.', withdrawal_id using errcode = 'BSN01';
  end if;
  return v;
end
$$;
comment on function core.lock_withdrawal(bigint) is 'Locks a withdrawal row (BSN01 when unknown): every transition starts here.';

-- ---------------------------------------------------------------------------
-- Customer operations
-- ---------------------------------------------------------------------------

create or replace function core.withdrawal_destination_ok(user_id bigint, key_type text, pix_key text) returns void
language plpgsql volatile as $$
declare
  v_dest core.withdrawal_destinations;
  v_cpf text := core.rails_payer_cpf(withdrawal_destination_ok.user_id);
begin
  -- A CPF key must be the customer's own (KYC): at once when an admin has
  -- verified it (level 2); a CPF only declared (level 1) could be swapped for
  -- an accomplice's, so it goes through the list and its cooling-off like any
  -- other key.
  if key_type = 'CPF' then
    if v_cpf is null or v_cpf <> pix_key then
      raise exception 'Saques para chave CPF só vão para o seu próprio CPF (o da sua verificação). Para outra pessoa, cadastre a chave na sua lista.'
        using errcode = 'BSV01', column = 'pix_key';
    end if;
    if (select u.kyc_level from core.users u where u.id = withdrawal_destination_ok.user_id) >= 2 then
      return;
    end if;
  end if;
  select * into v_dest from core.withdrawal_destinations d
  where d.user_id = withdrawal_destination_ok.user_id and d.key_type = withdrawal_destination_ok.key_type
    and d.pix_key = withdrawal_destination_ok.pix_key and d.removed_at is null;
  if not found then
    raise exception 'Esta chave PIX não está na sua lista de destinos. Cadastre-a primeiro: por segurança, uma chave nova pode ser usada % h depois do cadastro.',
      core.setting('withdrawal_destination_cooloff_hours') using errcode = 'BSV01', column = 'pix_key';
  end if;
  if v_dest.usable_from > now() then
    raise exception 'Esta chave foi cadastrada há pouco: por segurança, ela pode receber saques a partir de %.',
      core.rails_when(v_dest.usable_from) using errcode = 'BSL01', column = 'pix_key';
  end if;
end
$$;
comment on function core.withdrawal_destination_ok(bigint, text, text) is
  'Refuses a withdrawal destination that is a CPF other than the customer''s own (BSV01), a key not in their list (BSV01), or one still in its cooling-off period (BSL01, saying from when). Their own CPF is usable at once only once verified (KYC level 2).';

create function api.create_withdrawal(user_id bigint, amount numeric, key_type text, pix_key text, idempotency_key text,
                                      totp_code text default null)
returns table (withdrawal_id bigint, status text, replayed boolean)
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_user core.users;
  v_key text;
  v_type text := upper(btrim(coalesce(create_withdrawal.key_type, '')));
  v_id bigint;
  v_prior jsonb;
  v_min numeric := core.setting('withdrawal_min_brl')::numeric;
  v_threshold numeric := core.setting('withdrawal_approval_threshold_brl')::numeric;
  v_available numeric;
  v_today numeric;
  v_hold bigint;
  v_status text;
  v_row core.withdrawals;
begin
  v_user := core.assert_active_user(create_withdrawal.user_id);
  if v_user.role <> 'customer' then
    raise exception 'Apenas clientes podem sacar.' using errcode = 'BSA01';
  end if;
  perform core.assert_email_verified(v_user.id);
  perform core.check_amount('BRL', create_withdrawal.amount);
  if create_withdrawal.amount < v_min then
    raise exception 'O saque mínimo é %.', core.format_brl(v_min) using errcode = 'BSV01', column = 'amount';
  end if;
  v_key := core.pix_normalize_key(v_type, create_withdrawal.pix_key);

  v_id := nextval(pg_get_serial_sequence('core.withdrawals', 'id'));
  v_prior := core.claim_idempotency(create_withdrawal.user_id, idempotency_key, 'create_withdrawal',
               md5(concat_ws('|', trim_scale(create_withdrawal.amount), v_type, v_key)),
               jsonb_build_object('withdrawal_id', v_id));
  if v_prior is not null then
    return query select w.id, w.status, true from core.withdrawals w where w.id = (v_prior ->> 'withdrawal_id')::bigint;
    return;
  end if;

  perform core.withdrawal_destination_ok(create_withdrawal.user_id, v_type, v_key);
  perform core.assert_step_up(create_withdrawal.user_id, create_withdrawal.totp_code, 'withdrawal');
  -- The customer's row first (every exit of a customer runs one at a time,
  -- so two withdrawals cannot both pass the limit, the approval threshold or
  -- the exit policy), then the BRL accounts through the hold.
  perform core.lock_for_exit(create_withdrawal.user_id);
  v_today := core.withdrawals_used_today(create_withdrawal.user_id);
  perform core.enforce_daily_limit(create_withdrawal.user_id, 'daily_withdrawal_brl', v_today, create_withdrawal.amount);
  select a.balance into v_available from core.accounts a where a.id = core.user_account(create_withdrawal.user_id, 'BRL');
  if v_available < create_withdrawal.amount then
    raise exception 'Saldo insuficiente: você tem % disponível.', core.format_brl(v_available)
      using errcode = 'BSF01', column = 'amount';
  end if;

  -- Approval above the threshold for the day's total, not per withdrawal
  -- (three of R$ 3.000 need it as one of R$ 9.000 would), crypto included.
  v_status := case when v_today + core.crypto_withdrawals_used_today(create_withdrawal.user_id) + create_withdrawal.amount
                        > v_threshold then 'AWAITING_APPROVAL' else 'PENDING' end;
  v_hold := core.place_hold(create_withdrawal.user_id, 'BRL', create_withdrawal.amount, 'withdrawal', 'wd-' || v_id);
  perform core.assert_exit_covered(create_withdrawal.user_id, 'sacar', create_withdrawal.amount);
  insert into core.withdrawals (id, user_id, reference, amount, key_type, pix_key, status, hold_id)
  values (v_id, create_withdrawal.user_id, 'wd-' || v_id, create_withdrawal.amount, v_type, v_key, v_status, v_hold)
  returning * into v_row;
  perform core.withdrawal_notify(v_row, 'withdrawal.' || lower(v_status),
    case when v_status = 'PENDING' then 'pedido recebido; o PIX será enviado em instantes.'
         else 'com os saques de hoje passa de ' || core.format_brl(v_threshold) || ': aguarda aprovação da equipe.' end);
  return query select v_id, v_status, false;
end
$$;
revoke all on function api.create_withdrawal(bigint, numeric, text, text, text, text) from public;
grant execute on function api.create_withdrawal(bigint, numeric, text, text, text, text) to exchange_app;
comment on function api.create_withdrawal(bigint, numeric, text, text, text, text) is
  'Requests a PIX withdrawal to a key of type CPF|CNPJ|EMAIL|PHONE|EVP (validated, CPF/CNPJ check digits): a CPF key must be the customer''s own, any other key must be in their destination list past its cooling-off. An exit: TOTP step-up when 2FA is on, then the exit policy (sql/exits.sql). Holds the amount (purpose withdrawal, reference wd-<id>) and creates it PENDING, or AWAITING_APPROVAL when the day''s withdrawals with it pass withdrawal_approval_threshold_brl. Idempotent per (user, key). BSV01 invalid or unlisted key, wrong 2FA code or below withdrawal_min_brl, BSF01 insufficient balance, BSL01 daily limit, key still cooling off, or what would remain does not cover PIX still maturing (the message says until when), BSA02 frozen or exits blocked, BSI01 key reused.';

create function api.add_withdrawal_destination(user_id bigint, key_type text, pix_key text, label text default '',
                                               totp_code text default null)
returns table (destination_id bigint, usable_from timestamptz, created boolean)
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
#variable_conflict use_column
declare
  v_type text := upper(btrim(coalesce(add_withdrawal_destination.key_type, '')));
  v_key text;
  v_label text := left(btrim(coalesce(add_withdrawal_destination.label, '')), 60);
  v_dest core.withdrawal_destinations;
  v_cpf text := core.rails_payer_cpf(add_withdrawal_destination.user_id);
  v_from timestamptz;
begin
  perform core.assert_active_user(add_withdrawal_destination.user_id);
  v_key := core.pix_normalize_key(v_type, add_withdrawal_destination.pix_key);
  if v_type = 'CPF' and v_key is distinct from v_cpf then
    raise exception 'Chaves CPF de saque são só o seu próprio CPF (o da sua verificação).' using errcode = 'BSV01', column = 'pix_key';
  end if;
  select * into v_dest from core.withdrawal_destinations d
  where d.user_id = add_withdrawal_destination.user_id and d.key_type = v_type and d.pix_key = v_key and d.removed_at is null;
  if found then
    return query select v_dest.id, v_dest.usable_from, false;
    return;
  end if;
  perform core.assert_step_up(add_withdrawal_destination.user_id, add_withdrawal_destination.totp_code, 'add_destination');
  if (select count(*) from core.withdrawal_destinations d
      where d.user_id = add_withdrawal_destination.user_id and d.removed_at is null) >= 20 then
    raise exception 'Sua lista já tem 20 chaves: remova uma antes de cadastrar outra.' using errcode = 'BSL01', column = 'pix_key';
  end if;
  v_from := case when v_type = 'CPF' and (select u.kyc_level from core.users u
                                          where u.id = add_withdrawal_destination.user_id) >= 2 then now()
                 else now() + make_interval(hours => core.setting('withdrawal_destination_cooloff_hours')::int) end;
  insert into core.withdrawal_destinations (user_id, key_type, pix_key, label, usable_from)
  values (add_withdrawal_destination.user_id, v_type, v_key, v_label, v_from)
  returning * into v_dest;
  perform core.security_event(add_withdrawal_destination.user_id, 'withdrawal_destination_added',
                              v_type || ' ' || v_key, null);
  perform core.notify(add_withdrawal_destination.user_id, 'security.withdrawal_destination_added',
    'Uma nova chave PIX (' || v_type || ' ' || v_key || ') foi cadastrada para saques. Ela pode receber saques a partir de ' ||
    core.rails_when(v_from) || '. Se não foi você, remova-a e troque sua senha.', '/withdrawals');
  return query select v_dest.id, v_dest.usable_from, true;
end
$$;
revoke all on function api.add_withdrawal_destination(bigint, text, text, text, text) from public;
grant execute on function api.add_withdrawal_destination(bigint, text, text, text, text) to exchange_app;
comment on function api.add_withdrawal_destination(bigint, text, text, text, text) is
  'Saves a PIX key to the customer''s withdrawal list (TOTP step-up when 2FA is on): usable after withdrawal_destination_cooloff_hours (their own CPF at once), logged and notified. Saving a key already listed returns it (created false). BSV01 invalid key or a CPF not theirs, BSL01 list full (20).';

create function api.remove_withdrawal_destination(user_id bigint, destination_id bigint)
returns void
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
begin
  update core.withdrawal_destinations d set removed_at = now()
   where d.id = remove_withdrawal_destination.destination_id and d.user_id = remove_withdrawal_destination.user_id
     and d.removed_at is null;
  if not found then
    raise exception 'Chave não encontrada na sua lista.' using errcode = 'BSN01';
  end if;
end
$$;
revoke all on function api.remove_withdrawal_destination(bigint, bigint) from public;
grant execute on function api.remove_withdrawal_destination(bigint, bigint) to exchange_app;
comment on function api.remove_withdrawal_destination(bigint, bigint) is 'Removes a PIX key from the customer''s withdrawal list. BSN01 not theirs.';

create function api.list_withdrawal_destinations(user_id bigint)
returns table (destination_id bigint, key_type text, pix_key text, label text, usable_from timestamptz,
               usable boolean, own_cpf boolean)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  select d.id, d.key_type, d.pix_key, d.label, d.usable_from, d.usable_from <= now(), false
  from core.withdrawal_destinations d
  where d.user_id = list_withdrawal_destinations.user_id and d.removed_at is null
  union all
  select null, 'CPF', c.cpf, 'Meu CPF', null, true, true
  from (select core.rails_payer_cpf(list_withdrawal_destinations.user_id) as cpf) c, core.users u
  where c.cpf is not null and u.id = list_withdrawal_destinations.user_id and u.kyc_level >= 2
  order by 7 desc, 1
$$;
revoke all on function api.list_withdrawal_destinations(bigint) from public;
grant execute on function api.list_withdrawal_destinations(bigint) to exchange_app;
comment on function api.list_withdrawal_destinations(bigint) is
  'Where a customer can withdraw to: their own CPF (from KYC, always usable) and the PIX keys in their list, with when each becomes usable.';

create function api.cancel_withdrawal(user_id bigint, withdrawal_id bigint)
returns text
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
  v core.withdrawals;
begin
  v := core.lock_withdrawal(cancel_withdrawal.withdrawal_id);
  if v.user_id <> cancel_withdrawal.user_id then
    raise exception 'Saque % não encontrado.', withdrawal_id using errcode = 'BSN01';
  end if;
  if v.status = 'CANCELLED' then
    return v.status;   -- a second click
  end if;
  if v.status not in ('PENDING', 'AWAITING_APPROVAL') then
    raise exception 'Este saque não pode mais ser cancelado: está %.', core.withdrawal_label(v.status)
      using errcode = 'BSS01';
  end if;
  perform core.release_hold(v.hold_id, v.reference);
  update core.withdrawals w set status = 'CANCELLED', failure_reason = 'cancelado por você', resolved_at = now(), updated_at = now()
   where w.id = v.id;
  perform core.withdrawal_notify(v, 'withdrawal.cancelled', 'cancelado; o valor voltou ao seu saldo.');
  return 'CANCELLED';
end
$$;
revoke all on function api.cancel_withdrawal(bigint, bigint) from public;
grant execute on function api.cancel_withdrawal(bigint, bigint) to exchange_app;
comment on function api.cancel_withdrawal(bigint, bigint) is
  'The customer cancels their withdrawal while PENDING or AWAITING_APPROVAL: the hold is released. BSS01 once the worker has taken it (PROCESSING or later), BSN01 not theirs.';

create function api.list_withdrawals(user_id bigint, page int default 1, page_size int default 20)
returns table (id bigint, reference text, amount numeric, key_type text, pix_key text, status text,
               failure_reason text, created_at timestamptz, resolved_at timestamptz, cancellable boolean,
               total_rows bigint)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  select w.id, w.reference, w.amount, w.key_type, w.pix_key, w.status, w.failure_reason, w.created_at,
         w.resolved_at, w.status in ('PENDING', 'AWAITING_APPROVAL'), count(*) over ()
  from core.withdrawals w
  where w.user_id = list_withdrawals.user_id
  order by w.id desc
  offset (greatest(page, 1) - 1) * least(greatest(page_size, 1), 100) limit least(greatest(page_size, 1), 100)
$$;
revoke all on function api.list_withdrawals(bigint, int, int) from public;
grant execute on function api.list_withdrawals(bigint, int, int) to exchange_app;
comment on function api.list_withdrawals(bigint, int, int) is 'A customer''s withdrawals, newest first, with why a failed one failed; paginated (total_rows on every row).';

-- ---------------------------------------------------------------------------
-- Worker operations
-- ---------------------------------------------------------------------------

create function admin.claim_withdrawals(provider text, max_rows int default 10)
returns table (withdrawal_id bigint, reference text, amount numeric, key_type text, pix_key text, attempts int)
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
  v core.withdrawals;
begin
  if provider is null or provider not in ('mercadopago', 'inter') then
    raise exception 'Provedor PIX desconhecido: %.', provider using errcode = 'BSV01', column = 'provider';
  end if;
  -- SKIP LOCKED: a row a customer is cancelling (or another worker is
  -- claiming) right now is left for the next run.
  for v in
    select w.* from core.withdrawals w join core.users u on u.id = w.user_id
    where w.status = 'PENDING' and u.status = 'active' and u.exits_blocked_at is null  -- a clawback stops queued exits
    order by w.id
    limit least(greatest(max_rows, 1), 100)
    for update of w skip locked
  loop
    update core.withdrawals w
       set status = 'PROCESSING', provider = claim_withdrawals.provider, claimed_at = now(), last_checked_at = now(),
           attempts = w.attempts + 1, updated_at = now()
     where w.id = v.id;
    perform core.withdrawal_notify(v, 'withdrawal.processing', 'PIX em processamento.');
    withdrawal_id := v.id;
    reference := v.reference;
    amount := v.amount;
    key_type := v.key_type;
    pix_key := v.pix_key;
    attempts := v.attempts + 1;
    return next;
  end loop;
end
$$;
revoke all on function admin.claim_withdrawals(text, int) from public;
grant execute on function admin.claim_withdrawals(text, int) to exchange_worker, exchange_admin;
comment on function admin.claim_withdrawals(text, int) is
  'Worker: takes up to max_rows PENDING withdrawals of active customers (FOR UPDATE SKIP LOCKED) → PROCESSING with the provider that will pay them; commit before sending the payouts (idempotency key = reference).';

create function admin.record_withdrawal_payout(withdrawal_id bigint, provider_payout_id text default null,
                                               error text default null)
returns text
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
  v core.withdrawals;
begin
  v := core.lock_withdrawal(record_withdrawal_payout.withdrawal_id);
  if v.status = 'PROCESSING' then
    if v.provider_payout_id is not null and provider_payout_id is not null and v.provider_payout_id <> provider_payout_id then
      raise exception 'O saque % já tem outro pagamento no provedor (%).', v.id, v.provider_payout_id using errcode = 'BSS01';
    end if;
    update core.withdrawals w
       set provider_payout_id = coalesce(w.provider_payout_id, nullif(btrim(record_withdrawal_payout.provider_payout_id), '')),
           last_error = left(record_withdrawal_payout.error, 500), last_checked_at = now(), updated_at = now()
     where w.id = v.id;
  end if;
  return v.status;
end
$$;
revoke all on function admin.record_withdrawal_payout(bigint, text, text) from public;
grant execute on function admin.record_withdrawal_payout(bigint, text, text) to exchange_worker, exchange_admin;
comment on function admin.record_withdrawal_payout(bigint, text, text) is
  'Worker: a payout of a PROCESSING withdrawal is still in flight (or its outcome is unknown): remembers the provider''s payout id and the last error; the recheck job looks again later. Returns the current status.';

create function admin.complete_withdrawal(withdrawal_id bigint, provider_payout_id text default null)
returns boolean
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
  v core.withdrawals;
  v_entry bigint;
begin
  v := core.lock_withdrawal(complete_withdrawal.withdrawal_id);
  if v.status = 'COMPLETED' then
    return false;
  end if;
  if v.status <> 'PROCESSING' then
    raise exception 'Saque % está %, não em processamento: não pode ser concluído.', v.id, core.withdrawal_label(v.status)
      using errcode = 'BSS01';
  end if;
  -- The money left through the provider: the held amount goes to its clearing account.
  v_entry := core.resolve_hold(v.hold_id, 'withdrawal', v.reference,
                               array[core.system_account('clearing_' || v.provider, 'BRL')], array[v.amount],
                               'Saque PIX ' || v.reference);
  update core.withdrawals w
     set status = 'COMPLETED', provider_payout_id = coalesce(w.provider_payout_id, nullif(btrim(complete_withdrawal.provider_payout_id), '')),
         failure_reason = null, last_error = null, resolved_at = now(), updated_at = now()
   where w.id = v.id;
  perform core.withdrawal_notify(v, 'withdrawal.completed', 'PIX enviado para a chave ' || v.pix_key || '.');
  return true;
end
$$;
revoke all on function admin.complete_withdrawal(bigint, text) from public;
grant execute on function admin.complete_withdrawal(bigint, text) to exchange_worker, exchange_admin;
comment on function admin.complete_withdrawal(bigint, text) is
  'Worker: the provider paid a PROCESSING withdrawal → COMPLETED, the hold captured to clearing_<provider>. false when already COMPLETED (idempotent); BSS01 in any other state.';

create function admin.fail_withdrawal(withdrawal_id bigint, reason text, provider_payout_id text default null)
returns boolean
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
  v core.withdrawals;
  v_reason text := left(coalesce(nullif(btrim(reason), ''), 'o provedor recusou o PIX'), 500);
begin
  v := core.lock_withdrawal(fail_withdrawal.withdrawal_id);
  if v.status = 'FAILED' then
    return false;
  end if;
  if v.status <> 'PROCESSING' then
    raise exception 'Saque % está %, não em processamento: não pode falhar.', v.id, core.withdrawal_label(v.status)
      using errcode = 'BSS01';
  end if;
  perform core.release_hold(v.hold_id, v.reference);
  update core.withdrawals w
     set status = 'FAILED', failure_reason = v_reason,
         provider_payout_id = coalesce(w.provider_payout_id, nullif(btrim(fail_withdrawal.provider_payout_id), '')),
         resolved_at = now(), updated_at = now()
   where w.id = v.id;
  perform core.withdrawal_notify(v, 'withdrawal.failed', 'não foi enviado (' || v_reason || '); o valor voltou ao seu saldo.');
  return true;
end
$$;
revoke all on function admin.fail_withdrawal(bigint, text, text) from public;
grant execute on function admin.fail_withdrawal(bigint, text, text) to exchange_worker, exchange_admin;
comment on function admin.fail_withdrawal(bigint, text, text) is
  'Worker: the provider definitely refused or rejected the payout of a PROCESSING withdrawal → FAILED with the reason the customer sees; the hold is released. false when already FAILED; BSS01 in any other state.';

create function admin.withdrawals_to_recheck(max_rows int default 20)
returns table (withdrawal_id bigint, reference text, amount numeric, key_type text, pix_key text, provider text,
               provider_payout_id text, claimed_at timestamptz)
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_after interval := make_interval(secs => core.setting('withdrawal_recheck_seconds')::int);
begin
  return query
  with due as (
    select w.id from core.withdrawals w
    where w.status = 'PROCESSING' and coalesce(w.last_checked_at, w.claimed_at) < now() - v_after
    order by coalesce(w.last_checked_at, w.claimed_at), w.id
    limit least(greatest(max_rows, 1), 200)
    for update skip locked
  ), stamped as (
    update core.withdrawals w set last_checked_at = now() from due where w.id = due.id returning w.*
  )
  select s.id, s.reference, s.amount, s.key_type, s.pix_key, s.provider, s.provider_payout_id, s.claimed_at
  from stamped s order by s.id;
end
$$;
revoke all on function admin.withdrawals_to_recheck(int) from public;
grant execute on function admin.withdrawals_to_recheck(int) to exchange_worker, exchange_admin;
comment on function admin.withdrawals_to_recheck(int) is
  'Reconciler: PROCESSING withdrawals not looked at for withdrawal_recheck_seconds (crash, timeout, 5xx, payout still in flight), stamped; the worker looks each payout up by id, or resends it with the same idempotency key when the id was never learned.';

-- ---------------------------------------------------------------------------
-- Back office: approvals
-- ---------------------------------------------------------------------------

create function admin.approve_withdrawal(admin_id bigint, withdrawal_id bigint, note text default null,
                                         totp_code text default null)
returns text
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
  v core.withdrawals;
begin
  perform core.assert_admin(admin_id);
  v := core.lock_withdrawal(approve_withdrawal.withdrawal_id);
  if v.status <> 'AWAITING_APPROVAL' then
    raise exception 'O saque % não aguarda aprovação (está %).', v.id, core.withdrawal_label(v.status) using errcode = 'BSS01';
  end if;
  if (select u.exits_blocked_at is not null from core.users u where u.id = v.user_id) then
    raise exception 'As saídas deste cliente estão bloqueadas (PIX devolvido pelo MED): o saque não pode ser aprovado.'
      using errcode = 'BSA02';
  end if;
  perform core.assert_admin_step_up(admin_id, approve_withdrawal.totp_code, 'approve_withdrawal');
  update core.withdrawals w
     set status = 'PENDING', reviewed_by = approve_withdrawal.admin_id, reviewed_at = now(),
         review_note = nullif(btrim(coalesce(note, '')), ''), updated_at = now()
   where w.id = v.id;
  perform core.audit(admin_id, 'approve_withdrawal', v.user_id, coalesce(nullif(btrim(coalesce(note, '')), ''), 'aprovado'),
                     jsonb_build_object('withdrawal_id', v.id, 'amount', v.amount, 'key_type', v.key_type));
  perform core.withdrawal_notify(v, 'withdrawal.approved', 'aprovado; o PIX será enviado em instantes.');
  return 'PENDING';
end
$$;
revoke all on function admin.approve_withdrawal(bigint, bigint, text, text) from public;
grant execute on function admin.approve_withdrawal(bigint, bigint, text, text) to exchange_app, exchange_admin;
comment on function admin.approve_withdrawal(bigint, bigint, text, text) is
  'Back office: AWAITING_APPROVAL → PENDING (the worker pays it out), audit-logged, customer notified. BSA01 not admin, BSS01 not awaiting approval.';

create function admin.reject_withdrawal(admin_id bigint, withdrawal_id bigint, reason text)
returns text
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
  v core.withdrawals;
begin
  perform core.assert_admin(admin_id);
  if reason is null or length(btrim(reason)) < 5 then
    raise exception 'Informe o motivo (ao menos 5 caracteres): o cliente vai lê-lo.' using errcode = 'BSV01', column = 'reason';
  end if;
  v := core.lock_withdrawal(reject_withdrawal.withdrawal_id);
  if v.status not in ('AWAITING_APPROVAL', 'PENDING') then
    raise exception 'O saque % não pode mais ser recusado (está %).', v.id, core.withdrawal_label(v.status) using errcode = 'BSS01';
  end if;
  perform core.release_hold(v.hold_id, v.reference);
  update core.withdrawals w
     set status = 'REJECTED', failure_reason = btrim(reason), reviewed_by = reject_withdrawal.admin_id,
         reviewed_at = now(), review_note = btrim(reason), resolved_at = now(), updated_at = now()
   where w.id = v.id;
  perform core.audit(admin_id, 'reject_withdrawal', v.user_id, reason,
                     jsonb_build_object('withdrawal_id', v.id, 'amount', v.amount));
  perform core.withdrawal_notify(v, 'withdrawal.rejected', 'recusado pela equipe (' || btrim(reason) || '); o valor voltou ao seu saldo.');
  return 'REJECTED';
end
$$;
revoke all on function admin.reject_withdrawal(bigint, bigint, text) from public;
grant execute on function admin.reject_withdrawal(bigint, bigint, text) to exchange_app, exchange_admin;
comment on function admin.reject_withdrawal(bigint, bigint, text) is
  'Back office: refuses a withdrawal AWAITING_APPROVAL (or still PENDING) with a reason the customer sees; the hold is released. Audit-logged. BSA01 not admin, BSV01 no reason, BSS01 already taken by the worker or settled.';

create function admin.list_withdrawals(admin_id bigint, status_filter text default null, max_rows int default 100)
returns table (withdrawal_id bigint, user_id bigint, email text, display_name text, kyc_level int, amount numeric,
               key_type text, pix_key text, status text, provider text, provider_payout_id text, failure_reason text,
               last_error text, attempts int, created_at timestamptz, resolved_at timestamptz)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  select w.id, w.user_id, u.email, u.display_name, u.kyc_level, w.amount, w.key_type, w.pix_key, w.status, w.provider,
         w.provider_payout_id, w.failure_reason, w.last_error, w.attempts, w.created_at, w.resolved_at
  from core.withdrawals w join core.users u on u.id = w.user_id, core.assert_admin(list_withdrawals.admin_id) a
  where list_withdrawals.status_filter is null or w.status = list_withdrawals.status_filter
  order by w.status <> 'AWAITING_APPROVAL', w.id desc
  limit least(greatest(max_rows, 1), 500)
$$;
revoke all on function admin.list_withdrawals(bigint, text, int) from public;
grant execute on function admin.list_withdrawals(bigint, text, int) to exchange_app, exchange_admin;
comment on function admin.list_withdrawals(bigint, text, int) is
  'Back office: withdrawals (optionally of one status), those awaiting approval first, with the customer. Admins only (BSA01).';

-- ---------------------------------------------------------------------------
-- Reporting
-- ---------------------------------------------------------------------------

create view reporting.withdrawals as
select w.id, w.user_id, w.reference, w.amount, w.key_type, w.status, w.provider, w.provider_payout_id, w.hold_id,
       h.status as hold_status, w.failure_reason, w.attempts, w.last_error, w.reviewed_by, w.created_at,
       w.claimed_at, w.resolved_at
from core.withdrawals w join core.holds h on h.id = w.hold_id;
comment on view reporting.withdrawals is
  'Every PIX withdrawal with its hold. Healthy: hold_status is open exactly while the withdrawal is AWAITING_APPROVAL, PENDING or PROCESSING, captured when COMPLETED, released when FAILED/CANCELLED/REJECTED; nothing PROCESSING for long.';

create view reporting.withdrawal_mismatches as
select w.id, w.reference, w.status, h.status as hold_status, w.created_at
from core.withdrawals w join core.holds h on h.id = w.hold_id
where (w.status in ('AWAITING_APPROVAL', 'PENDING', 'PROCESSING') and h.status <> 'open')
   or (w.status = 'COMPLETED' and h.status <> 'captured')
   or (w.status in ('FAILED', 'CANCELLED', 'REJECTED') and h.status <> 'released')
   or (w.status = 'PROCESSING' and w.claimed_at < now() - interval '1 hour');
comment on view reporting.withdrawal_mismatches is
  'Withdrawals whose hold disagrees with their status, or stuck PROCESSING for over an hour. Healthy: empty.';

grant select on reporting.withdrawals, reporting.withdrawal_mismatches to exchange_auditor, exchange_admin;
