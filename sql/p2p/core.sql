-- p2p/core.sql: the P2P marketplace (DESIGN.md §3 and the state machine of §4).
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
--
-- The P2P domain is split by sub-domain into the files of sql/p2p/, applied in
-- this order (sql/manifest.txt): core.sql (these internal helpers), offers.sql,
-- trades.sql (opening, the OPEN/PAID transitions, reading), disputes.sql,
-- pix_confirmed.sql (the BRL rails' entry points), chat.sql (messages and
-- proofs), reputation.sql (ratings, profiles, blocks) and reporting.sql.

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
  select k.cpf into v_cpf from core.kyc_profiles k where k.user_id = user_cpf.user_id;
  return core.cpf_digits(v_cpf);
end
$$;
comment on function core.user_cpf(bigint) is
  'The CPF (11 digits) a customer verified in KYC (core.kyc_profiles), or NULL when none.';

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
  -- One row by primary key (core.p2p_reputation, kept by the state
  -- machine): the offer book reads it per maker without scanning trades.
  select coalesce(r.completed_trades, 0), coalesce(r.faulted_trades, 0),
         case when r.completed_trades + r.faulted_trades > 0
              then round(100.0 * r.completed_trades / (r.completed_trades + r.faulted_trades), 1) end,
         case when r.timed_releases > 0 then round(r.release_seconds / r.timed_releases) end,
         coalesce(r.positive_ratings, 0), coalesce(r.negative_ratings, 0)
  from (select) one
  left join core.p2p_reputation r on r.user_id = p2p_user_stats.user_id
$$;
comment on function core.p2p_user_stats(bigint) is
  'Reputation of a P2P customer: completed trades, trades cancelled or refunded by their fault, completion rate (%), average seconds from paid to released as seller (trades resolved by an admin left out), positive and negative ratings. Read from the counters of core.p2p_reputation (one row by primary key, no scan of the trades); reporting.books_health checks them against a recount.';

create or replace function core.p2p_count_outcome(buyer_id bigint, seller_id bigint, outcome text,
                                                  fault_user_id bigint default null,
                                                  release_seconds numeric default null) returns void
language plpgsql volatile as $$
declare
  v_user bigint;
begin
  if outcome not in ('completed', 'cancelled', 'refunded') then
    raise exception 'core.p2p_count_outcome: unknown outcome %', outcome using errcode = 'BSX01';
  end if;
  -- Both parties' counters, one customer per statement in id order (as the
  -- trade's other locks).
  foreach v_user in array array[least(p2p_count_outcome.buyer_id, p2p_count_outcome.seller_id),
                                greatest(p2p_count_outcome.buyer_id, p2p_count_outcome.seller_id)] loop
    insert into core.p2p_reputation as r (user_id, completed_trades, faulted_trades, timed_releases, release_seconds)
    values (v_user, (outcome = 'completed')::int,
            (outcome <> 'completed' and p2p_count_outcome.fault_user_id is not distinct from v_user)::int,
            (v_user = p2p_count_outcome.seller_id and p2p_count_outcome.release_seconds is not null)::int,
            case when v_user = p2p_count_outcome.seller_id then coalesce(p2p_count_outcome.release_seconds, 0) else 0 end)
    on conflict (user_id) do update
      set completed_trades = r.completed_trades + excluded.completed_trades,
          faulted_trades = r.faulted_trades + excluded.faulted_trades,
          timed_releases = r.timed_releases + excluded.timed_releases,
          release_seconds = r.release_seconds + excluded.release_seconds,
          updated_at = now();
  end loop;
end
$$;
comment on function core.p2p_count_outcome(bigint, bigint, text, bigint, numeric) is
  'Counts a trade''s final state in both parties'' core.p2p_reputation rows, in the transaction that reaches it: outcome completed (core.p2p_complete; release_seconds = paid → completed when the seller released from PAID, NULL otherwise), cancelled (core.p2p_cancel) or refunded (admin.resolve_p2p_dispute), the latter two against fault_user_id. Called exactly once per trade.';

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
  perform core.p2p_count_outcome(v_trade.buyer_id, v_trade.seller_id, 'cancelled', v_trade.buyer_id);
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
  -- A release from PAID (by the seller, or a confirmed PIX) is timed; one
  -- decided by an admin (DISPUTED, REVIEW) is not.
  perform core.p2p_count_outcome(v_trade.buyer_id, v_trade.seller_id, 'completed', null,
    case when v_trade.paid_at is not null and v_trade.status not in ('DISPUTED', 'REVIEW')
         then extract(epoch from now() - v_trade.paid_at) end);
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
