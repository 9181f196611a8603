-- p2p/trades.sql: opening a P2P trade, its OPEN/PAID transitions, the deadline
-- sweep, and reading trades. Overview of the P2P domain in p2p/core.sql.

-- ---------------------------------------------------------------------------
-- Trades
-- ---------------------------------------------------------------------------

-- api.open_p2p_trade is the sequence of the steps below, each a core helper
-- (security invoker, called only from it): lock and check the offer, price
-- and size the trade, the payment details, the parties' locks, exits and
-- limits, the fees, the escrow, and the offer's new remaining amount.

create or replace function core.p2p_take_offer(taker core.users, offer_id bigint, payment_method text)
returns core.p2p_offers
language plpgsql volatile as $$
declare
  v_offer core.p2p_offers;
  v_maker core.users;
begin
  -- Two takers racing for the same offer queue here; the second sees what
  -- the first left.
  select * into v_offer from core.p2p_offers o where o.id = p2p_take_offer.offer_id for update;
  if not found then
    raise exception 'Oferta não encontrada.' using errcode = 'BSN01';
  end if;
  if v_offer.user_id = taker.id then
    raise exception 'Esta oferta é sua: não é possível negociar com você mesmo.' using errcode = 'BSV01';
  end if;
  if core.p2p_blocked(taker.id, v_offer.user_id) then
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
  if p2p_take_offer.payment_method is null or not (p2p_take_offer.payment_method = any (v_offer.payment_methods)) then
    raise exception 'Esta oferta não aceita essa forma de pagamento.' using errcode = 'BSV01', column = 'payment_method';
  end if;
  if taker.kyc_level < v_offer.min_counterparty_kyc then
    raise exception 'Esta oferta exige verificação de nível % ou mais (o seu é %).', v_offer.min_counterparty_kyc, taker.kyc_level
      using errcode = 'BSA01', hint = 'Complete sua verificação em /kyc.';
  end if;
  if v_offer.min_counterparty_trades > 0
     and (select s.completed_trades from core.p2p_user_stats(taker.id) s) < v_offer.min_counterparty_trades then
    raise exception 'Esta oferta exige ao menos % negociações concluídas.', v_offer.min_counterparty_trades
      using errcode = 'BSA01';
  end if;
  return v_offer;
end
$$;
comment on function core.p2p_take_offer(core.users, bigint, text) is
  'Step of api.open_p2p_trade: locks the offer row (FOR UPDATE: racing takers queue) and checks that `taker` may take it with `payment_method` (not their own, not blocked, active and not expired, maker active, method accepted, KYC level and completed trades asked by the offer). Returns the locked offer. BSN01, BSV01, BSA01, BSS01.';

create or replace function core.p2p_trade_size(offer core.p2p_offers, brl_amount numeric, crypto_amount numeric,
                                               out price numeric, out crypto numeric, out brl numeric)
language plpgsql stable as $$
declare
  v_scale int;
begin
  price := core.p2p_offer_price(offer);  -- BSP01 when a floating price's index is stale
  if offer.price_type = 'fixed' then
    begin
      perform core.p2p_assert_price_sane(offer.crypto, price, 'brl_amount');
    exception when sqlstate 'BSV01' then
      raise exception 'O preço desta oferta está longe demais da cotação atual: ela não pode ser negociada agora.'
        using errcode = 'BSS01';
    end;
  end if;
  v_scale := core.p2p_scale(offer.crypto);
  if p2p_trade_size.crypto_amount is not null then
    perform core.check_amount(offer.crypto, p2p_trade_size.crypto_amount, 'crypto_amount');
    crypto := p2p_trade_size.crypto_amount;
    brl := round(crypto * price, 2);
  elsif p2p_trade_size.brl_amount is not null then
    perform core.check_amount('BRL', p2p_trade_size.brl_amount, 'brl_amount');
    brl := p2p_trade_size.brl_amount;
    crypto := trunc(brl / price, v_scale);
    if crypto > offer.remaining_amount and round(offer.remaining_amount * price, 2) = brl then
      crypto := offer.remaining_amount;  -- "all that is left", typed in BRL
    end if;
  else
    raise exception 'Informe quanto quer negociar.' using errcode = 'BSV01', column = 'brl_amount';
  end if;
  if crypto <= 0 or brl <= 0 then
    raise exception 'Valor pequeno demais para esta oferta.' using errcode = 'BSV03', column = 'brl_amount';
  end if;
  if crypto > offer.remaining_amount then
    raise exception 'Esta oferta tem apenas % % disponíveis (%).', core.p2p_amount(offer.remaining_amount), offer.crypto,
      core.format_brl(round(offer.remaining_amount * price, 2))
      using errcode = 'BSV01', column = 'brl_amount';
  end if;
  if brl > offer.max_brl then
    raise exception 'O máximo por negociação nesta oferta é %.', core.format_brl(offer.max_brl)
      using errcode = 'BSV01', column = 'brl_amount';
  end if;
  -- Below the minimum only to take everything that is left.
  if brl < offer.min_brl and crypto < offer.remaining_amount then
    raise exception 'O mínimo por negociação nesta oferta é %.', core.format_brl(offer.min_brl)
      using errcode = 'BSV01', column = 'brl_amount';
  end if;
end
$$;
comment on function core.p2p_trade_size(core.p2p_offers, numeric, numeric) is
  'Step of api.open_p2p_trade: the price of the offer now (a fixed price must still be near the index: BSS01; a floating one needs a fresh index: BSP01) and the trade''s crypto and BRL amounts from the one the taker typed (BRL rounded to cents, crypto truncated to the currency''s scale), checked against the offer''s remaining amount and its per-trade minimum and maximum. BSV01, BSV03.';

create or replace function core.p2p_trade_payment_details(offer core.p2p_offers, payment_method text,
                                                          payment_details text) returns text
language plpgsql immutable as $$
declare
  v_details text;
begin
  if p2p_trade_payment_details.payment_method not in ('PIX', 'TED') then
    return null;
  end if;
  v_details := case when offer.side = 'SELL' then offer.payment_details
                    else nullif(btrim(p2p_trade_payment_details.payment_details), '') end;
  if v_details is null or length(v_details) < 5 then
    raise exception 'Informe seus dados para receber o pagamento (chave PIX ou conta para TED).'
      using errcode = 'BSV01', column = 'payment_details';
  end if;
  if length(v_details) > 500 then
    raise exception 'Dados de pagamento: até 500 caracteres.' using errcode = 'BSV01', column = 'payment_details';
  end if;
  return v_details;
end
$$;
comment on function core.p2p_trade_payment_details(core.p2p_offers, text, text) is
  'Step of api.open_p2p_trade: where the buyer pays the seller for PIX and TED (the SELL offer''s details, or what the taker selling on a BUY offer typed), 5 to 500 characters (BSV01); NULL for BALANCE and PIX_CONFIRMED.';

create or replace function core.p2p_lock_trade_parties(taker_id bigint, offer core.p2p_offers, buyer_id bigint,
                                                       seller_id bigint, payment_method text, brl numeric,
                                                       totp_code text) returns void
language plpgsql volatile as $$
begin
  -- Limits of both parties (per trade and per day, KYC level). Both
  -- customers are locked first (in id order), so two trades opened at the
  -- same instant cannot both pass the daily limit. One customer per
  -- statement (DESIGN.md §7: each lock stays on one shard under Citus).
  perform from core.users u where u.id = least(p2p_lock_trade_parties.taker_id, offer.user_id) for no key update;
  perform from core.users u where u.id = greatest(p2p_lock_trade_parties.taker_id, offer.user_id) for no key update;
  -- The seller's crypto leaves into escrow (an exit), and with BALANCE the
  -- buyer's BRL pays another customer: each is refused while their exits are
  -- blocked, and the taker confirms with 2FA when it is their value leaving.
  perform core.lock_for_exit(p2p_lock_trade_parties.seller_id);
  if p2p_lock_trade_parties.payment_method = 'BALANCE' then
    perform core.lock_for_exit(p2p_lock_trade_parties.buyer_id);
  end if;
  if p2p_lock_trade_parties.seller_id = p2p_lock_trade_parties.taker_id
     or p2p_lock_trade_parties.payment_method = 'BALANCE' then
    perform core.assert_step_up(p2p_lock_trade_parties.taker_id, p2p_lock_trade_parties.totp_code, 'p2p_open_trade');
  end if;
  perform core.enforce_trade_limit(p2p_lock_trade_parties.taker_id, brl);
  perform core.enforce_daily_limit(p2p_lock_trade_parties.taker_id, 'daily_p2p_brl',
                                   core.p2p_used_today(p2p_lock_trade_parties.taker_id), brl);
  begin
    perform core.enforce_trade_limit(offer.user_id, brl);
    perform core.enforce_daily_limit(offer.user_id, 'daily_p2p_brl', core.p2p_used_today(offer.user_id), brl);
  exception when sqlstate 'BSL01' then
    raise exception 'Este valor passa do limite do anunciante; tente um valor menor.'
      using errcode = 'BSL01', column = 'brl_amount';
  end;
end
$$;
comment on function core.p2p_lock_trade_parties(bigint, core.p2p_offers, bigint, bigint, text, numeric, text) is
  'Step of api.open_p2p_trade: locks the taker and the maker (one per statement, in id order), refuses while the seller''s exits (and with BALANCE the buyer''s) are blocked (BSA02), asks the taker''s TOTP when their value leaves, and enforces both parties'' per-trade and daily P2P limits (BSL01; the maker''s reworded).';

create or replace function core.p2p_trade_fees(offer core.p2p_offers, crypto numeric,
                                               out seller_fee numeric, out buyer_fee numeric)
language plpgsql stable as $$
declare
  v_taker_pct numeric := (select f.taker_percent from core.p2p_fees f where f.crypto = offer.crypto);
  v_offer_hold numeric;
begin
  if offer.side = 'SELL' then
    seller_fee := core.p2p_fee(p2p_trade_fees.crypto, offer.maker_fee_percent, offer.crypto);
    buyer_fee := core.p2p_fee(p2p_trade_fees.crypto, v_taker_pct, offer.crypto);
    -- The offer's hold always covers the remaining amount (held >= remaining);
    -- rounding on returns of cancelled trades may leave it a unit short of
    -- remaining + fees, so the maker's fee is capped by the margin held.
    select h.amount into v_offer_hold from core.holds h where h.id = offer.hold_id;
    seller_fee := least(seller_fee, v_offer_hold - offer.remaining_amount);
  else
    seller_fee := core.p2p_fee(p2p_trade_fees.crypto, v_taker_pct, offer.crypto);
    buyer_fee := core.p2p_fee(p2p_trade_fees.crypto, offer.maker_fee_percent, offer.crypto);
  end if;
end
$$;
comment on function core.p2p_trade_fees(core.p2p_offers, numeric) is
  'Step of api.open_p2p_trade: the seller''s and the buyer''s fee (in crypto, core.p2p_fees: the maker pays the offer''s maker_fee_percent, the taker the taker_percent), a SELL maker''s fee capped by what the offer''s hold has beyond its remaining amount.';

create or replace function core.p2p_escrow_trade(offer core.p2p_offers, trade_id bigint, seller_id bigint,
                                                 crypto numeric, seller_fee numeric,
                                                 out hold_id bigint, out rest_hold_id bigint)
language plpgsql volatile as $$
begin
  if offer.side = 'SELL' then
    select s.taken_hold_id, s.remainder_hold_id into hold_id, rest_hold_id
    from core.split_hold(offer.hold_id, p2p_escrow_trade.crypto + p2p_escrow_trade.seller_fee, 'p2p_trade',
                         core.p2p_ref(p2p_escrow_trade.trade_id)) s;
    if p2p_escrow_trade.crypto = offer.remaining_amount and rest_hold_id is not null then
      perform core.release_hold(rest_hold_id);  -- rounding dust of the fees
      rest_hold_id := null;
    end if;
  else
    begin
      hold_id := core.place_hold(p2p_escrow_trade.seller_id, offer.crypto,
                                 p2p_escrow_trade.crypto + p2p_escrow_trade.seller_fee, 'p2p_trade',
                                 core.p2p_ref(p2p_escrow_trade.trade_id));
    exception when sqlstate 'BSF01' then
      raise exception 'Saldo insuficiente: você precisa de % % disponíveis para vender (taxa incluída).',
        core.p2p_amount(p2p_escrow_trade.crypto + p2p_escrow_trade.seller_fee), offer.crypto
        using errcode = 'BSF01', column = 'brl_amount';
    end;
    rest_hold_id := null;
  end if;
end
$$;
comment on function core.p2p_escrow_trade(core.p2p_offers, bigint, bigint, numeric, numeric) is
  'Step of api.open_p2p_trade: escrows crypto + seller_fee for the trade (hold purpose p2p_trade): split out of a SELL offer''s hold (rest_hold_id is what stays with the offer; released as dust when the trade takes all that is left), or newly held from the taker selling on a BUY offer (BSF01 not enough available).';

create function api.open_p2p_trade(
  user_id bigint, offer_id bigint, payment_method text, idempotency_key text,
  brl_amount numeric default null, crypto_amount numeric default null, payment_details text default null,
  totp_code text default null)
returns table (trade_id bigint, status text, replayed boolean)
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
#variable_conflict use_column
declare
  v_taker core.users;
  v_offer core.p2p_offers;
  v_id bigint := nextval(pg_get_serial_sequence('core.p2p_trades', 'id'));
  v_prior jsonb;
  v_price numeric;
  v_crypto numeric;
  v_brl numeric;
  v_buyer bigint;
  v_seller bigint;
  v_seller_fee numeric;
  v_buyer_fee numeric;
  v_details text;
  v_hold bigint;
  v_rest bigint;
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

  v_offer := core.p2p_take_offer(v_taker, open_p2p_trade.offer_id, open_p2p_trade.payment_method);
  select s.price, s.crypto, s.brl into v_price, v_crypto, v_brl
    from core.p2p_trade_size(v_offer, open_p2p_trade.brl_amount, open_p2p_trade.crypto_amount) s;
  if v_offer.side = 'SELL' then
    v_buyer := open_p2p_trade.user_id;
    v_seller := v_offer.user_id;
  else
    v_buyer := v_offer.user_id;
    v_seller := open_p2p_trade.user_id;
  end if;
  v_details := core.p2p_trade_payment_details(v_offer, open_p2p_trade.payment_method, open_p2p_trade.payment_details);
  perform core.p2p_lock_trade_parties(open_p2p_trade.user_id, v_offer, v_buyer, v_seller,
                                      open_p2p_trade.payment_method, v_brl, open_p2p_trade.totp_code);
  select f.seller_fee, f.buyer_fee into v_seller_fee, v_buyer_fee from core.p2p_trade_fees(v_offer, v_crypto) f;
  select e.hold_id, e.rest_hold_id into v_hold, v_rest
    from core.p2p_escrow_trade(v_offer, v_id, v_seller, v_crypto, v_seller_fee) e;

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

create function api.preview_p2p_trade(user_id bigint, offer_id bigint, brl_amount numeric default null)
returns table (viewer_role text, fee_percent numeric, price numeric, crypto text, crypto_amount numeric,
               trade_brl numeric, seller_fee numeric, buyer_fee numeric, buyer_receives numeric,
               seller_delivers numeric)
language plpgsql stable security definer set search_path = pg_catalog, pg_temp as $$
#variable_conflict use_column
declare
  v_offer core.p2p_offers;
  v_role text;
  v_size record;
  v_fees record;
begin
  -- What api.open_p2p_trade would charge now, read without locking: the
  -- same sizing and fee steps, on the offer as the taker sees it.
  select * into v_offer from core.p2p_offers o
   where o.id = preview_p2p_trade.offer_id and o.user_id <> preview_p2p_trade.user_id
     and o.status in ('active', 'paused', 'filled') and not core.p2p_blocked(preview_p2p_trade.user_id, o.user_id);
  if not found then
    raise exception 'Oferta não encontrada.' using errcode = 'BSN01';
  end if;
  v_role := case when v_offer.side = 'SELL' then 'buyer' else 'seller' end;
  viewer_role := v_role;
  fee_percent := (select f.taker_percent from core.p2p_fees f where f.crypto = v_offer.crypto);
  crypto := v_offer.crypto;
  if preview_p2p_trade.brl_amount is null then
    return next;
    return;
  end if;
  select * into v_size from core.p2p_trade_size(v_offer, preview_p2p_trade.brl_amount, null) s;
  select * into v_fees from core.p2p_trade_fees(v_offer, v_size.crypto) f;
  price := v_size.price;
  crypto_amount := v_size.crypto;
  trade_brl := v_size.brl;
  seller_fee := v_fees.seller_fee;
  buyer_fee := v_fees.buyer_fee;
  buyer_receives := v_size.crypto - v_fees.buyer_fee;
  seller_delivers := v_size.crypto + v_fees.seller_fee;
  return next;
end
$$;
revoke all on function api.preview_p2p_trade(bigint, bigint, numeric) from public;
grant execute on function api.preview_p2p_trade(bigint, bigint, numeric) to exchange_app;
comment on function api.preview_p2p_trade(bigint, bigint, numeric) is
  'What a trade of brl_amount on an offer would be for the customer taking it, before they confirm: their role (buyer on a SELL offer, seller on a BUY offer), their fee percent (core.p2p_fees taker_percent), and for an amount the price now, crypto and BRL (trade_brl) amounts, both fees, what the buyer receives and what the seller delivers (crypto + seller fee) — the same steps as api.open_p2p_trade (core.p2p_trade_size, core.p2p_trade_fees), without locking. Without brl_amount only the role and fee percent. BSN01 (not visible, or one''s own), and the sizing errors of api.open_p2p_trade (BSV01, BSV03, BSS01, BSP01).';

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
-- Reading trades
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
