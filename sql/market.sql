-- market.sql: the market desk — prices, quotes, orders on Binance, settlement.
--
-- Flow (DESIGN.md §1: no external call inside a transaction):
--   worker: admin.record_market_filters / admin.record_prices / admin.record_market_stats
--   customer: api.create_quote → api.execute_quote (hold + order EXECUTING, commit)
--   app: MARKET order on Binance, newClientOrderId = core.market_orders.client_order_id
--   app or reconciler: admin.settle_market_order (from the real fills, one entry)
--                      or admin.fail_market_order (hold released)
--
-- Money (all BRL amounts at scale 2, crypto at its currency scale):
--   buy  S BRL: spread = round(S·spread%), fee = round(S·fee%), Binance gets
--        quoteOrderQty Q = S − spread − fee. Settled from fills: the customer
--        pays ceil(C) + spread·ceil(C)/Q + fee·ceil(C)/Q (C = BRL Binance spent)
--        and receives floor(executed − commission) crypto; the rest of S is released.
--   sell A crypto: A rounded down to the market step; settled from fills the
--        customer delivers the executed quantity and receives
--        floor(C − commission) − spread − fee in BRL.
--   Rounding always favours the house, so the ledger never shows more at Binance
--   than there is; the below-scale remainders (which no posting can carry) are
--   recorded on the order as dust_brl / dust_crypto.

-- ---------------------------------------------------------------------------
-- Internal helpers (security invoker)
-- ---------------------------------------------------------------------------

create or replace function core.market_floor(amount numeric, step numeric) returns numeric
language sql immutable as $$
  select case when step is null or step <= 0 then amount else trim_scale(floor(amount / step) * step) end
$$;
comment on function core.market_floor(numeric, numeric) is 'Rounds an amount down to a multiple of step (a zero step means no rule).';

create or replace function core.market_ceil(amount numeric, scale int) returns numeric
language sql immutable as $$
  select round(ceil(amount * power(10::numeric, scale)) / power(10::numeric, scale), scale)
$$;
comment on function core.market_ceil(numeric, int) is 'Rounds an amount up to a number of decimals (what the customer pays for a below-scale cost).';

create or replace function core.market_format_crypto(amount numeric, currency text) returns text
language sql immutable as $$
  select translate(trim_scale(amount)::text, '.', ',') || ' ' || currency
$$;
comment on function core.market_format_crypto(numeric, text) is '0,00175 BTC: a crypto amount for messages.';

create or replace function core.market_filter(filters jsonb, filter_type text, field text) returns numeric
language sql immutable as $$
  select nullif(filters -> filter_type ->> field, '')::numeric
$$;
comment on function core.market_filter(jsonb, text, text) is 'A numeric field of one Binance filter (by filterType) of core.market_pairs.filters, or NULL.';

create or replace function core.market_pair_for_trade(base_currency text) returns core.market_pairs
language plpgsql stable as $$
declare
  v_pair core.market_pairs;
begin
  select * into v_pair from core.market_pairs m
   where m.base_currency = market_pair_for_trade.base_currency and m.quote_currency = 'BRL';
  if not found then
    raise exception 'A mesa não negocia %.', coalesce(base_currency, '(vazio)') using errcode = 'BSV01', column = 'crypto';
  end if;
  if not v_pair.enabled then
    raise exception 'A negociação de % está desativada no momento.', base_currency using errcode = 'BSP01', column = 'crypto';
  end if;
  if v_pair.status <> 'TRADING' then
    raise exception 'A negociação de %/BRL está suspensa na Binance (situação %). Tente mais tarde.',
      base_currency, v_pair.status using errcode = 'BSP01', column = 'crypto';
  end if;
  if v_pair.filters = '{}'::jsonb then
    raise exception 'As regras de negociação de %/BRL ainda não foram carregadas. Tente em instantes.', base_currency
      using errcode = 'BSP01', column = 'crypto';
  end if;
  return v_pair;
end
$$;
comment on function core.market_pair_for_trade(text) is
  'The BRL pair of a crypto, refusing a disabled pair, a pair Binance does not report as TRADING, or one whose filters are unknown (BSP01).';

create or replace function core.market_used_today(user_id bigint) returns numeric
language sql stable as $$
  -- The São Paulo calendar day: the limit resets at midnight for the customer.
  select coalesce(sum(o.limit_brl), 0) from core.market_orders o
   where o.user_id = market_used_today.user_id and o.status <> 'FAILED'
     and o.created_at >= (date_trunc('day', now() at time zone 'America/Sao_Paulo') at time zone 'America/Sao_Paulo')
$$;
comment on function core.market_used_today(bigint) is 'BRL value of the customer''s market orders today (São Paulo time), failed ones excluded.';

create or replace function core.market_order_text(o core.market_orders) returns text
language sql immutable as $$
  select case when o.side = 'buy' then 'Compra de ' else 'Venda de ' end || o.base_currency
         || ' (ordem ' || o.client_order_id || ')'
$$;
comment on function core.market_order_text(core.market_orders) is 'A short human name of a market order, for entries and notifications.';

-- ---------------------------------------------------------------------------
-- Worker: prices, filters, 24 h statistics
-- ---------------------------------------------------------------------------

create function admin.list_market_pairs()
returns table (symbol text, base_currency text, quote_currency text, enabled boolean, status text,
               filters_updated_at timestamptz)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  select m.symbol, m.base_currency, m.quote_currency, m.enabled, m.status, m.filters_updated_at
  from core.market_pairs m order by m.symbol
$$;
revoke all on function admin.list_market_pairs() from public;
grant execute on function admin.list_market_pairs() to exchange_app, exchange_worker, exchange_admin;
comment on function admin.list_market_pairs() is 'The Binance pairs of the desk with their status (the poller reads it to know what to poll).';

create function admin.record_prices(prices jsonb, fetched_at timestamptz default null)
returns integer
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_count int;
begin
  if jsonb_typeof(prices) is distinct from 'object' then
    raise exception 'prices must be a JSON object {symbol: price}' using errcode = 'BSV01', column = 'prices';
  end if;
  if exists (select from jsonb_each_text(prices) p where p.value !~ '^[0-9]+(\.[0-9]+)?$' or p.value::numeric <= 0) then
    raise exception 'Preço inválido em %', prices using errcode = 'BSV01', column = 'prices';
  end if;
  -- Unknown or disabled symbols are ignored: Binance may list more than we trade.
  insert into core.prices (symbol, price, source, fetched_at)
  select m.symbol, p.value::numeric, 'binance', coalesce(record_prices.fetched_at, now())
  from jsonb_each_text(prices) p join core.market_pairs m on m.symbol = p.key and m.enabled;
  get diagnostics v_count = row_count;
  return v_count;
end
$$;
revoke all on function admin.record_prices(jsonb, timestamptz) from public;
grant execute on function admin.record_prices(jsonb, timestamptz) to exchange_worker, exchange_admin;
comment on function admin.record_prices(jsonb, timestamptz) is
  'Appends Binance ticker prices {"BTCBRL": "560000.00", …} to the price history (enabled pairs only; others ignored). Returns how many were stored. Called by the worker''s price poller every few seconds.';

create function admin.record_market_filters(symbols jsonb)
returns integer
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_count int := 0;
  r record;
begin
  if jsonb_typeof(symbols) is distinct from 'object' then
    raise exception 'symbols must be a JSON object {symbol: {status, filters}}' using errcode = 'BSV01', column = 'symbols';
  end if;
  for r in select s.key as symbol, s.value as info from jsonb_each(symbols) s loop
    update core.market_pairs m
       set status = coalesce(r.info ->> 'status', 'UNKNOWN'),
           filters = coalesce(r.info -> 'filters', '{}'::jsonb),
           filters_updated_at = now()
     where m.symbol = r.symbol
       -- a listing whose assets do not match our pair is not our pair
       and (r.info ->> 'baseAsset' is null or r.info ->> 'baseAsset' = m.base_currency)
       and (r.info ->> 'quoteAsset' is null or r.info ->> 'quoteAsset' = m.quote_currency);
    if found then
      v_count := v_count + 1;
    end if;
  end loop;
  -- A pair Binance no longer lists cannot be traded.
  update core.market_pairs m set status = 'NOT_LISTED', filters_updated_at = now()
   where not symbols ? m.symbol and coalesce((symbols -> '_complete')::boolean, false);
  return v_count;
end
$$;
revoke all on function admin.record_market_filters(jsonb) from public;
grant execute on function admin.record_market_filters(jsonb) to exchange_worker, exchange_admin;
comment on function admin.record_market_filters(jsonb) is
  'Stores Binance exchangeInfo per pair: {"BTCBRL": {"status": "TRADING", "baseAsset": "BTC", "quoteAsset": "BRL", "filters": {"LOT_SIZE": {…}, "MARKET_LOT_SIZE": {…}, "PRICE_FILTER": {…}, "NOTIONAL": {…}}}}. Only a TRADING pair with filters can be quoted. With "_complete": true, pairs missing from the answer become NOT_LISTED.';

create function admin.record_market_stats(stats jsonb)
returns integer
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_count int;
begin
  if jsonb_typeof(stats) is distinct from 'object' then
    raise exception 'stats must be a JSON object {symbol: ticker}' using errcode = 'BSV01', column = 'stats';
  end if;
  insert into core.market_stats (symbol, open_price, high_price, low_price, volume, quote_volume, updated_at)
  select m.symbol, (s.value ->> 'openPrice')::numeric, (s.value ->> 'highPrice')::numeric,
         (s.value ->> 'lowPrice')::numeric, coalesce((s.value ->> 'volume')::numeric, 0),
         coalesce((s.value ->> 'quoteVolume')::numeric, 0), now()
  from jsonb_each(stats) s join core.market_pairs m on m.symbol = s.key
  where (s.value ->> 'openPrice')::numeric > 0
  on conflict (symbol) do update
     set open_price = excluded.open_price, high_price = excluded.high_price, low_price = excluded.low_price,
         volume = excluded.volume, quote_volume = excluded.quote_volume, updated_at = excluded.updated_at;
  get diagnostics v_count = row_count;
  return v_count;
end
$$;
revoke all on function admin.record_market_stats(jsonb) from public;
grant execute on function admin.record_market_stats(jsonb) to exchange_worker, exchange_admin;
comment on function admin.record_market_stats(jsonb) is
  'Stores Binance''s 24 h ticker per pair ({"BTCBRL": {"openPrice", "highPrice", "lowPrice", "volume", "quoteVolume"}}): the 24 h change on /market is the latest price against openPrice.';

create function admin.prune_prices()
returns bigint
language sql volatile security definer set search_path = pg_catalog, pg_temp as $$
  with gone as (
    delete from core.prices p
     where p.fetched_at < now() - make_interval(days => core.setting('price_history_days')::int)
       -- the latest price of a pair is never pruned, however old
       and p.id <> (select q.id from core.prices q where q.symbol = p.symbol order by q.fetched_at desc, q.id desc limit 1)
    returning 1)
  select count(*) from gone
$$;
revoke all on function admin.prune_prices() from public;
grant execute on function admin.prune_prices() to exchange_worker, exchange_admin;
comment on function admin.prune_prices() is 'Deletes price history older than the setting price_history_days (the latest price of each pair is kept). Returns how many rows went.';

-- ---------------------------------------------------------------------------
-- Customer: the desk page
-- ---------------------------------------------------------------------------

create function api.market_overview()
returns table (symbol text, base_currency text, name text, scale int, price numeric, fetched_at timestamptz,
               stale boolean, open_price numeric, change_percent numeric, high_price numeric, low_price numeric,
               stats_updated_at timestamptz, pair_status text, tradable boolean, reason text,
               spread_percent numeric, fee_percent numeric, quote_ttl_seconds int, price_stale_seconds int)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  select m.symbol, m.base_currency, c.name, c.scale, lp.price, lp.fetched_at, coalesce(lp.stale, true),
         s.open_price,
         case when s.open_price > 0 and lp.price is not null
              then round((lp.price - s.open_price) * 100 / s.open_price, 2) end,
         greatest(s.high_price, lp.price), least(s.low_price, lp.price), s.updated_at, m.status,
         (m.enabled and m.status = 'TRADING' and lp.price is not null and not lp.stale and m.filters <> '{}'::jsonb),
         case
           when not m.enabled then 'Par desativado pela mesa.'
           when m.status <> 'TRADING' then 'Negociação suspensa na Binance (' || m.status || ').'
           when lp.price is null then 'Ainda não temos cotação.'
           when lp.stale then 'Cotação desatualizada desde '
                || to_char(lp.fetched_at at time zone 'America/Sao_Paulo', 'HH24:MI:SS') || '. Negociação pausada.'
           when m.filters = '{}'::jsonb then 'Regras da corretora ainda não carregadas.'
         end,
         core.setting('market_spread_percent')::numeric, core.setting('market_fee_percent')::numeric,
         core.setting('quote_ttl_seconds')::int, core.setting('price_stale_seconds')::int
  from core.market_pairs m
  join core.currencies c on c.code = m.base_currency
  left join lateral core.latest_price(m.base_currency, m.quote_currency) lp on true
  left join core.market_stats s on s.symbol = m.symbol
  where m.quote_currency = 'BRL'
  order by c.sort_order
$$;
revoke all on function api.market_overview() from public;
grant execute on function api.market_overview() to exchange_app;
comment on function api.market_overview() is
  'Every BRL pair of the desk: latest price and when it was fetched, stale flag, 24 h change against Binance''s 24 h open, whether it can be traded now (and why not), and the desk''s spread, fee and quote validity.';

create function api.market_chart(symbol text, hours int default 24, width int default 600, height int default 200,
                                 max_points int default 120)
returns table (bucket_at timestamptz, price numeric, x numeric, y numeric, min_price numeric, max_price numeric,
               first_at timestamptz, last_at timestamptz)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  -- Our own price history, thinned to at most max_points (the last price of
  -- each time bucket), scaled to an SVG box width × height: x by time, y by
  -- price between the window's min and max (y grows downwards in SVG).
  with pts as (
    select p.fetched_at, p.price from core.prices p
     where p.symbol = market_chart.symbol
       and p.fetched_at > now() - make_interval(hours => least(greatest(market_chart.hours, 1), 24 * 31))
  ), bounds as (
    select min(fetched_at) as t0, max(fetched_at) as t1,
           greatest(extract(epoch from max(fetched_at) - min(fetched_at)), 0) as span
    from pts
  ), buckets as (
    select distinct on (b.n) b.fetched_at, b.price
    from (select pts.*, case when bounds.span = 0 then 0
                             else floor(extract(epoch from pts.fetched_at - bounds.t0) * least(greatest(market_chart.max_points, 2), 1000)
                                        / bounds.span) end as n
          from pts, bounds) b
    order by b.n, b.fetched_at desc
  ), range as (
    select min(price) as lo, max(price) as hi from buckets
  )
  select k.fetched_at, k.price,
         case when bounds.span = 0 then market_chart.width::numeric
              else round(extract(epoch from k.fetched_at - bounds.t0) * market_chart.width / bounds.span, 1) end,
         case when range.hi = range.lo then round(market_chart.height / 2.0, 1)
              else round(market_chart.height - (k.price - range.lo) * market_chart.height / (range.hi - range.lo), 1) end,
         range.lo, range.hi, bounds.t0, bounds.t1
  from buckets k, bounds, range
  order by k.fetched_at
$$;
revoke all on function api.market_chart(text, int, int, int, int) from public;
grant execute on function api.market_chart(text, int, int, int, int) to exchange_app;
comment on function api.market_chart(text, int, int, int, int) is
  'Points of a price chart from our own price history of the last `hours`: at most max_points, each with its SVG coordinates in a width × height box (display only), and the min/max price and time span of the window.';

-- ---------------------------------------------------------------------------
-- Customer: quote → execute
-- ---------------------------------------------------------------------------

create function api.create_quote(user_id bigint, side text, crypto text, amount numeric)
returns table (quote_id bigint, expires_at timestamptz)
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
#variable_conflict use_column
declare
  v_pair core.market_pairs;
  v_scale int;
  v_price numeric;
  v_fetched timestamptz;
  v_sp numeric := core.setting('market_spread_percent')::numeric;
  v_fp numeric := core.setting('market_fee_percent')::numeric;
  v_bc numeric := core.setting('market_binance_commission_percent')::numeric;
  v_lot_step numeric;
  v_step numeric;
  v_min_qty numeric;
  v_max_qty numeric;
  v_min_notional numeric;
  v_spread numeric;
  v_fee numeric;
  v_q numeric;
  v_qty numeric;
  v_est_brl numeric;
  v_est_crypto numeric;
  v_limit numeric;
  v_gross numeric;
  v_est_spread numeric;
  v_est_fee numeric;
  v_min numeric;
  v_available numeric;
  v_id bigint;
  v_expires timestamptz;
begin
  perform core.assert_active_user(create_quote.user_id);
  if create_quote.side is null or create_quote.side not in ('buy', 'sell') then
    raise exception 'Escolha comprar ou vender.' using errcode = 'BSV01', column = 'side';
  end if;
  v_pair := core.market_pair_for_trade(create_quote.crypto);
  select c.scale into v_scale from core.currencies c where c.code = v_pair.base_currency;
  v_price := core.fresh_price(v_pair.base_currency);
  select lp.fetched_at into v_fetched from core.latest_price(v_pair.base_currency) lp;

  v_lot_step := coalesce(core.market_filter(v_pair.filters, 'LOT_SIZE', 'stepSize'), 0);
  v_step := coalesce(nullif(core.market_filter(v_pair.filters, 'MARKET_LOT_SIZE', 'stepSize'), 0), v_lot_step);
  v_min_qty := greatest(coalesce(core.market_filter(v_pair.filters, 'LOT_SIZE', 'minQty'), 0),
                        coalesce(core.market_filter(v_pair.filters, 'MARKET_LOT_SIZE', 'minQty'), 0));
  v_max_qty := coalesce(nullif(core.market_filter(v_pair.filters, 'MARKET_LOT_SIZE', 'maxQty'), 0),
                        nullif(core.market_filter(v_pair.filters, 'LOT_SIZE', 'maxQty'), 0));
  v_min_notional := coalesce(core.market_filter(v_pair.filters, 'NOTIONAL', 'minNotional'),
                             core.market_filter(v_pair.filters, 'MIN_NOTIONAL', 'minNotional'), 0);

  if create_quote.side = 'buy' then
    perform core.check_amount('BRL', create_quote.amount);
    v_spread := round(create_quote.amount * v_sp / 100, 2);
    v_fee := round(create_quote.amount * v_fp / 100, 2);
    v_q := create_quote.amount - v_spread - v_fee;
    v_qty := core.market_floor(v_q / v_price, v_lot_step);
    if v_q < v_min_notional or v_qty <= 0 or v_qty < v_min_qty then
      -- the smallest gross amount whose net reaches Binance's minimums
      v_min := core.market_ceil(greatest(v_min_notional, v_min_qty * v_price) * 100 / (100 - v_sp - v_fp), 2);
      while v_min - round(v_min * v_sp / 100, 2) - round(v_min * v_fp / 100, 2) < greatest(v_min_notional, v_min_qty * v_price) loop
        v_min := v_min + 0.01;
      end loop;
      raise exception 'O valor mínimo de compra de % é %.', v_pair.base_currency, core.format_brl(v_min)
        using errcode = 'BSV01', column = 'amount';
    end if;
    v_est_crypto := trunc(v_qty * (1 - v_bc / 100), v_scale);
    -- what settlement will likely charge: Binance buys whole steps, the rest is released
    v_gross := core.market_ceil(v_qty * v_price, 2);
    v_est_spread := round(v_spread * v_gross / v_q, 2);
    v_est_fee := round(v_fee * v_gross / v_q, 2);
    v_est_brl := v_gross + v_est_spread + v_est_fee;
    v_limit := create_quote.amount;
    select a.balance into v_available from core.accounts a where a.id = core.user_account(create_quote.user_id, 'BRL');
  else
    perform core.check_amount(v_pair.base_currency, create_quote.amount);
    -- trimmed: Binance refuses more decimals than the asset's precision (-1111)
    v_qty := trim_scale(trunc(core.market_floor(create_quote.amount, v_step), v_scale));
    if v_qty <= 0 or v_qty < v_min_qty or v_qty * v_price < v_min_notional then
      v_min := greatest(v_min_qty, core.market_floor(v_min_notional / v_price, v_step) + greatest(v_step, power(10::numeric, -v_scale)));
      raise exception 'A quantidade mínima de venda é % (cerca de %).',
        core.market_format_crypto(v_min, v_pair.base_currency), core.format_brl(v_min_notional)
        using errcode = 'BSV01', column = 'amount';
    end if;
    if v_max_qty is not null and v_qty > v_max_qty then
      raise exception 'A quantidade máxima por ordem é %.', core.market_format_crypto(v_max_qty, v_pair.base_currency)
        using errcode = 'BSV01', column = 'amount';
    end if;
    v_gross := trunc(v_qty * v_price * (1 - v_bc / 100), 2);
    v_spread := round(v_gross * v_sp / 100, 2);
    v_fee := round(v_gross * v_fp / 100, 2);
    v_est_spread := v_spread;
    v_est_fee := v_fee;
    v_est_brl := v_gross - v_spread - v_fee;
    v_est_crypto := v_qty;
    v_limit := round(v_qty * v_price, 2);
    select a.balance into v_available from core.accounts a
     where a.id = core.user_account(create_quote.user_id, v_pair.base_currency);
  end if;

  -- Early, friendly refusals; execute_quote checks all of this again.
  if coalesce(v_available, 0) < (case when create_quote.side = 'buy' then create_quote.amount else v_qty end) then
    raise exception 'Saldo insuficiente: você tem % disponível.',
      case when create_quote.side = 'buy' then core.format_brl(coalesce(v_available, 0))
           else core.market_format_crypto(coalesce(v_available, 0), v_pair.base_currency) end
      using errcode = 'BSF01', column = 'amount';
  end if;
  perform core.enforce_trade_limit(create_quote.user_id, v_limit);
  perform core.enforce_daily_limit(create_quote.user_id, 'daily_market_brl',
                                   core.market_used_today(create_quote.user_id), v_limit);

  v_expires := now() + make_interval(secs => core.setting('quote_ttl_seconds')::int);
  insert into core.market_quotes (user_id, side, symbol, base_currency, amount, price, price_fetched_at,
                                  spread_percent, fee_percent, spread_amount, fee_amount, quote_order_qty, quantity,
                                  estimated_brl, estimated_crypto, limit_brl, expires_at, estimated_quantity,
                                  estimated_gross_brl, estimated_spread, estimated_fee)
  values (create_quote.user_id, create_quote.side, v_pair.symbol, v_pair.base_currency, create_quote.amount, v_price,
          v_fetched, v_sp, v_fp, v_spread, v_fee,
          case when create_quote.side = 'buy' then v_q end, case when create_quote.side = 'sell' then v_qty end,
          v_est_brl, v_est_crypto, v_limit, v_expires, v_qty, v_gross, v_est_spread, v_est_fee)
  returning id into v_id;
  return query select v_id, v_expires;
end
$$;
revoke all on function api.create_quote(bigint, text, text, numeric) from public;
grant execute on function api.create_quote(bigint, text, text, numeric) to exchange_app;
comment on function api.create_quote(bigint, text, text, numeric) is
  'Stores a quote valid quote_ttl_seconds: buy (amount = BRL to spend: spread and fee come off it, the rest is the quoteOrderQty sent to Binance) or sell (amount = crypto, rounded down to the Binance market step). Price from core.fresh_price. Errors: BSP01 stale price or market closed, BSV01 side/crypto/below Binance minimums, BSV02/BSV03 amount, BSF01 balance, BSL01 KYC limits, BSA02 frozen. Long: a quarter of it is declarations; the body reads Binance''s filters, sizes buy and sell side by side and refuses early what execute_quote would refuse, in one pass over one price.';

create function api.get_quote(user_id bigint, quote_id bigint)
returns table (id bigint, side text, symbol text, base_currency text, amount numeric, price numeric,
               price_fetched_at timestamptz, spread_percent numeric, fee_percent numeric, spread_amount numeric,
               fee_amount numeric, quote_order_qty numeric, quantity numeric, estimated_brl numeric,
               estimated_crypto numeric, effective_price numeric, expires_at timestamptz, seconds_left int,
               expired boolean, order_id bigint, created_at timestamptz, binance_commission_percent numeric,
               estimated_quantity numeric, notional_brl numeric, commission_brl numeric, commission_crypto numeric,
               estimated_gross_brl numeric, estimated_spread numeric, estimated_fee numeric)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  select q.id, q.side, q.symbol, q.base_currency, q.amount, q.price, q.price_fetched_at, q.spread_percent,
         q.fee_percent, q.spread_amount, q.fee_amount, q.quote_order_qty, q.quantity, q.estimated_brl,
         q.estimated_crypto,
         case when q.estimated_crypto > 0 then round(q.estimated_brl / q.estimated_crypto, 2) end,
         q.expires_at, greatest(0, ceil(extract(epoch from q.expires_at - now())))::int, q.expires_at <= now(),
         o.id, q.created_at, core.setting('market_binance_commission_percent')::numeric, q.estimated_quantity,
         -- the lines of the page: quantity × price, Binance's commission (what
         -- it keeps, with the rounding in the house's favour), then spread and fee
         case when q.side = 'sell' then round(q.estimated_quantity * q.price, 2) else q.estimated_gross_brl end,
         case when q.side = 'sell' then round(q.estimated_quantity * q.price, 2) - q.estimated_gross_brl end,
         case when q.side = 'buy' then q.estimated_quantity - q.estimated_crypto end,
         q.estimated_gross_brl, q.estimated_spread, q.estimated_fee
  from core.market_quotes q left join core.market_orders o on o.quote_id = q.id
  where q.id = get_quote.quote_id and q.user_id = get_quote.user_id
$$;
revoke all on function api.get_quote(bigint, bigint) from public;
grant execute on function api.get_quote(bigint, bigint) to exchange_app;
comment on function api.get_quote(bigint, bigint) is 'One of the customer''s quotes (nothing for someone else''s), with seconds left, expiry and the order it became, if any, and the lines that add up to what settlement posts at the quoted price: a buy, estimated_quantity × price = estimated_gross_brl (what Binance spends, to the centavo above) + estimated_spread + estimated_fee = estimated_brl debited, and estimated_quantity − commission_crypto = estimated_crypto received; a sell, estimated_quantity × price = notional_brl − commission_brl (Binance''s, and the rounding down) = estimated_gross_brl − estimated_spread − estimated_fee = estimated_brl credited.';

create function api.execute_quote(user_id bigint, quote_id bigint, idempotency_key text)
returns table (order_id bigint, status text, client_order_id text, symbol text, side text,
               quote_order_qty numeric, quantity numeric, replayed boolean)
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
#variable_conflict use_column
declare
  v_quote core.market_quotes;
  v_prior jsonb;
  v_order_id bigint;
  v_client text;
  v_hold bigint;
begin
  perform core.assert_active_user(execute_quote.user_id);
  perform core.assert_email_verified(execute_quote.user_id);
  -- One execution at a time per customer: the daily limit below counts the
  -- orders of today, and two concurrent confirmations must not both fit.
  perform 1 from core.users u where u.id = execute_quote.user_id for update;
  v_prior := core.claim_idempotency(execute_quote.user_id, 'market:' || coalesce(idempotency_key, ''), 'execute_quote',
                                    md5(execute_quote.quote_id::text), '{}'::jsonb);
  if v_prior is not null then
    return query select o.id, o.status, o.client_order_id, o.symbol, o.side, o.quote_order_qty, o.quantity, true
                   from core.market_orders o where o.id = (v_prior ->> 'order_id')::bigint;
    return;
  end if;

  select * into v_quote from core.market_quotes q
   where q.id = execute_quote.quote_id and q.user_id = execute_quote.user_id for update;
  if not found then
    raise exception 'Cotação não encontrada.' using errcode = 'BSN01';
  end if;
  select o.id into v_order_id from core.market_orders o where o.quote_id = v_quote.id;
  if found then
    -- The same quote confirmed again (another tab, a new key): one order only.
    perform core.finish_idempotency(execute_quote.user_id, 'execute_quote', 'market:' || idempotency_key, jsonb_build_object('order_id', v_order_id));
    return query select o.id, o.status, o.client_order_id, o.symbol, o.side, o.quote_order_qty, o.quantity, true
                   from core.market_orders o where o.id = v_order_id;
    return;
  end if;
  if v_quote.expires_at <= now() then
    raise exception 'Esta cotação expirou. Peça uma nova cotação.' using errcode = 'BSS01';
  end if;
  perform core.market_pair_for_trade(v_quote.base_currency);
  perform core.fresh_price(v_quote.base_currency);
  perform core.enforce_trade_limit(execute_quote.user_id, v_quote.limit_brl);
  perform core.enforce_daily_limit(execute_quote.user_id, 'daily_market_brl',
                                   core.market_used_today(execute_quote.user_id), v_quote.limit_brl);

  v_order_id := nextval(pg_get_serial_sequence('core.market_orders', 'id'));
  v_client := 'bsm-' || v_order_id;
  v_hold := core.place_hold(execute_quote.user_id,
                            case when v_quote.side = 'buy' then 'BRL' else v_quote.base_currency end,
                            case when v_quote.side = 'buy' then v_quote.amount else v_quote.quantity end,
                            'market_order', 'market:' || v_client);
  insert into core.market_orders (id, user_id, quote_id, side, symbol, base_currency, client_order_id, hold_id, amount,
                                  quote_order_qty, quantity, price, spread_percent, fee_percent, quoted_spread,
                                  quoted_fee, limit_brl)
  overriding system value
  values (v_order_id, execute_quote.user_id, v_quote.id, v_quote.side, v_quote.symbol, v_quote.base_currency, v_client,
          v_hold, case when v_quote.side = 'buy' then v_quote.amount else v_quote.quantity end,
          v_quote.quote_order_qty, v_quote.quantity, v_quote.price, v_quote.spread_percent, v_quote.fee_percent,
          v_quote.spread_amount, v_quote.fee_amount, v_quote.limit_brl);
  perform core.finish_idempotency(execute_quote.user_id, 'execute_quote', 'market:' || idempotency_key, jsonb_build_object('order_id', v_order_id));
  return query select v_order_id, 'EXECUTING'::text, v_client, v_quote.symbol, v_quote.side, v_quote.quote_order_qty,
                      v_quote.quantity, false;
end
$$;
revoke all on function api.execute_quote(bigint, bigint, text) from public;
grant execute on function api.execute_quote(bigint, bigint, text) to exchange_app;
comment on function api.execute_quote(bigint, bigint, text) is
  'Confirms a quote: holds the funds (BRL for a buy, the crypto for a sell) and creates the order EXECUTING with client_order_id bsm-<id>, the newClientOrderId to send to Binance. Idempotent per key, and a quote becomes at most one order (replayed = true). Errors: BSN01 not your quote, BSS01 expired quote, BSP01 stale price or market closed, BSF01 balance, BSL01 KYC limits, BSA02 frozen, BSI01 key reused for another quote.';

-- ---------------------------------------------------------------------------
-- Outcome: settle from the fills, or fail
-- ---------------------------------------------------------------------------

create or replace function core.market_settlement_legs(
  o core.market_orders, held numeric, e numeric, c numeric, commission numeric, scale int,
  out brl numeric, out crypto numeric, out spread numeric, out fee numeric, out captured numeric,
  out dust_brl numeric, out dust_crypto numeric, out account_ids bigint[], out amounts numeric[])
language plpgsql volatile as $$
declare
  v_paid numeric;
  v_gross numeric;
begin
  if o.side = 'buy' then
    v_paid := core.market_ceil(c, 2);  -- what Binance spent, to the centavo above
    if v_paid > o.quote_order_qty then
      raise exception 'A Binance gastou % BRL, mais que os % pedidos na ordem %.', c, o.quote_order_qty,
        o.client_order_id using errcode = 'BSX01';
    end if;
    -- Spread and fee in proportion to what was actually spent: the quoted
    -- percentages, also for a partial execution.
    spread := round(o.quoted_spread * v_paid / o.quote_order_qty, 2);
    fee := round(o.quoted_fee * v_paid / o.quote_order_qty, 2);
    brl := v_paid + spread + fee;
    crypto := trunc(e - commission, scale);
    if crypto <= 0 then
      raise exception 'A execução da ordem % não rende cripto após a comissão.', o.client_order_id using errcode = 'BSX01';
    end if;
    captured := brl;
    dust_brl := v_paid - c;
    dust_crypto := e - commission - crypto;
    account_ids := array[core.user_account(o.user_id, 'BRL', 'locked'),
                   core.user_account(o.user_id, 'BRL', 'available'),
                   core.system_account('binance_omnibus', 'BRL'),
                   core.fee_account('BRL', o.client_order_id),
                   core.system_account('binance_omnibus', o.base_currency),
                   core.user_account(o.user_id, o.base_currency, 'available')];
    amounts := array[-held, held - brl, v_paid, spread + fee, -crypto, crypto];
  else
    if e > o.quantity then
      raise exception 'A Binance vendeu %, mais que os % pedidos na ordem %.', e, o.quantity,
        o.client_order_id using errcode = 'BSX01';
    end if;
    if e <> round(e, scale) then
      raise exception 'Quantidade executada % fora da escala de %.', e, o.base_currency using errcode = 'BSX01';
    end if;
    v_gross := trunc(c - commission, 2);  -- what Binance credited us, to the centavo below
    spread := round(v_gross * o.spread_percent / 100, 2);
    fee := round(v_gross * o.fee_percent / 100, 2);
    brl := v_gross - spread - fee;
    if brl <= 0 then
      raise exception 'A execução da ordem % não rende reais após spread e taxa.', o.client_order_id using errcode = 'BSX01';
    end if;
    crypto := e;
    captured := e;
    dust_brl := c - commission - v_gross;
    dust_crypto := 0;
    account_ids := array[core.user_account(o.user_id, o.base_currency, 'locked'),
                   core.user_account(o.user_id, o.base_currency, 'available'),
                   core.system_account('binance_omnibus', o.base_currency),
                   core.system_account('binance_omnibus', 'BRL'),
                   core.fee_account('BRL', o.client_order_id),
                   core.user_account(o.user_id, 'BRL', 'available')];
    amounts := array[-held, held - e, e, -v_gross, spread + fee, brl];
  end if;
end
$$;
comment on function core.market_settlement_legs(core.market_orders, numeric, numeric, numeric, numeric, int) is
  'Step of admin.settle_market_order: from what Binance executed (executed_qty of the crypto for quote_qty BRL, commission in the asset received) the customer''s BRL and crypto, the spread and fee charged, what the hold captures, the below-scale dust the house keeps, and the legs of the one journal entry (accounts and signed amounts). A buy: what Binance spent rounded up to the centavo, spread and fee in proportion to it; a sell: what it credited rounded down, spread and fee on that. BSX01 when Binance did more than was asked or the result is not positive.';

create function admin.settle_market_order(order_id bigint, binance_order_id bigint, executed_qty numeric,
                                          cummulative_quote_qty numeric, fills jsonb,
                                          binance_status text default 'FILLED')
returns table (id bigint, status text, entry_id bigint, brl_amount numeric, crypto_amount numeric,
               spread_charged numeric, fee_charged numeric, replayed boolean)
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
#variable_conflict use_column
declare
  v_order core.market_orders;
  v_hold core.holds;
  v_scale int;
  v_receive text;
  v_commission numeric;
  v_fill_qty numeric;
  v_c numeric := settle_market_order.cummulative_quote_qty;
  v_e numeric := settle_market_order.executed_qty;
  v_spread numeric;
  v_fee numeric;
  v_brl numeric;
  v_crypto numeric;
  v_captured numeric;
  v_dust_brl numeric;
  v_dust_crypto numeric;
  v_entry bigint;
  v_ids bigint[];
  v_amounts numeric[];
begin
  select * into v_order from core.market_orders o where o.id = settle_market_order.order_id for update;
  if not found then
    raise exception 'Ordem % não encontrada.', settle_market_order.order_id using errcode = 'BSN01';
  end if;
  if v_order.status = 'COMPLETED' then
    if v_order.binance_order_id is distinct from settle_market_order.binance_order_id then
      raise exception 'Ordem % já foi liquidada com a ordem Binance %, não %.', v_order.client_order_id,
        v_order.binance_order_id, settle_market_order.binance_order_id using errcode = 'BSS01';
    end if;
    return query select v_order.id, v_order.status, v_order.entry_id, v_order.brl_amount, v_order.crypto_amount,
                        v_order.spread_charged, v_order.fee_charged, true;
    return;
  end if;
  if v_order.status = 'FAILED' then
    -- Binance executed an order we had given up on: an operator must look.
    raise exception 'Ordem % já foi marcada como falha (%); a execução na Binance precisa de revisão manual.',
      v_order.client_order_id, v_order.failure_reason using errcode = 'BSS01';
  end if;
  if v_e is null or v_e <= 0 or v_c is null or v_c <= 0 then
    raise exception 'Nada foi executado na ordem %: use admin.fail_market_order.', v_order.client_order_id
      using errcode = 'BSV01';
  end if;
  if jsonb_typeof(settle_market_order.fills) is distinct from 'array' or jsonb_array_length(settle_market_order.fills) = 0 then
    raise exception 'Liquidação sem as execuções (fills) da ordem %.', v_order.client_order_id using errcode = 'BSV01';
  end if;

  select c.scale into v_scale from core.currencies c where c.code = v_order.base_currency;
  v_receive := case when v_order.side = 'buy' then v_order.base_currency else 'BRL' end;
  select sum((f ->> 'qty')::numeric),
         coalesce(sum((f ->> 'commission')::numeric) filter (where f ->> 'commissionAsset' = v_receive), 0)
    into v_fill_qty, v_commission
  from jsonb_array_elements(settle_market_order.fills) f;
  if v_fill_qty is distinct from v_e then
    raise exception 'As execuções somam % mas a ordem executou %.', v_fill_qty, v_e using errcode = 'BSV01';
  end if;
  -- A commission in a third asset (e.g. BNB) is the house's cost: not passed on.

  select * into v_hold from core.holds h where h.id = v_order.hold_id for update;
  if v_hold.status <> 'open' then
    raise exception 'Bloqueio % da ordem % já foi resolvido.', v_hold.id, v_order.client_order_id using errcode = 'BSH01';
  end if;

  select s.brl, s.crypto, s.spread, s.fee, s.captured, s.dust_brl, s.dust_crypto, s.account_ids, s.amounts
    into v_brl, v_crypto, v_spread, v_fee, v_captured, v_dust_brl, v_dust_crypto, v_ids, v_amounts
    from core.market_settlement_legs(v_order, v_hold.amount, v_e, v_c, v_commission, v_scale) s;

  -- One entry: the hold is captured (the unused part released), Binance's side
  -- moves against the omnibus accounts and spread + fee go to fee revenue.
  v_entry := core.post_entry('market_' || v_order.side, 'market:' || v_order.client_order_id, v_order.user_id,
                             v_ids, v_amounts,
                             core.market_order_text(v_order) || format(': spread %s, taxa %s', v_spread, v_fee),
                             null, v_hold.id);
  update core.holds h set status = 'captured', captured = v_captured, resolved_entry_id = v_entry, resolved_at = now()
   where h.id = v_hold.id;
  update core.market_orders o
     set status = 'COMPLETED', binance_order_id = settle_market_order.binance_order_id,
         binance_status = settle_market_order.binance_status, executed_qty = v_e, cummulative_quote_qty = v_c,
         commission = v_commission, fills = settle_market_order.fills, brl_amount = v_brl, crypto_amount = v_crypto,
         spread_charged = v_spread, fee_charged = v_fee, dust_brl = v_dust_brl, dust_crypto = v_dust_crypto,
         entry_id = v_entry, settled_at = now()
   where o.id = v_order.id;
  perform core.notify(v_order.user_id, 'market.completed',
    case when v_order.side = 'buy'
         then format('Compra concluída: você recebeu %s por %s.', core.market_format_crypto(v_crypto, v_order.base_currency), core.format_brl(v_brl))
         else format('Venda concluída: você vendeu %s e recebeu %s.', core.market_format_crypto(v_crypto, v_order.base_currency), core.format_brl(v_brl))
    end, '/market/orders/' || v_order.id);
  return query select v_order.id, 'COMPLETED'::text, v_entry, v_brl, v_crypto, v_spread, v_fee, false;
end
$$;
revoke all on function admin.settle_market_order(bigint, bigint, numeric, numeric, jsonb, text) from public;
grant execute on function admin.settle_market_order(bigint, bigint, numeric, numeric, jsonb, text) to exchange_worker, exchange_admin;
comment on function admin.settle_market_order(bigint, bigint, numeric, numeric, jsonb, text) is
  'Settles an EXECUTING market order from Binance''s real execution (executedQty, cummulativeQuoteQty, fills [{price, qty, commission, commissionAsset, tradeId}]) in one entry: hold captured (rest released), BRL and crypto against the binance_omnibus accounts, spread + fee to fee revenue; rounding favours the house and below-scale dust is recorded on the order. Idempotent: settling a COMPLETED order with the same Binance order id returns the first result (replayed). BSS01 on a FAILED order or another Binance order id.';

create function admin.fail_market_order(order_id bigint, reason text, provider_message text default null)
returns table (id bigint, status text, replayed boolean)
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
#variable_conflict use_column
declare
  v_order core.market_orders;
begin
  select * into v_order from core.market_orders o where o.id = fail_market_order.order_id for update;
  if not found then
    raise exception 'Ordem % não encontrada.', fail_market_order.order_id using errcode = 'BSN01';
  end if;
  if v_order.status = 'FAILED' then
    return query select v_order.id, v_order.status, true;
    return;
  end if;
  if v_order.status = 'COMPLETED' then
    raise exception 'Ordem % já foi concluída; não pode falhar.', v_order.client_order_id using errcode = 'BSS01';
  end if;
  if reason is null or length(btrim(reason)) = 0 then
    raise exception 'Informe o motivo.' using errcode = 'BSV01', column = 'reason';
  end if;
  perform core.release_hold(v_order.hold_id, 'market:' || v_order.client_order_id);
  update core.market_orders o
     set status = 'FAILED', failure_reason = btrim(fail_market_order.reason),
         provider_message = fail_market_order.provider_message, settled_at = now()
   where o.id = v_order.id;
  perform core.notify(v_order.user_id, 'market.failed',
    format('%s não foi executada: %s Seu saldo foi liberado.', core.market_order_text(v_order), btrim(reason)),
    '/market/orders/' || v_order.id);
  return query select v_order.id, 'FAILED'::text, false;
end
$$;
revoke all on function admin.fail_market_order(bigint, text, text) from public;
grant execute on function admin.fail_market_order(bigint, text, text) to exchange_worker, exchange_admin;
comment on function admin.fail_market_order(bigint, text, text) is
  'Fails an EXECUTING market order that Binance did not execute (rejected, or never arrived): releases the hold in full and notifies the customer with the readable reason. Idempotent on a FAILED order; BSS01 on a COMPLETED one.';

create function admin.note_market_order(order_id bigint, note text)
returns void
language sql volatile security definer set search_path = pg_catalog, pg_temp as $$
  update core.market_orders o
     set checks = o.checks + 1, last_checked_at = now(), last_note = left(note_market_order.note, 500)
   where o.id = note_market_order.order_id and o.status = 'EXECUTING'
$$;
revoke all on function admin.note_market_order(bigint, text) from public;
grant execute on function admin.note_market_order(bigint, text) to exchange_worker, exchange_admin;
comment on function admin.note_market_order(bigint, text) is 'Records that an EXECUTING order was looked at and why it is still executing (outcome unknown, not found yet…).';

create function admin.market_orders_to_place(max_rows int default 20)
returns table (order_id bigint, user_id bigint, symbol text, side text, client_order_id text,
               quote_order_qty numeric, quantity numeric)
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
begin
  -- Confirmed orders the worker has not sent yet, young enough to be sent at
  -- the price quoted (older ones are the reconciler's: Binance never saw
  -- them, and they fail). Stamped placed_at and committed before sending, so
  -- an order is sent at most once.
  return query
  with due as (
    select o.id from core.market_orders o
    where o.status = 'EXECUTING' and o.placed_at is null
      and o.created_at > now() - make_interval(secs => core.setting('market_reconcile_after_seconds')::int)
    order by o.id limit least(greatest(max_rows, 1), 100)
    for update skip locked
  ), stamped as (
    update core.market_orders o set placed_at = now() from due where o.id = due.id returning o.*
  )
  select s.id, s.user_id, s.symbol, s.side, s.client_order_id, s.quote_order_qty, s.quantity from stamped s order by s.id;
end
$$;
revoke all on function admin.market_orders_to_place(int) from public;
grant execute on function admin.market_orders_to_place(int) to exchange_worker, exchange_admin;
comment on function admin.market_orders_to_place(int) is
  'Worker: confirmed market orders not yet sent to Binance (younger than market_reconcile_after_seconds), marked placed before the worker sends each once with newClientOrderId = client_order_id.';

create function admin.list_stuck_market_orders(older_than_seconds int default null, max_rows int default 100)
returns table (order_id bigint, user_id bigint, symbol text, side text, client_order_id text,
               quote_order_qty numeric, quantity numeric, age_seconds int, lost boolean, checks int,
               last_note text)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  select o.id, o.user_id, o.symbol, o.side, o.client_order_id, o.quote_order_qty, o.quantity,
         floor(extract(epoch from now() - o.created_at))::int,
         -- lost counts from when the order was sent (placed_at), not from when it was confirmed: an
         -- order queued behind a slow Binance call is not lost, and Binance may still fill it (chaos run)
         coalesce(o.placed_at, o.created_at) < now() - make_interval(secs => core.setting('market_order_lost_seconds')::int),
         o.checks, o.last_note
  from core.market_orders o
  where o.status = 'EXECUTING'
    and o.created_at < now() - make_interval(secs => coalesce(list_stuck_market_orders.older_than_seconds,
                                                              core.setting('market_reconcile_after_seconds')::int))
  order by o.created_at
  limit least(greatest(max_rows, 1), 1000)
$$;
revoke all on function admin.list_stuck_market_orders(int, int) from public;
grant execute on function admin.list_stuck_market_orders(int, int) to exchange_worker, exchange_admin;
comment on function admin.list_stuck_market_orders(int, int) is
  'Orders EXECUTING for longer than older_than_seconds (default: setting market_reconcile_after_seconds), oldest first, for the reconciler; lost = sent to Binance (placed_at; never sent: confirmed) longer than market_order_lost_seconds ago (if Binance does not know it by then, it never will).';

-- ---------------------------------------------------------------------------
-- Customer: orders and portfolio
-- ---------------------------------------------------------------------------

create function api.get_market_order(user_id bigint, order_id bigint)
returns table (id bigint, created_at timestamptz, settled_at timestamptz, side text, symbol text,
               base_currency text, status text, client_order_id text, amount numeric, price numeric,
               brl_amount numeric, crypto_amount numeric, spread_charged numeric, fee_charged numeric,
               average_price numeric, executed_qty numeric, cummulative_quote_qty numeric, commission numeric,
               failure_reason text, binance_order_id bigint)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  select o.id, o.created_at, o.settled_at, o.side, o.symbol, o.base_currency, o.status, o.client_order_id,
         o.amount, o.price, o.brl_amount, o.crypto_amount, o.spread_charged, o.fee_charged,
         case when o.executed_qty > 0 then round(o.cummulative_quote_qty / o.executed_qty, 2) end,
         o.executed_qty, o.cummulative_quote_qty, o.commission, o.failure_reason, o.binance_order_id
  from core.market_orders o
  where o.id = get_market_order.order_id and o.user_id = get_market_order.user_id
$$;
revoke all on function api.get_market_order(bigint, bigint) from public;
grant execute on function api.get_market_order(bigint, bigint) to exchange_app;
comment on function api.get_market_order(bigint, bigint) is 'One of the customer''s market orders (nothing for someone else''s), with what was paid, received and charged.';

create function api.list_market_orders(user_id bigint, page int default 1, page_size int default 20)
returns table (order_id bigint, created_at timestamptz, side text, symbol text, base_currency text, status text,
               amount numeric, brl_amount numeric, crypto_amount numeric, average_price numeric,
               failure_reason text, total_rows bigint)
language plpgsql stable security definer set search_path = pg_catalog, pg_temp as $$
begin
  if page < 1 or page_size not between 1 and 200 then
    raise exception 'Página inválida.' using errcode = 'BSV01', column = 'page';
  end if;
  return query
  select o.id, o.created_at, o.side, o.symbol, o.base_currency, o.status, o.amount, o.brl_amount, o.crypto_amount,
         case when o.executed_qty > 0 then round(o.cummulative_quote_qty / o.executed_qty, 2) end,
         o.failure_reason, count(*) over ()
  from core.market_orders o
  where o.user_id = list_market_orders.user_id
  order by o.id desc
  offset (page - 1) * page_size limit page_size;
end
$$;
revoke all on function api.list_market_orders(bigint, int, int) from public;
grant execute on function api.list_market_orders(bigint, int, int) to exchange_app;
comment on function api.list_market_orders(bigint, int, int) is 'The customer''s market orders, newest first, paginated (total_rows on every row).';

create function api.get_portfolio(user_id bigint)
returns table (currency text, name text, scale int, available numeric, locked numeric, total numeric,
               price numeric, fetched_at timestamptz, stale boolean, value_brl numeric, share_percent numeric,
               total_value_brl numeric)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  -- Display values: each holding at the latest price (BRL at 1), rounded to
  -- the centavo; stale prices are shown as such, never hidden.
  with w as (
    select c.code, c.name, c.scale, c.sort_order,
           coalesce(max(a.balance) filter (where a.purpose = 'available'), 0) as available,
           coalesce(max(a.balance) filter (where a.purpose = 'locked'), 0) as locked
    from core.currencies c
    left join core.accounts a on a.user_id = get_portfolio.user_id and a.currency = c.code
    group by c.code, c.name, c.scale, c.sort_order
  ), v as (
    select w.*, w.available + w.locked as total,
           case when w.code = 'BRL' then 1 else lp.price end as price,
           lp.fetched_at, coalesce(lp.stale, w.code <> 'BRL') as stale,
           round((w.available + w.locked) * case when w.code = 'BRL' then 1 else coalesce(lp.price, 0) end, 2) as value_brl
    from w left join lateral core.latest_price(w.code, 'BRL') lp on w.code <> 'BRL'
  )
  select v.code, v.name, v.scale, v.available, v.locked, v.total, v.price, v.fetched_at,
         case when v.code = 'BRL' then false else v.stale end, v.value_brl,
         case when sum(v.value_brl) over () > 0 then round(v.value_brl * 100 / sum(v.value_brl) over (), 2) else 0 end,
         sum(v.value_brl) over ()
  from v order by v.sort_order
$$;
revoke all on function api.get_portfolio(bigint) from public;
grant execute on function api.get_portfolio(bigint) to exchange_app;
comment on function api.get_portfolio(bigint) is
  'The customer''s holdings (available + locked) per currency, each valued in BRL at the latest price, its share of the total, and the total (total_value_brl, on every row).';

-- ---------------------------------------------------------------------------
-- Reporting
-- ---------------------------------------------------------------------------

create view reporting.market_orders as
select o.id as order_id, o.user_id, o.created_at, o.settled_at, o.side, o.symbol, o.status, o.client_order_id,
       o.binance_order_id, o.amount, o.executed_qty, o.cummulative_quote_qty, o.commission, o.brl_amount,
       o.crypto_amount, o.spread_charged, o.fee_charged, o.dust_brl, o.dust_crypto, o.entry_id, o.failure_reason,
       o.provider_message, o.checks, o.last_note
from core.market_orders o;
comment on view reporting.market_orders is
  'Every market desk order with its Binance execution, what the customer paid/received, spread and fee (journaled to fee revenue) and the below-scale dust kept by the house. Healthy: no EXECUTING order older than market_order_lost_seconds (see reporting.market_orders_stuck).';

create view reporting.market_orders_stuck as
select o.id as order_id, o.user_id, o.client_order_id, o.created_at, o.checks, o.last_note
from core.market_orders o
where o.status = 'EXECUTING'
  -- the setting read directly: an auditor may not execute core functions
  and o.created_at < now() - make_interval(secs => 2 * (select s.value::int from core.settings s
                                                        where s.name = 'market_order_lost_seconds'));
comment on view reporting.market_orders_stuck is
  'Market orders still EXECUTING long after the reconciler should have settled or failed them (Binance unreachable, or an order needing review). Healthy: empty.';

grant select on reporting.market_orders, reporting.market_orders_stuck to exchange_auditor, exchange_admin;
