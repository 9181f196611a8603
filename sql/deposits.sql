-- deposits.sql: PIX charges (deposits and PIX-confirmed P2P trades) and the
-- maturation of fresh deposits.
--
-- Flow (DESIGN.md §1, three steps, no provider call inside a transaction):
--   1. api.create_deposit records a PENDING charge (idempotent, limits), commit;
--   2. webapp/deposits calls the provider (Mercado Pago / Banco Inter) with an
--      idempotency key derived from the reference, then admin.attach_pix_charge
--      records the provider's id and QR code;
--   3. the webhook (webapp/webhooks) or the reconciler (webapp/deposits/tasks.py)
--      fetches the payment from the provider and reports it to
--      admin.confirm_pix_charge, the one place a PIX payment is booked: a
--      deposit is credited once (provider clearing account → customer), a P2P
--      charge is handed to admin.confirm_p2p_pix_payment (sql/p2p/).
-- Charges the provider call left without an id are retried by a job
-- (admin.pix_charges_to_attach). Fresh deposits cannot be withdrawn for
-- deposit_maturation_hours: each credited PIX is reversible exposure until then
-- (core.record_reversible_credit; the exit policy in sql/exits.sql).

-- ---------------------------------------------------------------------------
-- Internal helpers (security invoker)
-- ---------------------------------------------------------------------------

create or replace function core.rails_payer_cpf(user_id bigint) returns text
language plpgsql stable as $$
declare
  v_cpf text;
begin
  select k.cpf into v_cpf from core.kyc_profiles k where k.user_id = rails_payer_cpf.user_id;
  v_cpf := core.cpf_digits(v_cpf);
  return case when length(v_cpf) = 11 then v_cpf end;
end
$$;
comment on function core.rails_payer_cpf(bigint) is
  'The CPF a customer verified in KYC (11 digits), sent as the payer of their PIX charges; NULL when unknown.';

create or replace function core.rails_when(at timestamptz) returns text
language sql stable as $$
  select to_char(at at time zone 'America/Sao_Paulo', 'DD/MM/YYYY "às" HH24:MI')
$$;
comment on function core.rails_when(timestamptz) is 'A moment as a customer in Brazil reads it (for messages).';

create or replace function core.rails_today_start() returns timestamptz
language sql stable as $$
  select date_trunc('day', now() at time zone 'America/Sao_Paulo') at time zone 'America/Sao_Paulo'
$$;
comment on function core.rails_today_start() is 'Midnight today, Brazil time: where daily deposit and withdrawal limits restart.';

create or replace function core.deposits_used_today(user_id bigint) returns numeric
language sql stable as $$
  select coalesce(sum(c.amount), 0) from core.pix_charges c
  where c.user_id = deposits_used_today.user_id and c.purpose = 'deposit'
    and c.created_at >= core.rails_today_start() and c.status in ('PENDING', 'PAID', 'REVIEW')
$$;
comment on function core.deposits_used_today(bigint) is
  'BRL a customer asked to deposit today (Brazil time), expired and failed charges excluded: the daily_deposit_brl limit.';

-- Fresh PIX credits are reversible exposure until they mature: the exit
-- policy (sql/exits.sql) decides what can leave. The functions of the old
-- BRL-only rule are gone.
drop trigger if exists pix_charges_maturing on core.pix_charges;
drop function if exists core.tg_pix_charges__maturing();
drop trigger if exists settings_maturation on core.settings;
drop function if exists core.tg_settings__maturation();
drop function if exists core.assert_brl_mature(bigint, numeric, text);
drop function if exists core.brl_withdrawable_at(bigint, numeric);
drop function if exists core.brl_withdrawable(bigint);

create or replace function core.assert_provider_payment_unseen(charge core.pix_charges, provider_payment_id text)
returns void
language plpgsql stable as $$
declare
  v_other text;
begin
  -- A provider that hands back an id we already hold for another charge (an
  -- emulator restarted on old data, a provider bug) gets a clear refusal,
  -- logged by the caller, instead of a unique-index violation: nothing is
  -- recorded and no money moves.
  select c.reference into v_other from core.pix_charges c
  where c.provider = charge.provider and c.provider_payment_id = btrim(assert_provider_payment_unseen.provider_payment_id)
    and c.id <> charge.id;
  if found then
    raise exception 'O provedor % devolveu o pagamento % para a cobrança %, mas ele já pertence à cobrança %. Nada foi registrado.',
      charge.provider, btrim(provider_payment_id), charge.reference, v_other
      using errcode = 'BSS01', hint = 'provider_id_reused';
  end if;
end
$$;
comment on function core.assert_provider_payment_unseen(core.pix_charges, text) is
  'BSS01 when a provider payment id is already recorded for another of our charges (a provider reusing ids): refused clearly instead of a unique violation.';

create or replace function core.pix_charge_description(purpose text, reference text) returns text
language sql immutable as $$
  select case when purpose = 'deposit' then 'bs-market deposito ' || reference else 'bs-market ' || reference end
$$;
comment on function core.pix_charge_description(text, text) is
  'The description sent to the provider with a charge: always the same for a charge, so a retried create is the same request.';

create or replace function core.deposit_notify(c core.pix_charges, kind text, message text) returns void
language sql volatile as $$
  -- P2P charges are announced by the P2P domain; only deposits notify here.
  select core.notify(c.user_id, kind, message, '/deposits/' || c.id) where c.purpose = 'deposit'
$$;
comment on function core.deposit_notify(core.pix_charges, text, text) is 'In-app notification about a deposit (no-op for P2P charges).';

-- ---------------------------------------------------------------------------
-- Customer operations
-- ---------------------------------------------------------------------------

create function api.create_deposit(user_id bigint, amount numeric, provider text, idempotency_key text)
returns table (deposit_id bigint, reference text, charge_amount numeric, expires_at timestamptz, payer_email text,
               payer_cpf text, description text, charge_provider text, provider_payment_id text, status text,
               replayed boolean)
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_user core.users;
  v_id bigint;
  v_prior jsonb;
  v_replayed boolean := false;
  v_min numeric := core.setting('deposit_min_brl')::numeric;
  v_max numeric := core.setting('deposit_max_brl')::numeric;
  v_charge core.pix_charges;
begin
  v_user := core.assert_active_user(create_deposit.user_id);
  if v_user.role <> 'customer' then
    raise exception 'Apenas clientes podem depositar.' using errcode = 'BSA01';
  end if;
  perform core.assert_email_verified(v_user.id);
  perform core.check_amount('BRL', create_deposit.amount);
  if create_deposit.provider is null or create_deposit.provider not in ('mercadopago', 'inter') then
    raise exception 'Provedor PIX desconhecido: %.', create_deposit.provider using errcode = 'BSV01', column = 'provider';
  end if;
  if create_deposit.amount < v_min then
    raise exception 'O depósito mínimo é %.', core.format_brl(v_min) using errcode = 'BSV01', column = 'amount';
  end if;
  if create_deposit.amount > v_max then
    raise exception 'O depósito máximo por PIX é %. Para mais, faça mais de um depósito.', core.format_brl(v_max)
      using errcode = 'BSL01', column = 'amount';
  end if;

  v_id := nextval(pg_get_serial_sequence('core.pix_charges', 'id'));
  v_prior := core.claim_idempotency(create_deposit.user_id, idempotency_key, 'create_deposit',
               md5(trim_scale(create_deposit.amount)::text), jsonb_build_object('deposit_id', v_id));
  if v_prior is not null then
    v_id := (v_prior ->> 'deposit_id')::bigint;
    v_replayed := true;
  else
    -- One deposit at a time per customer, so two at once cannot both pass the daily limit.
    perform from core.users u where u.id = create_deposit.user_id for no key update;
    perform core.enforce_daily_limit(create_deposit.user_id, 'daily_deposit_brl',
                                     core.deposits_used_today(create_deposit.user_id), create_deposit.amount);
    insert into core.pix_charges (id, user_id, purpose, reference, amount, provider, expires_at)
    values (v_id, create_deposit.user_id, 'deposit', 'dep-' || v_id, create_deposit.amount, create_deposit.provider,
            date_trunc('milliseconds', now() + make_interval(mins => core.setting('deposit_expiry_minutes')::int)))
    returning * into v_charge;
    perform core.deposit_notify(v_charge, 'deposit.created',
      'Depósito de ' || core.format_brl(v_charge.amount) || ' criado: pague o PIX até ' ||
      core.rails_when(v_charge.expires_at) || '.');
  end if;

  return query
  select c.id, c.reference, c.amount, c.expires_at, v_user.email, core.rails_payer_cpf(c.user_id),
         core.pix_charge_description(c.purpose, c.reference), c.provider, c.provider_payment_id, c.status, v_replayed
  from core.pix_charges c where c.id = v_id;
end
$$;
revoke all on function api.create_deposit(bigint, numeric, text, text) from public;
grant execute on function api.create_deposit(bigint, numeric, text, text) to exchange_app;
comment on function api.create_deposit(bigint, numeric, text, text) is
  'Starts a PIX deposit: a PENDING charge (reference dep-<id>, expiry deposit_expiry_minutes) for the provider (mercadopago|inter), within deposit_min_brl..deposit_max_brl and the KYC daily_deposit_brl limit. Returns what the provider call needs (payer e-mail, KYC CPF when known, description). Idempotent per (user, key): a replay returns the same deposit. BSV01 below the minimum or unknown provider, BSL01 above the maximum or the daily limit, BSA02 frozen, BSI01 key reused.';

create function api.get_deposit(user_id bigint, deposit_id bigint)
returns table (id bigint, reference text, amount numeric, status text, status_detail text, qr_code text,
               qr_code_base64 text, expires_at timestamptz, paid_amount numeric, credited_amount numeric,
               provider text, has_charge boolean, created_at timestamptz, resolved_at timestamptz,
               matures_at timestamptz)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  select c.id, c.reference, c.amount, c.status, c.status_detail,
         case when c.status = 'PENDING' then c.qr_code end, case when c.status = 'PENDING' then c.qr_code_base64 end,
         c.expires_at, c.paid_amount, c.credited_amount, c.provider, c.provider_payment_id is not null,
         c.created_at, c.resolved_at,
         case when c.status = 'PAID' then c.resolved_at + make_interval(hours => core.setting('deposit_maturation_hours')::int) end
  from core.pix_charges c
  where c.id = get_deposit.deposit_id and c.user_id = get_deposit.user_id and c.purpose = 'deposit'
$$;
revoke all on function api.get_deposit(bigint, bigint) from public;
grant execute on function api.get_deposit(bigint, bigint) to exchange_app;
comment on function api.get_deposit(bigint, bigint) is
  'One of the customer''s deposits: status, QR code and copia-e-cola while payable, amounts, and when a credited deposit matures for withdrawal. No row when it is not theirs.';

create function api.list_deposits(user_id bigint, page int default 1, page_size int default 20)
returns table (id bigint, reference text, amount numeric, status text, status_detail text, expires_at timestamptz,
               credited_amount numeric, created_at timestamptz, resolved_at timestamptz, total_rows bigint)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  select c.id, c.reference, c.amount, c.status, c.status_detail, c.expires_at, c.credited_amount, c.created_at,
         c.resolved_at, count(*) over ()
  from core.pix_charges c
  where c.user_id = list_deposits.user_id and c.purpose = 'deposit'
  order by c.id desc
  offset (greatest(page, 1) - 1) * least(greatest(page_size, 1), 100) limit least(greatest(page_size, 1), 100)
$$;
revoke all on function api.list_deposits(bigint, int, int) from public;
grant execute on function api.list_deposits(bigint, int, int) to exchange_app;
comment on function api.list_deposits(bigint, int, int) is 'A customer''s deposits, newest first, paginated (total_rows on every row).';

-- ---------------------------------------------------------------------------
-- Rails operations (webhook, worker, P2P glue): exchange_app and exchange_admin
-- ---------------------------------------------------------------------------

create function admin.attach_pix_charge(charge_id bigint, provider text, provider_payment_id text, qr_code text,
                                        qr_code_base64 text)
returns boolean
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_charge core.pix_charges;
begin
  if provider_payment_id is null or length(btrim(provider_payment_id)) = 0 then
    raise exception 'Cobrança PIX sem identificador do provedor.' using errcode = 'BSV01', column = 'provider_payment_id';
  end if;
  select * into v_charge from core.pix_charges c where c.id = attach_pix_charge.charge_id for update;
  if not found then
    raise exception 'Cobrança PIX % não encontrada.', charge_id using errcode = 'BSN01';
  end if;
  if v_charge.provider <> attach_pix_charge.provider then
    raise exception 'A cobrança % é do provedor %, não de %.', v_charge.id, v_charge.provider, attach_pix_charge.provider
      using errcode = 'BSV01', column = 'provider';
  end if;
  if v_charge.provider_payment_id is not null then
    if v_charge.provider_payment_id = btrim(attach_pix_charge.provider_payment_id) then
      -- The same charge again (retry): fill in a QR code the first attach lacked.
      update core.pix_charges c
         set qr_code = coalesce(c.qr_code, attach_pix_charge.qr_code),
             qr_code_base64 = coalesce(c.qr_code_base64, attach_pix_charge.qr_code_base64), updated_at = now()
       where c.id = v_charge.id;
      return false;
    end if;
    raise exception 'A cobrança % já tem outro pagamento no provedor (%).', v_charge.id, v_charge.provider_payment_id
      using errcode = 'BSS01';
  end if;
  perform core.assert_provider_payment_unseen(v_charge, attach_pix_charge.provider_payment_id);
  update core.pix_charges c
     set provider_payment_id = btrim(attach_pix_charge.provider_payment_id), qr_code = attach_pix_charge.qr_code,
         qr_code_base64 = attach_pix_charge.qr_code_base64, last_error = null, updated_at = now()
   where c.id = v_charge.id;
  -- A PIX-confirmed P2P trade shows its charge on the trade page
  -- (sql/p2p/pix_confirmed.sql: applied after this file, which is fine, since
  -- PL/pgSQL resolves the call when it runs).
  if v_charge.purpose = 'p2p_trade' and v_charge.status = 'PENDING' then
    perform admin.attach_p2p_pix_charge(v_charge.trade_id, v_charge.provider, btrim(attach_pix_charge.provider_payment_id),
                                        attach_pix_charge.qr_code, attach_pix_charge.qr_code_base64, v_charge.expires_at);
  end if;
  return true;
end
$$;
revoke all on function admin.attach_pix_charge(bigint, text, text, text, text) from public;
grant execute on function admin.attach_pix_charge(bigint, text, text, text, text) to exchange_app, exchange_worker, exchange_admin;
comment on function admin.attach_pix_charge(bigint, text, text, text, text) is
  'Records the provider''s payment id and QR code (copia-e-cola, PNG base64) of a charge after the provider created it; for a P2P charge also calls admin.attach_p2p_pix_charge. true when recorded, false when the same payment was already recorded (idempotent); BSS01 a different payment is already attached; BSN01 unknown charge.';

create function admin.note_pix_charge_error(charge_id bigint, error text)
returns void
language sql volatile security definer set search_path = pg_catalog, pg_temp as $$
  update core.pix_charges c set last_error = left(note_pix_charge_error.error, 500), updated_at = now()
  where c.id = note_pix_charge_error.charge_id
$$;
revoke all on function admin.note_pix_charge_error(bigint, text) from public;
grant execute on function admin.note_pix_charge_error(bigint, text) to exchange_app, exchange_worker, exchange_admin;
comment on function admin.note_pix_charge_error(bigint, text) is
  'Remembers why the last provider call for a charge failed (shown to operators; the retry job tries again).';

create function admin.pix_charges_to_attach(max_rows int default 20, min_age_seconds int default 15)
returns table (charge_id bigint, reference text, purpose text, charge_amount numeric, expires_at timestamptz,
               payer_email text, payer_cpf text, description text, charge_provider text, attach_attempts int)
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
begin
  -- Claimed with SKIP LOCKED and stamped, so a second worker (or the next
  -- run) does not retry the same charge at the same time.
  return query
  with due as (
    select c.id from core.pix_charges c
    where c.status = 'PENDING' and c.provider_payment_id is null
      and c.created_at < now() - make_interval(secs => min_age_seconds)
      and coalesce(c.last_checked_at, c.created_at) < now() - make_interval(secs => min_age_seconds)
    order by c.id
    limit least(greatest(max_rows, 1), 500)
    for update skip locked
  ), stamped as (
    update core.pix_charges c set last_checked_at = now(), attach_attempts = c.attach_attempts + 1
    from due where c.id = due.id
    returning c.*
  )
  select s.id, s.reference, s.purpose, s.amount, s.expires_at, u.email, core.rails_payer_cpf(s.user_id),
         core.pix_charge_description(s.purpose, s.reference), s.provider, s.attach_attempts
  from stamped s join core.users u on u.id = s.user_id
  order by s.id;
end
$$;
revoke all on function admin.pix_charges_to_attach(int, int) from public;
grant execute on function admin.pix_charges_to_attach(int, int) to exchange_worker, exchange_admin;
comment on function admin.pix_charges_to_attach(int, int) is
  'Worker: PENDING charges still without a provider payment (the provider call failed or the process died), at least min_age_seconds old, with everything needed to create (or find) them again under the same reference.';

create function admin.fail_pix_charge(charge_id bigint, reason text)
returns boolean
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_charge core.pix_charges;
begin
  select * into v_charge from core.pix_charges c where c.id = fail_pix_charge.charge_id for update;
  if not found then
    raise exception 'Cobrança PIX % não encontrada.', charge_id using errcode = 'BSN01';
  end if;
  if v_charge.status <> 'PENDING' or v_charge.provider_payment_id is not null then
    return false;   -- it exists at the provider (or is settled): only confirm_pix_charge decides now
  end if;
  update core.pix_charges c
     set status = 'FAILED', status_detail = left(coalesce(reason, 'o provedor recusou a cobrança'), 500),
         resolved_at = now(), updated_at = now()
   where c.id = v_charge.id;
  perform core.deposit_notify(v_charge, 'deposit.failed',
    'Não foi possível gerar o PIX do depósito de ' || core.format_brl(v_charge.amount) || '. Tente de novo.');
  return true;
end
$$;
revoke all on function admin.fail_pix_charge(bigint, text) from public;
grant execute on function admin.fail_pix_charge(bigint, text) to exchange_app, exchange_worker, exchange_admin;
comment on function admin.fail_pix_charge(bigint, text) is
  'A charge the provider definitely refused to create (no payment exists): PENDING → FAILED with the reason; false (nothing done) when it already has a provider payment or is settled.';

create function admin.expire_pix_charge(charge_id bigint, reason text default null)
returns boolean
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_charge core.pix_charges;
begin
  select * into v_charge from core.pix_charges c where c.id = expire_pix_charge.charge_id for update;
  if not found then
    raise exception 'Cobrança PIX % não encontrada.', charge_id using errcode = 'BSN01';
  end if;
  if v_charge.status <> 'PENDING' or v_charge.provider_payment_id is not null or v_charge.expires_at > now() then
    return false;
  end if;
  update core.pix_charges c
     set status = 'EXPIRED', status_detail = coalesce(reason, 'expirou sem cobrança no provedor'),
         resolved_at = now(), updated_at = now()
   where c.id = v_charge.id;
  perform core.deposit_notify(v_charge, 'deposit.expired',
    'O depósito de ' || core.format_brl(v_charge.amount) || ' expirou sem pagamento.');
  return true;
end
$$;
revoke all on function admin.expire_pix_charge(bigint, text) from public;
grant execute on function admin.expire_pix_charge(bigint, text) to exchange_worker, exchange_admin;
comment on function admin.expire_pix_charge(bigint, text) is
  'Reconciler: a PENDING charge past its expiry that the provider does not know (it was never created there) → EXPIRED. false when it has a provider payment (confirm_pix_charge decides) or is not due.';

create function admin.pix_charges_to_reconcile(max_rows int default 50)
returns table (charge_id bigint, reference text, purpose text, charge_provider text, provider_payment_id text,
               expires_at timestamptz)
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_after interval := make_interval(mins => core.setting('deposit_reconcile_after_minutes')::int);
begin
  return query
  with due as (
    select c.id from core.pix_charges c
    where c.status = 'PENDING' and c.created_at < now() - v_after
      and (c.last_checked_at is null or c.last_checked_at < now() - v_after
           or (c.expires_at < now() and c.last_checked_at < c.expires_at))
    order by c.created_at, c.id
    limit least(greatest(max_rows, 1), 500)
    for update skip locked
  ), stamped as (
    update core.pix_charges c set last_checked_at = now() from due where c.id = due.id returning c.*
  )
  select s.id, s.reference, s.purpose, s.provider, s.provider_payment_id, s.expires_at from stamped s order by s.id;
end
$$;
revoke all on function admin.pix_charges_to_reconcile(int) from public;
grant execute on function admin.pix_charges_to_reconcile(int) to exchange_worker, exchange_admin;
comment on function admin.pix_charges_to_reconcile(int) is
  'Reconciler: PENDING charges older than deposit_reconcile_after_minutes not looked at for as long (and once more right after they expire), stamped so they are not checked again at once. The worker searches each at the provider by reference and reports what it finds to admin.confirm_pix_charge.';

create or replace function core.lock_pix_charge_for_payment(reference text, provider text, provider_payment_id text)
returns core.pix_charges
language plpgsql volatile as $$
declare
  v_charge core.pix_charges;
  v_pid text := provider_payment_id;
begin
  if lock_pix_charge_for_payment.reference is not null then
    select * into v_charge from core.pix_charges c where c.reference = btrim(lock_pix_charge_for_payment.reference) for update;
  else
    select * into v_charge from core.pix_charges c
    where c.provider = lock_pix_charge_for_payment.provider and c.provider_payment_id = v_pid for update;
  end if;
  if not found then
    raise exception 'Nenhuma cobrança PIX nossa com a referência %.', coalesce(lock_pix_charge_for_payment.reference, v_pid)
      using errcode = 'BSN01';
  end if;
  if v_charge.provider <> lock_pix_charge_for_payment.provider then
    raise exception 'A cobrança % é do provedor %, não de %.', v_charge.reference, v_charge.provider, lock_pix_charge_for_payment.provider
      using errcode = 'BSV01', column = 'provider';
  end if;
  if v_charge.provider_payment_id is null then
    -- Reported before the create call's answer was recorded (or found by the
    -- reconciler): this is the charge's payment from now on.
    perform core.assert_provider_payment_unseen(v_charge, v_pid);
    update core.pix_charges c set provider_payment_id = v_pid, updated_at = now() where c.id = v_charge.id;
    v_charge.provider_payment_id := v_pid;
  end if;
  return v_charge;
end
$$;
comment on function core.lock_pix_charge_for_payment(text, text, text) is
  'Step of admin.confirm_pix_charge: finds the charge of a reported payment by our reference (or by provider + payment id) and locks it (concurrent and replayed reports queue here); a charge whose payment id was not yet recorded takes this one (core.assert_provider_payment_unseen). BSN01 not ours, BSV01 another provider''s.';

create or replace function core.credit_pix_deposit(charge core.pix_charges, paid_amount numeric, payer_cpf text,
                                              end_to_end_id text) returns text
language plpgsql volatile as $$
declare
  v_charge core.pix_charges := charge;
  v_entry bigint;
begin
  if credit_pix_deposit.paid_amount <> v_charge.amount then
    update core.pix_charges c
       set status = 'REVIEW',
           status_detail = 'Valor recebido (' || core.format_brl(credit_pix_deposit.paid_amount) ||
                           ') diferente do valor do depósito (' || core.format_brl(v_charge.amount) || ')',
           paid_amount = credit_pix_deposit.paid_amount, payer_cpf = credit_pix_deposit.payer_cpf, end_to_end_id = credit_pix_deposit.end_to_end_id,
           paid_at = now(), resolved_at = now(), updated_at = now()
     where c.id = v_charge.id;
    perform core.deposit_notify(v_charge, 'deposit.review',
      'Recebemos ' || core.format_brl(credit_pix_deposit.paid_amount) || ' no PIX do depósito de ' ||
      core.format_brl(v_charge.amount) || ': o valor não confere e o depósito está em análise pela equipe.');
    return 'review';
  end if;

  perform core.lock_customer(v_charge.user_id);
  v_entry := core.post_entry('deposit', v_charge.reference, v_charge.user_id,
    array[core.system_account('clearing_' || v_charge.provider, 'BRL'), core.user_account(v_charge.user_id, 'BRL')],
    array[-v_charge.amount, v_charge.amount], 'Depósito PIX ' || v_charge.reference);
  perform core.record_reversible_credit(v_charge.user_id, 'deposit', v_charge.id, v_charge.amount, v_entry);
  update core.pix_charges c
     set status = 'PAID', status_detail = null, paid_amount = credit_pix_deposit.paid_amount,
         credited_amount = v_charge.amount, payer_cpf = credit_pix_deposit.payer_cpf, end_to_end_id = credit_pix_deposit.end_to_end_id,
         entry_id = v_entry, paid_at = now(), resolved_at = now(), updated_at = now()
   where c.id = v_charge.id;
  perform core.deposit_notify(v_charge, 'deposit.credited',
    'Depósito de ' || core.format_brl(v_charge.amount) || ' creditado. Disponível para negociar agora; para saque a partir de ' ||
    core.rails_when(now() + make_interval(hours => core.setting('deposit_maturation_hours')::int)) || '.');
  return 'credited';
end
$$;
comment on function core.credit_pix_deposit(core.pix_charges, numeric, text, text) is
  'Step of admin.confirm_pix_charge for an approved deposit charge (locked, PENDING): the amount asked for arrived → credited once from the provider''s clearing account (reversible exposure until it matures), outcome credited; another amount → REVIEW with nothing credited, outcome review. The customer is notified either way.';

create function admin.confirm_pix_charge(reference text, provider text, provider_payment_id text, status text,
                                         paid_amount numeric default null, payer_cpf text default null,
                                         end_to_end_id text default null, refunded_amount numeric default null)
returns table (charge_id bigint, purpose text, outcome text, charge_status text, replayed boolean)
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_charge core.pix_charges;
  v_status text := lower(btrim(coalesce(confirm_pix_charge.status, '')));
  v_pid text := nullif(btrim(coalesce(confirm_pix_charge.provider_payment_id, '')), '');
  v_cpf text := core.cpf_digits(confirm_pix_charge.payer_cpf);
  v_p2p text;
  v_outcome text;
begin
  if v_pid is null then
    raise exception 'Pagamento sem identificador do provedor.' using errcode = 'BSV01', column = 'provider_payment_id';
  end if;
  if v_status not in ('pending', 'approved', 'cancelled', 'expired', 'rejected', 'refunded', 'charged_back',
                      'in_mediation') then
    raise exception 'Situação de pagamento desconhecida: %.', confirm_pix_charge.status using errcode = 'BSV01', column = 'status';
  end if;
  -- The charge row is the lock: concurrent and replayed notifications of one
  -- payment queue there, and the state checks below let only the first act.
  v_charge := core.lock_pix_charge_for_payment(confirm_pix_charge.reference, confirm_pix_charge.provider, v_pid);
  if v_charge.provider_payment_id <> v_pid then
    -- Another payment under our reference: never booked automatically.
    return query select v_charge.id, v_charge.purpose, 'other_payment'::text, v_charge.status, false;
    return;
  end if;

  if v_status = 'pending' then
    return query select v_charge.id, v_charge.purpose, 'pending'::text, v_charge.status, false;
    return;
  end if;

  if v_status in ('cancelled', 'expired', 'rejected') then
    if v_charge.status <> 'PENDING' then
      return query select v_charge.id, v_charge.purpose, lower(v_charge.status), v_charge.status, true;
      return;
    end if;
    update core.pix_charges c
       set status = 'EXPIRED', status_detail = v_status, resolved_at = now(), updated_at = now()
     where c.id = v_charge.id;
    perform core.deposit_notify(v_charge, 'deposit.expired',
      'O depósito de ' || core.format_brl(v_charge.amount) || ' expirou sem pagamento.');
    return query select v_charge.id, v_charge.purpose, 'expired'::text, 'EXPIRED'::text, false;
    return;
  end if;

  if v_status in ('refunded', 'charged_back', 'in_mediation') then
    -- Returned to (or blocked for) the payer at the provider: MED, a
    -- chargeback or a refund. Money credited to a customer is taken back
    -- from them (core.clawback_pix_credit); a charge never paid just ends.
    if v_charge.status = 'PENDING' then
      update core.pix_charges c set status = 'EXPIRED', status_detail = v_status, resolved_at = now(), updated_at = now()
       where c.id = v_charge.id;
      return query select v_charge.id, v_charge.purpose, 'expired'::text, 'EXPIRED'::text, false;
      return;
    end if;
    return query select v_charge.id, v_charge.purpose,
                        core.clawback_pix_credit(v_charge.id, v_status, confirm_pix_charge.refunded_amount),
                        v_charge.status, false;
    return;
  end if;

  -- approved: money arrived at the provider.
  if v_charge.status in ('PAID', 'REVIEW', 'REJECTED') then
    return query select v_charge.id, v_charge.purpose,
                        case when v_charge.status = 'PAID' and v_charge.purpose = 'deposit' then 'credited'
                             when v_charge.status = 'PAID' then coalesce('p2p_' || v_charge.status_detail, 'p2p')
                             else 'review' end,
                        v_charge.status, true;
    return;
  end if;
  perform core.check_amount('BRL', confirm_pix_charge.paid_amount, 'paid_amount');

  if v_charge.purpose = 'p2p_trade' then
    -- The P2P domain decides (release, review, credit to the buyer…):
    -- sql/p2p/pix_confirmed.sql, resolved when this runs.
    select p.outcome into v_p2p
      from admin.confirm_p2p_pix_payment(v_charge.trade_id, confirm_pix_charge.paid_amount, v_cpf, v_pid) p;
    update core.pix_charges c
       set status = 'PAID', status_detail = v_p2p, paid_amount = confirm_pix_charge.paid_amount, payer_cpf = v_cpf,
           end_to_end_id = confirm_pix_charge.end_to_end_id, paid_at = now(), resolved_at = now(), updated_at = now()
     where c.id = v_charge.id;
    return query select v_charge.id, v_charge.purpose, 'p2p_' || v_p2p, 'PAID'::text, false;
    return;
  end if;

  v_outcome := core.credit_pix_deposit(v_charge, confirm_pix_charge.paid_amount, v_cpf, confirm_pix_charge.end_to_end_id);
  return query select v_charge.id, v_charge.purpose, v_outcome,
                      case when v_outcome = 'credited' then 'PAID' else 'REVIEW' end, false;
end
$$;
revoke all on function admin.confirm_pix_charge(text, text, text, text, numeric, text, text, numeric) from public;
grant execute on function admin.confirm_pix_charge(text, text, text, text, numeric, text, text, numeric) to exchange_worker, exchange_admin;
comment on function admin.confirm_pix_charge(text, text, text, text, numeric, text, text, numeric) is
  'The one place a PIX payment is booked (worker role), called with what the provider''s API said (never a webhook body). Finds the charge by reference (or provider + payment id) and locks it. refunded/charged_back/in_mediation: a credited PIX is clawed back from the customer it was credited to (core.clawback_pix_credit; refunded_amount when partial), a pending one ends EXPIRED. approved: a deposit with the same amount is credited once (clearing_<provider> → customer, outcome credited), another amount goes to REVIEW with nothing credited (review); a P2P charge is handed to admin.confirm_p2p_pix_payment (outcome p2p_<its outcome>). cancelled/expired/rejected: PENDING → EXPIRED. pending: nothing. A repeat returns the first outcome with replayed true and moves nothing. BSN01 not our reference.';

create function admin.create_p2p_pix_charge(trade_id bigint, amount numeric, provider text, expires_at timestamptz)
returns table (charge_id bigint, reference text, charge_amount numeric, charge_expires_at timestamptz,
               payer_email text, payer_cpf text, description text, charge_provider text,
               provider_payment_id text, qr_code text, qr_code_base64 text, status text, created boolean)
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_charge core.pix_charges;
  v_buyer bigint;
  v_brl numeric;
  v_method text;
  v_id bigint;
begin
  perform core.check_amount('BRL', create_p2p_pix_charge.amount);
  if create_p2p_pix_charge.provider is null or create_p2p_pix_charge.provider not in ('mercadopago', 'inter') then
    raise exception 'Provedor PIX desconhecido: %.', create_p2p_pix_charge.provider using errcode = 'BSV01', column = 'provider';
  end if;
  if create_p2p_pix_charge.expires_at is null or create_p2p_pix_charge.expires_at <= now() then
    raise exception 'A cobrança PIX precisa de um prazo no futuro.' using errcode = 'BSV01', column = 'expires_at';
  end if;
  -- The payer is the trade's buyer and the amount must be its BRL amount.
  select t.buyer_id, t.brl_amount, t.payment_method into v_buyer, v_brl, v_method
    from core.p2p_trades t where t.id = create_p2p_pix_charge.trade_id;
  if v_buyer is null then
    raise exception 'Negociação P2P % não encontrada.', create_p2p_pix_charge.trade_id using errcode = 'BSN01';
  end if;
  if v_method is distinct from 'PIX_CONFIRMED' then
    raise exception 'A negociação % não é paga por PIX confirmado.', create_p2p_pix_charge.trade_id using errcode = 'BSS01';
  end if;
  if v_brl <> create_p2p_pix_charge.amount then
    raise exception 'O valor da cobrança (%) não é o da negociação (%).', core.format_brl(create_p2p_pix_charge.amount),
      core.format_brl(v_brl) using errcode = 'BSV01', column = 'amount';
  end if;
  v_id := nextval(pg_get_serial_sequence('core.pix_charges', 'id'));
  insert into core.pix_charges (id, user_id, purpose, trade_id, reference, amount, provider, expires_at)
  values (v_id, v_buyer, 'p2p_trade', create_p2p_pix_charge.trade_id, 'p2p-' || create_p2p_pix_charge.trade_id,
          create_p2p_pix_charge.amount, create_p2p_pix_charge.provider, date_trunc('milliseconds', create_p2p_pix_charge.expires_at))
  on conflict on constraint pix_charges_reference_key do nothing;
  select * into v_charge from core.pix_charges c where c.reference = 'p2p-' || create_p2p_pix_charge.trade_id;
  return query
  select v_charge.id, v_charge.reference, v_charge.amount, v_charge.expires_at, u.email, core.rails_payer_cpf(v_charge.user_id),
         core.pix_charge_description(v_charge.purpose, v_charge.reference), v_charge.provider,
         v_charge.provider_payment_id, v_charge.qr_code, v_charge.qr_code_base64, v_charge.status, v_charge.id = v_id
  from core.users u where u.id = v_charge.user_id;
end
$$;
revoke all on function admin.create_p2p_pix_charge(bigint, numeric, text, timestamptz) from public;
grant execute on function admin.create_p2p_pix_charge(bigint, numeric, text, timestamptz) to exchange_app, exchange_worker, exchange_admin;
comment on function admin.create_p2p_pix_charge(bigint, numeric, text, timestamptz) is
  'For a PIX-confirmed P2P trade: records (once) the charge p2p-<trade_id> its buyer pays, before the provider is called; a repeat returns the same row (created false), with the provider payment once attached. BSN01 unknown trade, BSS01 not PIX-confirmed, BSV01 amount is not the trade''s BRL amount.';

create function admin.resolve_deposit_review(admin_id bigint, deposit_id bigint, credit boolean, reason text)
returns text
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_charge core.pix_charges;
  v_entry bigint;
begin
  perform core.assert_admin(admin_id);
  select * into v_charge from core.pix_charges c
  where c.id = resolve_deposit_review.deposit_id and c.purpose = 'deposit' for update;
  if not found then
    raise exception 'Depósito % não encontrado.', deposit_id using errcode = 'BSN01';
  end if;
  if v_charge.status <> 'REVIEW' then
    raise exception 'O depósito % não está em análise (situação %).', v_charge.id, v_charge.status using errcode = 'BSS01';
  end if;
  perform core.audit(admin_id, case when credit then 'credit_deposit_review' else 'reject_deposit_review' end,
                     v_charge.user_id, reason,
                     jsonb_build_object('deposit_id', v_charge.id, 'amount', v_charge.amount, 'paid_amount', v_charge.paid_amount));
  if credit then
    -- What actually arrived at the provider is what the customer gets.
    perform core.lock_customer(v_charge.user_id);
    v_entry := core.post_entry('deposit', v_charge.reference, v_charge.user_id,
      array[core.system_account('clearing_' || v_charge.provider, 'BRL'), core.user_account(v_charge.user_id, 'BRL')],
      array[-v_charge.paid_amount, v_charge.paid_amount], 'Depósito PIX ' || v_charge.reference || ' (revisado)');
    perform core.record_reversible_credit(v_charge.user_id, 'deposit', v_charge.id, v_charge.paid_amount, v_entry);
    update core.pix_charges c
       set status = 'PAID', credited_amount = v_charge.paid_amount, entry_id = v_entry,
           status_detail = 'revisado: ' || btrim(reason), resolved_at = now(), updated_at = now()
     where c.id = v_charge.id;
    perform core.deposit_notify(v_charge, 'deposit.credited',
      'Depósito revisado: ' || core.format_brl(v_charge.paid_amount) || ' creditados.');
    return 'PAID';
  end if;
  update core.pix_charges c
     set status = 'REJECTED', status_detail = 'recusado: ' || btrim(reason), updated_at = now()
   where c.id = v_charge.id;
  -- what arrived goes back to whoever paid it
  perform core.record_pix_refund_due(v_charge.provider, v_charge.provider_payment_id, v_charge.id, null,
                                     v_charge.paid_amount, 'Depósito ' || v_charge.reference || ' recusado na análise');
  perform core.deposit_notify(v_charge, 'deposit.rejected',
    'Depósito revisado e recusado: o valor recebido será devolvido à conta de origem. Motivo: ' || btrim(reason));
  return 'REJECTED';
end
$$;
revoke all on function admin.resolve_deposit_review(bigint, bigint, boolean, text) from public;
grant execute on function admin.resolve_deposit_review(bigint, bigint, boolean, text) to exchange_app, exchange_admin;
comment on function admin.resolve_deposit_review(bigint, bigint, boolean, text) is
  'Closes a deposit in REVIEW (amount differed): credit true credits what actually arrived (PAID), false marks it REJECTED and records the refund of what arrived (core.record_pix_refund_due; the worker makes it at the provider). Reason required, audit-logged, customer notified. BSA01 not admin, BSS01 not in review.';

create function admin.list_deposit_reviews(admin_id bigint)
returns table (deposit_id bigint, user_id bigint, email text, reference text, amount numeric, paid_amount numeric,
               payer_cpf text, status_detail text, provider text, provider_payment_id text, paid_at timestamptz)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  select c.id, c.user_id, u.email, c.reference, c.amount, c.paid_amount, c.payer_cpf, c.status_detail, c.provider,
         c.provider_payment_id, c.paid_at
  from core.pix_charges c join core.users u on u.id = c.user_id, core.assert_admin(list_deposit_reviews.admin_id) a
  where c.status = 'REVIEW' and c.purpose = 'deposit'
  order by c.paid_at, c.id
$$;
revoke all on function admin.list_deposit_reviews(bigint) from public;
grant execute on function admin.list_deposit_reviews(bigint) to exchange_app, exchange_admin;
comment on function admin.list_deposit_reviews(bigint) is 'Deposits whose paid amount differed from the charge, waiting for admin.resolve_deposit_review (admins only).';

-- ---------------------------------------------------------------------------
-- Webhook notifications, refunds and cancelled charges (worker)
-- ---------------------------------------------------------------------------

create or replace function core.pix_charge_clawed_back(charge core.pix_charges) returns boolean
language sql immutable as $$
  -- the mark core.clawback_unbooked_pix leaves on a charge nobody was credited with
  select coalesce(charge.status_detail like 'devolvido ao pagador%', false)
$$;
comment on function core.pix_charge_clawed_back(core.pix_charges) is
  'Whether the payer''s bank took back this charge''s PIX before anyone was credited with it (core.clawback_unbooked_pix): it can then be neither released nor refunded.';

create or replace function core.record_pix_refund_due(provider text, provider_payment_id text, pix_charge_id bigint,
                                                     trade_id bigint, amount numeric, reason text)
returns bigint
language plpgsql volatile as $$
declare
  v_id bigint;
begin
  -- The money is at the provider but belongs to its payer: journaled as a
  -- refund payable (clearing → refunds_payable) until the worker has made the
  -- refund, so the provider's balance and our books agree meanwhile. Once
  -- per provider payment, and never for one the payer's bank already took
  -- back (MED): that would pay them twice.
  if exists (select from core.pix_charges c where c.provider = record_pix_refund_due.provider
             and c.provider_payment_id = btrim(record_pix_refund_due.provider_payment_id)
             and core.pix_charge_clawed_back(c)) then
    return null;
  end if;
  insert into core.pix_refunds (provider, provider_payment_id, pix_charge_id, trade_id, amount, reason)
  values (record_pix_refund_due.provider, btrim(record_pix_refund_due.provider_payment_id),
          record_pix_refund_due.pix_charge_id, record_pix_refund_due.trade_id, record_pix_refund_due.amount,
          record_pix_refund_due.reason)
  on conflict on constraint pix_refunds_provider_provider_payment_id_key do nothing
  returning id into v_id;
  if v_id is not null then
    perform core.post_entry('pix_refund_due', 'pix-refund-' || v_id, null,
      array[core.system_account('clearing_' || provider, 'BRL'), core.system_account('refunds_payable', 'BRL')],
      array[-amount, amount], 'PIX a devolver ao pagador: ' || reason);
  end if;
  return v_id;
end
$$;
comment on function core.record_pix_refund_due(text, text, bigint, bigint, numeric, text) is
  'Records (once per provider payment) a PIX to return to its payer and journals it clearing_<provider> → refunds_payable; the worker makes the refund (admin.pix_refunds_due, admin.record_pix_refund).';

create function api.record_provider_notification(provider text, topic text, resource_id text)
returns bigint
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
#variable_conflict use_column
declare
  v_id bigint;
begin
  -- Called by the webhook endpoint after it verified the notification; one
  -- pending row per resource (repeats only count), booked by the worker.
  if provider is null or provider not in ('mercadopago', 'inter') or topic is null or topic not in ('payment', 'payout')
     or resource_id is null or length(btrim(resource_id)) not between 1 and 100 or resource_id ~ '[[:cntrl:]]' then
    raise exception 'Notificação inválida.' using errcode = 'BSV01';
  end if;
  insert into core.provider_notifications (provider, topic, resource_id)
  values (record_provider_notification.provider, record_provider_notification.topic, btrim(record_provider_notification.resource_id))
  on conflict (provider, topic, resource_id) where processed_at is null
  do update set deliveries = core.provider_notifications.deliveries + 1, next_try_at = least(core.provider_notifications.next_try_at, now())
  returning id into v_id;
  perform pg_notify('bs_market_provider_notifications', v_id::text);
  return v_id;
end
$$;
revoke all on function api.record_provider_notification(text, text, text) from public;
grant execute on function api.record_provider_notification(text, text, text) to exchange_app;
comment on function api.record_provider_notification(text, text, text) is
  'For the webhook endpoints, after the notification was authenticated: queues the resource (provider mercadopago|inter, topic payment|payout, the provider''s id) for the worker, once per resource while pending; returns the queue row id. Books nothing.';

create function admin.provider_notifications_due(max_rows int default 50)
returns table (notification_id bigint, provider text, topic text, resource_id text, attempts int)
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
begin
  return query
  with due as (
    select n.id from core.provider_notifications n
    where n.processed_at is null and n.next_try_at <= now()
    order by n.next_try_at, n.id
    limit least(greatest(max_rows, 1), 500)
    for update skip locked
  ), stamped as (
    -- retried with a growing pause if the worker dies or the provider fails
    update core.provider_notifications n
       set attempts = n.attempts + 1, next_try_at = now() + make_interval(secs => least(15 * power(2, n.attempts), 3600))
      from due where n.id = due.id
    returning n.*
  )
  select s.id, s.provider, s.topic, s.resource_id, s.attempts from stamped s order by s.id;
end
$$;
revoke all on function admin.provider_notifications_due(int) from public;
grant execute on function admin.provider_notifications_due(int) to exchange_worker, exchange_admin;
comment on function admin.provider_notifications_due(int) is
  'Worker: pending webhook notifications due now (SKIP LOCKED), stamped with their next retry time in case this attempt fails.';

create function admin.finish_provider_notification(notification_id bigint, outcome text default null, error text default null)
returns void
language sql volatile security definer set search_path = pg_catalog, pg_temp as $$
  update core.provider_notifications n
     set outcome = coalesce(left(finish_provider_notification.outcome, 100), n.outcome),
         last_error = left(finish_provider_notification.error, 500),
         processed_at = case when finish_provider_notification.error is null then now() end
   where n.id = finish_provider_notification.notification_id
$$;
revoke all on function admin.finish_provider_notification(bigint, text, text) from public;
grant execute on function admin.finish_provider_notification(bigint, text, text) to exchange_worker, exchange_admin;
comment on function admin.finish_provider_notification(bigint, text, text) is
  'Worker: a notification was handled (outcome: what booking it did), or failed with error (kept pending for its next retry).';

create function admin.pix_refunds_due(max_rows int default 20)
returns table (refund_id bigint, provider text, provider_payment_id text, amount numeric, attempts int)
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
begin
  return query
  with due as (
    select r.id from core.pix_refunds r
    where r.status = 'PENDING' and coalesce(r.last_tried_at, r.created_at - interval '1 hour') < now() - interval '30 seconds'
    order by r.id limit least(greatest(max_rows, 1), 200)
    for update skip locked
  ), stamped as (
    update core.pix_refunds r set attempts = r.attempts + 1, last_tried_at = now() from due where r.id = due.id
    returning r.*
  )
  select s.id, s.provider, s.provider_payment_id, s.amount, s.attempts from stamped s order by s.id;
end
$$;
revoke all on function admin.pix_refunds_due(int) from public;
grant execute on function admin.pix_refunds_due(int) to exchange_worker, exchange_admin;
comment on function admin.pix_refunds_due(int) is
  'Worker: PIX refunds to make at the provider (idempotency key pix-refund-<id>), stamped so that a second worker waits 30 s before trying the same one.';

create function admin.record_pix_refund(refund_id bigint, provider_refund_id text default null, error text default null,
                                        definite boolean default false)
returns text
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
  v core.pix_refunds;
begin
  select * into v from core.pix_refunds r where r.id = record_pix_refund.refund_id for update;
  if not found then
    raise exception 'Devolução % não encontrada.', refund_id using errcode = 'BSN01';
  end if;
  if v.status <> 'PENDING' then
    return v.status;
  end if;
  if provider_refund_id is not null then
    update core.pix_refunds r set status = 'DONE', provider_refund_id = btrim(record_pix_refund.provider_refund_id),
                                  last_error = null, resolved_at = now()
     where r.id = v.id;
    -- the money left the provider back to the payer
    perform core.post_entry('pix_refund', 'pix-refund-' || v.id, null,
      array[core.system_account('refunds_payable', 'BRL'), core.system_account('clearing_' || v.provider, 'BRL')],
      array[-v.amount, v.amount], 'PIX devolvido ao pagador: ' || v.reason);
    return 'DONE';
  end if;
  update core.pix_refunds r
     set status = case when definite then 'FAILED' else 'PENDING' end, last_error = left(error, 500),
         resolved_at = case when definite then now() end
   where r.id = v.id;
  return case when definite then 'FAILED' else 'PENDING' end;
end
$$;
revoke all on function admin.record_pix_refund(bigint, text, text, boolean) from public;
grant execute on function admin.record_pix_refund(bigint, text, text, boolean) to exchange_worker, exchange_admin;
comment on function admin.record_pix_refund(bigint, text, text, boolean) is
  'Worker: the provider made a refund (its id → DONE), or refused it (definite → FAILED, for an operator) or could not be asked (stays PENDING, retried). Returns the status.';

create function admin.list_pix_refunds(admin_id bigint, only_open boolean default true)
returns table (refund_id bigint, provider text, provider_payment_id text, reference text, trade_id bigint, amount numeric,
               reason text, status text, attempts int, last_error text, created_at timestamptz, resolved_at timestamptz)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  select r.id, r.provider, r.provider_payment_id, c.reference, r.trade_id, r.amount, r.reason, r.status, r.attempts,
         r.last_error, r.created_at, r.resolved_at
  from core.pix_refunds r left join core.pix_charges c on c.id = r.pix_charge_id,
       core.assert_admin(list_pix_refunds.admin_id) a
  where not list_pix_refunds.only_open or r.status <> 'DONE'
  order by r.status = 'FAILED' desc, r.id desc
$$;
revoke all on function admin.list_pix_refunds(bigint, boolean) from public;
grant execute on function admin.list_pix_refunds(bigint, boolean) to exchange_app, exchange_admin;
comment on function admin.list_pix_refunds(bigint, boolean) is
  'Back office: PIX payments being returned to their payer (late P2P payments, reviews refused), failed ones first (only_open: not yet DONE).';

create function admin.pix_charges_to_cancel(max_rows int default 20)
returns table (charge_id bigint, reference text, charge_provider text, provider_payment_id text)
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
begin
  -- The charge of a P2P trade that ended (cancelled, expired, refunded) must
  -- stop being payable: the worker cancels it at the provider.
  return query
  with due as (
    select c.id from core.pix_charges c join core.p2p_trades t on t.id = c.trade_id
    where c.status = 'PENDING' and c.purpose = 'p2p_trade' and t.status <> 'OPEN'
      and coalesce(c.last_checked_at, c.created_at) < now() - interval '10 seconds'
    order by c.id limit least(greatest(max_rows, 1), 200)
    for update of c skip locked
  ), stamped as (
    update core.pix_charges c set last_checked_at = now() from due where c.id = due.id returning c.*
  )
  select s.id, s.reference, s.provider, s.provider_payment_id from stamped s order by s.id;
end
$$;
revoke all on function admin.pix_charges_to_cancel(int) from public;
grant execute on function admin.pix_charges_to_cancel(int) to exchange_worker, exchange_admin;
comment on function admin.pix_charges_to_cancel(int) is
  'Worker: PENDING PIX charges of P2P trades that are no longer OPEN, to cancel at the provider (then admin.cancel_pix_charge; a charge the provider says was paid is confirmed instead, and refunded).';

create function admin.cancel_pix_charge(charge_id bigint, reason text)
returns boolean
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
begin
  update core.pix_charges c
     set status = 'EXPIRED', status_detail = left(coalesce(reason, 'cancelada'), 500), resolved_at = now(), updated_at = now()
   where c.id = cancel_pix_charge.charge_id and c.status = 'PENDING';
  return found;
end
$$;
revoke all on function admin.cancel_pix_charge(bigint, text) from public;
grant execute on function admin.cancel_pix_charge(bigint, text) to exchange_worker, exchange_admin;
comment on function admin.cancel_pix_charge(bigint, text) is
  'Worker: a charge cancelled at the provider → EXPIRED with the reason (false when it was no longer PENDING).';

-- ---------------------------------------------------------------------------
-- Reporting
-- ---------------------------------------------------------------------------

create view reporting.pix_charges as
select c.id, c.user_id, c.purpose, c.trade_id, c.reference, c.amount, c.provider, c.provider_payment_id, c.status,
       c.status_detail, c.expires_at, c.paid_amount, c.credited_amount, c.payer_cpf, c.end_to_end_id, c.entry_id,
       c.attach_attempts, c.last_error, c.created_at, c.paid_at, c.resolved_at
from core.pix_charges c;
comment on view reporting.pix_charges is
  'Every PIX charge (deposits dep-<id>, P2P p2p-<trade>). Healthy: no PENDING row much past expires_at (the reconciler settles them), REVIEW rows are few and recent, every PAID deposit has entry_id with credited_amount = its journal entry.';

create view reporting.pix_charges_attention as
select c.id, c.reference, c.purpose, c.status, c.amount, c.paid_amount, c.provider, c.provider_payment_id,
       c.last_error, c.expires_at, c.created_at,
       case when c.status = 'REVIEW' then 'review: ' || coalesce(c.status_detail, '')
            when c.provider_payment_id is null then 'no provider charge yet'
            else 'pending past expiry' end as problem
from core.pix_charges c
where c.status = 'REVIEW'
   or (c.status = 'PENDING' and c.expires_at < now() - interval '30 minutes')
   or (c.status = 'PENDING' and c.provider_payment_id is null and c.created_at < now() - interval '10 minutes');
comment on view reporting.pix_charges_attention is
  'PIX charges that need a person: in REVIEW (amount differed), still PENDING 30 minutes past expiry, or without a provider charge after 10 minutes. Healthy: empty.';

create view reporting.pix_refunds as
select r.id as refund_id, r.provider, r.provider_payment_id, r.pix_charge_id, r.trade_id, r.amount, r.reason, r.status,
       r.provider_refund_id, r.attempts, r.last_error, r.created_at, r.resolved_at
from core.pix_refunds r;
comment on view reporting.pix_refunds is
  'PIX payments we return to their payer at the provider (late payments for ended P2P trades, payments nobody can be credited with). Healthy: no PENDING row older than a few minutes, no FAILED row left unhandled.';

create view reporting.provider_notifications as
select n.id, n.provider, n.topic, n.resource_id, n.received_at, n.deliveries, n.attempts, n.last_error, n.outcome,
       n.processed_at
from core.provider_notifications n;
comment on view reporting.provider_notifications is 'Webhook deliveries and what the worker booked for each. Healthy: nothing pending for long.';

grant select on reporting.pix_charges, reporting.pix_charges_attention, reporting.pix_refunds,
  reporting.provider_notifications to exchange_auditor, exchange_admin;
