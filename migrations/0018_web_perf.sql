-- 0018_web_perf: the offer book reads its best offers in price order from an
-- index, so a page costs the same with 100 or 100 000 active offers
-- (api.list_p2p_offers, docs/PERFORMANCE.md "Web performance").
--
-- Fixed-price offers by price (ascending for the SELL side, descending for
-- BUY: the negated price ascending), then id; floating offers per crypto by
-- premium in the same sense (their price grows with the premium).
create index p2p_offers_book_fixed_idx on core.p2p_offers
  (side, (case when side = 'SELL' then fixed_price else -fixed_price end), id)
  where status = 'active' and price_type = 'fixed';
create index p2p_offers_book_floating_idx on core.p2p_offers
  (side, crypto, (case when side = 'SELL' then premium_percent else -premium_percent end), id)
  where status = 'active' and price_type = 'floating';
