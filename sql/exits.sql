-- exits.sql: the one policy for every way value leaves a customer.
--
-- A PIX payer can claw a PIX back through MED for a while after it was
-- credited. Every such credit (core.reversible_credits: deposits, the BRL a
-- seller got from a PIX-confirmed P2P trade) is the customer's reversible
-- exposure until it matures (deposit_maturation_hours, like Binance's T+1).
-- Trading on the platform stays free; but every exit — a PIX withdrawal, a
-- transfer to another customer in any currency, a P2P escrow or release, a
-- platform-balance trade that pays another customer, a crypto withdrawal —
-- is refused unless what the customer still holds, valued at the bid, stays
-- worth at least the exposure. The exposure is then recoverable from them.
--
-- Every exit, in the same transaction:
--   1. core.lock_for_exit(user)        -- the customer's row: exits one at a time
--   2. move the money (post, hold)
--   3. core.assert_exit_covered(user, verb, value_leaving)
-- users.exposure_until says when (1) and (3) can be skipped: never earlier
-- than the truth (credits only move it later; infinity while exits are
-- blocked after a clawback). A credit arriving meanwhile adds as much to the
-- assets as to the exposure, so an exit that skipped the check stays covered.

-- ---------------------------------------------------------------------------
-- Valuation and exposure (security invoker helpers)
-- ---------------------------------------------------------------------------

create or replace function core.bid_price(currency text) returns numeric
language sql stable as $$
  -- What the desk would pay for one unit now: the Binance price minus our
  -- spread and fee. A stale or missing price values the currency at zero:
  -- an exit never leans on a price we cannot trust.
  select case when bid_price.currency = 'BRL' then 1::numeric
              else coalesce((select p.price * (1 - (core.setting('market_spread_percent')::numeric
                                                    + core.setting('market_fee_percent')::numeric) / 100)
                             from core.latest_price(bid_price.currency) p where not p.stale), 0) end
$$;
comment on function core.bid_price(text) is
  'BRL value of one unit of a currency for the exit policy: 1 for BRL, the fresh Binance price less the desk''s spread and fee for crypto, 0 when the price is stale or missing.';

create or replace function core.reversible_exposure(user_id bigint)
returns table (exposure numeric, next_maturity_at timestamptz, last_maturity_at timestamptz)
language sql stable as $$
  select coalesce(sum(r.amount - r.reversed), 0), min(r.matures_at), max(r.matures_at)
  from core.reversible_credits r
  where r.user_id = reversible_exposure.user_id and r.matures_at > now() and r.amount > r.reversed
$$;
comment on function core.reversible_exposure(bigint) is
  'A customer''s reversible exposure now: BRL credited from PIX payments that can still be clawed back (not yet matured, not reversed), and when the next and the last of them mature.';

create or replace function core.exit_assets(user_id bigint) returns numeric
language sql stable as $$
  -- Everything the customer holds (available and locked) that is not already
  -- on its way out (withdrawals, P2P escrow of a trade, crypto withdrawals),
  -- valued at the bid.
  select coalesce(sum(b.units * core.bid_price(b.currency)), 0)
  from (select a.currency,
               sum(a.balance) - coalesce((select sum(h.amount) from core.holds h
                                          where h.user_id = exit_assets.user_id and h.currency = a.currency
                                            and h.status = 'open'
                                            and h.purpose in ('withdrawal', 'p2p_trade', 'crypto_withdrawal')), 0)
                 as units
        from core.accounts a where a.user_id = exit_assets.user_id
        group by a.currency) b
  where b.units > 0
$$;
comment on function core.exit_assets(bigint) is
  'BRL value at the bid of what a customer holds that is not already leaving (open withdrawal, P2P trade and crypto-withdrawal holds excluded): what covers their reversible exposure.';

create or replace function core.exposure_covered_at(user_id bigint, assets numeric) returns timestamptz
language sql stable as $$
  -- The first maturity after which the exposure still pending is at most
  -- `assets` (NULL: covered now).
  select min(s.matures_at) from (
    select r.matures_at,
           coalesce(sum(r.amount - r.reversed) over (order by r.matures_at, r.id
                                                     rows between 1 following and unbounded following), 0) as after
    from core.reversible_credits r
    where r.user_id = exposure_covered_at.user_id and r.matures_at > now() and r.amount > r.reversed
  ) s where s.after <= exposure_covered_at.assets
$$;
comment on function core.exposure_covered_at(bigint, numeric) is
  'When enough of a customer''s PIX credits will have matured for `assets` to cover what is still exposed.';

-- ---------------------------------------------------------------------------
-- The policy
-- ---------------------------------------------------------------------------

create or replace function core.lock_for_exit(user_id bigint) returns void
language plpgsql volatile as $$
declare
  v_user core.users;
begin
  -- Exits of one customer queue here, so parallel exits cannot each pass
  -- against the same assets.
  select * into v_user from core.users u where u.id = lock_for_exit.user_id for no key update;
  if not found then
    raise exception 'Cliente não encontrado.' using errcode = 'BSN01';
  end if;
  if v_user.status = 'frozen' then
    raise exception 'Conta bloqueada para movimentações. Fale com o suporte.' using errcode = 'BSA02';
  end if;
  if v_user.exits_paused_until > now() then
    raise exception 'Saídas pausadas até %: %, por segurança.', core.rails_when(v_user.exits_paused_until),
      case v_user.exits_paused_reason
        when 'password_reset' then 'a senha foi redefinida por e-mail há pouco'
        when 'twofactor_recovered' then 'a verificação em duas etapas foi removida pela equipe há pouco'
        else 'a verificação em duas etapas foi desativada há pouco' end
      using errcode = 'BSA02';
  end if;
  if v_user.exits_blocked_at is not null then
    raise exception 'Saídas bloqueadas: um PIX creditado na sua conta foi devolvido ao pagador (MED) e há um valor em aberto. Fale com o suporte.'
      using errcode = 'BSA02', hint = coalesce(v_user.exits_blocked_reason, '');
  end if;
end
$$;
comment on function core.lock_for_exit(bigint) is
  'First step of every exit: locks the customer''s row (exits of a customer run one at a time) and refuses a frozen customer, one whose exits are paused (after turning 2FA off, a password reset or a 2FA recovery: users.exits_paused_reason), or blocked after a clawback (BSA02).';

create or replace function core.assert_exit_covered(user_id bigint, verb text, value_leaving numeric default 0)
returns void
language plpgsql stable as $$
declare
  v_exposure record;
  v_assets numeric;
  v_can numeric;
  v_when timestamptz;
begin
  select * into v_exposure from core.reversible_exposure(assert_exit_covered.user_id);
  if v_exposure.exposure = 0 then
    return;
  end if;
  v_assets := core.exit_assets(assert_exit_covered.user_id);
  if v_assets >= v_exposure.exposure then
    return;
  end if;
  -- Refused: the whole operation rolls back. Tell what could leave now and
  -- when all of this could.
  v_can := greatest(round(v_assets + coalesce(value_leaving, 0) - v_exposure.exposure, 2), 0);
  v_when := core.exposure_covered_at(assert_exit_covered.user_id, v_assets);
  raise exception 'Hoje você pode % até % em valor: % de PIX recebidos ainda pode ser devolvido pelo MED (% h após o crédito).%',
    verb, core.format_brl(v_can), core.format_brl(v_exposure.exposure), core.setting('deposit_maturation_hours'),
    case when v_when is not null then ' Este valor fica liberado em ' || core.rails_when(v_when) || '.' else '' end
    using errcode = 'BSL01', column = 'amount',
          hint = 'PIX recebidos podem ser devolvidos pelo MED nas primeiras horas; por isso saídas esperam. Negociar na plataforma já é permitido.';
end
$$;
comment on function core.assert_exit_covered(bigint, text, numeric) is
  'Last step of every exit, after the money moved: BSL01 when what the customer still holds (core.exit_assets, at the bid) is worth less than their reversible exposure; the message says how much could leave now (value_leaving: BRL value of what this exit moves out) and when the rest matures.';

create or replace function core.assert_fair_trade_while_exposed(user_id bigint, side text, crypto text, price numeric)
returns void
language plpgsql stable as $$
declare
  v_index numeric;
begin
  -- A platform-balance trade swaps value with another customer. For a
  -- customer with reversible exposure it is allowed only at a price that
  -- cannot hand value to the other side: buying at most at the index,
  -- selling at least at it (round trips at the edges of any band would).
  if (select e.exposure from core.reversible_exposure(assert_fair_trade_while_exposed.user_id) e) = 0 then
    return;
  end if;
  v_index := (select p.price from core.latest_price(crypto) p where not p.stale);
  if v_index is null or (side = 'buy' and price > v_index) or (side = 'sell' and price < v_index) then
    raise exception 'Com PIX recebidos ainda em maturação, negociações pagas com o saldo da plataforma só podem % % a um preço % à cotação (%).',
      case when side = 'buy' then 'comprar' else 'vender' end, crypto,
      case when side = 'buy' then 'igual ou menor' else 'igual ou maior' end,
      coalesce(core.format_brl(v_index), 'sem cotação agora')
      using errcode = 'BSL01', column = 'brl_amount',
            hint = 'PIX recebidos podem ser devolvidos pelo MED nas primeiras horas; por isso saídas esperam.';
  end if;
end
$$;
comment on function core.assert_fair_trade_while_exposed(bigint, text, text, numeric) is
  'BSL01 when a customer with reversible exposure would trade with another customer through the platform balance at a price that hands value over: buying (side buy) above the fresh index, or selling (side sell) below it; or when there is no fresh index.';

create or replace function core.exit_capacity(user_id bigint)
returns table (exposure numeric, assets numeric, can_leave numeric, next_maturity_at timestamptz,
               covered_at timestamptz, exits_blocked boolean)
language sql stable as $$
  select e.exposure, a.assets, greatest(a.assets - e.exposure, 0), e.next_maturity_at,
         case when e.exposure > 0 then e.last_maturity_at end, u.exits_blocked_at is not null
  from core.users u, core.reversible_exposure(exit_capacity.user_id) e,
       lateral (select core.exit_assets(exit_capacity.user_id) as assets) a
  where u.id = exit_capacity.user_id
$$;
comment on function core.exit_capacity(bigint) is
  'A customer''s exposure, assets at the bid, the BRL value that can leave now, when the next credit and the last one mature, and whether exits are blocked.';

create or replace function core.record_reversible_credit(user_id bigint, source text, pix_charge_id bigint,
                                                         amount numeric, entry_id bigint)
returns void
language plpgsql volatile as $$
declare
  v_matures timestamptz := now() + make_interval(hours => core.setting('deposit_maturation_hours')::int);
begin
  -- (the caller locked the customer's row before posting the credit)
  insert into core.reversible_credits (user_id, source, pix_charge_id, amount, entry_id, matures_at)
  values (record_reversible_credit.user_id, record_reversible_credit.source, record_reversible_credit.pix_charge_id,
          record_reversible_credit.amount, record_reversible_credit.entry_id, v_matures);
  update core.users u set exposure_until = greatest(u.exposure_until, v_matures)
   where u.id = record_reversible_credit.user_id;
end
$$;
comment on function core.record_reversible_credit(bigint, text, bigint, numeric, bigint) is
  'Records a PIX credit that can be clawed back until deposit_maturation_hours from now, and moves the customer''s exposure_until.';

create or replace function core.exposure_until_of(user_id bigint) returns timestamptz
language sql stable as $$
  -- Never earlier than the truth: infinity while exits are blocked, else the
  -- later of the last PIX credit's maturity and the end of an exit pause.
  select case when u.exits_blocked_at is not null then 'infinity'::timestamptz
              else nullif(greatest(coalesce((select max(r.matures_at) from core.reversible_credits r
                                             where r.user_id = u.id), '-infinity'),
                                   coalesce(u.exits_paused_until, '-infinity')), '-infinity') end
  from core.users u where u.id = exposure_until_of.user_id
$$;
comment on function core.exposure_until_of(bigint) is
  'What users.exposure_until must be for a customer (the one place it is recomputed): infinity while exits are blocked, else the later of the last PIX credit''s maturity and the end of an exit pause.';

create or replace function core.lock_customer(user_id bigint) returns void
language sql volatile as $$
  -- Customer row before accounts, as every exit takes them (no deadlock).
  select from core.users u where u.id = lock_customer.user_id for no key update
$$;
comment on function core.lock_customer(bigint) is 'Locks a customer''s row before their accounts (the order every exit uses).';

-- A change of the window moves every credit's maturity with it.
drop trigger if exists settings_maturation on core.settings;
drop function if exists core.tg_settings__maturation();
create or replace function core.tg_settings__exposure_window() returns trigger
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
begin
  update core.reversible_credits r
     set matures_at = r.credited_at + make_interval(hours => new.value::int);
  update core.users u set exposure_until = core.exposure_until_of(u.id)
   where u.exposure_until is not null
      or exists (select from core.reversible_credits r where r.user_id = u.id);
  return null;
end
$$;
comment on function core.tg_settings__exposure_window() is
  'When deposit_maturation_hours changes, moves every PIX credit''s maturity and recomputes users.exposure_until.';
create or replace trigger settings_exposure_window
  after update of value on core.settings
  for each row when (new.name = 'deposit_maturation_hours')
  execute function core.tg_settings__exposure_window();

-- ---------------------------------------------------------------------------
-- Customer: what can leave now
-- ---------------------------------------------------------------------------

drop function if exists api.get_exit_capacity(bigint);
create function api.get_exit_capacity(user_id bigint)
returns table (exposure numeric, assets numeric, can_leave numeric, next_maturity_at timestamptz,
               covered_at timestamptz, exits_blocked boolean, maturation_hours int)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  select c.exposure, c.assets, c.can_leave, c.next_maturity_at, c.covered_at, c.exits_blocked,
         core.setting('deposit_maturation_hours')::int
  from core.exit_capacity(get_exit_capacity.user_id) c
$$;
revoke all on function api.get_exit_capacity(bigint) from public;
grant execute on function api.get_exit_capacity(bigint) to exchange_app;
comment on function api.get_exit_capacity(bigint) is
  'For the wallet and withdrawal pages: the customer''s reversible exposure (PIX still maturing), their assets at the bid, the BRL value that can leave now, when the next and the last PIX credit mature, and whether exits are blocked.';

create function api.get_withdrawable(user_id bigint)
returns table (available numeric, maturing numeric, withdrawable numeric, next_maturity_at timestamptz,
               maturation_hours int)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  select b.balance, c.exposure,
         case when c.exits_blocked then 0 else least(b.balance, c.can_leave) end,
         c.next_maturity_at, core.setting('deposit_maturation_hours')::int
  from core.exit_capacity(get_withdrawable.user_id) c,
       lateral (select coalesce((select a.balance from core.accounts a
                                 where a.id = core.user_account(get_withdrawable.user_id, 'BRL')), 0) as balance) b
$$;
revoke all on function api.get_withdrawable(bigint) from public;
grant execute on function api.get_withdrawable(bigint) to exchange_app;
comment on function api.get_withdrawable(bigint) is
  'For the withdrawal page: available BRL, the reversible exposure (PIX credits still maturing), the BRL that can be withdrawn now under the exit policy, and when the next PIX credit matures.';

-- ---------------------------------------------------------------------------
-- MED: a credited PIX clawed back by the payer's bank
-- ---------------------------------------------------------------------------

create or replace function core.clawback_unbooked_pix(charge core.pix_charges, provider_status text) returns text
language plpgsql volatile as $$
declare
  v_refund core.pix_refunds;
  v_done int := 0;
begin
  -- The PIX was never credited to anyone (a review, a late payment): what
  -- still waits on it must not pay it out a second time.
  if charge.purpose = 'deposit' and charge.status = 'REVIEW' then
    update core.pix_charges c
       set status = 'REJECTED', status_detail = 'devolvido ao pagador pelo banco (' || provider_status || ')', updated_at = now()
     where c.id = charge.id;
    v_done := v_done + 1;
  elsif charge.purpose = 'p2p_trade' then
    -- a REVIEW trade can no longer be released with this PIX (the mark core.pix_charge_clawed_back reads)
    update core.pix_charges c
       set status_detail = 'devolvido ao pagador pelo banco (' || provider_status || ')', updated_at = now()
     where c.id = charge.id;
  end if;
  -- a refund we still owed is no longer ours to make: the payer has the money
  for v_refund in
    select * from core.pix_refunds r
    where r.provider = charge.provider and r.provider_payment_id = charge.provider_payment_id
      and r.status in ('PENDING', 'FAILED')
    for update
  loop
    update core.pix_refunds r
       set status = 'CLAWED_BACK', last_error = 'devolvido ao pagador pelo banco (' || provider_status || ')',
           resolved_at = now()
     where r.id = v_refund.id;
    perform core.post_entry('pix_refund', 'pix-refund-' || v_refund.id, null,
      array[core.system_account('refunds_payable', 'BRL'), core.system_account('clearing_' || v_refund.provider, 'BRL')],
      array[-v_refund.amount, v_refund.amount], 'PIX devolvido ao pagador pelo banco (' || provider_status || ')');
    v_done := v_done + 1;
  end loop;
  return case when v_done > 0 then 'clawed_back_unbooked' else 'not_credited' end;
end
$$;
comment on function core.clawback_unbooked_pix(core.pix_charges, text) is
  'A clawback of a PIX nobody was credited with: a deposit under review is closed REJECTED, a P2P trade under review can no longer be released with it, and a refund still owed to the payer is closed (CLAWED_BACK, its payable reversed).';

create or replace function core.clawback_pix_credit(charge_id bigint, provider_status text, amount numeric default null)
returns text
language plpgsql volatile as $$
declare
  v_charge core.pix_charges;
  v_credit core.reversible_credits;
  v_target numeric;
  v_amount numeric;
  v_available numeric;
  v_recovered numeric;
  v_debt numeric;
  v_entry bigint;
  v_ids bigint[];
  v_amounts numeric[];
  v_w core.withdrawals;
begin
  select * into strict v_charge from core.pix_charges c where c.id = clawback_pix_credit.charge_id;
  -- Who got the money: the depositor, or the seller of a PIX-confirmed trade.
  select * into v_credit from core.reversible_credits r where r.pix_charge_id = v_charge.id order by r.id limit 1
    for update;
  if not found then
    return core.clawback_unbooked_pix(v_charge, provider_status);
  end if;
  -- The provider reports how much went back in all (a partial MED, then a
  -- full chargeback): book what is not booked yet, so a replay books nothing.
  v_target := least(coalesce(clawback_pix_credit.amount, v_credit.amount), v_credit.amount);
  v_amount := v_target - v_credit.reversed;
  if v_amount <= 0 then
    return 'replayed';
  end if;
  perform core.check_amount('BRL', v_amount);

  perform core.lock_customer(v_credit.user_id);
  -- Withdrawals still waiting are stopped first: their money covers the clawback.
  for v_w in
    select * from core.withdrawals w
    where w.user_id = v_credit.user_id and w.status in ('AWAITING_APPROVAL', 'PENDING') for update
  loop
    perform core.release_hold(v_w.hold_id, v_w.reference);
    update core.withdrawals w
       set status = 'CANCELLED', failure_reason = 'cancelado: um PIX recebido foi devolvido ao pagador (MED)',
           resolved_at = now(), updated_at = now()
     where w.id = v_w.id;
  end loop;
  select a.balance into v_available from core.accounts a where a.id = core.user_account(v_credit.user_id, 'BRL');
  v_recovered := least(v_available, v_amount);
  v_debt := v_amount - v_recovered;
  -- The money went back from the provider to the payer: clearing up; the
  -- customer's BRL down as far as it goes, never below zero; the rest is
  -- their debt, held by the receivables account (and in core.pix_clawbacks).
  v_ids := array[core.system_account('clearing_' || v_charge.provider, 'BRL')];
  v_amounts := array[v_amount];
  if v_recovered > 0 then
    v_ids := v_ids || core.user_account(v_credit.user_id, 'BRL');
    v_amounts := v_amounts || -v_recovered;
  end if;
  if v_debt > 0 then
    v_ids := v_ids || core.system_account('receivables', 'BRL');
    v_amounts := v_amounts || -v_debt;
  end if;
  -- (the entry names the customer only when it moves one of their accounts)
  v_entry := core.post_entry('pix_clawback', v_charge.reference, case when v_recovered > 0 then v_credit.user_id end,
    v_ids, v_amounts, 'PIX devolvido ao pagador (' || provider_status || ') ' || v_charge.reference);
  update core.reversible_credits r set reversed = r.reversed + v_amount where r.id = v_credit.id;
  insert into core.pix_clawbacks (pix_charge_id, user_id, provider_status, amount, recovered, debt, entry_id)
  values (v_charge.id, v_credit.user_id, provider_status, v_amount, v_recovered, v_debt, v_entry);
  -- A clawback is a fraud signal: no exit until an admin has looked.
  update core.users u
     set exits_blocked_at = coalesce(u.exits_blocked_at, now()), exposure_until = 'infinity',
         exits_blocked_reason = 'PIX ' || v_charge.reference || ' devolvido ao pagador (' || provider_status || ')' ||
                                case when v_debt > 0 then '; em aberto: ' || core.format_brl(v_debt) else '' end
   where u.id = v_credit.user_id;
  perform core.notify(v_credit.user_id, 'security.pix_clawback',
    'O PIX de ' || core.format_brl(v_amount) || ' (' || v_charge.reference || ') foi devolvido ao pagador pelo banco dele. ' ||
    case when v_debt > 0 then 'Debitamos ' || core.format_brl(v_recovered) || ' do seu saldo; ficam em aberto ' ||
                              core.format_brl(v_debt) || '. '
         else 'O valor foi debitado do seu saldo. ' end ||
    'Saques e envios estão bloqueados até a análise da equipe.', '/wallet');
  return case when v_debt > 0 then 'clawed_back_with_debt' else 'clawed_back' end;
end
$$;
comment on function core.clawback_pix_credit(bigint, text, numeric) is
  'Books a clawback (refunded, charged_back, in_mediation; amount = how much went back in all, default everything) of a PIX credited to a customer (deposit or PIX-confirmed sale): their waiting withdrawals are cancelled, clearing up by what is not booked yet, the customer''s BRL down as far as it goes (never negative), the rest a debt in receivables; the credit stops counting as exposure, exits are blocked and the customer notified. A replay books nothing (replayed). A PIX nobody was credited with: see core.clawback_unbooked_pix.';

create function admin.recover_clawback_debt(admin_id bigint, clawback_id bigint, reason text)
returns numeric
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_claw core.pix_clawbacks;
  v_available numeric;
  v_take numeric;
begin
  perform core.assert_admin(admin_id);
  select * into v_claw from core.pix_clawbacks k where k.id = recover_clawback_debt.clawback_id for update;
  if not found then
    raise exception 'Devolução % não encontrada.', clawback_id using errcode = 'BSN01';
  end if;
  perform core.lock_customer(v_claw.user_id);
  select a.balance into v_available from core.accounts a where a.id = core.user_account(v_claw.user_id, 'BRL');
  v_take := least(v_available, v_claw.debt - v_claw.debt_recovered);
  if v_take <= 0 then
    raise exception 'Nada a recuperar agora: o cliente não tem reais disponíveis ou a dívida já foi quitada.' using errcode = 'BSS01';
  end if;
  perform core.audit(admin_id, 'recover_clawback_debt', v_claw.user_id, reason,
                     jsonb_build_object('clawback_id', v_claw.id, 'amount', v_take));
  perform core.post_entry('pix_clawback_recovery', 'clawback-' || v_claw.id, v_claw.user_id,
    array[core.user_account(v_claw.user_id, 'BRL'), core.system_account('receivables', 'BRL')], array[-v_take, v_take],
    'Recuperação de PIX devolvido (' || btrim(reason) || ')');
  update core.pix_clawbacks k set debt_recovered = k.debt_recovered + v_take where k.id = v_claw.id;
  return v_take;
end
$$;
revoke all on function admin.recover_clawback_debt(bigint, bigint, text) from public;
grant execute on function admin.recover_clawback_debt(bigint, bigint, text) to exchange_app, exchange_admin;
comment on function admin.recover_clawback_debt(bigint, bigint, text) is
  'Back office: takes the customer''s available BRL (up to what is still owed) towards the debt of a clawback, journaled against receivables and audit-logged; returns the amount taken. BSS01 nothing to take.';

create function admin.unblock_exits(admin_id bigint, user_id bigint, reason text, totp_code text default null)
returns void
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_owed numeric;
begin
  perform core.assert_admin(admin_id);
  perform core.assert_admin_step_up(admin_id, totp_code, 'unblock_exits');
  select coalesce(sum(k.debt - k.debt_recovered), 0) into v_owed from core.pix_clawbacks k
  where k.user_id = unblock_exits.user_id;
  if v_owed > 0 then
    raise exception 'O cliente ainda deve % de PIX devolvidos: recupere antes de liberar as saídas.', core.format_brl(v_owed)
      using errcode = 'BSS01';
  end if;
  perform core.audit(admin_id, 'unblock_exits', unblock_exits.user_id, reason);
  update core.users u set exits_blocked_at = null, exits_blocked_reason = null
   where u.id = unblock_exits.user_id and u.exits_blocked_at is not null;
  if not found then
    raise exception 'As saídas deste cliente não estão bloqueadas.' using errcode = 'BSS01';
  end if;
  update core.users u set exposure_until = core.exposure_until_of(u.id) where u.id = unblock_exits.user_id;
  perform core.notify(unblock_exits.user_id, 'security.exits_unblocked', 'Saques e envios foram liberados pela equipe.', '/wallet');
end
$$;
revoke all on function admin.unblock_exits(bigint, bigint, text, text) from public;
grant execute on function admin.unblock_exits(bigint, bigint, text, text) to exchange_app, exchange_admin;
comment on function admin.unblock_exits(bigint, bigint, text, text) is
  'Back office: lets a customer whose exits were blocked after a PIX clawback move money out again, once nothing is owed; through the web with the admin''s fresh TOTP code; audit-logged. BSS01 debt left or not blocked, BSV01 wrong code.';

create function admin.list_clawbacks(admin_id bigint, only_open boolean default false)
returns table (clawback_id bigint, user_id bigint, email text, reference text, end_to_end_id text, provider_status text,
               amount numeric, recovered numeric, debt numeric, debt_recovered numeric, exits_blocked boolean,
               created_at timestamptz)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  select k.id, k.user_id, u.email, c.reference, c.end_to_end_id, k.provider_status, k.amount, k.recovered, k.debt,
         k.debt_recovered, u.exits_blocked_at is not null, k.created_at
  from core.pix_clawbacks k join core.users u on u.id = k.user_id join core.pix_charges c on c.id = k.pix_charge_id,
       core.assert_admin(list_clawbacks.admin_id) a
  where not list_clawbacks.only_open or k.debt > k.debt_recovered or u.exits_blocked_at is not null
  order by k.id desc
$$;
revoke all on function admin.list_clawbacks(bigint, boolean) from public;
grant execute on function admin.list_clawbacks(bigint, boolean) to exchange_app, exchange_admin;
comment on function admin.list_clawbacks(bigint, boolean) is 'Back office: PIX credits clawed back (MED, refunds, chargebacks), what was recovered and what is still owed (only_open: debts or blocked exits left).';

create function admin.trace_pix_funds(admin_id bigint, end_to_end_id text, max_depth int default 5)
returns table (depth int, path text, from_user_id bigint, from_email text, to_user_id bigint, to_email text,
               kind text, entry_id bigint, currency text, amount numeric, at timestamptz)
language plpgsql stable security definer set search_path = pg_catalog, pg_temp as $$
#variable_conflict use_column
declare
  v_charge core.pix_charges;
begin
  perform core.assert_admin(admin_id);
  select * into v_charge from core.pix_charges c where c.end_to_end_id = btrim(trace_pix_funds.end_to_end_id);
  if not found then
    raise exception 'Nenhum PIX recebido com o identificador %.', end_to_end_id using errcode = 'BSN01';
  end if;
  -- MED 2.0: from the customer the PIX was credited to, every movement of
  -- value to another customer (transfers, P2P settlements and releases) or
  -- out of the exchange (withdrawals) after the money arrived, then the same
  -- from each customer reached, hop by hop. BRL hops are capped at what was
  -- traced into the customer; crypto hops are listed as they moved.
  return query
  with recursive credit as (
    select r.user_id, r.credited_at, r.amount, r.entry_id from core.reversible_credits r
    where r.pix_charge_id = v_charge.id order by r.id limit 1
  ), hops (depth, path, from_user, to_user, kind, entry_id, currency, amount, at, traced, visited) as (
    select 0, 'PIX ' || v_charge.reference, null::bigint, c.user_id, 'pix_credit'::text, c.entry_id, 'BRL'::text,
           c.amount, c.credited_at, c.amount, array[c.user_id]
    from credit c
    union all
    select h.depth + 1, h.path || ' → ' || coalesce(tu.email, m.kind), h.to_user, m.to_user, m.kind, m.entry_id,
           m.currency, case when m.currency = 'BRL' then least(m.amount, h.traced) else m.amount end, m.at,
           case when m.currency = 'BRL' then least(m.amount, h.traced) else h.traced end,
           h.visited || coalesce(m.to_user, 0)
    from hops h
    cross join lateral (
      -- what left h.to_user in each entry after the money reached them, and
      -- to whom: another customer's account, or the world (withdrawal)
      select e.id as entry_id, e.kind, e.created_at as at, src.currency, -src.amount as amount,
             (select a2.user_id from core.postings p2 join core.accounts a2 on a2.id = p2.account_id
              where p2.entry_id = e.id and p2.created_at = e.created_at and p2.amount > 0 and a2.user_id is not null and a2.user_id <> h.to_user
              order by p2.amount desc limit 1) as to_user
      from core.entries e
      join lateral (select p.currency, sum(p.amount) as amount from core.postings p
                    join core.accounts a on a.id = p.account_id
                    where p.entry_id = e.id and p.created_at = e.created_at and a.user_id = h.to_user group by p.currency) src on src.amount < 0
      where e.created_at >= h.at and e.id > h.entry_id and h.to_user is not null
        and e.kind in ('transfer', 'p2p_settlement', 'p2p_release', 'withdrawal', 'crypto_withdrawal')
    ) m
    left join core.users tu on tu.id = m.to_user
    where h.depth < least(greatest(trace_pix_funds.max_depth, 1), 10)
      and (m.to_user is not null or m.kind in ('withdrawal', 'crypto_withdrawal'))
      and not (coalesce(m.to_user, 0) = any (h.visited))
  )
  select h.depth, h.path, h.from_user, fu.email, h.to_user, tu.email, h.kind, h.entry_id, h.currency, h.amount, h.at
  from hops h left join core.users fu on fu.id = h.from_user left join core.users tu on tu.id = h.to_user
  order by h.depth, h.at, h.entry_id;
end
$$;
revoke all on function admin.trace_pix_funds(bigint, text, int) from public;
grant execute on function admin.trace_pix_funds(bigint, text, int) to exchange_app, exchange_admin;
comment on function admin.trace_pix_funds(bigint, text, int) is
  'MED 2.0 tracing: the tree of movements a PIX (by end-to-end id) went through inside the exchange — the customer credited, then every transfer, P2P settlement or release to another customer and every withdrawal after it, hop by hop up to max_depth (BRL capped at what was traced in) — so an operator can block along the chain. BSN01 unknown end-to-end id.';

-- ---------------------------------------------------------------------------
-- Reporting
-- ---------------------------------------------------------------------------

create view reporting.reversible_exposure as
select u.id as user_id, u.email, coalesce(e.exposure, 0) as exposure, e.next_maturity_at, e.last_maturity_at,
       u.exits_blocked_at, u.exits_blocked_reason
from core.users u
left join (select r.user_id, sum(r.amount - r.reversed) as exposure, min(r.matures_at) as next_maturity_at,
                  max(r.matures_at) as last_maturity_at
           from core.reversible_credits r where r.matures_at > now() and r.amount > r.reversed
           group by r.user_id) e on e.user_id = u.id
where e.exposure > 0 or u.exits_blocked_at is not null;
comment on view reporting.reversible_exposure is
  'Customers with PIX credits that can still be clawed back (exposure, BRL, and when it matures) or whose exits are blocked after a clawback. Every exit keeps their assets at the bid >= exposure (core.assert_exit_covered).';
grant select on reporting.reversible_exposure to exchange_auditor, exchange_admin;

create view reporting.pix_clawbacks as
select k.id as clawback_id, k.user_id, u.email, c.reference, c.end_to_end_id, k.provider_status, k.amount,
       k.recovered, k.debt, k.debt_recovered, k.debt - k.debt_recovered as owed, k.entry_id, k.created_at
from core.pix_clawbacks k join core.users u on u.id = k.user_id join core.pix_charges c on c.id = k.pix_charge_id;
comment on view reporting.pix_clawbacks is
  'PIX credits clawed back by the payer''s bank (MED), refunded or charged back: amount, what came from the customer''s balance, what is still owed (owed; the receivables account holds the sum). Healthy: owed is small and old ones are recovered.';
grant select on reporting.pix_clawbacks to exchange_auditor, exchange_admin;
