-- 0003_market_prices: the Binance pairs we trade and the price history.
--
-- The worker's price poller writes here (through an admin.* function); the
-- market desk quotes from it and P2P floating offers price from it. A price
-- older than the setting price_stale_seconds stops trading.

create table core.market_pairs (
  symbol text primary key check (symbol ~ '^[A-Z0-9]{5,20}$'),
  base_currency text not null references core.currencies (code) on delete restrict,
  quote_currency text not null references core.currencies (code) on delete restrict,
  enabled boolean not null default true,
  status text not null default 'UNKNOWN',
  filters jsonb not null default '{}',
  filters_updated_at timestamptz,
  unique (base_currency, quote_currency)
);

insert into core.market_pairs (symbol, base_currency, quote_currency) values
  ('BTCBRL', 'BTC', 'BRL'), ('ETHBRL', 'ETH', 'BRL'), ('USDTBRL', 'USDT', 'BRL');

create table core.prices (
  id bigint generated always as identity primary key,
  symbol text not null references core.market_pairs (symbol) on delete restrict,
  price numeric not null check (price > 0),
  source text not null default 'binance',
  fetched_at timestamptz not null default now()
);
create index prices_symbol_time_idx on core.prices (symbol, fetched_at desc);

insert into core.settings (name, value, description) values
  ('price_stale_seconds', '30', 'A price older than this many seconds is stale: market orders and floating P2P prices are refused.');
