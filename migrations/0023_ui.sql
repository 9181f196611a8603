-- 0023_ui: what a quote page needs to show lines that add up to what the
-- settlement posts (sql/market.sql, api.create_quote / api.get_quote). A buy
-- is settled on what Binance spends (spread and fee in proportion to it), a
-- sell on what it credits after its commission; the quote now stores those
-- estimates next to the amounts it already had. Quotes created before this
-- migration keep NULL (they expire within seconds).

alter table core.market_quotes
  add column estimated_quantity numeric check (estimated_quantity > 0),
  add column estimated_gross_brl numeric check (estimated_gross_brl >= 0),
  add column estimated_spread numeric check (estimated_spread >= 0),
  add column estimated_fee numeric check (estimated_fee >= 0);

comment on column core.market_quotes.estimated_quantity is
  'Crypto Binance is expected to execute: a buy''s quantity bought (whole lot steps), a sell''s step-rounded quantity.';
comment on column core.market_quotes.estimated_gross_brl is
  'BRL before spread and fee as settlement will compute it: a buy, what Binance spends rounded up to the centavo; a sell, what Binance credits after its commission, rounded down.';
comment on column core.market_quotes.estimated_spread is
  'The spread settlement will charge on estimated_gross_brl (a buy: the quoted spread in proportion to what Binance spends).';
comment on column core.market_quotes.estimated_fee is
  'The fee settlement will charge on estimated_gross_brl (a buy: the quoted fee in proportion to what Binance spends).';
