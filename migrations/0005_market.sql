-- 0005_market: the market desk (instant buy and sell at Binance prices).
--
-- A customer asks for a quote (core.market_quotes: price + spread + fee,
-- valid a few seconds), confirms it, and an order (core.market_orders) holds
-- the funds and goes EXECUTING; the exchange sends a MARKET order to Binance
-- with newClientOrderId = the order's client_order_id, then settles the
-- ledger from the real fills (COMPLETED) or releases the hold (FAILED).
-- core.market_stats keeps Binance's 24 h ticker for the /market page.
-- Functions are in sql/market.sql.

create table core.market_quotes (
  id bigint generated always as identity primary key,
  user_id bigint not null references core.users (id) on delete restrict,
  side text not null check (side in ('buy', 'sell')),
  symbol text not null references core.market_pairs (symbol) on delete restrict,
  base_currency text not null references core.currencies (code) on delete restrict,
  -- what the customer typed: BRL to spend (buy) or crypto to sell (sell)
  amount numeric not null check (amount > 0),
  price numeric not null check (price > 0),          -- Binance price the quote is based on
  price_fetched_at timestamptz not null,
  spread_percent numeric not null check (spread_percent >= 0),
  fee_percent numeric not null check (fee_percent >= 0),
  spread_amount numeric not null check (spread_amount >= 0),   -- BRL, estimated for sells
  fee_amount numeric not null check (fee_amount >= 0),         -- BRL, estimated for sells
  quote_order_qty numeric check (quote_order_qty > 0),         -- buy: BRL sent to Binance
  quantity numeric check (quantity > 0),                       -- sell: crypto sent to Binance (step-rounded)
  estimated_brl numeric not null check (estimated_brl >= 0),   -- buy: likely total paid (≤ amount); sell: net received
  estimated_crypto numeric not null check (estimated_crypto >= 0),
  limit_brl numeric not null check (limit_brl >= 0),           -- counted against daily_market_brl
  expires_at timestamptz not null,
  created_at timestamptz not null default now(),
  check ((side = 'buy') = (quote_order_qty is not null)),
  check ((side = 'sell') = (quantity is not null))
);
create index market_quotes_user_idx on core.market_quotes (user_id, id desc);

create table core.market_orders (
  id bigint generated always as identity primary key,
  user_id bigint not null references core.users (id) on delete restrict,
  quote_id bigint not null unique references core.market_quotes (id) on delete restrict,
  side text not null check (side in ('buy', 'sell')),
  symbol text not null references core.market_pairs (symbol) on delete restrict,
  base_currency text not null references core.currencies (code) on delete restrict,
  status text not null default 'EXECUTING' check (status in ('EXECUTING', 'COMPLETED', 'FAILED')),
  -- newClientOrderId on Binance: derived from our id, so a lookup finds it
  client_order_id text not null unique check (client_order_id ~ '^[A-Za-z0-9_-]{1,36}$'),
  hold_id bigint not null references core.holds (id) on delete restrict,
  amount numeric not null check (amount > 0),  -- held: BRL (buy) or crypto (sell)
  quote_order_qty numeric check (quote_order_qty > 0),
  quantity numeric check (quantity > 0),
  price numeric not null,
  spread_percent numeric not null,
  fee_percent numeric not null,
  quoted_spread numeric not null,
  quoted_fee numeric not null,
  limit_brl numeric not null,
  -- the outcome, from Binance's fills
  binance_order_id bigint,
  binance_status text,
  executed_qty numeric,
  cummulative_quote_qty numeric,
  commission numeric,               -- in the asset we receive (base for buys, BRL for sells)
  fills jsonb,
  brl_amount numeric,               -- BRL paid (buy) or received (sell) by the customer
  crypto_amount numeric,            -- crypto received (buy) or delivered (sell) by the customer
  spread_charged numeric,
  fee_charged numeric,
  -- below-scale remainders the ledger cannot post: kept by the house at Binance
  dust_brl numeric,
  dust_crypto numeric,
  entry_id bigint references core.entries (id) on delete restrict,
  failure_reason text,
  provider_message text,
  checks int not null default 0,
  last_checked_at timestamptz,
  last_note text,
  created_at timestamptz not null default now(),
  settled_at timestamptz,
  check ((status = 'EXECUTING') = (settled_at is null)),
  check (status <> 'COMPLETED' or (entry_id is not null and binance_order_id is not null)),
  check (status <> 'FAILED' or failure_reason is not null)
);
create index market_orders_user_idx on core.market_orders (user_id, id desc);
create index market_orders_executing_idx on core.market_orders (created_at) where status = 'EXECUTING';
create index market_orders_daily_idx on core.market_orders (user_id, created_at) where status <> 'FAILED';

-- Binance's 24 h ticker per pair (refreshed by the worker about once a minute).
create table core.market_stats (
  symbol text primary key references core.market_pairs (symbol) on delete restrict,
  open_price numeric not null check (open_price > 0),
  high_price numeric not null,
  low_price numeric not null,
  volume numeric not null,
  quote_volume numeric not null,
  updated_at timestamptz not null default now()
);

insert into core.settings (name, value, description) values
  ('market_spread_percent', '0.5', 'Market desk spread over the Binance price, in percent of the order value (house revenue).'),
  ('market_fee_percent', '0.3', 'Market desk fee, in percent of the order value (house revenue).'),
  ('quote_ttl_seconds', '10', 'Seconds a market quote stays valid for confirmation.'),
  ('market_binance_commission_percent', '0.1', 'Binance commission assumed in quote estimates only (settlement uses the real fills).'),
  ('market_reconcile_after_seconds', '10', 'An order EXECUTING for longer than this is looked up on Binance by the reconciler.'),
  ('market_order_lost_seconds', '60', 'An order Binance still does not know after this many seconds is failed and its hold released (recvWindow guarantees it can no longer arrive).'),
  ('price_history_days', '30', 'Days of price history kept in core.prices.');
