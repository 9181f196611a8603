-- p2p.sql: the P2P marketplace (DESIGN.md §3 and the state machine of §4).
--
-- Offers (api.create_p2p_offer … api.cancel_p2p_offer): a SELL offer holds the
-- maker's crypto (purpose p2p_offer) for its remaining amount plus the maker's
-- fee. Trades (api.open_p2p_trade): the seller's crypto for the trade is held
-- with purpose p2p_trade — split out of the offer's hold for SELL offers, newly
-- held from the taker for BUY offers. Transitions (one function each, lock the
-- trade row, check actor, state and deadline, move escrow):
--
--   OPEN ─api.mark_p2p_trade_paid─▶ PAID ─api.release_p2p_trade─▶ COMPLETED
--   OPEN ─api.cancel_p2p_trade / deadline (admin.expire_p2p_trades, or any action)─▶ CANCELLED
--   PAID ─api.open_p2p_dispute (after the release window)─▶ DISPUTED
--   DISPUTED | REVIEW ─admin.resolve_p2p_dispute─▶ COMPLETED | REFUNDED
--   OPEN (BALANCE) ─settles inside api.open_p2p_trade─▶ COMPLETED
--   OPEN (PIX_CONFIRMED) ─admin.confirm_p2p_pix_payment─▶ COMPLETED | REVIEW (payer CPF ≠ buyer's KYC CPF)
--
-- Called by webapp/p2p (customers, dispute admin pages), webapp/p2p/tasks.py
-- (the deadline and offer-expiry sweeps) and by the BRL rails, which create the
-- PIX charge of a PIX-confirmed trade (admin.attach_p2p_pix_charge) and report
-- its verified payment (admin.confirm_p2p_pix_payment).
--
-- Fees (core.p2p_fees) are in crypto: the seller's fee is held on top of the
-- amount, the buyer's is deducted from what they receive; both go to
-- core.fee_account at release. Fees are rounded down to the currency's scale.

-- ---------------------------------------------------------------------------
-- Internal helpers (security invoker; called from the definer functions below)
-- ---------------------------------------------------------------------------

create or replace function core.p2p_ref(trade_id bigint) returns text
language sql immutable as $$
  select 'P2P-' || trade_id
$$;
comment on function core.p2p_ref(bigint) is 'The reference of a P2P trade in the journal, holds and messages (P2P-<id>).';

create or replace function core.p2p_when(at timestamptz) returns text
language sql stable as $$
  select to_char(at at time zone 'America/Sao_Paulo', 'DD/MM/YYYY HH24:MI')
$$;
comment on function core.p2p_when(timestamptz) is 'A time as a customer in Brazil reads it, for messages.';

create or replace function core.p2p_amount(amount numeric) returns text
language sql immutable as $$
  select replace(trim_scale(amount)::text, '.', ',')
$$;
comment on function core.p2p_amount(numeric) is 'A crypto amount the Brazilian way (0,002), for messages.';

create or replace function core.p2p_scale(currency text) returns int
language sql stable as $$
  select c.scale from core.currencies c where c.code = p2p_scale.currency
$$;
comment on function core.p2p_scale(text) is 'The scale (decimal places) of a currency.';

create or replace function core.p2p_fee(amount numeric, percent numeric, currency text) returns numeric
language sql stable as $$
  -- Rounded down: the sum of the fees of the pieces of an offer never
  -- exceeds the fee of the whole, so an offer's hold always covers them.
  select trunc(amount * percent / 100, core.p2p_scale(currency))
$$;
comment on function core.p2p_fee(numeric, numeric, text) is 'A fee of `percent` on an amount, rounded down to the currency''s scale.';

create or replace function core.user_cpf(user_id bigint) returns text
language plpgsql stable as $$
declare
  v_cpf text;
begin
  -- core.kyc_profiles belongs to the KYC domain (migration 0006); looked up
  -- dynamically so this file applies with or without it.
  if to_regclass('core.kyc_profiles') is null then
    return null;
  end if;
  execute 'select k.cpf from core.kyc_profiles k where k.user_id = $1' into v_cpf using user_cpf.user_id;
  return nullif(regexp_replace(coalesce(v_cpf, ''), '\D', '', 'g'), '');
end
$$;
comment on function core.user_cpf(bigint) is
  'The CPF (11 digits) a customer verified in KYC (core.kyc_profiles), or NULL when none (or when the KYC table does not exist yet).';

create or replace function core.p2p_offer_price(offer core.p2p_offers) returns numeric
language plpgsql stable as $$
begin
  if offer.price_type = 'fixed' then
    return offer.fixed_price;
  end if;
  -- BSP01 when the index is stale or missing: a floating offer cannot be taken.
  return round(core.fresh_price(offer.crypto) * (1 + offer.premium_percent / 100), 2);
end
$$;
comment on function core.p2p_offer_price(core.p2p_offers) is
  'The price of an offer now (BRL per unit): fixed, or the Binance index × (1 + premium). BSP01 when a floating offer''s index is stale or missing.';

create or replace function core.p2p_listed_price(offer core.p2p_offers) returns numeric
language sql stable as $$
  select case when offer.price_type = 'fixed' then offer.fixed_price
              else (select round(p.price * (1 + offer.premium_percent / 100), 2)
                    from core.latest_price(offer.crypto) p where not p.stale) end
$$;
comment on function core.p2p_listed_price(core.p2p_offers) is
  'The price of an offer for the book: like core.p2p_offer_price but NULL (instead of an error) when the index is stale.';

create or replace function core.p2p_used_today(user_id bigint) returns numeric
language sql stable as $$
  select coalesce(sum(t.brl_amount), 0) from core.p2p_trades t
  where (t.buyer_id = p2p_used_today.user_id or t.seller_id = p2p_used_today.user_id)
    and t.created_at >= (date_trunc('day', now() at time zone 'America/Sao_Paulo') at time zone 'America/Sao_Paulo')
    and t.status not in ('CANCELLED', 'REFUNDED')
$$;
comment on function core.p2p_used_today(bigint) is
  'BRL a customer traded in P2P today (Brazil time), as buyer or seller, cancelled and refunded trades excluded: the daily_p2p_brl limit.';

create or replace function core.p2p_user_stats(user_id bigint)
returns table (completed_trades bigint, faulted_trades bigint, completion_rate numeric,
               avg_release_seconds numeric, positive_ratings bigint, negative_ratings bigint)
language sql stable as $$
  select s.completed, s.faulted,
         case when s.completed + s.faulted > 0 then round(100.0 * s.completed / (s.completed + s.faulted), 1) end,
         s.avg_release,
         (select count(*) from core.p2p_ratings r where r.rated_id = p2p_user_stats.user_id and r.positive),
         (select count(*) from core.p2p_ratings r where r.rated_id = p2p_user_stats.user_id and not r.positive)
  from (
    select count(*) filter (where t.status = 'COMPLETED') as completed,
           -- a cancellation or refund counts only against the party at fault
           count(*) filter (where t.status in ('CANCELLED', 'REFUNDED') and t.fault_user_id = p2p_user_stats.user_id)
             as faulted,
           round(avg(extract(epoch from t.completed_at - t.paid_at))
                   filter (where t.status = 'COMPLETED' and t.seller_id = p2p_user_stats.user_id
                           and t.paid_at is not null and t.resolution is null)) as avg_release
    from core.p2p_trades t
    where t.buyer_id = p2p_user_stats.user_id or t.seller_id = p2p_user_stats.user_id
  ) s
$$;
comment on function core.p2p_user_stats(bigint) is
  'Reputation of a P2P customer: completed trades, trades cancelled or refunded by their fault, completion rate (%), average seconds from paid to released as seller, positive and negative ratings.';

create or replace function core.p2p_blocked(a bigint, b bigint) returns boolean
language sql stable as $$
  select exists (select from core.p2p_blocks k
                 where (k.user_id = p2p_blocked.a and k.blocked_user_id = p2p_blocked.b)
                    or (k.user_id = p2p_blocked.b and k.blocked_user_id = p2p_blocked.a))
$$;
comment on function core.p2p_blocked(bigint, bigint) is 'Whether either of two customers blocked the other.';

create or replace function core.p2p_message(trade_id bigint, body text) returns void
language sql volatile as $$
  insert into core.p2p_messages (trade_id, user_id, body) values (p2p_message.trade_id, null, p2p_message.body)
$$;
comment on function core.p2p_message(bigint, text) is 'Adds a system message to a trade''s chat (one per transition).';

create or replace function core.p2p_notify(trade core.p2p_trades, recipient_id bigint, kind text, message text)
returns void
language sql volatile as $$
  select core.notify(recipient_id, kind, core.p2p_ref(trade.id) || ': ' || message, '/p2p/trades/' || trade.id)
$$;
comment on function core.p2p_notify(core.p2p_trades, bigint, text, text) is 'Notifies one party of a trade, linking to the trade page.';

create or replace function core.p2p_other(trade core.p2p_trades, user_id bigint) returns bigint
language sql immutable as $$
  select case when p2p_other.user_id = trade.buyer_id then trade.seller_id else trade.buyer_id end
$$;
comment on function core.p2p_other(core.p2p_trades, bigint) is 'The counterparty of a user in a trade.';

create or replace function core.p2p_lock_trade(trade_id bigint, user_id bigint) returns core.p2p_trades
language plpgsql volatile as $$
declare
  v_trade core.p2p_trades;
begin
  select * into v_trade from core.p2p_trades t where t.id = p2p_lock_trade.trade_id for update;
  -- Not found and "not yours" look the same: a trade's existence is private.
  if not found or (p2p_lock_trade.user_id is not null
                   and p2p_lock_trade.user_id not in (v_trade.buyer_id, v_trade.seller_id)) then
    raise exception 'Negociação não encontrada.' using errcode = 'BSN01';
  end if;
  return v_trade;
end
$$;
comment on function core.p2p_lock_trade(bigint, bigint) is
  'Locks a trade row (FOR UPDATE) for a transition; BSN01 when it does not exist or the user is not one of its parties (NULL user: the system).';

create or replace function core.p2p_state_error(trade core.p2p_trades) returns text
language sql stable as $$
  select case trade.status
    when 'OPEN' then 'A negociação ainda aguarda o pagamento do comprador.'
    when 'PAID' then 'O comprador já marcou o pagamento; aguardando a liberação do vendedor.'
    when 'COMPLETED' then 'Esta negociação já foi concluída.'
    when 'CANCELLED' then 'Esta negociação foi cancelada.'
    when 'DISPUTED' then 'Esta negociação está em disputa; um administrador vai decidir.'
    when 'REFUNDED' then 'Esta negociação foi encerrada com a devolução da cripto ao vendedor.'
    when 'REVIEW' then 'Este pagamento está em análise pela equipe.'
  end
$$;
comment on function core.p2p_state_error(core.p2p_trades) is 'Why an operation is not possible in the trade''s current state (BSS01 message).';

-- Puts an offer's hold at `amount` (releasing the old one): used when a
-- cancelled trade returns its crypto to the offer and when an offer is edited.
create or replace function core.p2p_rehold_offer(offer_id bigint, amount numeric) returns bigint
language plpgsql volatile as $$
declare
  v_offer core.p2p_offers;
  v_hold bigint;
begin
  select * into strict v_offer from core.p2p_offers o where o.id = p2p_rehold_offer.offer_id;
  if v_offer.hold_id is not null then
    perform core.release_hold(v_offer.hold_id);
  end if;
  if amount > 0 then
    v_hold := core.place_hold(v_offer.user_id, v_offer.crypto, amount, 'p2p_offer', 'P2P-OFFER-' || v_offer.id);
  end if;
  update core.p2p_offers o set hold_id = v_hold, updated_at = now() where o.id = v_offer.id;
  return v_hold;
end
$$;
comment on function core.p2p_rehold_offer(bigint, numeric) is
  'Replaces a SELL offer''s hold by one of `amount` (releases the old hold, places the new one); BSF01 when the maker''s available crypto is short.';

-- OPEN → CANCELLED: the escrow goes back (to the offer while it is still
-- open, else to the seller) and the offer gets its amount back.
create or replace function core.p2p_cancel(trade_id bigint, reason text) returns void
language plpgsql volatile as $$
declare
  v_trade core.p2p_trades;
  v_offer core.p2p_offers;
  v_trade_hold core.holds;
  v_offer_hold numeric := 0;
  v_returns boolean;
begin
  select * into strict v_trade from core.p2p_trades t where t.id = p2p_cancel.trade_id;
  if v_trade.status <> 'OPEN' then
    raise exception 'p2p_cancel: trade % is %', v_trade.id, v_trade.status using errcode = 'BSX01';
  end if;
  -- Lock order everywhere: trade, then offer, then holds and accounts.
  select * into strict v_offer from core.p2p_offers o where o.id = v_trade.offer_id for update;
  select * into strict v_trade_hold from core.holds h where h.id = v_trade.hold_id;
  v_returns := v_offer.status in ('active', 'paused', 'filled') and v_offer.expires_at > now();

  if v_returns and v_offer.side = 'SELL' then
    -- Merge the trade's escrow back into the offer's hold.
    if v_offer.hold_id is not null then
      select h.amount into v_offer_hold from core.holds h where h.id = v_offer.hold_id;
    end if;
    perform core.release_hold(v_trade.hold_id, core.p2p_ref(v_trade.id));
    perform core.p2p_rehold_offer(v_offer.id, v_offer_hold + v_trade_hold.amount);
  else
    perform core.release_hold(v_trade.hold_id, core.p2p_ref(v_trade.id));
  end if;
  if v_returns then
    update core.p2p_offers o
       set remaining_amount = o.remaining_amount + v_trade.crypto_amount,
           status = case when o.status = 'filled' then 'active' else o.status end,
           closed_at = case when o.status = 'filled' then null else o.closed_at end,
           updated_at = now()
     where o.id = v_offer.id;
  end if;

  update core.p2p_trades t
     set status = 'CANCELLED', cancelled_at = now(), cancel_reason = p2p_cancel.reason,
         fault_user_id = v_trade.buyer_id, updated_at = now()
   where t.id = v_trade.id;
  if reason = 'deadline' then
    perform core.p2p_message(v_trade.id, 'Prazo de pagamento encerrado sem pagamento: negociação cancelada e cripto devolvida ao vendedor.');
    perform core.p2p_notify(v_trade, v_trade.buyer_id, 'p2p.cancelled', 'o prazo de pagamento terminou e a negociação foi cancelada.');
    perform core.p2p_notify(v_trade, v_trade.seller_id, 'p2p.cancelled', 'o comprador não pagou no prazo; a negociação foi cancelada e sua cripto devolvida.');
  else
    perform core.p2p_message(v_trade.id, 'O comprador cancelou a negociação; cripto devolvida ao vendedor.');
    perform core.p2p_notify(v_trade, v_trade.seller_id, 'p2p.cancelled', 'o comprador cancelou a negociação; sua cripto foi devolvida.');
  end if;
end
$$;
comment on function core.p2p_cancel(bigint, text) is
  'OPEN → CANCELLED (reason buyer_cancelled or deadline; the buyer is at fault): returns the escrow to the offer when it is still open, else to the seller, restores the offer''s remaining amount, writes the chat message and notifications. The caller has locked the trade.';

-- → COMPLETED: the escrow to the buyer minus fees, fees to the fee account;
-- and, when the BRL moves inside the platform, that too — in one transaction.
create or replace function core.p2p_complete(trade_id bigint, brl_from text default null, brl_amount numeric default null)
returns void
language plpgsql volatile as $$
declare
  v_trade core.p2p_trades;
  v_release bigint;
  v_brl bigint;
  v_fee numeric;
  v_ids bigint[];
  v_amounts numeric[];
begin
  select * into strict v_trade from core.p2p_trades t where t.id = p2p_complete.trade_id;
  if brl_from = 'buyer' then
    -- Platform balance: the buyer's BRL to the seller first, so a short
    -- balance refuses the whole trade before anything else moves.
    begin
      v_brl := core.post_entry('p2p_settlement', core.p2p_ref(v_trade.id), v_trade.buyer_id,
        array[core.user_account(v_trade.buyer_id, 'BRL'), core.user_account(v_trade.seller_id, 'BRL')],
        array[-v_trade.brl_amount, v_trade.brl_amount], 'P2P: pagamento com saldo da plataforma');
    exception when sqlstate 'BSF01' then
      raise exception 'Saldo em reais do comprador insuficiente: a negociação precisa de %.', core.format_brl(v_trade.brl_amount)
        using errcode = 'BSF01', column = 'brl_amount';
    end;
  elsif brl_from is not null then
    -- A verified PIX arrived at the provider: the clearing account (money at
    -- the provider) pays the seller's BRL balance.
    -- That PIX can be clawed back from the seller: reversible exposure.
    perform core.lock_customer(v_trade.seller_id);
    v_brl := core.post_entry('p2p_pix_settlement', core.p2p_ref(v_trade.id), v_trade.seller_id,
      array[core.system_account(brl_from, 'BRL'), core.user_account(v_trade.seller_id, 'BRL')],
      array[-brl_amount, brl_amount], 'P2P: pagamento PIX confirmado');
    perform core.record_reversible_credit(v_trade.seller_id, 'p2p_pix_sale',
      (select c.id from core.pix_charges c where c.reference = 'p2p-' || v_trade.id), brl_amount, v_brl);
  end if;

  v_fee := v_trade.seller_fee + v_trade.buyer_fee;
  v_ids := array[core.user_account(v_trade.buyer_id, v_trade.crypto)];
  v_amounts := array[v_trade.crypto_amount - v_trade.buyer_fee];
  if v_fee > 0 then
    v_ids := v_ids || core.fee_account(v_trade.crypto, core.p2p_ref(v_trade.id));
    v_amounts := v_amounts || v_fee;
  end if;
  v_release := core.resolve_hold(v_trade.hold_id, 'p2p_release', core.p2p_ref(v_trade.id), v_ids, v_amounts,
                                 'P2P: cripto liberada ao comprador');
  update core.p2p_trades t
     set status = 'COMPLETED', completed_at = now(), release_entry_id = v_release,
         brl_entry_id = coalesce(v_brl, t.brl_entry_id), updated_at = now()
   where t.id = v_trade.id;
end
$$;
comment on function core.p2p_complete(bigint, text, numeric) is
  'Completes a trade: captures the escrow to the buyer (minus the buyer''s fee) and both fees to the fee account; brl_from ''buyer'' also moves the BRL from the buyer''s to the seller''s balance (BSF01 when short), a clearing account purpose credits the seller from it (PIX-confirmed). The caller has locked the trade.';

create or replace function core.p2p_assert_price_sane(crypto text, price numeric, field text default 'fixed_price')
returns void
language plpgsql stable as $$
declare
  v_index numeric := (select p.price from core.latest_price(p2p_assert_price_sane.crypto) p);
  v_max numeric := core.setting('p2p_fixed_price_max_deviation_percent')::numeric;
begin
  -- A fixed price far from the market is a mistake or a way to move value
  -- between two accounts; either way it does not belong in the book.
  if v_index is null then
    raise exception 'Ainda não temos cotação de %: tente em instantes.', crypto using errcode = 'BSP01', column = field;
  end if;
  if price < v_index * (1 - v_max / 100) or price > v_index * (1 + v_max / 100) then
    raise exception 'O preço fixo deve ficar a até % por cento da cotação atual (% por %): entre % e %.',
      trim_scale(v_max), core.format_brl(v_index), crypto, core.format_brl(round(v_index * (1 - v_max / 100), 2)),
      core.format_brl(round(v_index * (1 + v_max / 100), 2)) using errcode = 'BSV01', column = field;
  end if;
end
$$;
comment on function core.p2p_assert_price_sane(text, numeric, text) is
  'BSV01 when a fixed P2P price is more than p2p_fixed_price_max_deviation_percent away from the latest Binance index (BSP01 when there is no index yet).';

create or replace function core.p2p_check_offer(
  user_id bigint, side text, crypto text, price_type text, fixed_price numeric, premium_percent numeric,
  amount numeric, min_brl numeric, max_brl numeric, payment_methods text[], payment_window_minutes int,
  terms text, payment_details text, min_counterparty_kyc int, min_counterparty_trades int, expires_in_days int)
returns table (methods text[], window_minutes int, expires_at timestamptz)
language plpgsql stable as $$
declare
  v_max_premium numeric := core.setting('p2p_max_premium_percent')::numeric;
  v_methods text[];
  v_window int;
  v_days int := coalesce(expires_in_days, core.setting('p2p_offer_max_days')::int);
begin
  if side is null or side not in ('BUY', 'SELL') then
    raise exception 'Escolha se a oferta é de compra ou de venda.' using errcode = 'BSV01', column = 'side';
  end if;
  if crypto is null or crypto not in ('BTC', 'ETH', 'USDT') then
    raise exception 'Escolha a cripto: BTC, ETH ou USDT.' using errcode = 'BSV01', column = 'crypto';
  end if;
  if price_type = 'fixed' then
    perform core.check_amount('BRL', fixed_price, 'fixed_price');
    perform core.p2p_assert_price_sane(crypto, fixed_price, 'fixed_price');
    if premium_percent is not null then
      raise exception 'Preço fixo não tem ágio.' using errcode = 'BSV01', column = 'premium_percent';
    end if;
  elsif price_type = 'floating' then
    if premium_percent is null or premium_percent < -v_max_premium or premium_percent > v_max_premium
       or premium_percent <> round(premium_percent, 2) then
      -- (no percent sign in the message: the templates' gettext would read it as a placeholder)
      raise exception 'O ágio deve ficar entre -% e +% por cento, com até duas casas.',
        trim_scale(v_max_premium), trim_scale(v_max_premium)
        using errcode = 'BSV01', column = 'premium_percent';
    end if;
    if fixed_price is not null then
      raise exception 'Preço flutuante não tem preço fixo.' using errcode = 'BSV01', column = 'fixed_price';
    end if;
  else
    raise exception 'Escolha o tipo de preço: fixo ou flutuante.' using errcode = 'BSV01', column = 'price_type';
  end if;
  perform core.check_amount(crypto, amount, 'total_amount');
  perform core.check_amount('BRL', min_brl, 'min_brl');
  perform core.check_amount('BRL', max_brl, 'max_brl');
  if max_brl < min_brl then
    raise exception 'O máximo por negociação deve ser maior ou igual ao mínimo.' using errcode = 'BSV01', column = 'max_brl';
  end if;
  begin
    perform core.enforce_trade_limit(user_id, max_brl);
  exception when sqlstate 'BSL01' then
    raise exception 'O máximo por negociação passa do seu limite por operação.' using errcode = 'BSL01', column = 'max_brl';
  end;

  select array_agg(distinct m order by m) into v_methods from unnest(payment_methods) m where m is not null;
  if v_methods is null then
    raise exception 'Escolha ao menos uma forma de pagamento.' using errcode = 'BSV01', column = 'payment_methods';
  end if;
  if not v_methods <@ array['PIX', 'TED', 'BALANCE', 'PIX_CONFIRMED'] then
    raise exception 'Forma de pagamento desconhecida.' using errcode = 'BSV01', column = 'payment_methods';
  end if;
  if side = 'SELL' and v_methods && array['PIX', 'TED'] and length(btrim(coalesce(payment_details, ''))) < 5 then
    raise exception 'Informe seus dados para receber PIX/TED (chave PIX, banco, agência e conta).'
      using errcode = 'BSV01', column = 'payment_details';
  end if;
  if length(coalesce(payment_details, '')) > 500 then
    raise exception 'Dados de pagamento: até 500 caracteres.' using errcode = 'BSV01', column = 'payment_details';
  end if;
  if length(coalesce(terms, '')) > 2000 then
    raise exception 'Termos: até 2000 caracteres.' using errcode = 'BSV01', column = 'terms';
  end if;
  v_window := coalesce(payment_window_minutes,
                       (select max(core.setting('p2p_window_' || lower(m))::int) from unnest(v_methods) m));
  if v_window not between 15 and 120 then
    raise exception 'O prazo de pagamento deve ficar entre 15 e 120 minutos.' using errcode = 'BSV01', column = 'payment_window_minutes';
  end if;
  if coalesce(min_counterparty_kyc, 0) not between 0 and 2 then
    raise exception 'Nível mínimo de verificação inválido.' using errcode = 'BSV01', column = 'min_counterparty_kyc';
  end if;
  if coalesce(min_counterparty_trades, 0) not between 0 and 100000 then
    raise exception 'Número mínimo de negociações inválido.' using errcode = 'BSV01', column = 'min_counterparty_trades';
  end if;
  if v_days not between 1 and core.setting('p2p_offer_max_days')::int then
    raise exception 'A oferta pode ficar publicada de 1 a % dias.', core.setting('p2p_offer_max_days')
      using errcode = 'BSV01', column = 'expires_in_days';
  end if;
  return query select v_methods, v_window, now() + make_interval(days => v_days);
end
$$;
comment on function core.p2p_check_offer(bigint, text, text, text, numeric, numeric, numeric, numeric, numeric, text[], int, text, text, int, int, int) is
  'Validates the fields of an offer (BSV01/BSV02/BSV03/BSL01 on the field at fault); returns the normalized payment methods, the payment window (default per method) and the expiry.';

-- ---------------------------------------------------------------------------
-- Offers
-- ---------------------------------------------------------------------------

create function api.create_p2p_offer(
  user_id bigint, side text, crypto text, price_type text, total_amount numeric, min_brl numeric, max_brl numeric,
  payment_methods text[], idempotency_key text, fixed_price numeric default null, premium_percent numeric default null,
  payment_window_minutes int default null, terms text default '', payment_details text default null,
  min_counterparty_kyc int default 0, min_counterparty_trades int default 0, expires_in_days int default null,
  totp_code text default null)
returns table (offer_id bigint, replayed boolean)
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
#variable_conflict use_column
declare
  v_user core.users;
  v_check record;
  v_id bigint := nextval(pg_get_serial_sequence('core.p2p_offers', 'id'));
  v_prior jsonb;
  v_pct numeric;
  v_hold bigint;
begin
  v_user := core.assert_active_user(create_p2p_offer.user_id);
  if v_user.role <> 'customer' then
    raise exception 'Apenas clientes negociam no P2P.' using errcode = 'BSA01';
  end if;
  perform core.assert_email_verified(v_user.id);
  select * into v_check from core.p2p_check_offer(create_p2p_offer.user_id, create_p2p_offer.side, create_p2p_offer.crypto,
    create_p2p_offer.price_type, create_p2p_offer.fixed_price, create_p2p_offer.premium_percent,
    create_p2p_offer.total_amount, create_p2p_offer.min_brl, create_p2p_offer.max_brl, create_p2p_offer.payment_methods,
    create_p2p_offer.payment_window_minutes, create_p2p_offer.terms, create_p2p_offer.payment_details,
    create_p2p_offer.min_counterparty_kyc, create_p2p_offer.min_counterparty_trades, create_p2p_offer.expires_in_days);
  v_prior := core.claim_idempotency(create_p2p_offer.user_id, create_p2p_offer.idempotency_key, 'p2p_create_offer',
    md5(concat_ws('|', create_p2p_offer.side, create_p2p_offer.crypto, create_p2p_offer.price_type,
                  trim_scale(create_p2p_offer.fixed_price), trim_scale(create_p2p_offer.premium_percent),
                  trim_scale(create_p2p_offer.total_amount), trim_scale(create_p2p_offer.min_brl),
                  trim_scale(create_p2p_offer.max_brl), array_to_string(v_check.methods, ','))),
    jsonb_build_object('offer_id', v_id));
  if v_prior is not null then
    return query select (v_prior ->> 'offer_id')::bigint, true;
    return;
  end if;

  if v_check.methods && array['BALANCE', 'PIX_CONFIRMED'] then
    -- value can leave this maker automatically when a taker opens a trade
    perform core.assert_step_up(create_p2p_offer.user_id, create_p2p_offer.totp_code, 'p2p_offer');
  end if;
  v_pct := (select f.maker_percent from core.p2p_fees f where f.crypto = create_p2p_offer.crypto);
  if create_p2p_offer.side = 'SELL' then
    -- The maker's crypto for the whole amount plus the maker fee, held now.
    v_hold := core.place_hold(create_p2p_offer.user_id, create_p2p_offer.crypto,
      create_p2p_offer.total_amount + core.p2p_fee(create_p2p_offer.total_amount, v_pct, create_p2p_offer.crypto),
      'p2p_offer', 'P2P-OFFER-' || v_id);
  end if;
  insert into core.p2p_offers (id, user_id, side, crypto, price_type, fixed_price, premium_percent, total_amount,
    remaining_amount, min_brl, max_brl, payment_methods, payment_window_minutes, terms, payment_details,
    min_counterparty_kyc, min_counterparty_trades, maker_fee_percent, hold_id, expires_at)
  overriding system value
  values (v_id, create_p2p_offer.user_id, create_p2p_offer.side, create_p2p_offer.crypto, create_p2p_offer.price_type,
    create_p2p_offer.fixed_price, create_p2p_offer.premium_percent, create_p2p_offer.total_amount,
    create_p2p_offer.total_amount, create_p2p_offer.min_brl, create_p2p_offer.max_brl, v_check.methods,
    v_check.window_minutes, coalesce(btrim(create_p2p_offer.terms), ''), nullif(btrim(create_p2p_offer.payment_details), ''),
    coalesce(create_p2p_offer.min_counterparty_kyc, 0), coalesce(create_p2p_offer.min_counterparty_trades, 0),
    v_pct, v_hold, v_check.expires_at);
  return query select v_id, false;
end
$$;
revoke all on function api.create_p2p_offer(bigint, text, text, text, numeric, numeric, numeric, text[], text, numeric, numeric, int, text, text, int, int, int, text) from public;
grant execute on function api.create_p2p_offer(bigint, text, text, text, numeric, numeric, numeric, text[], text, numeric, numeric, int, text, text, int, int, int, text) to exchange_app;
comment on function api.create_p2p_offer(bigint, text, text, text, numeric, numeric, numeric, text[], text, numeric, numeric, int, text, text, int, int, int, text) is
  'Posts a P2P offer: side BUY|SELL, crypto BTC|ETH|USDT, price fixed (fixed_price, BRL per unit) or floating (premium_percent over the Binance index, within ±p2p_max_premium_percent), total amount in crypto, min/max per trade in BRL, payment methods among PIX, TED, BALANCE, PIX_CONFIRMED, payment window 15–120 min (default per method), terms, seller payment details (required for SELL with PIX/TED), minimum counterparty KYC level and completed trades, expiry in days. A SELL offer holds the maker''s crypto (amount + maker fee) now (BSF01 when short). A fixed price must be within p2p_fixed_price_max_deviation_percent of the index. With BALANCE or PIX_CONFIRMED (value leaves without the maker acting again) a customer with 2FA confirms with totp_code. Idempotent per key.';

create function api.update_p2p_offer(
  user_id bigint, offer_id bigint, price_type text, remaining_amount numeric, min_brl numeric, max_brl numeric,
  payment_methods text[], fixed_price numeric default null, premium_percent numeric default null,
  payment_window_minutes int default null, terms text default '', payment_details text default null,
  min_counterparty_kyc int default 0, min_counterparty_trades int default 0, expires_in_days int default null,
  totp_code text default null)
returns void
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
#variable_conflict use_column
declare
  v_offer core.p2p_offers;
  v_check record;
  v_pct numeric;
begin
  perform core.assert_active_user(update_p2p_offer.user_id);
  select * into v_offer from core.p2p_offers o where o.id = update_p2p_offer.offer_id for update;
  if not found or v_offer.user_id <> update_p2p_offer.user_id then
    raise exception 'Oferta não encontrada.' using errcode = 'BSN01';
  end if;
  if v_offer.status not in ('active', 'paused', 'filled') then
    raise exception 'Esta oferta está encerrada e não pode mais ser editada.' using errcode = 'BSS01';
  end if;
  select * into v_check from core.p2p_check_offer(update_p2p_offer.user_id, v_offer.side, v_offer.crypto,
    update_p2p_offer.price_type, update_p2p_offer.fixed_price, update_p2p_offer.premium_percent,
    update_p2p_offer.remaining_amount, update_p2p_offer.min_brl, update_p2p_offer.max_brl,
    update_p2p_offer.payment_methods, update_p2p_offer.payment_window_minutes, update_p2p_offer.terms,
    update_p2p_offer.payment_details, update_p2p_offer.min_counterparty_kyc, update_p2p_offer.min_counterparty_trades,
    update_p2p_offer.expires_in_days);
  if v_check.methods && array['BALANCE', 'PIX_CONFIRMED'] then
    perform core.assert_step_up(update_p2p_offer.user_id, update_p2p_offer.totp_code, 'p2p_offer');
  end if;
  v_pct := (select f.maker_percent from core.p2p_fees f where f.crypto = v_offer.crypto);
  if v_offer.side = 'SELL' then
    -- Release the old hold and hold the new amount (plus the fee at today's
    -- schedule); BSF01 — and nothing changed — when the crypto is short.
    perform core.p2p_rehold_offer(v_offer.id,
      update_p2p_offer.remaining_amount + core.p2p_fee(update_p2p_offer.remaining_amount, v_pct, v_offer.crypto));
  end if;
  update core.p2p_offers o
     set price_type = update_p2p_offer.price_type, fixed_price = update_p2p_offer.fixed_price,
         premium_percent = update_p2p_offer.premium_percent,
         total_amount = o.total_amount - o.remaining_amount + update_p2p_offer.remaining_amount,
         remaining_amount = update_p2p_offer.remaining_amount,
         min_brl = update_p2p_offer.min_brl, max_brl = update_p2p_offer.max_brl, payment_methods = v_check.methods,
         payment_window_minutes = v_check.window_minutes, terms = coalesce(btrim(update_p2p_offer.terms), ''),
         payment_details = nullif(btrim(update_p2p_offer.payment_details), ''),
         min_counterparty_kyc = coalesce(update_p2p_offer.min_counterparty_kyc, 0),
         min_counterparty_trades = coalesce(update_p2p_offer.min_counterparty_trades, 0),
         maker_fee_percent = v_pct, expires_at = v_check.expires_at,
         status = case when o.status = 'filled' then 'active' else o.status end, closed_at = null, updated_at = now()
   where o.id = v_offer.id;
end
$$;
revoke all on function api.update_p2p_offer(bigint, bigint, text, numeric, numeric, numeric, text[], numeric, numeric, int, text, text, int, int, int, text) from public;
grant execute on function api.update_p2p_offer(bigint, bigint, text, numeric, numeric, numeric, text[], numeric, numeric, int, text, text, int, int, int, text) to exchange_app;
comment on function api.update_p2p_offer(bigint, bigint, text, numeric, numeric, numeric, text[], numeric, numeric, int, text, text, int, int, int, text) is
  'Edits one of the customer''s open offers (same fields as api.create_p2p_offer; remaining_amount is the new amount still on offer; trades in progress keep their own escrow). For SELL offers the hold is released and placed again for the new amount (BSF01: nothing changes). BSN01 not yours, BSS01 closed.';

create function api.set_p2p_offer_status(user_id bigint, offer_id bigint, action text)
returns text
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
#variable_conflict use_column
declare
  v_offer core.p2p_offers;
begin
  perform core.assert_active_user(set_p2p_offer_status.user_id);
  select * into v_offer from core.p2p_offers o where o.id = set_p2p_offer_status.offer_id for update;
  if not found or v_offer.user_id <> set_p2p_offer_status.user_id then
    raise exception 'Oferta não encontrada.' using errcode = 'BSN01';
  end if;
  if action = 'pause' then
    if v_offer.status <> 'active' then
      raise exception 'Só uma oferta ativa pode ser pausada.' using errcode = 'BSS01';
    end if;
    -- The hold stays: a paused offer is hidden from the book, not unfunded.
    update core.p2p_offers o set status = 'paused', updated_at = now() where o.id = v_offer.id;
    return 'paused';
  elsif action = 'resume' then
    if v_offer.status <> 'paused' then
      raise exception 'Só uma oferta pausada pode ser retomada.' using errcode = 'BSS01';
    end if;
    if v_offer.expires_at <= now() then
      raise exception 'Esta oferta expirou; publique uma nova.' using errcode = 'BSS01';
    end if;
    update core.p2p_offers o set status = 'active', updated_at = now() where o.id = v_offer.id;
    return 'active';
  elsif action = 'cancel' then
    if v_offer.status not in ('active', 'paused', 'filled') then
      raise exception 'Esta oferta já está encerrada.' using errcode = 'BSS01';
    end if;
    if v_offer.hold_id is not null then
      perform core.release_hold(v_offer.hold_id);
    end if;
    update core.p2p_offers o set status = 'cancelled', hold_id = null, closed_at = now(), updated_at = now()
     where o.id = v_offer.id;
    return 'cancelled';
  end if;
  raise exception 'Ação desconhecida: %.', action using errcode = 'BSV01', column = 'action';
end
$$;
revoke all on function api.set_p2p_offer_status(bigint, bigint, text) from public;
grant execute on function api.set_p2p_offer_status(bigint, bigint, text) to exchange_app;
comment on function api.set_p2p_offer_status(bigint, bigint, text) is
  'pause (hidden from the book, crypto stays held), resume, or cancel (releases the offer''s hold; trades in progress continue) one of the customer''s offers; returns the new status. BSN01 not yours, BSS01 wrong state.';

create function api.list_p2p_offers(
  user_id bigint, side text, crypto text default null, payment_method text default null,
  amount_brl numeric default null, max_rows int default 50)
returns table (offer_id bigint, maker_id bigint, maker_name text, is_mine boolean, side text, crypto text,
               price_type text, premium_percent numeric, price numeric, remaining_amount numeric,
               available_brl numeric, min_brl numeric, max_brl numeric, payment_methods text[],
               payment_window_minutes int, min_counterparty_kyc int, min_counterparty_trades int, terms text,
               expires_at timestamptz, completed_trades bigint, completion_rate numeric, avg_release_seconds numeric,
               positive_ratings bigint, negative_ratings bigint)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  -- Bounded however many offers are active (migration 0018): the best max_rows
  -- fixed-price offers come in price order from p2p_offers_book_fixed_idx, the
  -- best of each crypto's floating offers in premium order from
  -- p2p_offers_book_floating_idx (a floating price grows with its premium);
  -- each scan stops after max_rows offers that pass the filters, and only
  -- those candidates get their maker's reputation.
  with k as (select least(greatest(list_p2p_offers.max_rows, 1), 200) as n),
  candidates as (
    (select o.*, o.fixed_price as price
     from core.p2p_offers o
     where o.status = 'active' and o.price_type = 'fixed' and o.side = list_p2p_offers.side
       and o.expires_at > now() and o.remaining_amount > 0
       and (list_p2p_offers.crypto is null or o.crypto = list_p2p_offers.crypto)
       and (list_p2p_offers.payment_method is null or list_p2p_offers.payment_method = any (o.payment_methods))
       and (list_p2p_offers.amount_brl is null
            or (list_p2p_offers.amount_brl between o.min_brl and o.max_brl
                and list_p2p_offers.amount_brl <= o.remaining_amount * o.fixed_price))
       and exists (select from core.users u where u.id = o.user_id and u.status = 'active')
       and not core.p2p_blocked(list_p2p_offers.user_id, o.user_id)
     order by case when o.side = 'SELL' then o.fixed_price else -o.fixed_price end, o.id
     limit (select n from k))
    union all
    (select f.*
     from (values ('BTC'), ('ETH'), ('USDT')) c (code)
     -- the index price once per crypto (NULL when stale: those offers are listed last, without a price)
     left join lateral (select p.price from core.latest_price(c.code) p where not p.stale) ip on true
     cross join lateral (
       select o.*, round(ip.price * (1 + o.premium_percent / 100), 2) as price
       from core.p2p_offers o
       where o.status = 'active' and o.price_type = 'floating' and o.side = list_p2p_offers.side
         and o.crypto = c.code
         and o.expires_at > now() and o.remaining_amount > 0
         and (list_p2p_offers.payment_method is null or list_p2p_offers.payment_method = any (o.payment_methods))
         and (list_p2p_offers.amount_brl is null
              or (list_p2p_offers.amount_brl between o.min_brl and o.max_brl
                  and list_p2p_offers.amount_brl <= o.remaining_amount * round(ip.price * (1 + o.premium_percent / 100), 2)))
         and exists (select from core.users u where u.id = o.user_id and u.status = 'active')
         and not core.p2p_blocked(list_p2p_offers.user_id, o.user_id)
       order by case when o.side = 'SELL' then o.premium_percent else -o.premium_percent end, o.id
       limit (select n from k)) f
     where list_p2p_offers.crypto is null or c.code = list_p2p_offers.crypto)
  )
  select o.id, o.user_id, u.display_name, o.user_id = list_p2p_offers.user_id, o.side, o.crypto,
         o.price_type, o.premium_percent, o.price, o.remaining_amount,
         round(o.remaining_amount * o.price, 2), o.min_brl, least(o.max_brl, round(o.remaining_amount * o.price, 2)),
         o.payment_methods, o.payment_window_minutes, o.min_counterparty_kyc, o.min_counterparty_trades, o.terms,
         o.expires_at, s.completed_trades, s.completion_rate, s.avg_release_seconds, s.positive_ratings, s.negative_ratings
  from candidates o
  join core.users u on u.id = o.user_id
  cross join lateral core.p2p_user_stats(o.user_id) s
  -- Best first: the lowest price to buy from a seller, the highest to sell to a buyer.
  order by o.price is null,
           case when list_p2p_offers.side = 'SELL' then o.price end asc,
           case when list_p2p_offers.side = 'BUY' then o.price end desc,
           o.id
  limit (select n from k)
$$;
revoke all on function api.list_p2p_offers(bigint, text, text, text, numeric, int) from public;
grant execute on function api.list_p2p_offers(bigint, text, text, text, numeric, int) to exchange_app;
comment on function api.list_p2p_offers(bigint, text, text, text, numeric, int) is
  'The offer book seen by a customer: active offers of one side (SELL = offers to buy from, BUY = offers to sell to), filtered by crypto, payment method and a BRL amount, best price first, with the maker''s completed trades, completion rate, average release time and ratings. Offers of customers blocked either way are hidden; a floating offer whose index is stale has price NULL (listed last).';

create function api.list_my_p2p_offers(user_id bigint)
returns table (offer_id bigint, side text, crypto text, price_type text, fixed_price numeric, premium_percent numeric,
               price numeric, total_amount numeric, remaining_amount numeric, held numeric, min_brl numeric,
               max_brl numeric, payment_methods text[], payment_window_minutes int, status text,
               expires_at timestamptz, created_at timestamptz, open_trades bigint)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  select o.id, o.side, o.crypto, o.price_type, o.fixed_price, o.premium_percent, core.p2p_listed_price(o),
         o.total_amount, o.remaining_amount, h.amount, o.min_brl, o.max_brl, o.payment_methods,
         o.payment_window_minutes, o.status, o.expires_at, o.created_at,
         (select count(*) from core.p2p_trades t where t.offer_id = o.id and t.status in ('OPEN', 'PAID', 'DISPUTED', 'REVIEW'))
  from core.p2p_offers o
  left join core.holds h on h.id = o.hold_id and h.status = 'open'
  where o.user_id = list_my_p2p_offers.user_id
  order by o.status not in ('active', 'paused'), o.id desc
  limit 200
$$;
revoke all on function api.list_my_p2p_offers(bigint) from public;
grant execute on function api.list_my_p2p_offers(bigint) to exchange_app;
comment on function api.list_my_p2p_offers(bigint) is 'A customer''s own offers (open ones first), with the crypto held for each and its trades in progress.';

create function api.get_p2p_offer(user_id bigint, offer_id bigint)
returns table (id bigint, maker_id bigint, maker_name text, is_mine boolean, side text, crypto text,
               price_type text, fixed_price numeric, premium_percent numeric, price numeric, total_amount numeric,
               remaining_amount numeric, min_brl numeric, max_brl numeric, payment_methods text[],
               payment_window_minutes int, terms text, payment_details text, min_counterparty_kyc int,
               min_counterparty_trades int, status text, expires_at timestamptz, days_left int, blocked boolean,
               completed_trades bigint, completion_rate numeric, avg_release_seconds numeric,
               positive_ratings bigint, negative_ratings bigint)
language plpgsql stable security definer set search_path = pg_catalog, pg_temp as $$
#variable_conflict use_column
begin
  return query
  select o.id, o.user_id, u.display_name, o.user_id = get_p2p_offer.user_id, o.side, o.crypto, o.price_type,
         o.fixed_price, o.premium_percent, core.p2p_listed_price(o), o.total_amount, o.remaining_amount,
         o.min_brl, o.max_brl, o.payment_methods, o.payment_window_minutes, o.terms,
         -- the seller's bank details are shown only inside a trade, or to the maker
         case when o.user_id = get_p2p_offer.user_id then o.payment_details end,
         o.min_counterparty_kyc, o.min_counterparty_trades, o.status, o.expires_at,
         greatest(1, ceil(extract(epoch from o.expires_at - now()) / 86400))::int,
         core.p2p_blocked(get_p2p_offer.user_id, o.user_id),
         s.completed_trades, s.completion_rate, s.avg_release_seconds, s.positive_ratings, s.negative_ratings
  from core.p2p_offers o
  join core.users u on u.id = o.user_id
  cross join lateral core.p2p_user_stats(o.user_id) s
  where o.id = get_p2p_offer.offer_id
    and (o.user_id = get_p2p_offer.user_id or (o.status in ('active', 'paused', 'filled')
                                               and not core.p2p_blocked(get_p2p_offer.user_id, o.user_id)));
  if not found then
    raise exception 'Oferta não encontrada.' using errcode = 'BSN01';
  end if;
end
$$;
revoke all on function api.get_p2p_offer(bigint, bigint) from public;
grant execute on function api.get_p2p_offer(bigint, bigint) to exchange_app;
comment on function api.get_p2p_offer(bigint, bigint) is
  'One offer as a customer sees it (the maker sees their payment details and closed offers too). BSN01 when missing, closed or blocked either way.';

create function admin.expire_p2p_offers(max_rows int default 500)
returns int
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_offer core.p2p_offers;
  v_count int := 0;
begin
  for v_offer in
    select * from core.p2p_offers o
    where o.status in ('active', 'paused') and o.expires_at <= now()
    order by o.expires_at, o.id
    limit max_rows
    for update skip locked
  loop
    if v_offer.hold_id is not null then
      perform core.release_hold(v_offer.hold_id);
    end if;
    update core.p2p_offers o set status = 'expired', hold_id = null, closed_at = now(), updated_at = now()
     where o.id = v_offer.id;
    perform core.notify(v_offer.user_id, 'p2p.offer_expired',
      'Sua oferta P2P #' || v_offer.id || ' expirou' ||
      case when v_offer.side = 'SELL' then '; a cripto reservada voltou ao seu saldo.' else '.' end,
      '/p2p/offers/mine');
    v_count := v_count + 1;
  end loop;
  return v_count;
end
$$;
revoke all on function admin.expire_p2p_offers(int) from public;
grant execute on function admin.expire_p2p_offers(int) to exchange_worker, exchange_admin;
comment on function admin.expire_p2p_offers(int) is
  'Sweeper (worker job): expires active and paused offers past expires_at, releasing a SELL offer''s hold, and notifies the maker. Returns how many. Safe to run concurrently (SKIP LOCKED).';

-- ---------------------------------------------------------------------------
-- Trades
-- ---------------------------------------------------------------------------

create function api.open_p2p_trade(
  user_id bigint, offer_id bigint, payment_method text, idempotency_key text,
  brl_amount numeric default null, crypto_amount numeric default null, payment_details text default null,
  totp_code text default null)
returns table (trade_id bigint, status text, replayed boolean)
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
#variable_conflict use_column
declare
  v_taker core.users;
  v_maker core.users;
  v_offer core.p2p_offers;
  v_id bigint := nextval(pg_get_serial_sequence('core.p2p_trades', 'id'));
  v_prior jsonb;
  v_price numeric;
  v_scale int;
  v_crypto numeric;
  v_brl numeric;
  v_buyer bigint;
  v_seller bigint;
  v_taker_pct numeric;
  v_seller_fee numeric;
  v_buyer_fee numeric;
  v_details text;
  v_hold bigint;
  v_rest bigint;
  v_offer_hold numeric;
  v_trade core.p2p_trades;
begin
  v_taker := core.assert_active_user(open_p2p_trade.user_id);
  if v_taker.role <> 'customer' then
    raise exception 'Apenas clientes negociam no P2P.' using errcode = 'BSA01';
  end if;
  perform core.assert_email_verified(v_taker.id);
  v_prior := core.claim_idempotency(open_p2p_trade.user_id, open_p2p_trade.idempotency_key, 'p2p_open_trade',
    md5(concat_ws('|', open_p2p_trade.offer_id, open_p2p_trade.payment_method, trim_scale(open_p2p_trade.brl_amount),
                  trim_scale(open_p2p_trade.crypto_amount))),
    jsonb_build_object('trade_id', v_id));
  if v_prior is not null then
    return query select t.id, t.status, true from core.p2p_trades t where t.id = (v_prior ->> 'trade_id')::bigint;
    return;
  end if;

  -- Two takers racing for the same offer queue here; the second sees what
  -- the first left.
  select * into v_offer from core.p2p_offers o where o.id = open_p2p_trade.offer_id for update;
  if not found then
    raise exception 'Oferta não encontrada.' using errcode = 'BSN01';
  end if;
  if v_offer.user_id = open_p2p_trade.user_id then
    raise exception 'Esta oferta é sua: não é possível negociar com você mesmo.' using errcode = 'BSV01';
  end if;
  if core.p2p_blocked(open_p2p_trade.user_id, v_offer.user_id) then
    raise exception 'Você não pode negociar com este anunciante.' using errcode = 'BSA01';
  end if;
  if v_offer.status = 'filled' or (v_offer.status = 'active' and v_offer.remaining_amount = 0) then
    raise exception 'Esta oferta já foi totalmente negociada.' using errcode = 'BSS01';
  elsif v_offer.status = 'paused' then
    raise exception 'Esta oferta está pausada pelo anunciante.' using errcode = 'BSS01';
  elsif v_offer.status <> 'active' or v_offer.expires_at <= now() then
    raise exception 'Esta oferta não está mais disponível.' using errcode = 'BSS01';
  end if;
  select * into v_maker from core.users u where u.id = v_offer.user_id;
  if v_maker.status <> 'active' then
    raise exception 'O anunciante está indisponível no momento.' using errcode = 'BSS01';
  end if;
  if open_p2p_trade.payment_method is null or not (open_p2p_trade.payment_method = any (v_offer.payment_methods)) then
    raise exception 'Esta oferta não aceita essa forma de pagamento.' using errcode = 'BSV01', column = 'payment_method';
  end if;
  if v_taker.kyc_level < v_offer.min_counterparty_kyc then
    raise exception 'Esta oferta exige verificação de nível % ou mais (o seu é %).', v_offer.min_counterparty_kyc, v_taker.kyc_level
      using errcode = 'BSA01', hint = 'Complete sua verificação em /kyc.';
  end if;
  if v_offer.min_counterparty_trades > 0
     and (select s.completed_trades from core.p2p_user_stats(open_p2p_trade.user_id) s) < v_offer.min_counterparty_trades then
    raise exception 'Esta oferta exige ao menos % negociações concluídas.', v_offer.min_counterparty_trades
      using errcode = 'BSA01';
  end if;

  v_price := core.p2p_offer_price(v_offer);  -- BSP01 when a floating price's index is stale
  if v_offer.price_type = 'fixed' then
    begin
      perform core.p2p_assert_price_sane(v_offer.crypto, v_price, 'brl_amount');
    exception when sqlstate 'BSV01' then
      raise exception 'O preço desta oferta está longe demais da cotação atual: ela não pode ser negociada agora.'
        using errcode = 'BSS01';
    end;
  end if;
  v_scale := core.p2p_scale(v_offer.crypto);
  if open_p2p_trade.crypto_amount is not null then
    perform core.check_amount(v_offer.crypto, open_p2p_trade.crypto_amount, 'crypto_amount');
    v_crypto := open_p2p_trade.crypto_amount;
    v_brl := round(v_crypto * v_price, 2);
  elsif open_p2p_trade.brl_amount is not null then
    perform core.check_amount('BRL', open_p2p_trade.brl_amount, 'brl_amount');
    v_brl := open_p2p_trade.brl_amount;
    v_crypto := trunc(v_brl / v_price, v_scale);
    if v_crypto > v_offer.remaining_amount and round(v_offer.remaining_amount * v_price, 2) = v_brl then
      v_crypto := v_offer.remaining_amount;  -- "all that is left", typed in BRL
    end if;
  else
    raise exception 'Informe quanto quer negociar.' using errcode = 'BSV01', column = 'brl_amount';
  end if;
  if v_crypto <= 0 or v_brl <= 0 then
    raise exception 'Valor pequeno demais para esta oferta.' using errcode = 'BSV03', column = 'brl_amount';
  end if;
  if v_crypto > v_offer.remaining_amount then
    raise exception 'Esta oferta tem apenas % % disponíveis (%).', core.p2p_amount(v_offer.remaining_amount), v_offer.crypto,
      core.format_brl(round(v_offer.remaining_amount * v_price, 2))
      using errcode = 'BSV01', column = 'brl_amount';
  end if;
  if v_brl > v_offer.max_brl then
    raise exception 'O máximo por negociação nesta oferta é %.', core.format_brl(v_offer.max_brl)
      using errcode = 'BSV01', column = 'brl_amount';
  end if;
  -- Below the minimum only to take everything that is left.
  if v_brl < v_offer.min_brl and v_crypto < v_offer.remaining_amount then
    raise exception 'O mínimo por negociação nesta oferta é %.', core.format_brl(v_offer.min_brl)
      using errcode = 'BSV01', column = 'brl_amount';
  end if;

  if v_offer.side = 'SELL' then
    v_buyer := open_p2p_trade.user_id;
    v_seller := v_offer.user_id;
  else
    v_buyer := v_offer.user_id;
    v_seller := open_p2p_trade.user_id;
  end if;
  if open_p2p_trade.payment_method in ('PIX', 'TED') then
    v_details := case when v_offer.side = 'SELL' then v_offer.payment_details
                      else nullif(btrim(open_p2p_trade.payment_details), '') end;
    if v_details is null or length(v_details) < 5 then
      raise exception 'Informe seus dados para receber o pagamento (chave PIX ou conta para TED).'
        using errcode = 'BSV01', column = 'payment_details';
    end if;
    if length(v_details) > 500 then
      raise exception 'Dados de pagamento: até 500 caracteres.' using errcode = 'BSV01', column = 'payment_details';
    end if;
  end if;

  -- Limits of both parties (per trade and per day, KYC level). Both
  -- customers are locked first (in id order), so two trades opened at the
  -- same instant cannot both pass the daily limit. One customer per
  -- statement (DESIGN.md §7: each lock stays on one shard under Citus).
  perform from core.users u where u.id = least(open_p2p_trade.user_id, v_offer.user_id) for no key update;
  perform from core.users u where u.id = greatest(open_p2p_trade.user_id, v_offer.user_id) for no key update;
  -- The seller's crypto leaves into escrow (an exit), and with BALANCE the
  -- buyer's BRL pays another customer: each is refused while their exits are
  -- blocked, and the taker confirms with 2FA when it is their value leaving.
  perform core.lock_for_exit(v_seller);
  if open_p2p_trade.payment_method = 'BALANCE' then
    perform core.lock_for_exit(v_buyer);
  end if;
  if v_seller = open_p2p_trade.user_id or open_p2p_trade.payment_method = 'BALANCE' then
    perform core.assert_step_up(open_p2p_trade.user_id, open_p2p_trade.totp_code, 'p2p_open_trade');
  end if;
  perform core.enforce_trade_limit(open_p2p_trade.user_id, v_brl);
  perform core.enforce_daily_limit(open_p2p_trade.user_id, 'daily_p2p_brl',
                                   core.p2p_used_today(open_p2p_trade.user_id), v_brl);
  begin
    perform core.enforce_trade_limit(v_offer.user_id, v_brl);
    perform core.enforce_daily_limit(v_offer.user_id, 'daily_p2p_brl', core.p2p_used_today(v_offer.user_id), v_brl);
  exception when sqlstate 'BSL01' then
    raise exception 'Este valor passa do limite do anunciante; tente um valor menor.'
      using errcode = 'BSL01', column = 'brl_amount';
  end;

  v_taker_pct := (select f.taker_percent from core.p2p_fees f where f.crypto = v_offer.crypto);
  if v_offer.side = 'SELL' then
    v_seller_fee := core.p2p_fee(v_crypto, v_offer.maker_fee_percent, v_offer.crypto);
    v_buyer_fee := core.p2p_fee(v_crypto, v_taker_pct, v_offer.crypto);
  else
    v_seller_fee := core.p2p_fee(v_crypto, v_taker_pct, v_offer.crypto);
    v_buyer_fee := core.p2p_fee(v_crypto, v_offer.maker_fee_percent, v_offer.crypto);
  end if;

  if v_offer.side = 'SELL' then
    -- The offer's hold always covers the remaining amount (held >= remaining);
    -- rounding on returns of cancelled trades may leave it a unit short of
    -- remaining + fees, so the maker's fee is capped by the margin held.
    select h.amount into v_offer_hold from core.holds h where h.id = v_offer.hold_id;
    v_seller_fee := least(v_seller_fee, v_offer_hold - v_offer.remaining_amount);
  end if;

  -- Escrow the seller's crypto for this trade.
  if v_offer.side = 'SELL' then
    select s.taken_hold_id, s.remainder_hold_id into v_hold, v_rest
    from core.split_hold(v_offer.hold_id, v_crypto + v_seller_fee, 'p2p_trade', core.p2p_ref(v_id)) s;
    if v_crypto = v_offer.remaining_amount and v_rest is not null then
      perform core.release_hold(v_rest);  -- rounding dust of the fees
      v_rest := null;
    end if;
  else
    begin
      v_hold := core.place_hold(v_seller, v_offer.crypto, v_crypto + v_seller_fee, 'p2p_trade', core.p2p_ref(v_id));
    exception when sqlstate 'BSF01' then
      raise exception 'Saldo insuficiente: você precisa de % % disponíveis para vender (taxa incluída).',
        core.p2p_amount(v_crypto + v_seller_fee), v_offer.crypto using errcode = 'BSF01', column = 'brl_amount';
    end;
    v_rest := null;
  end if;
  insert into core.p2p_trades (id, offer_id, maker_id, taker_id, buyer_id, seller_id, crypto, crypto_amount, price,
    brl_amount, seller_fee, buyer_fee, payment_method, payment_details, payment_deadline, hold_id)
  values (v_id, v_offer.id, v_offer.user_id, open_p2p_trade.user_id, v_buyer, v_seller, v_offer.crypto, v_crypto,
    v_price, v_brl, v_seller_fee, v_buyer_fee, open_p2p_trade.payment_method, v_details,
    now() + make_interval(mins => v_offer.payment_window_minutes), v_hold)
  returning * into v_trade;

  update core.p2p_offers o
     set remaining_amount = o.remaining_amount - v_crypto,
         hold_id = case when o.side = 'SELL' then v_rest else null end,
         status = case when o.remaining_amount - v_crypto = 0 then 'filled' else o.status end,
         closed_at = case when o.remaining_amount - v_crypto = 0 then now() end,
         updated_at = now()
   where o.id = v_offer.id;
  select * into v_trade from core.p2p_trades t where t.id = v_id;

  perform core.p2p_message(v_id, format('Negociação aberta: %s %s por %s (preço %s por %s). Pagamento: %s.',
    core.p2p_amount(v_crypto), v_offer.crypto, core.format_brl(v_brl), core.format_brl(v_price), v_offer.crypto,
    case open_p2p_trade.payment_method when 'BALANCE' then 'saldo da plataforma'
      when 'PIX_CONFIRMED' then 'PIX confirmado automaticamente' else open_p2p_trade.payment_method end));
  perform core.p2p_notify(v_trade, v_offer.user_id, 'p2p.trade_opened',
    format('%s abriu uma negociação na sua oferta: %s %s por %s.', v_taker.display_name, core.p2p_amount(v_crypto),
           v_offer.crypto, core.format_brl(v_brl)));

  if open_p2p_trade.payment_method = 'BALANCE' then
    -- Settles at once: BRL and crypto move together, or nothing does. A
    -- trade, not an exit, as long as it is priced like the market: a side
    -- whose PIX credits are still maturing may not trade off-market (that
    -- would hand value to the other side).
    perform core.assert_fair_trade_while_exposed(v_buyer, 'buy', v_offer.crypto, v_price);
    perform core.assert_fair_trade_while_exposed(v_seller, 'sell', v_offer.crypto, v_price);
    perform core.p2p_complete(v_id, 'buyer');
    perform core.p2p_message(v_id, 'Pago com o saldo em reais da plataforma e cripto liberada ao comprador: negociação concluída.');
    perform core.p2p_notify(v_trade, v_offer.user_id, 'p2p.completed', 'negociação liquidada com saldo da plataforma.');
  else
    perform core.assert_exit_covered(v_seller, 'vender', (v_crypto + v_seller_fee) * core.bid_price(v_offer.crypto));
    perform core.p2p_message(v_id, format('Prazo para pagamento: até %s.', core.p2p_when(v_trade.payment_deadline)));
  end if;
  return query select t.id, t.status, false from core.p2p_trades t where t.id = v_id;
end
$$;
revoke all on function api.open_p2p_trade(bigint, bigint, text, text, numeric, numeric, text, text) from public;
grant execute on function api.open_p2p_trade(bigint, bigint, text, text, numeric, numeric, text, text) to exchange_app;
comment on function api.open_p2p_trade(bigint, bigint, text, text, numeric, numeric, text, text) is
  'Opens a trade on an offer for brl_amount (or crypto_amount) with one of its payment methods, at the offer''s price now. Locks the offer row: two takers racing for the last amount → one wins, the other gets BSS01 (filled) or BSV01 (only X left). Checks blocks, KYC level and completed trades required, min/max, both parties'' per-trade and daily P2P limits; escrows the seller''s crypto (split from the offer''s hold for SELL offers, held from the taker for BUY offers, BSF01). payment_details: the taker-seller''s bank data (BUY offers, PIX/TED). BALANCE settles at once (status COMPLETED) or not at all (BSF01). Escrow and a BALANCE payment are exits: refused while the party''s exits are blocked (BSA02) or when what they keep would not cover their PIX exposure (BSL01); a taker whose value leaves confirms with totp_code when 2FA is on. A fixed price too far from the index is refused (BSS01). Idempotent per key.';

-- Every transition below returns (status, message). An action on an
-- OPEN trade past its payment deadline cancels it (and commits that) instead
-- of doing what was asked: the returned status says so.

create or replace function core.p2p_cancel_if_late(trade core.p2p_trades) returns boolean
language plpgsql volatile as $$
begin
  -- The deadline is enforced at the moment anyone acts, not only by the
  -- sweeper: an OPEN trade past it is cancelled (escrow back) instead.
  -- The caller returns (not raises) so the cancellation is committed.
  if trade.status = 'OPEN' and trade.payment_deadline <= now() then
    perform core.p2p_cancel(trade.id, 'deadline');
    return true;
  end if;
  return false;
end
$$;
comment on function core.p2p_cancel_if_late(core.p2p_trades) is
  'Cancels an OPEN trade whose payment deadline has passed (true), for every transition to call first.';

create or replace function core.p2p_late_message() returns text
language sql immutable as $$
  select 'O prazo de pagamento terminou: a negociação foi cancelada.'::text
$$;
comment on function core.p2p_late_message() is 'What a party is told when acting on a trade past its payment deadline.';

create function api.mark_p2p_trade_paid(
  user_id bigint, trade_id bigint, proof_stored_name text default null, proof_original_name text default null,
  proof_content_type text default null, proof_size_bytes int default null, proof_sha256 text default null)
returns table (status text, message text)
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
#variable_conflict use_column
declare
  v_trade core.p2p_trades;
begin
  perform core.assert_active_user(mark_p2p_trade_paid.user_id);
  v_trade := core.p2p_lock_trade(mark_p2p_trade_paid.trade_id, mark_p2p_trade_paid.user_id);
  if core.p2p_cancel_if_late(v_trade) then
    return query select 'CANCELLED'::text, core.p2p_late_message();
    return;
  end if;
  if mark_p2p_trade_paid.user_id <> v_trade.buyer_id then
    raise exception 'Só o comprador marca o pagamento.' using errcode = 'BSA01';
  end if;
  if v_trade.status <> 'OPEN' then
    raise exception '%', core.p2p_state_error(v_trade) using errcode = 'BSS01';
  end if;
  if v_trade.payment_method not in ('PIX', 'TED') then
    raise exception 'Nesta forma de pagamento a confirmação é automática.' using errcode = 'BSS01';
  end if;
  update core.p2p_trades t set status = 'PAID', paid_at = now(), updated_at = now() where t.id = v_trade.id;
  if mark_p2p_trade_paid.proof_stored_name is not null then
    insert into core.p2p_proofs (trade_id, user_id, purpose, stored_name, original_name, content_type, size_bytes, sha256)
    values (v_trade.id, mark_p2p_trade_paid.user_id, 'payment', mark_p2p_trade_paid.proof_stored_name,
            left(coalesce(nullif(btrim(mark_p2p_trade_paid.proof_original_name), ''), 'comprovante'), 200),
            mark_p2p_trade_paid.proof_content_type, mark_p2p_trade_paid.proof_size_bytes, mark_p2p_trade_paid.proof_sha256);
  end if;
  perform core.p2p_message(v_trade.id, 'O comprador marcou o pagamento como feito' ||
    case when mark_p2p_trade_paid.proof_stored_name is not null then ' e enviou um comprovante' else '' end ||
    '. Vendedor: confira o recebimento e libere a cripto.');
  perform core.p2p_notify(v_trade, v_trade.seller_id, 'p2p.paid',
    'o comprador marcou ' || core.format_brl(v_trade.brl_amount) || ' como pago. Confira e libere a cripto.');
  return query select 'PAID'::text, 'Pagamento marcado. Aguarde o vendedor liberar a cripto.'::text;
end
$$;
revoke all on function api.mark_p2p_trade_paid(bigint, bigint, text, text, text, int, text) from public;
grant execute on function api.mark_p2p_trade_paid(bigint, bigint, text, text, text, int, text) to exchange_app;
comment on function api.mark_p2p_trade_paid(bigint, bigint, text, text, text, int, text) is
  'OPEN → PAID by the buyer (PIX/TED), optionally with a proof file''s metadata (stored by the app under a random name). Past the deadline the trade is cancelled instead (status CANCELLED returned). BSN01 not a party, BSA01 not the buyer, BSS01 wrong state or automatic method.';

create function api.cancel_p2p_trade(user_id bigint, trade_id bigint)
returns table (status text, message text)
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
#variable_conflict use_column
declare
  v_trade core.p2p_trades;
begin
  v_trade := core.p2p_lock_trade(cancel_p2p_trade.trade_id, cancel_p2p_trade.user_id);
  if core.p2p_cancel_if_late(v_trade) then
    return query select 'CANCELLED'::text, core.p2p_late_message();
    return;
  end if;
  if cancel_p2p_trade.user_id <> v_trade.buyer_id then
    raise exception 'Só o comprador pode cancelar. Se o pagamento não chegar, aguarde o prazo ou abra uma disputa.'
      using errcode = 'BSA01';
  end if;
  if v_trade.status <> 'OPEN' then
    raise exception '%', case when v_trade.status = 'PAID'
      then 'O pagamento já foi marcado: não é mais possível cancelar. Se houver um problema, abra uma disputa.'
      else core.p2p_state_error(v_trade) end using errcode = 'BSS01';
  end if;
  perform core.p2p_cancel(v_trade.id, 'buyer_cancelled');
  return query select 'CANCELLED'::text, 'Negociação cancelada.'::text;
end
$$;
revoke all on function api.cancel_p2p_trade(bigint, bigint) from public;
grant execute on function api.cancel_p2p_trade(bigint, bigint) to exchange_app;
comment on function api.cancel_p2p_trade(bigint, bigint) is
  'OPEN → CANCELLED by the buyer (counts against the buyer): the escrow goes back to the offer (or the seller). BSA01 the seller (who can never cancel), BSS01 once paid or closed.';

create function api.release_p2p_trade(user_id bigint, trade_id bigint, totp_code text default null)
returns table (status text, message text)
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
#variable_conflict use_column
declare
  v_trade core.p2p_trades;
begin
  perform core.assert_active_user(release_p2p_trade.user_id);
  v_trade := core.p2p_lock_trade(release_p2p_trade.trade_id, release_p2p_trade.user_id);
  if core.p2p_cancel_if_late(v_trade) then
    return query select 'CANCELLED'::text, core.p2p_late_message();
    return;
  end if;
  if release_p2p_trade.user_id <> v_trade.seller_id then
    raise exception 'Só o vendedor libera a cripto.' using errcode = 'BSA01';
  end if;
  if v_trade.status <> 'PAID' then
    raise exception '%', core.p2p_state_error(v_trade) using errcode = 'BSS01';
  end if;
  -- The seller's crypto leaves: an exit.
  perform core.lock_for_exit(v_trade.seller_id);
  perform core.assert_step_up(v_trade.seller_id, release_p2p_trade.totp_code, 'p2p_release');
  perform core.p2p_complete(v_trade.id);
  perform core.assert_exit_covered(v_trade.seller_id, 'liberar', 0);
  perform core.p2p_message(v_trade.id, 'O vendedor confirmou o recebimento e liberou a cripto: negociação concluída.');
  perform core.p2p_notify(v_trade, v_trade.buyer_id, 'p2p.released',
    'o vendedor liberou ' || core.p2p_amount(v_trade.crypto_amount - v_trade.buyer_fee) || ' ' || v_trade.crypto || ' para você.');
  return query select 'COMPLETED'::text, 'Cripto liberada. Negociação concluída.'::text;
end
$$;
revoke all on function api.release_p2p_trade(bigint, bigint, text) from public;
grant execute on function api.release_p2p_trade(bigint, bigint, text) to exchange_app;
comment on function api.release_p2p_trade(bigint, bigint, text) is
  'PAID → COMPLETED by the seller: the escrow to the buyer minus fees, fees to the fee account, exactly once (the trade row is locked). An exit: TOTP step-up (totp_code) when 2FA is on, refused while exits are blocked (BSA02) or when the seller''s PIX exposure would be uncovered (BSL01). BSA01 not the seller, BSS01 not PAID.';

create function api.open_p2p_dispute(user_id bigint, trade_id bigint, reason text)
returns table (status text, message text)
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
#variable_conflict use_column
declare
  v_trade core.p2p_trades;
  v_from timestamptz;
begin
  v_trade := core.p2p_lock_trade(open_p2p_dispute.trade_id, open_p2p_dispute.user_id);
  if core.p2p_cancel_if_late(v_trade) then
    return query select 'CANCELLED'::text, core.p2p_late_message();
    return;
  end if;
  if v_trade.status <> 'PAID' then
    raise exception '%', case when v_trade.status = 'OPEN'
      then 'Só é possível abrir disputa depois que o comprador marcar o pagamento.'
      else core.p2p_state_error(v_trade) end using errcode = 'BSS01';
  end if;
  v_from := v_trade.paid_at + make_interval(mins => core.setting('p2p_release_window_minutes')::int);
  if now() < v_from then
    raise exception 'Aguarde o prazo de liberação: você poderá abrir uma disputa a partir de %.', core.p2p_when(v_from)
      using errcode = 'BSS01';
  end if;
  if reason is null or length(btrim(reason)) < 10 or length(reason) > 2000 then
    raise exception 'Explique o problema (de 10 a 2000 caracteres).' using errcode = 'BSV01', column = 'reason';
  end if;
  update core.p2p_trades t
     set status = 'DISPUTED', disputed_at = now(), dispute_opened_by = open_p2p_dispute.user_id,
         dispute_reason = btrim(open_p2p_dispute.reason), updated_at = now()
   where t.id = v_trade.id;
  perform core.p2p_message(v_trade.id, 'Disputa aberta pelo ' ||
    case when open_p2p_dispute.user_id = v_trade.buyer_id then 'comprador' else 'vendedor' end ||
    ': ' || btrim(open_p2p_dispute.reason) || ' — a cripto segue bloqueada até a decisão de um administrador.');
  perform core.p2p_notify(v_trade, core.p2p_other(v_trade, open_p2p_dispute.user_id), 'p2p.disputed',
    'a outra parte abriu uma disputa. Envie suas evidências pelo chat da negociação.');
  return query select 'DISPUTED'::text, 'Disputa aberta. Um administrador vai analisar o chat e os comprovantes.'::text;
end
$$;
revoke all on function api.open_p2p_dispute(bigint, bigint, text) from public;
grant execute on function api.open_p2p_dispute(bigint, bigint, text) to exchange_app;
comment on function api.open_p2p_dispute(bigint, bigint, text) is
  'PAID → DISPUTED by either party, once the release window (setting p2p_release_window_minutes after paid) has passed, with a reason (BSV01). BSS01 wrong state or too early.';

create function admin.resolve_p2p_dispute(admin_id bigint, trade_id bigint, outcome text, note text,
                                          at_fault text default null, totp_code text default null)
returns table (status text, message text)
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
#variable_conflict use_column
declare
  v_trade core.p2p_trades;
  v_fault text := coalesce(at_fault, case when outcome = 'refund' then 'buyer' else 'seller' end);
  v_fault_user bigint;
  v_brl_from text;
  v_status text;
begin
  perform core.assert_admin(admin_id);
  if outcome is null or outcome not in ('release', 'refund') then
    raise exception 'Escolha: liberar ao comprador ou devolver ao vendedor.' using errcode = 'BSV01', column = 'outcome';
  end if;
  if v_fault not in ('buyer', 'seller', 'none') then
    raise exception 'Parte responsável inválida.' using errcode = 'BSV01', column = 'at_fault';
  end if;
  if note is null or length(btrim(note)) < 5 then
    raise exception 'Registre a decisão (ao menos 5 caracteres).' using errcode = 'BSV01', column = 'note';
  end if;
  v_trade := core.p2p_lock_trade(resolve_p2p_dispute.trade_id, null);
  if v_trade.status not in ('DISPUTED', 'REVIEW') then
    raise exception 'Esta negociação não está em disputa nem em análise (%).', v_trade.status using errcode = 'BSS01';
  end if;
  v_fault_user := case v_fault when 'buyer' then v_trade.buyer_id when 'seller' then v_trade.seller_id end;
  if outcome = 'release' then
    if v_trade.status = 'REVIEW' and exists (select from core.pix_charges c where c.reference = 'p2p-' || v_trade.id
                                             and core.pix_charge_clawed_back(c)) then
      raise exception 'O PIX desta negociação foi devolvido ao pagador pelo banco: só é possível devolver a cripto ao vendedor.'
        using errcode = 'BSS01', column = 'outcome';
    end if;
    -- the escrow (and a reviewed PIX's BRL) leaves on the admin's word: their fresh code through the web
    perform core.assert_admin_step_up(admin_id, resolve_p2p_dispute.totp_code, 'p2p_resolve');
    -- A PIX-confirmed payment held for review: its BRL now goes to the seller.
    if v_trade.status = 'REVIEW' and v_trade.pix_paid_amount is not null then
      v_brl_from := case when v_trade.pix_provider = 'inter' then 'clearing_inter' else 'clearing_mercadopago' end;
    end if;
    perform core.p2p_complete(v_trade.id, v_brl_from, v_trade.pix_paid_amount);
    v_status := 'COMPLETED';
  else
    perform core.release_hold(v_trade.hold_id, core.p2p_ref(v_trade.id));
    v_status := 'REFUNDED';
    if v_trade.status = 'REVIEW' and v_trade.pix_paid_payment_id is not null then
      -- the PIX that arrived goes back to whoever paid it
      perform core.record_pix_refund_due(coalesce(v_trade.pix_provider, 'mercadopago'), v_trade.pix_paid_payment_id,
        (select c.id from core.pix_charges c where c.reference = 'p2p-' || v_trade.id), v_trade.id,
        v_trade.pix_paid_amount, 'Pagamento PIX em análise devolvido (' || core.p2p_ref(v_trade.id) || ')');
    end if;
  end if;
  update core.p2p_trades t
     set status = v_status, resolution = case when resolve_p2p_dispute.outcome = 'release' then 'released' else 'refunded' end,
         resolution_note = btrim(resolve_p2p_dispute.note), resolved_by = resolve_p2p_dispute.admin_id,
         resolved_at = now(), fault_user_id = v_fault_user, updated_at = now()
   where t.id = v_trade.id;
  perform core.audit(admin_id, 'p2p_resolve_dispute', coalesce(v_fault_user, v_trade.buyer_id), note,
    jsonb_build_object('trade_id', v_trade.id, 'outcome', outcome, 'at_fault', v_fault, 'from_status', v_trade.status,
                       'buyer_id', v_trade.buyer_id, 'seller_id', v_trade.seller_id,
                       'crypto', v_trade.crypto, 'crypto_amount', v_trade.crypto_amount));
  perform core.p2p_message(v_trade.id, case when outcome = 'release'
    then 'Decisão da administração: cripto liberada ao comprador. '
    else 'Decisão da administração: cripto devolvida ao vendedor. ' end || 'Nota: ' || btrim(note));
  perform core.p2p_notify(v_trade, v_trade.buyer_id, 'p2p.resolved',
    case when outcome = 'release' then 'a disputa foi decidida: a cripto foi liberada para você.'
         else 'a disputa foi decidida: a cripto voltou ao vendedor.' end);
  perform core.p2p_notify(v_trade, v_trade.seller_id, 'p2p.resolved',
    case when outcome = 'release' then 'a disputa foi decidida: a cripto foi liberada ao comprador.'
         else 'a disputa foi decidida: a cripto voltou para você.' end);
  return query select v_status, 'Disputa resolvida.'::text;
end
$$;
revoke all on function admin.resolve_p2p_dispute(bigint, bigint, text, text, text, text) from public;
grant execute on function admin.resolve_p2p_dispute(bigint, bigint, text, text, text, text) to exchange_app, exchange_admin;
comment on function admin.resolve_p2p_dispute(bigint, bigint, text, text, text, text) is
  'DISPUTED or REVIEW → COMPLETED (outcome release: escrow to the buyer, fees; a PIX-confirmed payment under review credits the seller from the clearing account) or REFUNDED (outcome refund: escrow back to the seller), with a note; at_fault buyer|seller|none (default: buyer on refund, seller on release) is who the outcome counts against. Audit-logged, both parties notified. BSA01 not admin, BSS01 wrong state.';

create function admin.expire_p2p_trades(max_rows int default 500)
returns int
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_id bigint;
  v_count int := 0;
begin
  for v_id in
    select t.id from core.p2p_trades t
    where t.status = 'OPEN' and t.payment_deadline <= now()
    order by t.payment_deadline, t.id
    limit max_rows
    for update skip locked
  loop
    perform core.p2p_cancel(v_id, 'deadline');
    v_count := v_count + 1;
  end loop;
  return v_count;
end
$$;
revoke all on function admin.expire_p2p_trades(int) from public;
grant execute on function admin.expire_p2p_trades(int) to exchange_worker, exchange_admin;
comment on function admin.expire_p2p_trades(int) is
  'Sweeper (worker job): cancels OPEN trades past their payment deadline (buyer at fault), returning the escrow. Rows another transaction holds are skipped (SKIP LOCKED) and picked up next run. Returns how many.';

-- ---------------------------------------------------------------------------
-- PIX-confirmed trades: the BRL rails' entry points
-- ---------------------------------------------------------------------------

create function admin.pending_p2p_pix_charges(max_rows int default 100)
returns table (trade_id bigint, external_reference text, brl_amount numeric, buyer_id bigint, buyer_email text,
               buyer_name text, buyer_cpf text, description text, expires_at timestamptz)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  select t.id, 'p2p-' || t.id, t.brl_amount, t.buyer_id, u.email, u.display_name, core.user_cpf(t.buyer_id),
         'bs-market ' || core.p2p_ref(t.id) || ': ' || core.p2p_amount(t.crypto_amount) || ' ' || t.crypto,
         t.payment_deadline
  from core.p2p_trades t join core.users u on u.id = t.buyer_id
  where t.status = 'OPEN' and t.payment_method = 'PIX_CONFIRMED' and t.pix_provider_payment_id is null
    and t.payment_deadline > now()
  order by t.id
  limit least(greatest(max_rows, 1), 1000)
$$;
revoke all on function admin.pending_p2p_pix_charges(int) from public;
grant execute on function admin.pending_p2p_pix_charges(int) to exchange_worker, exchange_admin;
comment on function admin.pending_p2p_pix_charges(int) is
  'For the BRL rails: OPEN PIX-confirmed trades that still need a PIX charge — exact amount, external_reference p2p-<trade_id>, the buyer (payer) and the payment deadline to use as the charge expiry.';

create function admin.attach_p2p_pix_charge(trade_id bigint, provider text, provider_payment_id text,
                                            qr_code text, qr_code_base64 text, expires_at timestamptz)
returns boolean
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
#variable_conflict use_column
declare
  v_trade core.p2p_trades;
begin
  if provider is null or provider not in ('mercadopago', 'inter') then
    raise exception 'Provedor PIX desconhecido: %.', provider using errcode = 'BSV01', column = 'provider';
  end if;
  if provider_payment_id is null or length(btrim(provider_payment_id)) = 0 or qr_code is null then
    raise exception 'Cobrança PIX sem identificador ou sem copia-e-cola.' using errcode = 'BSV01';
  end if;
  v_trade := core.p2p_lock_trade(attach_p2p_pix_charge.trade_id, null);
  if v_trade.payment_method <> 'PIX_CONFIRMED' then
    raise exception 'A negociação % não é PIX confirmado.', v_trade.id using errcode = 'BSS01';
  end if;
  if v_trade.pix_provider_payment_id is not null then
    if v_trade.pix_provider = attach_p2p_pix_charge.provider
       and v_trade.pix_provider_payment_id = attach_p2p_pix_charge.provider_payment_id then
      return false;  -- the same charge reported again
    end if;
    raise exception 'A negociação % já tem outra cobrança PIX (%).', v_trade.id, v_trade.pix_provider_payment_id
      using errcode = 'BSS01';
  end if;
  update core.p2p_trades t
     set pix_provider = attach_p2p_pix_charge.provider, pix_provider_payment_id = btrim(attach_p2p_pix_charge.provider_payment_id),
         pix_qr_code = attach_p2p_pix_charge.qr_code, pix_qr_code_base64 = attach_p2p_pix_charge.qr_code_base64,
         pix_expires_at = attach_p2p_pix_charge.expires_at, updated_at = now()
   where t.id = v_trade.id;
  if v_trade.status = 'OPEN' then
    perform core.p2p_message(v_trade.id, 'Cobrança PIX gerada para ' || core.format_brl(v_trade.brl_amount) ||
      '. Pague com uma conta no seu CPF: a cripto é liberada automaticamente quando o pagamento chegar.');
  end if;
  return true;
end
$$;
revoke all on function admin.attach_p2p_pix_charge(bigint, text, text, text, text, timestamptz) from public;
grant execute on function admin.attach_p2p_pix_charge(bigint, text, text, text, text, timestamptz) to exchange_app, exchange_worker, exchange_admin;
comment on function admin.attach_p2p_pix_charge(bigint, text, text, text, text, timestamptz) is
  'For the BRL rails: records the PIX charge created for a PIX-confirmed trade (provider mercadopago|inter, its payment id, copia-e-cola, QR image base64, expiry) so the trade page shows it. Returns true when recorded, false when the same charge was already recorded (idempotent); BSS01 another charge already attached or not a PIX-confirmed trade; BSN01 unknown trade.';

create function admin.confirm_p2p_pix_payment(trade_id bigint, paid_amount numeric, payer_cpf text,
                                              provider_payment_id text)
returns table (outcome text, status text, replayed boolean)
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
#variable_conflict use_column
declare
  v_trade core.p2p_trades;
  v_prior core.p2p_pix_payments;
  v_cpf text := nullif(regexp_replace(coalesce(payer_cpf, ''), '\D', '', 'g'), '');
  v_buyer_cpf text;
  v_clearing text;
  v_outcome text;
  v_entry bigint;
begin
  if provider_payment_id is null or length(btrim(provider_payment_id)) = 0 then
    raise exception 'Pagamento sem identificador do provedor.' using errcode = 'BSV01', column = 'provider_payment_id';
  end if;
  perform core.check_amount('BRL', paid_amount, 'paid_amount');
  v_trade := core.p2p_lock_trade(confirm_p2p_pix_payment.trade_id, null);
  -- Webhook and reconciler may both report a payment: the first one counts.
  select * into v_prior from core.p2p_pix_payments p where p.provider_payment_id = btrim(confirm_p2p_pix_payment.provider_payment_id);
  if found then
    if v_prior.trade_id <> v_trade.id then
      raise exception 'O pagamento % já foi registrado para outra negociação.', provider_payment_id using errcode = 'BSI01';
    end if;
    return query select v_prior.outcome, v_trade.status, true;
    return;
  end if;
  if v_trade.payment_method <> 'PIX_CONFIRMED' then
    raise exception 'A negociação % não é PIX confirmado.', v_trade.id using errcode = 'BSS01';
  end if;
  v_clearing := case when v_trade.pix_provider = 'inter' then 'clearing_inter' else 'clearing_mercadopago' end;
  v_buyer_cpf := core.user_cpf(v_trade.buyer_id);

  if v_trade.status = 'OPEN' then
    -- A payment that arrives is honoured even a moment past the deadline:
    -- the charge was still payable.
    update core.p2p_trades t
       set pix_paid_amount = confirm_p2p_pix_payment.paid_amount, pix_payer_cpf = v_cpf,
           pix_paid_payment_id = btrim(confirm_p2p_pix_payment.provider_payment_id), pix_confirmed_at = now(),
           paid_at = now(), updated_at = now()
     where t.id = v_trade.id;
    -- (the buyer's CPF must be verified, level 2: a CPF only declared could be
    -- the victim's, set to make a triangulated PIX release the crypto)
    if v_buyer_cpf is not null and v_cpf = v_buyer_cpf and paid_amount = v_trade.brl_amount
       and (select u.kyc_level >= 2 from core.users u where u.id = v_trade.buyer_id)
       and (select u.exits_blocked_at is null and u.status = 'active' from core.users u where u.id = v_trade.seller_id) then
      perform core.p2p_complete(v_trade.id, v_clearing, confirm_p2p_pix_payment.paid_amount);
      select t.brl_entry_id into v_entry from core.p2p_trades t where t.id = v_trade.id;
      v_outcome := 'completed';
      perform core.p2p_message(v_trade.id, 'Pagamento PIX de ' || core.format_brl(paid_amount) ||
        ' confirmado do CPF do comprador: reais creditados ao vendedor e cripto liberada ao comprador. Negociação concluída.');
      perform core.p2p_notify(v_trade, v_trade.buyer_id, 'p2p.released',
        'PIX confirmado: ' || core.p2p_amount(v_trade.crypto_amount - v_trade.buyer_fee) || ' ' || v_trade.crypto || ' liberados para você.');
      perform core.p2p_notify(v_trade, v_trade.seller_id, 'p2p.released',
        'PIX confirmado: ' || core.format_brl(paid_amount) || ' creditados no seu saldo e cripto entregue ao comprador.');
    else
      -- Wrong payer (triangulation fraud), wrong amount, or a seller whose
      -- exits are blocked: nothing is released.
      update core.p2p_trades t set status = 'REVIEW', updated_at = now() where t.id = v_trade.id;
      v_outcome := 'review';
      perform core.p2p_message(v_trade.id, 'Pagamento PIX recebido, mas ' ||
        case when paid_amount <> v_trade.brl_amount then 'o valor (' || core.format_brl(paid_amount) || ') não confere'
             else 'o CPF do pagador não é o do comprador' end ||
        '. Nada foi liberado: a negociação está em análise pela equipe.');
      perform core.p2p_notify(v_trade, v_trade.buyer_id, 'p2p.review',
        'o pagamento PIX não confere com seus dados; a negociação está em análise.');
      perform core.p2p_notify(v_trade, v_trade.seller_id, 'p2p.review',
        'um pagamento PIX chegou mas não confere com o comprador; a negociação está em análise e sua cripto segue bloqueada.');
    end if;
  else
    -- Too late (the trade ended) or paid twice: never credited as free BRL
    -- (it could be spent at once and then clawed back). It goes back to the
    -- payer: the rails refund it at the provider (core.pix_refunds).
    v_outcome := 'refund';
    perform core.record_pix_refund_due(coalesce(v_trade.pix_provider, 'mercadopago'),
      confirm_p2p_pix_payment.provider_payment_id,
      (select c.id from core.pix_charges c where c.reference = 'p2p-' || v_trade.id), v_trade.id, paid_amount,
      'PIX recebido depois do fim da negociação ' || core.p2p_ref(v_trade.id));
    perform core.p2p_notify(v_trade, v_trade.buyer_id, 'p2p.pix_refund',
      'recebemos um PIX de ' || core.format_brl(paid_amount) || ' depois do fim da negociação; ele será devolvido à conta de origem.');
  end if;
  insert into core.p2p_pix_payments (provider_payment_id, trade_id, amount, payer_cpf, outcome, entry_id)
  values (btrim(confirm_p2p_pix_payment.provider_payment_id), v_trade.id, paid_amount, v_cpf, v_outcome, v_entry);
  return query select v_outcome, t.status, false from core.p2p_trades t where t.id = v_trade.id;
end
$$;
revoke all on function admin.confirm_p2p_pix_payment(bigint, numeric, text, text) from public;
grant execute on function admin.confirm_p2p_pix_payment(bigint, numeric, text, text) to exchange_worker, exchange_admin;
comment on function admin.confirm_p2p_pix_payment(bigint, numeric, text, text) is
  'For the BRL rails, after they verified a payment whose external_reference is p2p-<trade_id>. OPEN trade, amount = brl_amount, payer CPF = the buyer''s KYC CPF and a seller free to exit → COMPLETED: the seller''s BRL credited from the provider''s clearing account (reversible exposure until it matures) and the crypto released (outcome completed). Otherwise → REVIEW, nothing released (outcome review; an admin resolves it like a dispute). Trade no longer OPEN: nothing is booked, a refund to the payer is recorded in core.pix_refunds (outcome refund) for the worker to make at the provider. Idempotent per provider_payment_id (replayed true).';

-- ---------------------------------------------------------------------------
-- Reading trades, chat, proofs
-- ---------------------------------------------------------------------------

create function api.get_p2p_trade(user_id bigint, trade_id bigint)
returns table (id bigint, reference text, offer_id bigint, viewer_role text, maker_id bigint, taker_id bigint,
               buyer_id bigint, buyer_name text, seller_id bigint, seller_name text, counterparty_id bigint,
               counterparty_name text, crypto text, crypto_amount numeric, price numeric, brl_amount numeric,
               seller_fee numeric, buyer_fee numeric, buyer_receives numeric, payment_method text,
               payment_details text, terms text, status text, payment_deadline timestamptz, deadline_passed boolean,
               paid_at timestamptz, completed_at timestamptz, cancelled_at timestamptz, cancel_reason text,
               disputed_at timestamptz, dispute_reason text, dispute_opened_by bigint, dispute_available_at timestamptz,
               resolution text, resolution_note text, pix_qr_code text, pix_qr_code_base64 text,
               pix_expires_at timestamptz, pix_paid_amount numeric, pix_external_reference text,
               created_at timestamptz, can_mark_paid boolean, can_cancel boolean, can_release boolean,
               can_dispute boolean, can_rate boolean, rated boolean)
language plpgsql stable security definer set search_path = pg_catalog, pg_temp as $$
#variable_conflict use_column
declare
  v_is_admin boolean;
begin
  v_is_admin := exists (select from core.users u where u.id = get_p2p_trade.user_id and u.role = 'admin');
  return query
  select t.id, core.p2p_ref(t.id), t.offer_id,
         case when get_p2p_trade.user_id = t.buyer_id then 'buyer'
              when get_p2p_trade.user_id = t.seller_id then 'seller' else 'admin' end,
         t.maker_id, t.taker_id, t.buyer_id, b.display_name, t.seller_id, s.display_name,
         core.p2p_other(t, get_p2p_trade.user_id),
         case when get_p2p_trade.user_id = t.buyer_id then s.display_name else b.display_name end,
         t.crypto, t.crypto_amount, t.price, t.brl_amount, t.seller_fee, t.buyer_fee, t.crypto_amount - t.buyer_fee,
         t.payment_method, t.payment_details, o.terms, t.status, t.payment_deadline, t.payment_deadline <= now(),
         t.paid_at, t.completed_at, t.cancelled_at, t.cancel_reason, t.disputed_at, t.dispute_reason,
         t.dispute_opened_by, w.available_at, t.resolution, t.resolution_note, t.pix_qr_code, t.pix_qr_code_base64,
         t.pix_expires_at, t.pix_paid_amount, 'p2p-' || t.id, t.created_at,
         t.status = 'OPEN' and t.payment_deadline > now() and get_p2p_trade.user_id = t.buyer_id
           and t.payment_method in ('PIX', 'TED'),
         t.status = 'OPEN' and t.payment_deadline > now() and get_p2p_trade.user_id = t.buyer_id,
         t.status = 'PAID' and get_p2p_trade.user_id = t.seller_id,
         t.status = 'PAID' and get_p2p_trade.user_id in (t.buyer_id, t.seller_id) and now() >= w.available_at,
         t.status = 'COMPLETED' and get_p2p_trade.user_id in (t.buyer_id, t.seller_id)
           and not exists (select from core.p2p_ratings r where r.trade_id = t.id and r.rater_id = get_p2p_trade.user_id),
         exists (select from core.p2p_ratings r where r.trade_id = t.id and r.rater_id = get_p2p_trade.user_id)
  from core.p2p_trades t
  join core.users b on b.id = t.buyer_id
  join core.users s on s.id = t.seller_id
  join core.p2p_offers o on o.id = t.offer_id
  cross join lateral (select t.paid_at + make_interval(mins => core.setting('p2p_release_window_minutes')::int)
                        as available_at) w
  where t.id = get_p2p_trade.trade_id
    and (get_p2p_trade.user_id in (t.buyer_id, t.seller_id) or v_is_admin);
  if not found then
    raise exception 'Negociação não encontrada.' using errcode = 'BSN01';
  end if;
end
$$;
revoke all on function api.get_p2p_trade(bigint, bigint) from public;
grant execute on function api.get_p2p_trade(bigint, bigint) to exchange_app;
comment on function api.get_p2p_trade(bigint, bigint) is
  'One trade as its buyer, its seller or an admin sees it, with what the viewer may do now (can_mark_paid, can_cancel, can_release, can_dispute, can_rate). BSN01 for anyone else.';

create function api.list_my_p2p_trades(user_id bigint, max_rows int default 100)
returns table (trade_id bigint, reference text, role text, counterparty_id bigint, counterparty_name text,
               crypto text, crypto_amount numeric, brl_amount numeric, price numeric, payment_method text,
               status text, payment_deadline timestamptz, created_at timestamptz, updated_at timestamptz)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  select t.id, core.p2p_ref(t.id), case when t.buyer_id = list_my_p2p_trades.user_id then 'buyer' else 'seller' end,
         core.p2p_other(t, list_my_p2p_trades.user_id), u.display_name, t.crypto, t.crypto_amount, t.brl_amount,
         t.price, t.payment_method, t.status, t.payment_deadline, t.created_at, t.updated_at
  from core.p2p_trades t
  join core.users u on u.id = core.p2p_other(t, list_my_p2p_trades.user_id)
  where t.buyer_id = list_my_p2p_trades.user_id or t.seller_id = list_my_p2p_trades.user_id
  order by t.status not in ('OPEN', 'PAID', 'DISPUTED', 'REVIEW'), t.id desc
  limit least(greatest(max_rows, 1), 500)
$$;
revoke all on function api.list_my_p2p_trades(bigint, int) from public;
grant execute on function api.list_my_p2p_trades(bigint, int) to exchange_app;
comment on function api.list_my_p2p_trades(bigint, int) is 'A customer''s trades, those in progress first, then newest first.';

create or replace function core.p2p_assert_viewer(user_id bigint, trade_id bigint) returns core.p2p_trades
language plpgsql stable as $$
declare
  v_trade core.p2p_trades;
begin
  select * into v_trade from core.p2p_trades t where t.id = p2p_assert_viewer.trade_id;
  if not found or (p2p_assert_viewer.user_id not in (v_trade.buyer_id, v_trade.seller_id)
                   and not exists (select from core.users u where u.id = p2p_assert_viewer.user_id
                                   and u.role = 'admin' and u.status = 'active')) then
    raise exception 'Negociação não encontrada.' using errcode = 'BSN01';
  end if;
  return v_trade;
end
$$;
comment on function core.p2p_assert_viewer(bigint, bigint) is 'The trade, when the user is one of its parties or an admin; BSN01 otherwise.';

create function api.list_p2p_messages(user_id bigint, trade_id bigint, after_id bigint default 0)
returns table (message_id bigint, author_id bigint, author_name text, author_role text, is_system boolean,
               is_mine boolean, body text, created_at timestamptz)
language plpgsql stable security definer set search_path = pg_catalog, pg_temp as $$
#variable_conflict use_column
declare
  v_trade core.p2p_trades := core.p2p_assert_viewer(list_p2p_messages.user_id, list_p2p_messages.trade_id);
begin
  return query
  select m.id, m.user_id, coalesce(u.display_name, 'bs-market'),
         case when m.user_id is null then 'system' when m.user_id = v_trade.buyer_id then 'buyer'
              when m.user_id = v_trade.seller_id then 'seller' else 'admin' end,
         m.user_id is null, m.user_id = list_p2p_messages.user_id, m.body, m.created_at
  from core.p2p_messages m left join core.users u on u.id = m.user_id
  where m.trade_id = v_trade.id and m.id > coalesce(list_p2p_messages.after_id, 0)
  order by m.id
  limit 1000;
end
$$;
revoke all on function api.list_p2p_messages(bigint, bigint, bigint) from public;
grant execute on function api.list_p2p_messages(bigint, bigint, bigint) to exchange_app;
comment on function api.list_p2p_messages(bigint, bigint, bigint) is
  'A trade''s chat, oldest first (after_id for increments): the parties'' and admins'' messages and a system message per transition. BSN01 for anyone but the parties and admins.';

create function api.send_p2p_message(user_id bigint, trade_id bigint, body text)
returns bigint
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
#variable_conflict use_column
declare
  v_trade core.p2p_trades;
  v_id bigint;
  v_name text;
begin
  perform core.assert_active_user(send_p2p_message.user_id);
  v_trade := core.p2p_assert_viewer(send_p2p_message.user_id, send_p2p_message.trade_id);
  if body is null or length(btrim(body)) = 0 or length(body) > 2000 then
    raise exception 'Escreva uma mensagem (até 2000 caracteres).' using errcode = 'BSV01', column = 'body';
  end if;
  insert into core.p2p_messages (trade_id, user_id, body)
  values (v_trade.id, send_p2p_message.user_id, btrim(send_p2p_message.body))
  returning id into v_id;
  select u.display_name into v_name from core.users u where u.id = send_p2p_message.user_id;
  if send_p2p_message.user_id in (v_trade.buyer_id, v_trade.seller_id) then
    perform core.p2p_notify(v_trade, core.p2p_other(v_trade, send_p2p_message.user_id), 'p2p.message',
                            'nova mensagem de ' || v_name || '.');
  else
    perform core.p2p_notify(v_trade, v_trade.buyer_id, 'p2p.message', 'nova mensagem da administração.');
    perform core.p2p_notify(v_trade, v_trade.seller_id, 'p2p.message', 'nova mensagem da administração.');
  end if;
  return v_id;
end
$$;
revoke all on function api.send_p2p_message(bigint, bigint, text) from public;
grant execute on function api.send_p2p_message(bigint, bigint, text) to exchange_app;
comment on function api.send_p2p_message(bigint, bigint, text) is
  'Posts a chat message on a trade (a party, or an admin mediating) and notifies the counterparty (both parties for an admin). BSV01 empty or too long, BSN01 not allowed.';

create function api.add_p2p_proof(user_id bigint, trade_id bigint, stored_name text, original_name text,
                                  content_type text, size_bytes int, sha256 text)
returns bigint
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
#variable_conflict use_column
declare
  v_trade core.p2p_trades;
  v_id bigint;
begin
  perform core.assert_active_user(add_p2p_proof.user_id);
  v_trade := core.p2p_lock_trade(add_p2p_proof.trade_id, add_p2p_proof.user_id);
  if v_trade.status not in ('OPEN', 'PAID', 'DISPUTED', 'REVIEW') then
    raise exception 'A negociação está encerrada: não aceita mais arquivos.' using errcode = 'BSS01';
  end if;
  insert into core.p2p_proofs (trade_id, user_id, purpose, stored_name, original_name, content_type, size_bytes, sha256)
  values (v_trade.id, add_p2p_proof.user_id,
          case when v_trade.status in ('DISPUTED', 'REVIEW') then 'evidence' else 'payment' end,
          add_p2p_proof.stored_name, left(coalesce(nullif(btrim(add_p2p_proof.original_name), ''), 'arquivo'), 200),
          add_p2p_proof.content_type, add_p2p_proof.size_bytes, add_p2p_proof.sha256)
  returning id into v_id;
  perform core.p2p_message(v_trade.id, case when add_p2p_proof.user_id = v_trade.buyer_id then 'O comprador' else 'O vendedor' end
    || ' enviou um arquivo: ' || left(coalesce(nullif(btrim(add_p2p_proof.original_name), ''), 'arquivo'), 200) || '.');
  perform core.p2p_notify(v_trade, core.p2p_other(v_trade, add_p2p_proof.user_id), 'p2p.proof',
                          'a outra parte enviou um arquivo.');
  return v_id;
end
$$;
revoke all on function api.add_p2p_proof(bigint, bigint, text, text, text, int, text) from public;
grant execute on function api.add_p2p_proof(bigint, bigint, text, text, text, int, text) to exchange_app;
comment on function api.add_p2p_proof(bigint, bigint, text, text, text, int, text) is
  'Records a payment proof or dispute evidence a party uploaded (the file is stored by the app under a random name; PNG, JPEG or PDF up to 5 MB, checked by content). BSN01 not a party, BSS01 trade closed.';

create function api.list_p2p_proofs(user_id bigint, trade_id bigint)
returns table (proof_id bigint, author_id bigint, author_name text, purpose text, original_name text,
               content_type text, size_bytes int, created_at timestamptz)
language plpgsql stable security definer set search_path = pg_catalog, pg_temp as $$
#variable_conflict use_column
declare
  v_trade core.p2p_trades := core.p2p_assert_viewer(list_p2p_proofs.user_id, list_p2p_proofs.trade_id);
begin
  return query
  select p.id, p.user_id, u.display_name, p.purpose, p.original_name, p.content_type, p.size_bytes, p.created_at
  from core.p2p_proofs p join core.users u on u.id = p.user_id
  where p.trade_id = v_trade.id order by p.id;
end
$$;
revoke all on function api.list_p2p_proofs(bigint, bigint) from public;
grant execute on function api.list_p2p_proofs(bigint, bigint) to exchange_app;
comment on function api.list_p2p_proofs(bigint, bigint) is 'The proofs and evidence of a trade (parties and admins only; BSN01 otherwise).';

create function api.get_p2p_proof(user_id bigint, proof_id bigint)
returns table (id bigint, trade_id bigint, stored_name text, original_name text, content_type text, size_bytes int)
language plpgsql stable security definer set search_path = pg_catalog, pg_temp as $$
#variable_conflict use_column
declare
  v_proof core.p2p_proofs;
begin
  select * into v_proof from core.p2p_proofs p where p.id = get_p2p_proof.proof_id;
  if not found then
    raise exception 'Arquivo não encontrado.' using errcode = 'BSN01';
  end if;
  perform core.p2p_assert_viewer(get_p2p_proof.user_id, v_proof.trade_id);
  return query select v_proof.id, v_proof.trade_id, v_proof.stored_name, v_proof.original_name, v_proof.content_type,
                      v_proof.size_bytes;
end
$$;
revoke all on function api.get_p2p_proof(bigint, bigint) from public;
grant execute on function api.get_p2p_proof(bigint, bigint) to exchange_app;
comment on function api.get_p2p_proof(bigint, bigint) is 'Where a proof file is stored, for its download by a party of the trade or an admin; BSN01 for anyone else.';

-- ---------------------------------------------------------------------------
-- Reputation and blocks
-- ---------------------------------------------------------------------------

create function api.rate_p2p_trade(user_id bigint, trade_id bigint, positive boolean, comment text default '')
returns void
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
#variable_conflict use_column
declare
  v_trade core.p2p_trades;
  v_other bigint;
begin
  v_trade := core.p2p_lock_trade(rate_p2p_trade.trade_id, rate_p2p_trade.user_id);
  if v_trade.status <> 'COMPLETED' then
    raise exception 'Só é possível avaliar uma negociação concluída.' using errcode = 'BSS01';
  end if;
  if positive is null then
    raise exception 'Escolha positiva ou negativa.' using errcode = 'BSV01', column = 'positive';
  end if;
  if length(coalesce(comment, '')) > 500 then
    raise exception 'Comentário: até 500 caracteres.' using errcode = 'BSV01', column = 'comment';
  end if;
  v_other := core.p2p_other(v_trade, rate_p2p_trade.user_id);
  insert into core.p2p_ratings (trade_id, rater_id, rated_id, positive, comment)
  values (v_trade.id, rate_p2p_trade.user_id, v_other, rate_p2p_trade.positive, coalesce(btrim(rate_p2p_trade.comment), ''))
  on conflict do nothing;
  if not found then
    raise exception 'Você já avaliou esta negociação.' using errcode = 'BSS01';
  end if;
  perform core.p2p_notify(v_trade, v_other, 'p2p.rated',
    'você recebeu uma avaliação ' || case when positive then 'positiva' else 'negativa' end || '.');
end
$$;
revoke all on function api.rate_p2p_trade(bigint, bigint, boolean, text) from public;
grant execute on function api.rate_p2p_trade(bigint, bigint, boolean, text) to exchange_app;
comment on function api.rate_p2p_trade(bigint, bigint, boolean, text) is
  'Rates the counterparty of a completed trade once (positive or negative, with a comment). BSS01 not completed or already rated, BSN01 not a party.';

create function api.get_p2p_profile(user_id bigint, profile_user_id bigint)
returns table (id bigint, display_name text, member_since timestamptz, kyc_level int,
               completed_trades bigint, faulted_trades bigint, completion_rate numeric, avg_release_seconds numeric,
               positive_ratings bigint, negative_ratings bigint, blocked_by_me boolean, is_me boolean)
language plpgsql stable security definer set search_path = pg_catalog, pg_temp as $$
#variable_conflict use_column
begin
  return query
  select u.id, u.display_name, u.created_at, u.kyc_level, s.completed_trades, s.faulted_trades, s.completion_rate,
         s.avg_release_seconds, s.positive_ratings, s.negative_ratings,
         exists (select from core.p2p_blocks k where k.user_id = get_p2p_profile.user_id and k.blocked_user_id = u.id),
         u.id = get_p2p_profile.user_id
  from core.users u cross join lateral core.p2p_user_stats(u.id) s
  where u.id = get_p2p_profile.profile_user_id and u.role = 'customer';
  if not found then
    raise exception 'Cliente não encontrado.' using errcode = 'BSN01';
  end if;
end
$$;
revoke all on function api.get_p2p_profile(bigint, bigint) from public;
grant execute on function api.get_p2p_profile(bigint, bigint) to exchange_app;
comment on function api.get_p2p_profile(bigint, bigint) is
  'A customer''s P2P reputation as another customer sees it: completed trades, trades lost by their fault, completion rate, average release time, ratings, and whether the viewer blocked them.';

create function api.list_p2p_ratings(profile_user_id bigint, max_rows int default 20)
returns table (trade_id bigint, rater_name text, positive boolean, comment text, created_at timestamptz)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  select r.trade_id, u.display_name, r.positive, r.comment, r.created_at
  from core.p2p_ratings r join core.users u on u.id = r.rater_id
  where r.rated_id = list_p2p_ratings.profile_user_id
  order by r.created_at desc
  limit least(greatest(max_rows, 1), 100)
$$;
revoke all on function api.list_p2p_ratings(bigint, int) from public;
grant execute on function api.list_p2p_ratings(bigint, int) to exchange_app;
comment on function api.list_p2p_ratings(bigint, int) is 'The latest ratings a customer received, newest first.';

create function api.set_p2p_block(user_id bigint, blocked_user_id bigint, blocked boolean)
returns boolean
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
#variable_conflict use_column
begin
  if set_p2p_block.user_id = set_p2p_block.blocked_user_id then
    raise exception 'Você não pode bloquear a si mesmo.' using errcode = 'BSV01';
  end if;
  if not exists (select from core.users u where u.id = set_p2p_block.blocked_user_id and u.role = 'customer') then
    raise exception 'Cliente não encontrado.' using errcode = 'BSN01';
  end if;
  if blocked then
    insert into core.p2p_blocks (user_id, blocked_user_id)
    values (set_p2p_block.user_id, set_p2p_block.blocked_user_id) on conflict do nothing;
  else
    delete from core.p2p_blocks k
     where k.user_id = set_p2p_block.user_id and k.blocked_user_id = set_p2p_block.blocked_user_id;
  end if;
  return blocked;
end
$$;
revoke all on function api.set_p2p_block(bigint, bigint, boolean) from public;
grant execute on function api.set_p2p_block(bigint, bigint, boolean) to exchange_app;
comment on function api.set_p2p_block(bigint, bigint, boolean) is
  'Blocks (true) or unblocks (false) another customer: while blocked, each one''s offers are hidden from the other and neither can take the other''s offers. Trades already open continue.';

create function api.list_p2p_blocks(user_id bigint)
returns table (blocked_user_id bigint, display_name text, created_at timestamptz)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  select k.blocked_user_id, u.display_name, k.created_at
  from core.p2p_blocks k join core.users u on u.id = k.blocked_user_id
  where k.user_id = list_p2p_blocks.user_id order by k.created_at desc
$$;
revoke all on function api.list_p2p_blocks(bigint) from public;
grant execute on function api.list_p2p_blocks(bigint) to exchange_app;
comment on function api.list_p2p_blocks(bigint) is 'The customers a customer has blocked.';

-- ---------------------------------------------------------------------------
-- Back office
-- ---------------------------------------------------------------------------

create function admin.list_p2p_disputes(admin_id bigint, include_closed boolean default false)
returns table (trade_id bigint, reference text, status text, buyer_id bigint, buyer_name text, seller_id bigint,
               seller_name text, crypto text, crypto_amount numeric, brl_amount numeric, payment_method text,
               dispute_opened_by_name text, dispute_reason text, disputed_at timestamptz, pix_paid_amount numeric,
               resolution text, resolved_at timestamptz, proofs bigint)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  select t.id, core.p2p_ref(t.id), t.status, t.buyer_id, b.display_name, t.seller_id, s.display_name, t.crypto,
         t.crypto_amount, t.brl_amount, t.payment_method, d.display_name, t.dispute_reason,
         coalesce(t.disputed_at, t.pix_confirmed_at), t.pix_paid_amount, t.resolution, t.resolved_at,
         (select count(*) from core.p2p_proofs p where p.trade_id = t.id)
  from core.p2p_trades t
  cross join core.assert_admin(list_p2p_disputes.admin_id) a
  join core.users b on b.id = t.buyer_id
  join core.users s on s.id = t.seller_id
  left join core.users d on d.id = t.dispute_opened_by
  where t.status in ('DISPUTED', 'REVIEW')
     or (list_p2p_disputes.include_closed and t.resolution is not null)
  order by t.status not in ('DISPUTED', 'REVIEW'), coalesce(t.disputed_at, t.pix_confirmed_at, t.created_at), t.id
  limit 500
$$;
revoke all on function admin.list_p2p_disputes(bigint, boolean) from public;
grant execute on function admin.list_p2p_disputes(bigint, boolean) to exchange_app, exchange_admin;
comment on function admin.list_p2p_disputes(bigint, boolean) is
  'Open disputes and PIX payments under review, oldest first (with include_closed, resolved ones after them). BSA01 not admin.';

-- ---------------------------------------------------------------------------
-- Reporting
-- ---------------------------------------------------------------------------

create view reporting.p2p_escrow_mismatches as
select 'trade' as kind, t.id, t.status, t.hold_id, h.status as hold_status, h.amount as held,
       t.crypto_amount + t.seller_fee as expected
from core.p2p_trades t left join core.holds h on h.id = t.hold_id
where (t.status in ('OPEN', 'PAID', 'DISPUTED', 'REVIEW')
       and (h.status is distinct from 'open' or h.amount <> t.crypto_amount + t.seller_fee))
   or (t.status in ('COMPLETED', 'CANCELLED', 'REFUNDED') and h.status = 'open')
union all
select 'offer', o.id, o.status, o.hold_id, h.status, h.amount, o.remaining_amount
from core.p2p_offers o left join core.holds h on h.id = o.hold_id
where (o.side = 'SELL' and o.status in ('active', 'paused')
       and (h.status is distinct from 'open' or h.amount < o.remaining_amount))
   or (o.status in ('cancelled', 'expired') and o.hold_id is not null);
comment on view reporting.p2p_escrow_mismatches is
  'P2P trades in progress whose escrow hold is not open for exactly amount + seller fee, closed trades with an open hold, open SELL offers whose hold does not cover the remaining amount, closed offers still pointing at a hold. Healthy: empty.';

create view reporting.p2p_trades as
select t.id as trade_id, t.created_at, t.status, t.crypto, t.crypto_amount, t.price, t.brl_amount, t.payment_method,
       t.seller_fee + t.buyer_fee as fees, t.buyer_id, t.seller_id, t.maker_id, t.taker_id, t.paid_at, t.completed_at,
       t.cancel_reason, t.resolution, t.resolved_by, t.pix_paid_amount
from core.p2p_trades t;
comment on view reporting.p2p_trades is
  'Every P2P trade (no chat, no bank details). Healthy: no OPEN trade far past its payment_deadline (the sweeper cancels them), fees = seller_fee + buyer_fee as journaled to fee revenue.';

create view reporting.p2p_pix_refunds_due as
select r.provider_payment_id, r.trade_id, r.amount, p.payer_cpf, r.status, r.reason, r.attempts, r.last_error,
       r.created_at
from core.pix_refunds r
left join core.p2p_pix_payments p on p.provider_payment_id = r.provider_payment_id
where r.trade_id is not null and r.status <> 'DONE';
comment on view reporting.p2p_pix_refunds_due is
  'PIX payments received for P2P trades that no one may be credited with (paid after the trade ended, or a review ended refunded) and that the worker has not yet returned to the payer (PENDING, or FAILED for an operator). Healthy: empty or only a few minutes old.';

grant select on reporting.p2p_escrow_mismatches, reporting.p2p_trades, reporting.p2p_pix_refunds_due
  to exchange_auditor, exchange_admin;

create function api.get_p2p_index_prices()
returns table (crypto text, price numeric, fetched_at timestamptz, stale boolean)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  select c.code, p.price, p.fetched_at, coalesce(p.stale, true)
  from core.currencies c
  left join lateral core.latest_price(c.code) p on true
  where c.code in ('BTC', 'ETH', 'USDT')
  order by c.sort_order
$$;
revoke all on function api.get_p2p_index_prices() from public;
grant execute on function api.get_p2p_index_prices() to exchange_app;
comment on function api.get_p2p_index_prices() is
  'The Binance index (latest BRL price) of each P2P crypto and whether it is stale, for showing a floating offer''s effective price live.';
