-- 0020: the P2P reputation counters, and a COMMENT on every table and every
-- money column (issue 16).
--
-- 1. core.p2p_reputation: one row per customer with P2P history, kept by the
--    P2P state machine in the same transaction as the trade's final state
--    (core.p2p_count_outcome) and the rating (api.rate_p2p_trade), so the
--    offer book reads a maker's reputation by primary key instead of scanning
--    their trades. Backfilled here from the history; reporting.books_health
--    (p2p_reputation) checks it against a recount.
--
-- 2. COMMENTs. They live with the DDL, in migrations, not in sql/: tables and
--    columns are created and changed only by migrations, so the description
--    of a column changes in the same file as the column (sql/ holds functions
--    and views, rebuilt on every apply). A new table's migration comments it
--    and its numeric columns; tests/sql/test_comments.py fails otherwise.
--    Amounts are exact numeric in the unit named (BRL in reais with 2
--    decimals; a crypto in its own unit, e.g. BTC, at core.currencies.scale).

create table core.p2p_reputation (
  user_id bigint primary key references core.users (id) on delete restrict,
  completed_trades bigint not null default 0 check (completed_trades >= 0),
  faulted_trades bigint not null default 0 check (faulted_trades >= 0),
  timed_releases bigint not null default 0 check (timed_releases >= 0),
  release_seconds numeric not null default 0,
  positive_ratings bigint not null default 0 check (positive_ratings >= 0),
  negative_ratings bigint not null default 0 check (negative_ratings >= 0),
  updated_at timestamptz not null default now()
);
comment on table core.p2p_reputation is
  'P2P reputation counters per customer (a row once they have a finished trade or a rating), updated in the transaction that finishes a trade (core.p2p_count_outcome) or rates one (api.rate_p2p_trade); read by core.p2p_user_stats for the offer book and profiles. Must equal a recount of core.p2p_trades and core.p2p_ratings (reporting.books_health: p2p_reputation).';
comment on column core.p2p_reputation.completed_trades is 'Trades COMPLETED with this customer as buyer or seller.';
comment on column core.p2p_reputation.faulted_trades is 'Trades CANCELLED or REFUNDED with this customer at fault (fault_user_id).';
comment on column core.p2p_reputation.timed_releases is 'Trades this customer completed as seller from PAID, without an admin resolution: the trades averaged in release_seconds.';
comment on column core.p2p_reputation.release_seconds is 'Sum of seconds from paid_at to completed_at over timed_releases (exact numeric): the average release time is release_seconds / timed_releases.';
comment on column core.p2p_reputation.positive_ratings is 'Positive ratings received (core.p2p_ratings.rated_id).';
comment on column core.p2p_reputation.negative_ratings is 'Negative ratings received.';

insert into core.p2p_reputation (user_id, completed_trades, faulted_trades, timed_releases, release_seconds,
                                 positive_ratings, negative_ratings)
select coalesce(t.user_id, r.user_id), coalesce(t.completed, 0), coalesce(t.faulted, 0), coalesce(t.timed, 0),
       coalesce(t.seconds, 0), coalesce(r.positive, 0), coalesce(r.negative, 0)
from (
  select x.user_id,
         count(*) filter (where t.status = 'COMPLETED') as completed,
         count(*) filter (where t.status in ('CANCELLED', 'REFUNDED') and t.fault_user_id = x.user_id) as faulted,
         count(*) filter (where t.status = 'COMPLETED' and t.seller_id = x.user_id and t.paid_at is not null
                          and t.resolution is null) as timed,
         sum(extract(epoch from t.completed_at - t.paid_at))
           filter (where t.status = 'COMPLETED' and t.seller_id = x.user_id and t.paid_at is not null
                   and t.resolution is null) as seconds
  from core.p2p_trades t
  cross join lateral (values (t.buyer_id), (t.seller_id)) x (user_id)
  where t.status in ('COMPLETED', 'CANCELLED', 'REFUNDED')
  group by x.user_id
) t
full join (
  select g.rated_id as user_id, count(*) filter (where g.positive) as positive,
         count(*) filter (where not g.positive) as negative
  from core.p2p_ratings g group by g.rated_id
) r on r.user_id = t.user_id;

-- ---------------------------------------------------------------------------
-- Tables not commented until now
-- ---------------------------------------------------------------------------

comment on table core.schema_migrations is
  'What webapp/migrate.py applied: one row per migration file (version = its name), and one sql:<hash> row for the last apply of sql/ (so an unchanged sql/ is not re-applied).';
comment on table core.settings is
  'Operator settings (fees and spreads, windows, thresholds, TTLs) as name → text value with a description; read by core.setting(name) and cast by the caller.';
comment on table core.currencies is
  'The currency registry: BRL and each crypto, with its scale (decimal places every amount of it is checked against, core.check_amount) and display order.';
comment on table core.users is
  'Every person with a login: customers, admins and auditors; role, status (active or frozen), KYC level, and the exit/e-mail/2FA state the money rules read.';
comment on table core.accounts is
  'Ledger accounts: a customer''s available and locked balance per currency, and the system accounts (fees by shard, provider clearing, Binance omnibus, adjustments). balance is a cache of the postings, written only by core.post_entry.';
comment on table core.holds is
  'Funds set aside from a customer''s available balance into locked (withdrawals, market orders, P2P offers and escrow): open until captured (spent), released (returned) or split (a part taken for a trade, the rest in a new hold).';
comment on table core.idempotency_keys is
  'One row per (customer, idempotency key) of a money operation: the request''s hash and its result, so a retried request returns the first result instead of running twice (core.claim_idempotency).';
comment on table core.login_events is
  'Every login attempt (e-mail as typed, whether it succeeded, IP), recorded by api.record_login: the login history shown to the customer (api.list_login_events).';
comment on table core.admin_audit_log is
  'Append-only log of operators'' actions (who, what, on whom, why, details): balance adjustments, freezes, KYC and dispute decisions, approvals.';
comment on table core.notifications is
  'In-app notifications of a customer (kind, message, link), unread until read_at.';
comment on table core.market_pairs is
  'The pairs the market desk trades at Binance (e.g. BTCBRL): base and quote currency, whether enabled, and Binance''s exchangeInfo filters (lot size, notional) for sizing orders.';
comment on table core.prices is
  'Binance index prices per pair, appended by the worker (admin.record_prices); the latest fresh one prices quotes, floating P2P offers and the exit policy (core.latest_price, core.fresh_price).';
comment on table core.market_quotes is
  'A price quoted to a customer for a market buy or sell, valid until expires_at; executing it (api.execute_quote) creates the market order.';
comment on table core.market_orders is
  'Market orders sent to Binance for a customer: EXECUTING (funds held) until settled from Binance''s fills (COMPLETED, one journal entry) or FAILED (hold released).';
comment on table core.market_stats is
  'Binance 24 h ticker per pair (open, high, low, volumes), refreshed by the worker for the market page.';
comment on table core.kyc_profiles is
  'A customer''s verified identity (full name, CPF, birth date, address): one row per customer, written when KYC data is confirmed.';
comment on table core.kyc_submissions is
  'Document submissions for KYC review: pending until an admin approves (raising the KYC level) or rejects them with a reason.';
comment on table core.kyc_documents is
  'The files of a KYC submission (document, selfie): where they are stored, type, size and SHA-256; the files themselves are outside the database.';
comment on table core.user_totp is
  'A customer''s TOTP secret (2FA), confirmed once a first code matched; last_used_step stops a code being replayed.';
comment on table core.recovery_codes is
  'Hashes of a customer''s one-time 2FA recovery codes; used_at when spent.';
comment on table core.security_events is
  'A customer''s security history (2FA on/off and failures, recovery codes used, password changes, KYC steps), shown on their security page.';
comment on table core.p2p_offers is
  'P2P offers: a maker''s BUY or SELL of a crypto at a fixed price or a premium over the index, per-trade BRL bounds, payment methods and requirements on the counterparty. A SELL offer''s crypto (plus the maker''s fee) is held (hold_id) for its remaining amount.';
comment on table core.p2p_trades is
  'P2P trades: one taker on one offer, with the seller''s crypto in escrow (hold_id) through the state machine OPEN → PAID → COMPLETED (or CANCELLED, DISPUTED → COMPLETED | REFUNDED, REVIEW for a PIX that does not match). Money is in holds and the journal, never in this row.';
comment on table core.p2p_messages is
  'A trade''s chat: messages of the parties (user_id) and of the system (user_id NULL), read by both parties and by admins in a dispute.';
comment on table core.p2p_proofs is
  'Payment proofs and dispute evidence uploaded to a trade (metadata; the file is stored under stored_name outside the database).';
comment on table core.p2p_pix_payments is
  'Verified PIX payments the BRL rails reported for PIX-confirmed trades, one per provider payment id (idempotency), with what was done with each (outcome).';
comment on table core.p2p_ratings is
  'One rating per party per completed trade (positive or negative, with a comment) of the other party; counted in core.p2p_reputation.';
comment on table core.p2p_blocks is
  'Customers a customer blocked: neither sees the other''s offers nor can trade with them.';

-- ---------------------------------------------------------------------------
-- Money columns (and the numbers money is computed from)
-- ---------------------------------------------------------------------------

comment on column core.accounts.balance is 'The account''s balance in its currency: a cache of the sum of its postings (reporting.balance_mismatches checks), changed only by core.post_entry; never negative where must_not_go_negative.';
comment on column core.postings.amount is 'Signed amount in the posting''s currency: positive adds to the account''s balance, negative takes from it; an entry''s postings sum to zero per currency.';
comment on column core.postings.balance_after is 'The account''s balance right after this posting (its account_version): the balance chain that admin.check_books verifies.';
comment on column core.holds.amount is 'Amount set aside, in the hold''s currency (moved from available to locked when placed).';
comment on column core.holds.captured is 'Of amount, what was spent when the hold was captured (the rest went back to available); NULL unless captured.';

comment on column core.binance_balance_snapshots.free is 'Coin free at Binance (master account) at taken_at, as reported.';
comment on column core.binance_balance_snapshots.locked is 'Coin locked in open orders at Binance at taken_at.';
comment on column core.binance_balance_snapshots.withdrawing is 'Coin in withdrawals being processed at Binance at taken_at.';

comment on column core.crypto_deposits.amount is 'Coin received on-chain, as Binance reported it (credited once the required confirmations are reached).';
comment on column core.crypto_networks.withdraw_fee is 'Binance''s fee for a withdrawal on this network, in the coin; charged to the customer on top of the amount.';
comment on column core.crypto_networks.withdraw_min is 'Smallest withdrawal amount Binance accepts on this network, in the coin.';
comment on column core.crypto_networks.withdraw_max is 'Largest withdrawal amount Binance accepts on this network, in the coin.';
comment on column core.crypto_networks.withdraw_multiple is 'Step a withdrawal amount (and the fee) must be a multiple of (Binance''s withdrawIntegerMultiple), in the coin.';
comment on column core.crypto_sweeps.amount is 'Coin moved from the customer''s Binance sub-account to the master account (the deposit''s amount).';
comment on column core.crypto_withdrawals.amount is 'Coin sent to the address (what arrives), excluding fee.';
comment on column core.crypto_withdrawals.fee is 'The network fee charged to the customer, in the coin (held with amount).';
comment on column core.crypto_withdrawals.brl_value is 'amount + fee valued in BRL at the bid when requested: counted against daily_crypto_withdrawal_brl and the approval threshold.';

comment on column core.kyc_limits.daily_deposit_brl is 'BRL a customer of this KYC level may deposit by PIX per day (Brazil time).';
comment on column core.kyc_limits.daily_withdrawal_brl is 'BRL a customer of this KYC level may withdraw by PIX per day (Brazil time).';
comment on column core.kyc_limits.daily_market_brl is 'BRL of market buys and sells a customer of this level may do per day (market_orders.limit_brl).';
comment on column core.kyc_limits.daily_p2p_brl is 'BRL of P2P trades (buying or selling, cancelled and refunded left out) a customer of this level may open per day.';
comment on column core.kyc_limits.per_trade_max_brl is 'Largest single market or P2P trade, in BRL, for this level.';

comment on column core.liability_leaves.balance is 'The customer''s total balance in the currency (all their accounts of it, rounded to its scale) at the snapshot: the value committed in the leaf.';
comment on column core.liability_roots.total is 'Sum of the leaves'' balances of this currency at the snapshot: the liabilities the Merkle root proves.';

comment on column core.market_orders.amount is 'What was held for the order: BRL for a buy, the crypto for a sell.';
comment on column core.market_orders.quote_order_qty is 'Buy: BRL sent to Binance as quoteOrderQty (the amount less spread and fee). NULL for a sell.';
comment on column core.market_orders.quantity is 'Sell: crypto sent to Binance (rounded to the lot step). NULL for a buy.';
comment on column core.market_orders.price is 'The Binance index price (BRL per unit) of the quote the order came from.';
comment on column core.market_orders.spread_percent is 'The house spread, in percent, of the quote.';
comment on column core.market_orders.fee_percent is 'The house fee, in percent, of the quote.';
comment on column core.market_orders.quoted_spread is 'Spread in BRL as quoted (a buy''s spread is charged in proportion to what Binance actually spent).';
comment on column core.market_orders.quoted_fee is 'Fee in BRL as quoted (charged in proportion, like quoted_spread).';
comment on column core.market_orders.limit_brl is 'BRL counted against the customer''s daily_market_brl and per-trade limit.';
comment on column core.market_orders.executed_qty is 'Crypto Binance executed (executedQty).';
comment on column core.market_orders.cummulative_quote_qty is 'BRL Binance spent or received for it (cummulativeQuoteQty).';
comment on column core.market_orders.commission is 'Binance''s commission in the asset we receive (the crypto for a buy, BRL for a sell), passed on to the customer; a commission in another asset is the house''s cost.';
comment on column core.market_orders.brl_amount is 'BRL the customer paid (buy, spread and fee included) or received (sell, net), as booked.';
comment on column core.market_orders.crypto_amount is 'Crypto the customer received (buy) or delivered (sell), as booked.';
comment on column core.market_orders.spread_charged is 'Spread in BRL booked to fee revenue.';
comment on column core.market_orders.fee_charged is 'Fee in BRL booked to fee revenue.';
comment on column core.market_orders.dust_brl is 'BRL below the centavo that the ledger cannot post: kept by the house at Binance.';
comment on column core.market_orders.dust_crypto is 'Crypto below the currency''s scale that the ledger cannot post: kept by the house at Binance.';

comment on column core.market_quotes.amount is 'What the customer typed: BRL to spend (buy) or crypto to sell (sell).';
comment on column core.market_quotes.price is 'The Binance index price (BRL per unit) the quote is based on.';
comment on column core.market_quotes.spread_percent is 'The house spread, in percent, at quoting (setting market_spread_percent).';
comment on column core.market_quotes.fee_percent is 'The house fee, in percent, at quoting (setting market_fee_percent).';
comment on column core.market_quotes.spread_amount is 'Spread in BRL (estimated for sells).';
comment on column core.market_quotes.fee_amount is 'Fee in BRL (estimated for sells).';
comment on column core.market_quotes.quote_order_qty is 'Buy: BRL to send to Binance (amount less spread and fee). NULL for a sell.';
comment on column core.market_quotes.quantity is 'Sell: crypto to send to Binance, rounded to the lot step. NULL for a buy.';
comment on column core.market_quotes.estimated_brl is 'Buy: the likely total paid (at most amount); sell: the likely net BRL received.';
comment on column core.market_quotes.estimated_crypto is 'The likely crypto received (buy) or sold (sell).';
comment on column core.market_quotes.limit_brl is 'BRL that will count against daily_market_brl and the per-trade limit.';

comment on column core.market_stats.open_price is 'Price 24 h ago (BRL per unit), from Binance''s ticker.';
comment on column core.market_stats.high_price is 'Highest price of the last 24 h (BRL per unit).';
comment on column core.market_stats.low_price is 'Lowest price of the last 24 h (BRL per unit).';
comment on column core.market_stats.volume is 'Base currency traded at Binance in the last 24 h.';
comment on column core.market_stats.quote_volume is 'BRL traded at Binance in the last 24 h.';

comment on column core.p2p_fees.maker_percent is 'Fee, in percent of the crypto traded, of the party who posted the offer (fixed on each offer as maker_fee_percent).';
comment on column core.p2p_fees.taker_percent is 'Fee, in percent of the crypto traded, of the party who took the offer.';
comment on column core.p2p_offers.fixed_price is 'A fixed-price offer''s price, BRL per unit of the crypto (2 decimals); NULL for floating.';
comment on column core.p2p_offers.premium_percent is 'A floating offer''s premium over the Binance index, in percent (-50..50); NULL for fixed.';
comment on column core.p2p_offers.total_amount is 'Crypto offered when posted (or last edited).';
comment on column core.p2p_offers.remaining_amount is 'Crypto not yet taken by trades (cancelled trades give theirs back); a SELL offer''s hold covers it plus the maker''s fee.';
comment on column core.p2p_offers.min_brl is 'Smallest trade in BRL (a smaller one only to take all that remains).';
comment on column core.p2p_offers.max_brl is 'Largest trade in BRL.';
comment on column core.p2p_offers.maker_fee_percent is 'The maker''s fee percent when posted or last edited (the hold covers it, so a later change of core.p2p_fees cannot leave it short).';
comment on column core.p2p_pix_payments.amount is 'BRL the provider reported as paid.';
comment on column core.p2p_trades.crypto_amount is 'Crypto traded (before fees): the buyer receives crypto_amount - buyer_fee.';
comment on column core.p2p_trades.price is 'BRL per unit of the crypto, fixed when the trade opened.';
comment on column core.p2p_trades.brl_amount is 'BRL the buyer pays the seller (2 decimals).';
comment on column core.p2p_trades.seller_fee is 'The seller''s fee in the crypto, escrowed on top of crypto_amount, to fee revenue at release.';
comment on column core.p2p_trades.buyer_fee is 'The buyer''s fee in the crypto, deducted from what they receive, to fee revenue at release.';
comment on column core.p2p_trades.pix_paid_amount is 'PIX-confirmed: BRL of the verified payment the rails reported; NULL until then.';

comment on column core.pix_charges.amount is 'BRL asked for in the PIX charge.';
comment on column core.pix_charges.paid_amount is 'BRL the provider reported as paid (may differ from amount: then REVIEW).';
comment on column core.pix_charges.credited_amount is 'BRL credited to the customer for a deposit (entry_id); NULL until credited.';
comment on column core.pix_clawbacks.amount is 'BRL the payer''s bank or the provider took back in this event.';
comment on column core.pix_clawbacks.recovered is 'Of amount, BRL taken from the customer''s balance at once (the rest is debt).';
comment on column core.pix_clawbacks.debt_recovered is 'Of debt, BRL recovered since from the customer''s available balance (as they receive money).';
comment on column core.pix_refunds.amount is 'BRL to return to the payer through the provider''s refund API.';
comment on column core.prices.price is 'BRL per unit of the base currency, as Binance reported it at fetched_at.';
comment on column core.withdrawals.amount is 'BRL sent by PIX to the key (held until the payout completes or fails).';
