-- prices.sql: reading the latest Binance price of a crypto in BRL.
--
-- Written by the market domain's poller (admin.record_prices, in market.sql);
-- read by market quotes and P2P floating offers through core.latest_price.

create or replace function core.latest_price(base_currency text, quote_currency text default 'BRL')
returns table (symbol text, price numeric, fetched_at timestamptz, stale boolean)
language sql stable as $$
  select p.symbol, p.price, p.fetched_at,
         p.fetched_at < now() - make_interval(secs => core.setting('price_stale_seconds')::int)
  from core.market_pairs m
  join lateral (select * from core.prices q where q.symbol = m.symbol order by q.fetched_at desc limit 1) p on true
  where m.base_currency = latest_price.base_currency and m.quote_currency = latest_price.quote_currency
$$;
comment on function core.latest_price(text, text) is 'The latest price of a pair, when it was fetched, and whether it is older than price_stale_seconds.';

create or replace function core.fresh_price(base_currency text, quote_currency text default 'BRL')
returns numeric
language plpgsql stable as $$
declare
  v record;
begin
  select * into v from core.latest_price(base_currency, quote_currency);
  if not found then
    raise exception 'Ainda não temos cotação de %/%. Tente em instantes.', base_currency, quote_currency
      using errcode = 'BSP01';
  end if;
  if v.stale then
    raise exception 'A cotação de % está desatualizada (última em %). Negociação pausada até a cotação voltar.',
      base_currency, to_char(v.fetched_at at time zone 'America/Sao_Paulo', 'HH24:MI:SS')
      using errcode = 'BSP01';
  end if;
  return v.price;
end
$$;
comment on function core.fresh_price(text, text) is 'The latest price, or BSP01 when there is none or it is stale: every priced operation goes through this.';
