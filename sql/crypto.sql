-- crypto.sql: on-chain deposits and withdrawals of BTC, ETH and USDT through
-- Binance (tables: migrations/0014_crypto.sql).
--
-- Deposits: api.request_crypto_deposit_address asks for an address of a
-- coin on a network; the worker (webapp/crypto/tasks.py) creates the
-- customer's Binance virtual sub-account and fetches the address
-- (admin.record_crypto_sub_account, admin.record_crypto_deposit_address),
-- then polls the sub-account's deposit history and hands every row to
-- admin.record_crypto_deposits: a deposit is credited exactly once per
-- (coin, txId, Binance id) when Binance says status 1 (entry crypto_deposit,
-- binance_omnibus → customer); 0 and 6 stay pending, 7 (wrong network) is
-- never credited. A credited deposit is swept to the master account
-- (core.crypto_sweeps, clientTranId csw-<id>; nothing moves in the ledger).
--
-- Withdrawals: an exit (sql/exits.sql). api.create_crypto_withdrawal holds
-- amount + network fee (purpose crypto_withdrawal, reference cwd-<id>) to an
-- address of the customer's address book past its cooling-off; the worker
-- claims it (admin.claim_crypto_withdrawals, FOR UPDATE SKIP LOCKED →
-- PROCESSING), sends POST withdraw/apply with withdrawOrderId = cwd-<id>, and
-- records what Binance says (admin.record_crypto_withdrawal): completed →
-- hold captured to binance_omnibus (entry crypto_withdrawal), failed or
-- rejected → released. An unknown outcome is looked up by withdrawOrderId
-- (admin.crypto_withdrawals_to_recheck), never sent again.

-- ---------------------------------------------------------------------------
-- Helpers (security invoker)
-- ---------------------------------------------------------------------------

create or replace function core.crypto_network(coin text, network text, field text default 'network')
returns core.crypto_networks
language plpgsql stable as $$
declare
  v core.crypto_networks;
begin
  select * into v from core.crypto_networks n
  where n.coin = upper(btrim(crypto_network.coin)) and n.network = upper(btrim(crypto_network.network));
  if not found then
    raise exception 'Rede % não disponível para %.', coalesce(network, '(vazia)'), coalesce(coin, '(vazia)')
      using errcode = 'BSV01', column = field;
  end if;
  return v;
end
$$;
comment on function core.crypto_network(text, text, text) is 'The network row of a coin (BSV01 on `field` when we do not list that coin on that network).';

create or replace function core.crypto_normalize_address(coin text, network text, address text, memo text default '')
returns text
language plpgsql stable as $$
declare
  v_net core.crypto_networks := core.crypto_network(coin, network);
  v text := btrim(coalesce(address, ''));
  v_memo text := btrim(coalesce(memo, ''));
begin
  -- The database's second line: the network's address pattern from Binance's
  -- config (the kept library, webapp.chain.validate_address, is the first).
  if v = '' then
    raise exception 'Informe o endereço de destino.' using errcode = 'BSV01', column = 'address';
  end if;
  if length(v) > 128 or v !~ v_net.address_regex then
    raise exception 'Endereço inválido para a rede %: confira se ele é da rede % (não de outra).', v_net.name, v_net.name
      using errcode = 'BSV01', column = 'address';
  end if;
  if v_net.needs_memo and v_memo = '' then
    raise exception 'A rede % exige memo/tag: informe-o, ou a moeda se perde.', v_net.name
      using errcode = 'BSV01', column = 'memo';
  end if;
  if not v_net.needs_memo and v_memo <> '' then
    raise exception 'A rede % não usa memo/tag: deixe o campo vazio.', v_net.name using errcode = 'BSV01', column = 'memo';
  end if;
  if v_memo <> '' and v_net.memo_regex <> '' and v_memo !~ v_net.memo_regex then
    raise exception 'Memo/tag inválido para a rede %.', v_net.name using errcode = 'BSV01', column = 'memo';
  end if;
  -- bech32 is case-insensitive: one canonical (lower-case) form
  if v ~* '^bc1' then
    v := lower(v);
  end if;
  return v;
end
$$;
comment on function core.crypto_normalize_address(text, text, text, text) is
  'A withdrawal address checked against its network''s pattern (from Binance''s config; BSV01 on address) and memo rules (BSV01 on memo when the network needs one and it is missing, or does not take one); bech32 lower-cased.';

create or replace function core.crypto_tx_url(coin text, network text, tx_id text) returns text
language sql stable as $$
  select case when nullif(tx_id, '') is null then null
              else (select nullif(n.tx_explorer_url, '') || tx_id from core.crypto_networks n
                    where n.coin = crypto_tx_url.coin and n.network = crypto_tx_url.network) end
$$;
comment on function core.crypto_tx_url(text, text, text) is 'The block explorer link of a transaction (mempool.space, etherscan.io, tronscan.org, bscscan.com).';

create or replace function core.crypto_withdrawals_used_today(user_id bigint) returns numeric
language sql stable as $$
  select coalesce(sum(w.brl_value), 0) from core.crypto_withdrawals w
  where w.user_id = crypto_withdrawals_used_today.user_id and w.created_at >= core.rails_today_start()
    and w.status not in ('CANCELLED', 'FAILED', 'REJECTED')
$$;
comment on function core.crypto_withdrawals_used_today(bigint) is
  'BRL value (at the bid when requested) of the crypto a customer asked to withdraw today, Brazil time (cancelled and failed excluded): the daily_crypto_withdrawal_brl limit.';

create or replace function core.crypto_withdrawal_notify(w core.crypto_withdrawals, kind text, message text) returns void
language sql volatile as $$
  select core.notify(w.user_id, kind, 'Saque de ' || trim_scale(w.amount) || ' ' || w.coin || ' (' || w.network || '): ' || message,
                     '/wallet/' || lower(w.coin) || '/withdraw')
$$;
comment on function core.crypto_withdrawal_notify(core.crypto_withdrawals, text, text) is 'In-app notification about a crypto withdrawal.';

create or replace function core.lock_crypto_withdrawal(withdrawal_id bigint) returns core.crypto_withdrawals
language plpgsql volatile as $$
declare
  v core.crypto_withdrawals;
begin
  select * into v from core.crypto_withdrawals w where w.id = lock_crypto_withdrawal.withdrawal_id for update;
  if not found then
    raise exception 'Saque de cripto % não encontrado.', withdrawal_id using errcode = 'BSN01';
  end if;
  return v;
end
$$;
comment on function core.lock_crypto_withdrawal(bigint) is 'Locks a crypto withdrawal row (BSN01 when unknown): every transition starts here.';

create or replace function core.fail_crypto_withdrawal(w core.crypto_withdrawals, reason text) returns void
language plpgsql volatile as $$
declare
  v_reason text := left(coalesce(nullif(btrim(reason), ''), 'recusado pela Binance'), 500);
begin
  perform core.release_hold(w.hold_id, w.reference);
  update core.crypto_withdrawals x
     set status = 'FAILED', failure_reason = v_reason, resolved_at = now(), updated_at = now()
   where x.id = w.id;
  perform core.crypto_withdrawal_notify(w, 'crypto_withdrawal.failed', 'não foi enviado (' || v_reason || '); o valor voltou ao seu saldo.');
end
$$;
comment on function core.fail_crypto_withdrawal(core.crypto_withdrawals, text) is 'A crypto withdrawal → FAILED with the reason the customer reads; its hold released.';

-- ---------------------------------------------------------------------------
-- Customer: networks and deposit addresses
-- ---------------------------------------------------------------------------

create function api.list_crypto_networks(coin text default null)
returns table (coin text, network text, name text, is_default boolean, deposit_enable boolean, withdraw_enable boolean,
               withdraw_fee numeric, withdraw_min numeric, withdraw_multiple numeric, min_confirm int,
               needs_memo boolean)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  select n.coin, n.network, n.name, n.is_default, n.deposit_enable, n.withdraw_enable, n.withdraw_fee, n.withdraw_min,
         n.withdraw_multiple, n.min_confirm, n.needs_memo
  from core.crypto_networks n
  where list_crypto_networks.coin is null or n.coin = upper(btrim(list_crypto_networks.coin))
  order by n.coin, n.is_default desc, n.network
$$;
revoke all on function api.list_crypto_networks(text) from public;
grant execute on function api.list_crypto_networks(text) to exchange_app;
comment on function api.list_crypto_networks(text) is
  'The networks a coin can be deposited and withdrawn on, with the network fee, the minimum and step of a withdrawal, the confirmations a deposit waits for, whether a memo is needed and whether deposits or withdrawals are suspended.';

create function api.request_crypto_deposit_address(user_id bigint, coin text, network text)
returns table (address_id bigint, address text, memo text, ready boolean)
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
#variable_conflict use_column
declare
  v_user core.users := core.assert_active_user(request_crypto_deposit_address.user_id);
  v_net core.crypto_networks := core.crypto_network(coin, network);
  v core.crypto_deposit_addresses;
begin
  if v_user.role <> 'customer' then
    raise exception 'Apenas clientes recebem depósitos.' using errcode = 'BSA01';
  end if;
  perform core.assert_email_verified(v_user.id);
  if not v_net.deposit_enable then
    raise exception 'Depósitos de % pela rede % estão suspensos no momento. Use outra rede ou tente mais tarde.',
      v_net.coin, v_net.name using errcode = 'BSS01', column = 'network';
  end if;
  insert into core.binance_sub_accounts (user_id, sub_account_string)
  values (v_user.id, 'bsm' || v_user.id)
  on conflict do nothing;
  insert into core.crypto_deposit_addresses (user_id, coin, network)
  values (v_user.id, v_net.coin, v_net.network)
  on conflict do nothing;
  select * into strict v from core.crypto_deposit_addresses a
  where a.user_id = v_user.id and a.coin = v_net.coin and a.network = v_net.network;
  return query select v.id, v.address, v.memo, v.address is not null;
end
$$;
revoke all on function api.request_crypto_deposit_address(bigint, text, text) from public;
grant execute on function api.request_crypto_deposit_address(bigint, text, text) to exchange_app;
comment on function api.request_crypto_deposit_address(bigint, text, text) is
  'The customer''s deposit address for a coin on a network: returned at once when known (ready), otherwise requested (the worker creates their Binance sub-account and fetches it within seconds). BSV01 unknown coin/network, BSS01 deposits suspended on that network.';

create function api.list_crypto_deposit_addresses(user_id bigint, coin text default null)
returns table (address_id bigint, coin text, network text, network_name text, address text, memo text, ready boolean,
               min_confirm int)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  select a.id, a.coin, a.network, n.name, a.address, a.memo, a.address is not null, n.min_confirm
  from core.crypto_deposit_addresses a join core.crypto_networks n on n.coin = a.coin and n.network = a.network
  where a.user_id = list_crypto_deposit_addresses.user_id
    and (list_crypto_deposit_addresses.coin is null or a.coin = upper(list_crypto_deposit_addresses.coin))
  order by a.coin, a.network
$$;
revoke all on function api.list_crypto_deposit_addresses(bigint, text) from public;
grant execute on function api.list_crypto_deposit_addresses(bigint, text) to exchange_app;
comment on function api.list_crypto_deposit_addresses(bigint, text) is 'The customer''s deposit addresses (and memos) per coin and network; ready false while the worker fetches one.';

create function api.list_crypto_deposits(user_id bigint, coin text default null, max_rows int default 50)
returns table (deposit_id bigint, coin text, network text, amount numeric, status text, confirmations int,
               required_confirmations int, tx_id text, tx_url text, address text, first_seen_at timestamptz,
               credited_at timestamptz)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  select d.id, d.coin, d.network, d.amount, d.status, d.confirmations,
         greatest(d.required_confirmations, coalesce(n.min_confirm, 0)), d.tx_id,
         core.crypto_tx_url(d.coin, d.network, d.tx_id), d.address, d.first_seen_at, d.credited_at
  from core.crypto_deposits d left join core.crypto_networks n on n.coin = d.coin and n.network = d.network
  where d.user_id = list_crypto_deposits.user_id
    and (list_crypto_deposits.coin is null or d.coin = upper(list_crypto_deposits.coin))
  order by d.id desc
  limit least(greatest(max_rows, 1), 200)
$$;
revoke all on function api.list_crypto_deposits(bigint, text, int) from public;
grant execute on function api.list_crypto_deposits(bigint, text, int) to exchange_app;
comment on function api.list_crypto_deposits(bigint, text, int) is
  'The customer''s on-chain deposits, newest first: PENDING with confirmations x of y, CREDITED, or WRONG_NETWORK (sent over a network we do not accept for that coin: not credited, support must look), with the transaction''s explorer link.';

-- ---------------------------------------------------------------------------
-- Customer: address book
-- ---------------------------------------------------------------------------

create function api.add_crypto_address(user_id bigint, coin text, network text, address text, memo text default '',
                                       label text default '', totp_code text default null)
returns table (address_id bigint, usable_from timestamptz, created boolean)
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
#variable_conflict use_column
declare
  v_net core.crypto_networks := core.crypto_network(coin, network);
  v_address text;
  v_memo text := btrim(coalesce(add_crypto_address.memo, ''));
  v_label text := left(btrim(coalesce(add_crypto_address.label, '')), 60);
  v core.crypto_address_book;
  v_from timestamptz;
begin
  perform core.assert_active_user(add_crypto_address.user_id);
  v_address := core.crypto_normalize_address(v_net.coin, v_net.network, add_crypto_address.address, v_memo);
  select * into v from core.crypto_address_book b
  where b.user_id = add_crypto_address.user_id and b.coin = v_net.coin and b.network = v_net.network
    and b.address = v_address and b.memo = v_memo and b.removed_at is null;
  if found then
    return query select v.id, v.usable_from, false;
    return;
  end if;
  perform core.assert_step_up(add_crypto_address.user_id, add_crypto_address.totp_code, 'add_crypto_address');
  if (select count(*) from core.crypto_address_book b
      where b.user_id = add_crypto_address.user_id and b.removed_at is null) >= 50 then
    raise exception 'Sua lista já tem 50 endereços: remova um antes de cadastrar outro.' using errcode = 'BSL01', column = 'address';
  end if;
  v_from := now() + make_interval(hours => core.setting('crypto_destination_cooloff_hours')::int);
  insert into core.crypto_address_book (user_id, coin, network, address, memo, label, usable_from)
  values (add_crypto_address.user_id, v_net.coin, v_net.network, v_address, v_memo, v_label, v_from)
  returning * into v;
  perform core.security_event(add_crypto_address.user_id, 'crypto_address_added',
                              v_net.coin || ' ' || v_net.network || ' ' || v_address, null);
  perform core.notify(add_crypto_address.user_id, 'security.crypto_address_added',
    'Um novo endereço de saque de ' || v_net.coin || ' (' || v_net.name || ': ' || v_address || ') foi cadastrado. ' ||
    'Ele pode receber saques a partir de ' || core.rails_when(v_from) || '. Se não foi você, remova-o e troque sua senha.',
    '/wallet/' || lower(v_net.coin) || '/withdraw');
  return query select v.id, v.usable_from, true;
end
$$;
revoke all on function api.add_crypto_address(bigint, text, text, text, text, text, text) from public;
grant execute on function api.add_crypto_address(bigint, text, text, text, text, text, text) to exchange_app;
comment on function api.add_crypto_address(bigint, text, text, text, text, text, text) is
  'Saves a crypto withdrawal address (coin, network, address, memo when the network needs one, label) to the customer''s address book, with a TOTP step-up when 2FA is on: usable after crypto_destination_cooloff_hours; logged and notified. An address already saved is returned (created false). BSV01 address or memo invalid for the network, or wrong 2FA code; BSL01 list full.';

create function api.remove_crypto_address(user_id bigint, address_id bigint)
returns void
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
begin
  update core.crypto_address_book b set removed_at = now()
   where b.id = remove_crypto_address.address_id and b.user_id = remove_crypto_address.user_id and b.removed_at is null;
  if not found then
    raise exception 'Endereço não encontrado na sua lista.' using errcode = 'BSN01';
  end if;
end
$$;
revoke all on function api.remove_crypto_address(bigint, bigint) from public;
grant execute on function api.remove_crypto_address(bigint, bigint) to exchange_app;
comment on function api.remove_crypto_address(bigint, bigint) is 'Removes an address from the customer''s crypto address book. BSN01 not theirs.';

create function api.list_crypto_addresses(user_id bigint, coin text default null)
returns table (address_id bigint, coin text, network text, network_name text, address text, memo text, label text,
               usable_from timestamptz, usable boolean)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  select b.id, b.coin, b.network, n.name, b.address, b.memo, b.label, b.usable_from, b.usable_from <= now()
  from core.crypto_address_book b join core.crypto_networks n on n.coin = b.coin and n.network = b.network
  where b.user_id = list_crypto_addresses.user_id and b.removed_at is null
    and (list_crypto_addresses.coin is null or b.coin = upper(list_crypto_addresses.coin))
  order by b.coin, b.network, b.id
$$;
revoke all on function api.list_crypto_addresses(bigint, text) from public;
grant execute on function api.list_crypto_addresses(bigint, text) to exchange_app;
comment on function api.list_crypto_addresses(bigint, text) is 'The customer''s crypto address book (optionally of one coin), with when each address becomes usable.';

-- ---------------------------------------------------------------------------
-- Customer: withdrawals
-- ---------------------------------------------------------------------------

create or replace function core.crypto_check_withdrawal(net core.crypto_networks, amount numeric) returns void
language plpgsql stable as $$
begin
  if not net.withdraw_enable then
    raise exception 'Saques de % pela rede % estão suspensos no momento. Tente mais tarde ou use outra rede.',
      net.coin, net.name using errcode = 'BSS01', column = 'address_id';
  end if;
  if crypto_check_withdrawal.amount < net.withdraw_min then
    raise exception 'O saque mínimo de % pela rede % é % %.', net.coin, net.name, trim_scale(net.withdraw_min), net.coin
      using errcode = 'BSV01', column = 'amount';
  end if;
  if crypto_check_withdrawal.amount + net.withdraw_fee > net.withdraw_max then
    raise exception 'O saque máximo de % pela rede % é % %.', net.coin, net.name, trim_scale(net.withdraw_max), net.coin
      using errcode = 'BSV01', column = 'amount';
  end if;
  if crypto_check_withdrawal.amount % net.withdraw_multiple <> 0 or net.withdraw_fee % net.withdraw_multiple <> 0 then
    raise exception 'A rede % aceita valores em passos de % %.', net.name, trim_scale(net.withdraw_multiple), net.coin
      using errcode = 'BSV02', column = 'amount';
  end if;
end
$$;
comment on function core.crypto_check_withdrawal(core.crypto_networks, numeric) is
  'Step of api.create_crypto_withdrawal: the network takes withdrawals now (BSS01) and the amount fits its rules from Binance: at least withdraw_min, amount + fee at most withdraw_max (BSV01), amount and fee multiples of withdraw_multiple (BSV02).';

create function api.create_crypto_withdrawal(user_id bigint, coin text, address_id bigint, amount numeric,
                                             idempotency_key text, totp_code text default null)
returns table (withdrawal_id bigint, status text, fee numeric, replayed boolean)
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_user core.users;
  v_coin text := upper(btrim(coalesce(create_crypto_withdrawal.coin, '')));
  v_book core.crypto_address_book;
  v_net core.crypto_networks;
  v_id bigint;
  v_prior jsonb;
  v_price numeric;
  v_total numeric;
  v_available numeric;
  v_hold bigint;
  v_row core.crypto_withdrawals;
  v_status text;
begin
  -- 1. validate
  v_user := core.assert_active_user(create_crypto_withdrawal.user_id);
  if v_user.role <> 'customer' then
    raise exception 'Apenas clientes podem sacar.' using errcode = 'BSA01';
  end if;
  perform core.assert_email_verified(v_user.id);
  if v_coin not in (select c.code from core.currencies c where c.kind = 'crypto') then
    raise exception 'Moeda desconhecida: %.', v_coin using errcode = 'BSV01', column = 'coin';
  end if;
  perform core.check_amount(v_coin, create_crypto_withdrawal.amount);
  select * into v_book from core.crypto_address_book b
  where b.id = create_crypto_withdrawal.address_id and b.user_id = v_user.id and b.removed_at is null;
  if not found or v_book.coin <> v_coin then
    raise exception 'Escolha um endereço da sua lista de endereços de %. Cadastre-o primeiro: por segurança, um endereço novo pode ser usado % h depois do cadastro.',
      v_coin, core.setting('crypto_destination_cooloff_hours') using errcode = 'BSV01', column = 'address_id';
  end if;
  v_net := core.crypto_network(v_book.coin, v_book.network);
  perform core.crypto_check_withdrawal(v_net, create_crypto_withdrawal.amount);
  v_total := create_crypto_withdrawal.amount + v_net.withdraw_fee;
  -- the database's own check of the saved address (its network may have changed its pattern)
  perform core.crypto_normalize_address(v_book.coin, v_book.network, v_book.address, v_book.memo);

  -- 2. idempotency
  v_id := nextval(pg_get_serial_sequence('core.crypto_withdrawals', 'id'));
  v_prior := core.claim_idempotency(v_user.id, idempotency_key, 'create_crypto_withdrawal',
               md5(concat_ws('|', v_coin, v_book.id, trim_scale(create_crypto_withdrawal.amount))),
               jsonb_build_object('withdrawal_id', v_id));
  if v_prior is not null then
    return query select w.id, w.status, w.fee, true from core.crypto_withdrawals w
      where w.id = (v_prior ->> 'withdrawal_id')::bigint;
    return;
  end if;

  -- 3. the address past its cooling-off
  if v_book.usable_from > now() then
    raise exception 'Este endereço foi cadastrado há pouco: por segurança, ele pode receber saques a partir de %.',
      core.rails_when(v_book.usable_from) using errcode = 'BSL01', column = 'address_id';
  end if;
  -- 4. step-up, 5. the customer's row (exits one at a time)
  perform core.assert_step_up(v_user.id, create_crypto_withdrawal.totp_code, 'crypto_withdrawal');
  perform core.lock_for_exit(v_user.id);
  -- 6. the KYC daily limit, valued in BRL at the bid
  v_price := core.bid_price(v_coin);
  if v_price is null or v_price <= 0 then
    raise exception 'Cotação de % indisponível no momento: saques de cripto voltam quando o preço se atualizar.', v_coin
      using errcode = 'BSS01', column = 'amount';
  end if;
  perform core.enforce_daily_limit(v_user.id, 'daily_crypto_withdrawal_brl', core.crypto_withdrawals_used_today(v_user.id),
                                   round(v_total * v_price, 2));
  select a.balance into v_available from core.accounts a where a.id = core.user_account(v_user.id, v_coin);
  if v_available < v_total then
    raise exception 'Saldo insuficiente: o saque de % % mais a taxa da rede de % % precisa de % %; você tem % disponível.',
      trim_scale(create_crypto_withdrawal.amount), v_coin, trim_scale(v_net.withdraw_fee), v_coin, trim_scale(v_total), v_coin,
      trim_scale(v_available) using errcode = 'BSF01', column = 'amount';
  end if;
  -- 7. hold amount + fee, 8. the exit policy
  v_hold := core.place_hold(v_user.id, v_coin, v_total, 'crypto_withdrawal', 'cwd-' || v_id);
  perform core.assert_exit_covered(v_user.id, 'sacar', v_total * v_price);
  -- Approval above the threshold for the day's total of every exit to the
  -- outside (PIX withdrawals and crypto, valued in BRL), as for PIX alone.
  v_status := case when core.withdrawals_used_today(v_user.id) + core.crypto_withdrawals_used_today(v_user.id)
                        + round(v_total * v_price, 2) > core.setting('withdrawal_approval_threshold_brl')::numeric
                   then 'AWAITING_APPROVAL' else 'PENDING' end;
  insert into core.crypto_withdrawals (id, user_id, reference, coin, network, address_book_id, address, memo, amount, fee,
                                       brl_value, hold_id, status)
  values (v_id, v_user.id, 'cwd-' || v_id, v_coin, v_net.network, v_book.id, v_book.address, v_book.memo,
          create_crypto_withdrawal.amount, v_net.withdraw_fee, round(v_total * v_price, 2), v_hold, v_status)
  returning * into v_row;
  perform core.crypto_withdrawal_notify(v_row, 'crypto_withdrawal.' || lower(v_status),
    case when v_status = 'PENDING' then 'pedido recebido; será enviado em instantes.'
         else 'com os saques de hoje passa do limite de aprovação: aguarda a equipe.' end);
  return query select v_id, v_row.status, v_row.fee, false;
end
$$;
revoke all on function api.create_crypto_withdrawal(bigint, text, bigint, numeric, text, text) from public;
grant execute on function api.create_crypto_withdrawal(bigint, text, bigint, numeric, text, text) to exchange_app;
comment on function api.create_crypto_withdrawal(bigint, text, bigint, numeric, text, text) is
  'Requests an on-chain withdrawal of `amount` of a coin to an address of the customer''s address book (its network and memo), plus the network''s fee from Binance''s config. An exit: the address must be past its cooling-off, TOTP step-up when 2FA is on, the KYC daily limit daily_crypto_withdrawal_brl valued at the bid, then amount + fee held (purpose crypto_withdrawal, reference cwd-<id>) and the exit policy (sql/exits.sql). Created PENDING; the worker sends it. Idempotent per (user, key). BSV01 unknown coin, unlisted address, below the minimum, wrong 2FA code; BSV02 not a multiple of the network''s step; BSF01 insufficient balance; BSL01 address cooling off, daily limit, or PIX still maturing; BSS01 network suspended or no fresh price; BSA02 frozen or exits blocked; BSI01 key reused.';

create function api.cancel_crypto_withdrawal(user_id bigint, withdrawal_id bigint)
returns text
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
  v core.crypto_withdrawals;
begin
  v := core.lock_crypto_withdrawal(cancel_crypto_withdrawal.withdrawal_id);
  if v.user_id <> cancel_crypto_withdrawal.user_id then
    raise exception 'Saque de cripto % não encontrado.', withdrawal_id using errcode = 'BSN01';
  end if;
  if v.status = 'CANCELLED' then
    return v.status;
  end if;
  if v.status not in ('PENDING', 'AWAITING_APPROVAL') then
    raise exception 'Este saque não pode mais ser cancelado: já foi enviado à rede.' using errcode = 'BSS01';
  end if;
  perform core.release_hold(v.hold_id, v.reference);
  update core.crypto_withdrawals w
     set status = 'CANCELLED', failure_reason = 'cancelado por você', resolved_at = now(), updated_at = now()
   where w.id = v.id;
  return 'CANCELLED';
end
$$;
revoke all on function api.cancel_crypto_withdrawal(bigint, bigint) from public;
grant execute on function api.cancel_crypto_withdrawal(bigint, bigint) to exchange_app;
comment on function api.cancel_crypto_withdrawal(bigint, bigint) is
  'The customer cancels a crypto withdrawal while PENDING (not yet sent): the hold is released. BSS01 once sent, BSN01 not theirs.';

create function api.list_crypto_withdrawals(user_id bigint, coin text default null, max_rows int default 50)
returns table (withdrawal_id bigint, reference text, coin text, network text, address text, memo text, amount numeric,
               fee numeric, status text, tx_id text, tx_url text, failure_reason text, created_at timestamptz,
               resolved_at timestamptz, cancellable boolean)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  select w.id, w.reference, w.coin, w.network, w.address, w.memo, w.amount, w.fee, w.status, w.tx_id,
         core.crypto_tx_url(w.coin, w.network, w.tx_id), w.failure_reason, w.created_at, w.resolved_at,
         w.status in ('PENDING', 'AWAITING_APPROVAL')
  from core.crypto_withdrawals w
  where w.user_id = list_crypto_withdrawals.user_id
    and (list_crypto_withdrawals.coin is null or w.coin = upper(list_crypto_withdrawals.coin))
  order by w.id desc
  limit least(greatest(max_rows, 1), 200)
$$;
revoke all on function api.list_crypto_withdrawals(bigint, text, int) from public;
grant execute on function api.list_crypto_withdrawals(bigint, text, int) to exchange_app;
comment on function api.list_crypto_withdrawals(bigint, text, int) is 'The customer''s crypto withdrawals, newest first, with the txId and its explorer link once completed, or why one failed.';

create function api.get_crypto_statement_details(user_id bigint, currency text)
returns table (reference text, network text, address text, tx_id text, tx_url text)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  select 'cdep-' || d.id, d.network, d.address, d.tx_id, core.crypto_tx_url(d.coin, d.network, d.tx_id)
  from core.crypto_deposits d
  where d.user_id = get_crypto_statement_details.user_id and d.coin = upper(get_crypto_statement_details.currency)
    and d.status = 'CREDITED'
  union all
  select w.reference, w.network, w.address, w.tx_id, core.crypto_tx_url(w.coin, w.network, w.tx_id)
  from core.crypto_withdrawals w
  where w.user_id = get_crypto_statement_details.user_id and w.coin = upper(get_crypto_statement_details.currency)
$$;
revoke all on function api.get_crypto_statement_details(bigint, text) from public;
grant execute on function api.get_crypto_statement_details(bigint, text) to exchange_app;
comment on function api.get_crypto_statement_details(bigint, text) is
  'Companion of api.get_statement for a crypto currency: the network, address and txId (with its explorer link) of each on-chain deposit and withdrawal, by the reference of its statement lines.';

-- ---------------------------------------------------------------------------
-- Worker: network config, balances, sub-accounts and addresses
-- ---------------------------------------------------------------------------

create function admin.record_crypto_networks(networks jsonb)
returns int
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
  v jsonb;
  v_n int := 0;
begin
  -- Only the networks we list are refreshed (a DBA adds a network by
  -- inserting its row); Binance's values win for everything it says.
  for v in select * from jsonb_array_elements(coalesce(networks, '[]'))
  loop
    update core.crypto_networks n
       set name = coalesce(v ->> 'name', n.name), is_default = coalesce((v ->> 'is_default')::boolean, n.is_default),
           deposit_enable = (v ->> 'deposit_enable')::boolean, withdraw_enable = (v ->> 'withdraw_enable')::boolean,
           withdraw_fee = (v ->> 'withdraw_fee')::numeric, withdraw_min = (v ->> 'withdraw_min')::numeric,
           withdraw_max = (v ->> 'withdraw_max')::numeric, withdraw_multiple = (v ->> 'withdraw_multiple')::numeric,
           min_confirm = (v ->> 'min_confirm')::int, unlock_confirm = coalesce((v ->> 'unlock_confirm')::int, 0),
           address_regex = coalesce(nullif(v ->> 'address_regex', ''), n.address_regex),
           memo_regex = coalesce(v ->> 'memo_regex', ''), needs_memo = coalesce((v ->> 'needs_memo')::boolean, false),
           updated_at = now()
     where n.coin = v ->> 'coin' and n.network = v ->> 'network';
    if found then
      v_n := v_n + 1;
    end if;
  end loop;
  return v_n;
end
$$;
revoke all on function admin.record_crypto_networks(jsonb) from public;
grant execute on function admin.record_crypto_networks(jsonb) to exchange_worker, exchange_admin;
comment on function admin.record_crypto_networks(jsonb) is
  'Worker: refreshes the listed networks from Binance''s capital/config/getall ([{coin, network, name, deposit_enable, withdraw_enable, withdraw_fee, withdraw_min, withdraw_max, withdraw_multiple, min_confirm, unlock_confirm, address_regex, memo_regex, needs_memo}]); returns how many rows were refreshed.';

create function admin.record_binance_balances(balances jsonb)
returns int
language sql volatile security definer set search_path = pg_catalog, pg_temp as $$
  with ins as (
    insert into core.binance_balance_snapshots (coin, free, locked, withdrawing)
    select b ->> 'coin', (b ->> 'free')::numeric, (b ->> 'locked')::numeric, (b ->> 'withdrawing')::numeric
    from jsonb_array_elements(coalesce(balances, '[]')) b
    where b ->> 'coin' in (select c.code from core.currencies c)
    returning 1)
  select count(*)::int from ins
$$;
revoke all on function admin.record_binance_balances(jsonb) from public;
grant execute on function admin.record_binance_balances(jsonb) to exchange_worker, exchange_admin;
comment on function admin.record_binance_balances(jsonb) is
  'Worker: a snapshot of the Binance master account''s balance per coin ([{coin, free, locked, withdrawing}]) for reporting.omnibus_vs_ledger.';

create function admin.crypto_sub_accounts_to_create(max_rows int default 10)
returns table (user_id bigint, sub_account_string text, attempts int)
language sql volatile security definer set search_path = pg_catalog, pg_temp as $$
  with due as (
    select s.user_id from core.binance_sub_accounts s
    where s.status = 'PENDING' and (s.last_tried_at is null or s.last_tried_at < now() - interval '5 seconds')
    order by s.created_at limit least(greatest(max_rows, 1), 100)
    for update skip locked
  )
  update core.binance_sub_accounts s set attempts = s.attempts + 1, last_tried_at = now()
  from due where s.user_id = due.user_id
  returning s.user_id, s.sub_account_string, s.attempts
$$;
revoke all on function admin.crypto_sub_accounts_to_create(int) from public;
grant execute on function admin.crypto_sub_accounts_to_create(int) to exchange_worker, exchange_admin;
comment on function admin.crypto_sub_accounts_to_create(int) is
  'Worker: customers whose Binance sub-account is still to be created (stamped; SKIP LOCKED). The sub-account string is bsm<user_id>: after an unknown outcome the worker looks for it before creating it again.';

create function admin.record_crypto_sub_account(user_id bigint, email text default null, error text default null)
returns text
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
  v core.binance_sub_accounts;
begin
  select * into v from core.binance_sub_accounts s where s.user_id = record_crypto_sub_account.user_id for update;
  if not found then
    raise exception 'Subconta do cliente % não encontrada.', user_id using errcode = 'BSN01';
  end if;
  if nullif(btrim(email), '') is null then
    update core.binance_sub_accounts s set last_error = left(error, 500) where s.user_id = v.user_id;
    return v.status;
  end if;
  if v.status = 'READY' then
    if v.email <> btrim(email) then
      raise exception 'O cliente % já tem a subconta %.', v.user_id, v.email using errcode = 'BSS01';
    end if;
    return 'READY';
  end if;
  update core.binance_sub_accounts s
     set email = btrim(record_crypto_sub_account.email), status = 'READY', ready_at = now(), last_error = null
   where s.user_id = v.user_id;
  return 'READY';
end
$$;
revoke all on function admin.record_crypto_sub_account(bigint, text, text) from public;
grant execute on function admin.record_crypto_sub_account(bigint, text, text) to exchange_worker, exchange_admin;
comment on function admin.record_crypto_sub_account(bigint, text, text) is
  'Worker: the customer''s Binance sub-account was created (its email → READY), or creating it failed (error remembered, retried). BSS01 a different email for a READY one.';

create function admin.crypto_addresses_to_fetch(max_rows int default 20)
returns table (address_id bigint, user_id bigint, email text, coin text, network text)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  select a.id, a.user_id, s.email, a.coin, a.network
  from core.crypto_deposit_addresses a join core.binance_sub_accounts s on s.user_id = a.user_id and s.status = 'READY'
  where a.address is null
  order by a.requested_at, a.id
  limit least(greatest(max_rows, 1), 100)
$$;
revoke all on function admin.crypto_addresses_to_fetch(int) from public;
grant execute on function admin.crypto_addresses_to_fetch(int) to exchange_worker, exchange_admin;
comment on function admin.crypto_addresses_to_fetch(int) is 'Worker: requested deposit addresses not fetched yet, of customers whose sub-account is READY.';

create function admin.record_crypto_deposit_address(address_id bigint, address text, memo text default '')
returns boolean
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
  v core.crypto_deposit_addresses;
  v_net core.crypto_networks;
begin
  select * into v from core.crypto_deposit_addresses a where a.id = record_crypto_deposit_address.address_id for update;
  if not found then
    raise exception 'Endereço % não encontrado.', address_id using errcode = 'BSN01';
  end if;
  v_net := core.crypto_network(v.coin, v.network);
  if coalesce(btrim(address), '') !~ v_net.address_regex then
    raise exception 'A Binance devolveu um endereço que não é da rede %: %.', v_net.name, address using errcode = 'BSV01', column = 'address';
  end if;
  if v.address is not null then
    if v.address <> btrim(address) then
      raise exception 'O endereço % já é %.', v.id, v.address using errcode = 'BSS01';
    end if;
    return false;
  end if;
  update core.crypto_deposit_addresses a
     set address = btrim(record_crypto_deposit_address.address), memo = btrim(coalesce(record_crypto_deposit_address.memo, '')),
         ready_at = now()
   where a.id = v.id;
  return true;
end
$$;
revoke all on function admin.record_crypto_deposit_address(bigint, text, text) from public;
grant execute on function admin.record_crypto_deposit_address(bigint, text, text) to exchange_worker, exchange_admin;
comment on function admin.record_crypto_deposit_address(bigint, text, text) is
  'Worker: the deposit address (and memo) Binance gave for a requested coin/network (checked against the network''s pattern). false when already known; BSS01 a different address.';

-- ---------------------------------------------------------------------------
-- Worker: deposits and sweeps
-- ---------------------------------------------------------------------------

create function admin.crypto_deposit_accounts_to_poll(max_rows int default 20)
returns table (user_id bigint, email text)
language sql volatile security definer set search_path = pg_catalog, pg_temp as $$
  with due as (
    select s.user_id from core.binance_sub_accounts s
    where s.status = 'READY'
      and exists (select from core.crypto_deposit_addresses a where a.user_id = s.user_id and a.address is not null)
    order by s.last_polled_at nulls first, s.user_id
    limit least(greatest(max_rows, 1), 200)
    for update skip locked
  )
  update core.binance_sub_accounts s set last_polled_at = now() from due where s.user_id = due.user_id
  returning s.user_id, s.email
$$;
revoke all on function admin.crypto_deposit_accounts_to_poll(int) from public;
grant execute on function admin.crypto_deposit_accounts_to_poll(int) to exchange_worker, exchange_admin;
comment on function admin.crypto_deposit_accounts_to_poll(int) is
  'Worker: the sub-accounts with deposit addresses whose history was looked at longest ago (bounded per run, stamped, SKIP LOCKED).';

create function admin.record_crypto_deposits(user_id bigint, deposits jsonb)
returns table (deposit_id bigint, status text, credited boolean)
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
#variable_conflict use_column
declare
  v jsonb;
  v_row core.crypto_deposits;
  v_known boolean;
  v_status int;
  v_entry bigint;
  v_amount numeric;
begin
  if not exists (select from core.binance_sub_accounts s where s.user_id = record_crypto_deposits.user_id
                 and s.status = 'READY') then
    raise exception 'O cliente % não tem subconta na Binance.', user_id using errcode = 'BSN01';
  end if;
  -- One row per Binance deposit id, however often the history repeats it;
  -- the row lock makes concurrent workers credit it once.
  for v in select distinct on (e ->> 'id') e from jsonb_array_elements(coalesce(deposits, '[]')) e order by e ->> 'id'
  loop
    continue when coalesce(v ->> 'id', '') = '' or coalesce(v ->> 'tx_id', '') = ''
               or not exists (select from core.currencies c where c.code = v ->> 'coin' and c.kind = 'crypto');
    v_status := (v ->> 'status')::int;
    v_amount := (v ->> 'amount')::numeric;
    continue when v_amount is null or v_amount <= 0;
    v_known := exists (select from core.crypto_networks n where n.coin = v ->> 'coin' and n.network = v ->> 'network');
    insert into core.crypto_deposits (user_id, coin, network, tx_id, binance_id, address, memo, amount, status,
                                      binance_status, confirmations, required_confirmations)
    values (record_crypto_deposits.user_id, v ->> 'coin', v ->> 'network', v ->> 'tx_id', v ->> 'id',
            coalesce(v ->> 'address', ''), coalesce(v ->> 'memo', ''), v_amount,
            case when v_status = 7 or not v_known then 'WRONG_NETWORK' else 'PENDING' end, v_status,
            coalesce((v ->> 'confirmations')::int, 0), coalesce((v ->> 'required_confirmations')::int, 0))
    on conflict do nothing;
    select * into v_row from core.crypto_deposits d where d.binance_id = v ->> 'id' for update;
    if not found or v_row.user_id <> record_crypto_deposits.user_id or v_row.coin <> v ->> 'coin'
       or v_row.tx_id <> v ->> 'tx_id' or v_row.amount <> v_amount then
      raise warning 'crypto deposit %: the history row does not match what was recorded', v ->> 'id';
      continue;
    end if;
    if v_row.status = 'PENDING' then
      update core.crypto_deposits d
         set binance_status = v_status, confirmations = coalesce((v ->> 'confirmations')::int, d.confirmations),
             required_confirmations = coalesce((v ->> 'required_confirmations')::int, d.required_confirmations),
             updated_at = now()
       where d.id = v_row.id;
      if v_status = 1 then
        -- Binance confirmed it: credited once, against the omnibus.
        perform core.check_amount(v_row.coin, v_row.amount);
        v_entry := core.post_entry('crypto_deposit', 'cdep-' || v_row.id, v_row.user_id,
          array[core.system_account('binance_omnibus', v_row.coin), core.user_account(v_row.user_id, v_row.coin)],
          array[-v_row.amount, v_row.amount],
          'Depósito de ' || v_row.coin || ' pela rede ' || v_row.network || ' (' || v_row.tx_id || ')');
        update core.crypto_deposits d set status = 'CREDITED', entry_id = v_entry, credited_at = now(), updated_at = now()
         where d.id = v_row.id;
        insert into core.crypto_sweeps (deposit_id, user_id, coin, amount, client_tran_id)
        values (v_row.id, v_row.user_id, v_row.coin, v_row.amount, 'csw-' || v_row.id);
        perform core.notify(v_row.user_id, 'crypto_deposit.credited',
          'Depósito de ' || trim_scale(v_row.amount) || ' ' || v_row.coin || ' (' || v_row.network || ') creditado.',
          '/wallet/' || lower(v_row.coin) || '/deposit');
        deposit_id := v_row.id; status := 'CREDITED'; credited := true;
        return next;
        continue;
      end if;
    end if;
    deposit_id := v_row.id; status := v_row.status; credited := false;
    return next;
  end loop;
end
$$;
revoke all on function admin.record_crypto_deposits(bigint, jsonb) from public;
grant execute on function admin.record_crypto_deposits(bigint, jsonb) to exchange_worker, exchange_admin;
comment on function admin.record_crypto_deposits(bigint, jsonb) is
  'Worker: books a customer''s sub-account deposit history ([{id, coin, network, amount, status, address, memo, tx_id, confirmations, required_confirmations}]). Each Binance deposit is recorded once (duplicate rows collapse); status 1 credits it exactly once (entry crypto_deposit, binance_omnibus → customer, reference cdep-<id>) and queues its sweep; 0 and 6 stay PENDING with their confirmations; 7 or a coin/network we do not list is WRONG_NETWORK, never credited. Returns each deposit''s status and whether this call credited it.';

create function admin.claim_crypto_sweeps(max_rows int default 20)
returns table (sweep_id bigint, email text, coin text, amount numeric, client_tran_id text, resend boolean)
language sql volatile security definer set search_path = pg_catalog, pg_temp as $$
  with due as (
    select w.id, w.status = 'SENDING' as resend from core.crypto_sweeps w
    where w.status = 'PENDING'
       or (w.status = 'SENDING' and w.sent_at < now() - make_interval(secs => core.setting('crypto_sweep_recheck_seconds')::int))
    order by w.id limit least(greatest(max_rows, 1), 100)
    for update skip locked
  ), claimed as (
    update core.crypto_sweeps w set status = 'SENDING', sent_at = now(), attempts = w.attempts + 1
    from due where w.id = due.id
    returning w.id, w.user_id, w.coin, w.amount, w.client_tran_id, due.resend
  )
  select c.id, s.email, c.coin, c.amount, c.client_tran_id, c.resend
  from claimed c join core.binance_sub_accounts s on s.user_id = c.user_id
  order by c.id
$$;
revoke all on function admin.claim_crypto_sweeps(int) from public;
grant execute on function admin.claim_crypto_sweeps(int) to exchange_worker, exchange_admin;
comment on function admin.claim_crypto_sweeps(int) is
  'Worker: sweeps to send (PENDING) or to look up (SENDING for crypto_sweep_recheck_seconds: resend true, look it up by clientTranId first), marked SENDING; commit before calling Binance.';

create function admin.record_crypto_sweep(sweep_id bigint, tran_id text default null, error text default null)
returns text
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
  v core.crypto_sweeps;
begin
  select * into v from core.crypto_sweeps w where w.id = record_crypto_sweep.sweep_id for update;
  if not found then
    raise exception 'Transferência % não encontrada.', sweep_id using errcode = 'BSN01';
  end if;
  if v.status = 'DONE' then
    return 'DONE';
  end if;
  if nullif(btrim(tran_id), '') is null then
    update core.crypto_sweeps w set last_error = left(error, 500) where w.id = v.id;
    return v.status;
  end if;
  update core.crypto_sweeps w set status = 'DONE', tran_id = btrim(record_crypto_sweep.tran_id), done_at = now(),
                                  last_error = null
   where w.id = v.id;
  return 'DONE';
end
$$;
revoke all on function admin.record_crypto_sweep(bigint, text, text) from public;
grant execute on function admin.record_crypto_sweep(bigint, text, text) to exchange_worker, exchange_admin;
comment on function admin.record_crypto_sweep(bigint, text, text) is
  'Worker: a sweep reached the master account (Binance tranId → DONE), or its outcome is unknown (error remembered; claim_crypto_sweeps hands it back to be looked up).';

-- ---------------------------------------------------------------------------
-- Worker: withdrawals
-- ---------------------------------------------------------------------------

create function admin.claim_crypto_withdrawals(max_rows int default 10)
returns table (withdrawal_id bigint, reference text, coin text, network text, address text, memo text,
               amount numeric, fee numeric, send_amount numeric)
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
  v core.crypto_withdrawals;
begin
  for v in
    select w.* from core.crypto_withdrawals w join core.users u on u.id = w.user_id
    where w.status = 'PENDING' and u.status = 'active' and u.exits_blocked_at is null  -- a clawback stops queued exits
    order by w.id limit least(greatest(max_rows, 1), 100)
    for update of w skip locked
  loop
    update core.crypto_withdrawals w
       set status = 'PROCESSING', claimed_at = now(), last_checked_at = now(), attempts = w.attempts + 1, updated_at = now()
     where w.id = v.id;
    withdrawal_id := v.id; reference := v.reference; coin := v.coin; network := v.network; address := v.address;
    memo := v.memo; amount := v.amount; fee := v.fee; send_amount := v.amount + v.fee;
    return next;
  end loop;
end
$$;
revoke all on function admin.claim_crypto_withdrawals(int) from public;
grant execute on function admin.claim_crypto_withdrawals(int) to exchange_worker, exchange_admin;
comment on function admin.claim_crypto_withdrawals(int) is
  'Worker: takes up to max_rows PENDING crypto withdrawals of active customers (FOR UPDATE SKIP LOCKED) → PROCESSING; commit, then send each to Binance once with withdrawOrderId = reference and amount = send_amount (Binance takes the fee out of it).';

create function admin.record_crypto_withdrawal(withdrawal_id bigint, binance_id text default null,
                                               binance_status int default null, tx_id text default null,
                                               info text default null, error text default null)
returns text
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
  v core.crypto_withdrawals;
begin
  v := core.lock_crypto_withdrawal(record_crypto_withdrawal.withdrawal_id);
  if v.status in ('COMPLETED', 'FAILED', 'CANCELLED') then
    return v.status;    -- a late or repeated report changes nothing
  end if;
  if v.status <> 'PROCESSING' then
    raise exception 'Saque de cripto % não foi enviado (está %).', v.id, v.status using errcode = 'BSS01';
  end if;
  if v.binance_id is not null and nullif(btrim(binance_id), '') is not null and v.binance_id <> btrim(binance_id) then
    raise exception 'O saque % já tem outro id na Binance (%).', v.id, v.binance_id using errcode = 'BSS01';
  end if;
  update core.crypto_withdrawals w
     set binance_id = coalesce(w.binance_id, nullif(btrim(record_crypto_withdrawal.binance_id), '')),
         binance_status = coalesce(record_crypto_withdrawal.binance_status, w.binance_status),
         last_error = left(record_crypto_withdrawal.error, 500), last_checked_at = now(), updated_at = now()
   where w.id = v.id
  returning * into v;
  if binance_status = 6 then
    -- Sent on-chain: the held amount + fee left the omnibus at Binance.
    perform core.resolve_hold(v.hold_id, 'crypto_withdrawal', v.reference,
                              array[core.system_account('binance_omnibus', v.coin)], array[v.amount + v.fee],
                              'Saque de ' || v.coin || ' pela rede ' || v.network || ' para ' || v.address);
    update core.crypto_withdrawals w
       set status = 'COMPLETED', tx_id = nullif(btrim(record_crypto_withdrawal.tx_id), ''), resolved_at = now(),
           failure_reason = null, last_error = null, updated_at = now()
     where w.id = v.id;
    perform core.crypto_withdrawal_notify(v, 'crypto_withdrawal.completed',
      'enviado para ' || v.address || coalesce(' (txId ' || nullif(btrim(tx_id), '') || ')', '') || '.');
    return 'COMPLETED';
  elsif binance_status in (1, 3, 5) then
    perform core.fail_crypto_withdrawal(v, case binance_status when 1 then 'cancelado na Binance'
                                                                 when 3 then 'recusado pela Binance'
                                                                 else 'falhou na rede' end
                                           || coalesce(': ' || nullif(btrim(info), ''), ''));
    return 'FAILED';
  end if;
  return 'PROCESSING';
end
$$;
revoke all on function admin.record_crypto_withdrawal(bigint, text, int, text, text, text) from public;
grant execute on function admin.record_crypto_withdrawal(bigint, text, int, text, text, text) to exchange_worker, exchange_admin;
comment on function admin.record_crypto_withdrawal(bigint, text, int, text, text, text) is
  'Worker: what Binance says of a PROCESSING crypto withdrawal (its id, withdraw history status, txId, info). 6 completed → COMPLETED, hold captured to binance_omnibus (entry crypto_withdrawal) with the txId; 1 cancelled, 3 rejected, 5 failure → FAILED, hold released; otherwise still PROCESSING (error: why the outcome is unknown). A report on a settled withdrawal returns its status and changes nothing.';

create function admin.fail_crypto_withdrawal(withdrawal_id bigint, reason text)
returns boolean
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
  v core.crypto_withdrawals;
begin
  v := core.lock_crypto_withdrawal(fail_crypto_withdrawal.withdrawal_id);
  if v.status = 'FAILED' then
    return false;
  end if;
  if v.status <> 'PROCESSING' then
    raise exception 'Saque de cripto % está %: não pode falhar.', v.id, v.status using errcode = 'BSS01';
  end if;
  perform core.fail_crypto_withdrawal(v, reason);
  return true;
end
$$;
revoke all on function admin.fail_crypto_withdrawal(bigint, text) from public;
grant execute on function admin.fail_crypto_withdrawal(bigint, text) to exchange_worker, exchange_admin;
comment on function admin.fail_crypto_withdrawal(bigint, text) is
  'Worker: Binance definitely refused a PROCESSING crypto withdrawal (a rejection of the apply, or it never saw it within crypto_withdrawal_unseen_fail_minutes) → FAILED with the reason, hold released. false when already FAILED; BSS01 in another state.';

create function admin.crypto_withdrawals_to_recheck(max_rows int default 20)
returns table (withdrawal_id bigint, reference text, coin text, send_amount numeric, binance_id text,
               claimed_at timestamptz, unseen_window_passed boolean)
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_after interval := make_interval(secs => core.setting('crypto_withdrawal_recheck_seconds')::int);
  v_unseen interval := make_interval(mins => core.setting('crypto_withdrawal_unseen_fail_minutes')::int);
begin
  return query
  with due as (
    select w.id from core.crypto_withdrawals w
    where w.status = 'PROCESSING' and coalesce(w.last_checked_at, w.claimed_at) < now() - v_after
    order by coalesce(w.last_checked_at, w.claimed_at), w.id
    limit least(greatest(max_rows, 1), 200)
    for update skip locked
  ), stamped as (
    update core.crypto_withdrawals w set last_checked_at = now() from due where w.id = due.id returning w.*
  )
  select s.id, s.reference, s.coin, s.amount + s.fee, s.binance_id, s.claimed_at, s.claimed_at < now() - v_unseen
  from stamped s order by s.id;
end
$$;
revoke all on function admin.crypto_withdrawals_to_recheck(int) from public;
grant execute on function admin.crypto_withdrawals_to_recheck(int) to exchange_worker, exchange_admin;
comment on function admin.crypto_withdrawals_to_recheck(int) is
  'Reconciler: PROCESSING crypto withdrawals not looked at for crypto_withdrawal_recheck_seconds (a crash between the apply and its record, a timeout, a 5xx, or still in flight), stamped. The worker looks each up by withdrawOrderId and never sends it again; one Binance does not know after unseen_window_passed is failed and released.';

-- ---------------------------------------------------------------------------
-- Back office
-- ---------------------------------------------------------------------------

create function admin.review_crypto_withdrawal(admin_id bigint, withdrawal_id bigint, approve boolean, reason text,
                                               totp_code text default null)
returns text
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
  v core.crypto_withdrawals;
begin
  perform core.assert_admin(admin_id);
  v := core.lock_crypto_withdrawal(review_crypto_withdrawal.withdrawal_id);
  if v.status <> 'AWAITING_APPROVAL' then
    raise exception 'O saque % não aguarda aprovação (está %).', v.id, v.status using errcode = 'BSS01';
  end if;
  if approve and (select u.exits_blocked_at is not null from core.users u where u.id = v.user_id) then
    raise exception 'As saídas deste cliente estão bloqueadas (PIX devolvido pelo MED): o saque não pode ser aprovado.'
      using errcode = 'BSA02';
  end if;
  if not approve and (reason is null or length(btrim(reason)) < 5) then
    raise exception 'Informe o motivo (ao menos 5 caracteres): o cliente vai lê-lo.' using errcode = 'BSV01', column = 'reason';
  end if;
  perform core.audit(admin_id, case when approve then 'approve_crypto_withdrawal' else 'reject_crypto_withdrawal' end,
                     v.user_id, coalesce(nullif(btrim(coalesce(reason, '')), ''), 'aprovado'),
                     jsonb_build_object('crypto_withdrawal_id', v.id, 'coin', v.coin, 'amount', v.amount, 'brl_value', v.brl_value));
  if approve then
    perform core.assert_admin_step_up(admin_id, review_crypto_withdrawal.totp_code, 'approve_crypto_withdrawal');
    update core.crypto_withdrawals w set status = 'PENDING', reviewed_by = review_crypto_withdrawal.admin_id,
                                         reviewed_at = now(), updated_at = now()
     where w.id = v.id;
    perform core.crypto_withdrawal_notify(v, 'crypto_withdrawal.approved', 'aprovado; será enviado em instantes.');
    return 'PENDING';
  end if;
  perform core.release_hold(v.hold_id, v.reference);
  update core.crypto_withdrawals w
     set status = 'REJECTED', failure_reason = btrim(reason), reviewed_by = review_crypto_withdrawal.admin_id,
         reviewed_at = now(), resolved_at = now(), updated_at = now()
   where w.id = v.id;
  perform core.crypto_withdrawal_notify(v, 'crypto_withdrawal.rejected',
    'recusado pela equipe (' || btrim(reason) || '); o valor voltou ao seu saldo.');
  return 'REJECTED';
end
$$;
revoke all on function admin.review_crypto_withdrawal(bigint, bigint, boolean, text, text) from public;
grant execute on function admin.review_crypto_withdrawal(bigint, bigint, boolean, text, text) to exchange_app, exchange_admin;
comment on function admin.review_crypto_withdrawal(bigint, bigint, boolean, text, text) is
  'Back office: a crypto withdrawal AWAITING_APPROVAL (the day''s PIX and crypto withdrawals passed withdrawal_approval_threshold_brl) → PENDING (approve) or REJECTED with a reason the customer reads (hold released). Audit-logged. BSA01 not admin, BSA02 exits blocked, BSS01 not awaiting approval, BSV01 no reason.';

create function admin.list_crypto_deposits(admin_id bigint, status_filter text default null, max_rows int default 100)
returns table (deposit_id bigint, user_id bigint, email text, coin text, network text, amount numeric, status text,
               binance_status int, tx_id text, binance_id text, address text, first_seen_at timestamptz,
               credited_at timestamptz)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  select d.id, d.user_id, u.email, d.coin, d.network, d.amount, d.status, d.binance_status, d.tx_id, d.binance_id,
         d.address, d.first_seen_at, d.credited_at
  from core.crypto_deposits d join core.users u on u.id = d.user_id, core.assert_admin(list_crypto_deposits.admin_id) a
  where list_crypto_deposits.status_filter is null or d.status = list_crypto_deposits.status_filter
  order by d.status <> 'WRONG_NETWORK', d.id desc
  limit least(greatest(max_rows, 1), 500)
$$;
revoke all on function admin.list_crypto_deposits(bigint, text, int) from public;
grant execute on function admin.list_crypto_deposits(bigint, text, int) to exchange_app, exchange_admin;
comment on function admin.list_crypto_deposits(bigint, text, int) is
  'Back office: on-chain deposits (optionally of one status), wrong-network ones first (never credited: recover them with Binance support). Admins only (BSA01).';

create function admin.list_crypto_withdrawals(admin_id bigint, status_filter text default null, max_rows int default 100)
returns table (withdrawal_id bigint, user_id bigint, email text, coin text, network text, address text, amount numeric,
               fee numeric, status text, binance_id text, binance_status int, tx_id text, failure_reason text,
               last_error text, created_at timestamptz, resolved_at timestamptz)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  select w.id, w.user_id, u.email, w.coin, w.network, w.address, w.amount, w.fee, w.status, w.binance_id, w.binance_status,
         w.tx_id, w.failure_reason, w.last_error, w.created_at, w.resolved_at
  from core.crypto_withdrawals w join core.users u on u.id = w.user_id, core.assert_admin(list_crypto_withdrawals.admin_id) a
  where list_crypto_withdrawals.status_filter is null or w.status = list_crypto_withdrawals.status_filter
  order by w.id desc
  limit least(greatest(max_rows, 1), 500)
$$;
revoke all on function admin.list_crypto_withdrawals(bigint, text, int) from public;
grant execute on function admin.list_crypto_withdrawals(bigint, text, int) to exchange_app, exchange_admin;
comment on function admin.list_crypto_withdrawals(bigint, text, int) is 'Back office: crypto withdrawals (optionally of one status) with Binance''s id and status. Admins only (BSA01).';

-- ---------------------------------------------------------------------------
-- Reporting (plain joins: the auditor cannot execute core functions)
-- ---------------------------------------------------------------------------

create view reporting.crypto_deposits as
select d.id, d.user_id, d.coin, d.network, d.amount, d.status, d.binance_status, d.confirmations,
       d.required_confirmations, d.tx_id, d.binance_id, d.address, d.entry_id, d.first_seen_at, d.credited_at,
       s.status as sweep_status, s.tran_id as sweep_tran_id
from core.crypto_deposits d left join core.crypto_sweeps s on s.deposit_id = d.id;
comment on view reporting.crypto_deposits is
  'Every on-chain deposit seen, with its sweep to the master account. Healthy: CREDITED ones have an entry and a sweep that reaches DONE; WRONG_NETWORK ones are handled with Binance support.';

create view reporting.crypto_withdrawals as
select w.id, w.user_id, w.reference, w.coin, w.network, w.address, w.amount, w.fee, w.brl_value, w.status,
       w.binance_id, w.binance_status, w.tx_id, w.hold_id, h.status as hold_status, w.failure_reason, w.attempts,
       w.last_error, w.created_at, w.claimed_at, w.resolved_at
from core.crypto_withdrawals w join core.holds h on h.id = w.hold_id;
comment on view reporting.crypto_withdrawals is
  'Every crypto withdrawal with its hold. Healthy: hold open while PENDING/PROCESSING, captured when COMPLETED, released when FAILED/CANCELLED.';

create view reporting.crypto_withdrawal_mismatches as
select w.id, w.reference, w.status, h.status as hold_status, w.created_at
from core.crypto_withdrawals w join core.holds h on h.id = w.hold_id
where (w.status in ('PENDING', 'PROCESSING') and h.status <> 'open')
   or (w.status = 'COMPLETED' and h.status <> 'captured')
   or (w.status in ('FAILED', 'CANCELLED') and h.status <> 'released')
   or (w.status = 'PROCESSING' and w.claimed_at < now() - interval '2 hours');
comment on view reporting.crypto_withdrawal_mismatches is
  'Crypto withdrawals whose hold disagrees with their status, or PROCESSING for over two hours. Healthy: empty.';

create view reporting.crypto_in_transit as
select 'deposit'::text as direction, d.id, d.user_id, d.coin, d.network, d.amount, d.status, d.tx_id,
       d.first_seen_at as since
from core.crypto_deposits d where d.status = 'PENDING'
union all
select 'sweep', s.id, s.user_id, s.coin, null, s.amount, s.status, s.tran_id, s.created_at
from core.crypto_sweeps s where s.status <> 'DONE'
union all
select 'withdrawal', w.id, w.user_id, w.coin, w.network, w.amount + w.fee, w.status, w.binance_id, w.created_at
from core.crypto_withdrawals w where w.status in ('PENDING', 'PROCESSING');
comment on view reporting.crypto_in_transit is
  'Crypto on its way: deposits still confirming (not credited), credited deposits not yet swept to the master account, and withdrawals held and not settled (amount + fee).';

create view reporting.omnibus_vs_ledger as
select c.code as currency,
       -o.balance as ledger_owed,
       b.free as binance_free, b.locked as binance_locked, b.withdrawing as binance_withdrawing, b.taken_at,
       coalesce(sw.unswept, 0) as on_sub_accounts,
       coalesce(b.free + b.locked + b.withdrawing, 0) + coalesce(sw.unswept, 0) - (-o.balance) as difference
from core.currencies c
join (select a.currency, sum(a.balance) as balance from core.accounts a where a.purpose = 'binance_omnibus'
      group by a.currency) o on o.currency = c.code
left join lateral (select s.free, s.locked, s.withdrawing, s.taken_at from core.binance_balance_snapshots s
                   where s.coin = c.code order by s.taken_at desc limit 1) b on true
left join (select s.coin, sum(s.amount) as unswept from core.crypto_sweeps s where s.status <> 'DONE' group by s.coin) sw
  on sw.coin = c.code
where c.kind = 'crypto';
comment on view reporting.omnibus_vs_ledger is
  'Per coin: what the ledger says the exchange holds at Binance (ledger_owed = minus the binance_omnibus balance), what Binance last reported for the master account (free, locked, withdrawing, taken_at) and what credited deposits still sit on sub-accounts (not swept). difference = master free + locked + withdrawing (withdrawals Binance has not finished, still owed in the ledger) + on sub-accounts - ledger_owed. Healthy: >= 0 (money held outside the ledger''s view, e.g. the house''s own coins) and stable; a dip while a completed withdrawal is not yet recorded (reporting.crypto_in_transit).';

grant select on reporting.crypto_deposits, reporting.crypto_withdrawals, reporting.crypto_withdrawal_mismatches,
  reporting.crypto_in_transit, reporting.omnibus_vs_ledger to exchange_auditor, exchange_admin;
