-- p2p/offers.sql: P2P offers: create, edit, pause, list (the offer book), expire.
-- Overview of the P2P domain in p2p/core.sql.

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
