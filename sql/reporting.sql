-- reporting.sql: what auditors read, and the proof of liabilities.
--
-- Reporting views (schema `reporting`, SELECT for exchange_auditor and
-- exchange_admin only) beyond the ledger's own in ledger.sql: customer
-- statements, liabilities, open escrow, stale items, suspicious activity,
-- activity and fees by day, P2P volume, and `health_checks`, the one-line
-- summary the /audit dashboard shows in green or red. Every view's COMMENT
-- says what healthy looks like. Views read core tables as their owner; they
-- never call core.* functions (those would run as the auditor, who has no
-- USAGE on core), so settings are joined from core.settings directly.
--
-- The worker calls admin.record_books_check (every 5 minutes: the ledger
-- invariants, remembered in core.book_checks) and
-- admin.publish_liabilities_snapshot (daily: a Merkle tree per currency over
-- every customer balance). Customers fetch their own leaf and path with
-- api.get_liabilities_proof; anyone sees the roots (api.list_liability_roots).

-- Published proofs and book checks are history: append-only, even for the owner.
create or replace trigger book_checks_immutable before update or delete on core.book_checks
  for each row execute function core.tg_forbid_change();
create or replace trigger liability_snapshots_immutable before update or delete on core.liability_snapshots
  for each row execute function core.tg_forbid_change();
create or replace trigger liability_roots_immutable before update or delete on core.liability_roots
  for each row execute function core.tg_forbid_change();
create or replace trigger liability_leaves_immutable before update or delete on core.liability_leaves
  for each row execute function core.tg_forbid_change();
create or replace trigger liability_nodes_immutable before update or delete on core.liability_nodes
  for each row execute function core.tg_forbid_change();

-- ---------------------------------------------------------------------------
-- Ledger views
-- ---------------------------------------------------------------------------

create view reporting.catalog as
select c.relname::text as view_name, obj_description(c.oid, 'pg_class') as description
from pg_catalog.pg_class c
join pg_catalog.pg_namespace n on n.oid = c.relnamespace
where n.nspname = 'reporting' and c.relkind in ('v', 'm');
comment on view reporting.catalog is
  'Every reporting view with its COMMENT (what it shows and what healthy looks like): the index of /audit. Healthy: every view has a description.';

create view reporting.customer_statements as
select a.user_id, u.email, p.currency, a.purpose as bucket, p.entry_id, e.created_at, e.kind, e.reference,
       e.description, p.amount, p.balance_after, p.account_version
from core.postings p
join core.accounts a on a.id = p.account_id
join core.users u on u.id = a.user_id
join core.entries e on e.id = p.entry_id and e.created_at = p.created_at;
comment on view reporting.customer_statements is
  'Every posting on a customer''s available and locked accounts, with its entry and the balance after it (filter by user_id and currency for one statement). Healthy: balance_after is never negative and the last balance_after of each account is its cached balance (reporting.balance_mismatches empty).';

create view reporting.liabilities as
select c.code as currency,
       count(distinct a.user_id) filter (where a.balance <> 0) as customers_with_balance,
       coalesce(sum(a.balance) filter (where a.purpose = 'available'), 0) as available,
       coalesce(sum(a.balance) filter (where a.purpose = 'locked'), 0) as locked,
       coalesce(sum(a.balance), 0) as total,
       -- what the system side of the ledger says is owed (zero-sum)
       coalesce((select -sum(s.balance) from core.accounts s where s.user_id is null and s.currency = c.code), 0)
         as system_counterpart,
       lp.total as last_proof_total,
       lp.created_at as last_proof_at
from core.currencies c
left join core.accounts a on a.currency = c.code and a.user_id is not null
left join lateral (
  select r.total, s.created_at from core.liability_roots r join core.liability_snapshots s on s.id = r.snapshot_id
  where r.currency = c.code order by r.snapshot_id desc limit 1
) lp on true
group by c.code, c.sort_order, lp.total, lp.created_at;
comment on view reporting.liabilities is
  'Everything owed to customers per currency: available, locked and total, beside the system accounts'' counterpart and the last published proof of liabilities. Healthy: available >= 0, locked >= 0, total = system_counterpart; last_proof_total differs only by what moved since last_proof_at.';

create view reporting.open_holds_by_purpose as
select h.purpose, h.currency, count(*) as holds, sum(h.amount) as total, min(h.created_at) as oldest_at,
       count(*) filter (where h.expires_at < now()) as expired
from core.holds h where h.status = 'open'
group by h.purpose, h.currency;
comment on view reporting.open_holds_by_purpose is
  'Open holds (funds locked for a withdrawal, an order, a P2P offer or trade …) summed per purpose and currency. Healthy: per currency the totals add up to the locked total of reporting.liabilities, and expired = 0 (the expiry sweeps release them).';

create view reporting.activity_by_day as
select (e.created_at at time zone 'America/Sao_Paulo')::date as day, e.kind, p.currency,
       count(distinct e.id) as entries,
       sum(p.amount) filter (where p.amount > 0) as moved,
       coalesce(sum(p.amount) filter (where a.purpose = 'fees'), 0) as fees
from core.entries e
join core.postings p on p.entry_id = e.id and p.created_at = e.created_at
join core.accounts a on a.id = p.account_id
group by 1, e.kind, p.currency;
comment on view reporting.activity_by_day is
  'Journal activity per day (São Paulo time), entry kind and currency: entries, amount moved (sum of the credits) and fees earned. P2P kinds show P2P volume. Healthy: fees >= 0 on every row.';

create view reporting.fee_revenue_by_day as
select (e.created_at at time zone 'America/Sao_Paulo')::date as day, p.currency, e.kind,
       count(distinct e.id) as entries, sum(p.amount) as fees
from core.postings p
join core.accounts a on a.id = p.account_id and a.purpose = 'fees'
join core.entries e on e.id = p.entry_id and e.created_at = p.created_at
group by 1, p.currency, e.kind;
comment on view reporting.fee_revenue_by_day is
  'Fee revenue per day (São Paulo time), currency and the kind of entry that earned it, from the postings on the fee accounts. Healthy: fees >= 0 (a negative day means more fees were refunded than earned).';

create view reporting.book_checks as
select b.id as check_id, b.checked_at, b.failure_count, b.failures
from core.book_checks b;
comment on view reporting.book_checks is
  'Every scheduled run of the ledger invariants (admin.record_books_check, every 5 minutes). Healthy: the latest run is recent and has failure_count = 0.';

create view reporting.book_alerts as
select b.id as check_id, b.checked_at, f ->> 'check_name' as check_name, f ->> 'detail' as detail,
       b.id = (select max(l.id) from core.book_checks l) as latest
from core.book_checks b
cross join lateral jsonb_array_elements(b.failures) f
where b.failure_count > 0;
comment on view reporting.book_alerts is
  'Every failure the scheduled books check found, one row per failed invariant per run (latest = found by the most recent run). Healthy: no row with latest = true.';

create view reporting.liability_snapshots as
select s.id as snapshot_id, s.created_at, s.published_by, r.currency, encode(r.root_hash, 'hex') as root,
       r.total, r.leaf_count
from core.liability_snapshots s
join core.liability_roots r on r.snapshot_id = s.id;
comment on view reporting.liability_snapshots is
  'Every published proof of liabilities: the Merkle root, total owed and number of customer leaves per currency. Past roots are kept. Healthy: one publication in the last day (setting liabilities_snapshot_hours) and its totals match reporting.liabilities at that time.';

-- ---------------------------------------------------------------------------
-- P2P (tables of migrations/0007_p2p.sql)
-- ---------------------------------------------------------------------------

create view reporting.open_escrow as
select case when o.id is not null then 'offer' when t.id is not null then 'trade' else 'other' end as escrow_kind,
       coalesce(o.id, t.offer_id) as offer_id, t.id as trade_id,
       coalesce(t.status, o.status) as object_status,
       h.id as hold_id, h.purpose, h.user_id, h.currency, h.amount, h.reference, h.created_at, h.expires_at
from core.holds h
left join core.p2p_offers o on o.hold_id = h.id
left join core.p2p_trades t on t.hold_id = h.id
where h.status = 'open' and h.purpose like 'p2p%';
comment on view reporting.open_escrow is
  'Crypto in P2P escrow: every open hold of a P2P purpose with the offer or trade it backs and its status. Healthy: every row names an active or paused offer or an OPEN, PAID, DISPUTED or REVIEW trade (reporting.escrow_mismatches empty).';

create view reporting.escrow_mismatches as
select 'trade_without_open_hold'::text as problem, t.offer_id, t.id as trade_id, t.status as object_status,
       t.hold_id, t.crypto as currency, t.crypto_amount + t.seller_fee as expected, h.amount as held, h.status as hold_status
from core.p2p_trades t left join core.holds h on h.id = t.hold_id
where t.status in ('OPEN', 'PAID', 'DISPUTED', 'REVIEW') and h.status is distinct from 'open'
union all
select 'trade_hold_amount', t.offer_id, t.id, t.status, t.hold_id, t.crypto, t.crypto_amount + t.seller_fee,
       h.amount, h.status
from core.p2p_trades t join core.holds h on h.id = t.hold_id
where t.status in ('OPEN', 'PAID', 'DISPUTED', 'REVIEW') and h.status = 'open'
  and (h.amount <> t.crypto_amount + t.seller_fee or h.currency <> t.crypto or h.user_id <> t.seller_id)
union all
select 'offer_without_open_hold', o.id, null, o.status, o.hold_id, o.crypto, null, h.amount, h.status
from core.p2p_offers o left join core.holds h on h.id = o.hold_id
where o.side = 'SELL' and o.status in ('active', 'paused') and o.remaining_amount > 0
  and h.status is distinct from 'open'
union all
select 'orphan_escrow_hold', null, null, null, h.id, h.currency, null, h.amount, h.status
from core.holds h
where h.status = 'open' and h.purpose in ('p2p_offer', 'p2p_trade')
  and not exists (select from core.p2p_offers o where o.hold_id = h.id and o.status in ('active', 'paused'))
  and not exists (select from core.p2p_trades t where t.hold_id = h.id
                  and t.status in ('OPEN', 'PAID', 'DISPUTED', 'REVIEW'));
comment on view reporting.escrow_mismatches is
  'P2P escrow that does not add up: a running trade or a posted sell offer whose hold is not open, a trade hold that is not the seller''s amount + fee in the trade''s crypto, or an open P2P hold no live offer or trade points to (escrow that would be stuck). Healthy: empty.';

create view reporting.p2p_volume_by_day as
select (t.completed_at at time zone 'America/Sao_Paulo')::date as day, t.crypto,
       count(*) as trades, sum(t.crypto_amount) as crypto_volume, sum(t.brl_amount) as brl_volume,
       sum(t.seller_fee + t.buyer_fee) as fees, count(*) filter (where t.disputed_at is not null) as after_dispute
from core.p2p_trades t
where t.status = 'COMPLETED' and t.completed_at is not null
group by 1, t.crypto;
comment on view reporting.p2p_volume_by_day is
  'Completed P2P trades per day (São Paulo time) and crypto: trades, crypto and BRL volume, fees charged (seller + buyer, in the crypto) and how many were completed after a dispute. Healthy: fees >= 0 and, per day, fees match the P2P rows of reporting.fee_revenue_by_day.';

-- ---------------------------------------------------------------------------
-- BRL rails and the market desk (tables of migrations/0004_rails.sql and 0005_market.sql)
-- ---------------------------------------------------------------------------

create view reporting.rails_reconciliation as
with ledger as (
  -- per reference: what the journal moved to customers and to the provider clearing accounts
  select e.reference, e.kind, count(distinct e.id) as entries,
         coalesce(sum(p.amount) filter (where a.user_id is not null), 0) as to_customers,
         coalesce(sum(p.amount) filter (where a.purpose like 'clearing%'), 0) as to_clearing
  from core.entries e
  join core.postings p on p.entry_id = e.id and p.created_at = e.created_at
  join core.accounts a on a.id = p.account_id
  where e.kind in ('deposit', 'withdrawal')
  group by e.reference, e.kind
), items as (
  select 'deposit'::text as source, c.id as item_id, c.reference, c.provider, c.status, c.user_id,
         c.amount as requested, c.paid_amount as provider_amount, c.provider_payment_id as provider_id,
         case when c.status = 'PAID' then c.credited_amount else 0 end as expected_ledger,
         coalesce(l.to_customers, 0) as ledger_amount, coalesce(l.entries, 0) as entries,
         null::text as hold_status, null::text as expected_hold_status
  from core.pix_charges c
  left join ledger l on l.reference = c.reference and l.kind = 'deposit'
  where c.purpose = 'deposit'
  union all
  select 'withdrawal', w.id, w.reference, w.provider, w.status, w.user_id, w.amount,
         null, w.provider_payout_id,
         case when w.status = 'COMPLETED' then w.amount else 0 end,
         coalesce(l.to_clearing, 0), coalesce(l.entries, 0), h.status,
         case when w.status = 'COMPLETED' then 'captured'
              when w.status in ('FAILED', 'CANCELLED', 'REJECTED') then 'released' else 'open' end
  from core.withdrawals w
  join core.holds h on h.id = w.hold_id
  left join ledger l on l.reference = w.reference and l.kind = 'withdrawal'
)
select i.source, i.item_id, i.reference, i.provider, i.status, i.user_id, i.requested, i.provider_amount,
       i.provider_id, i.expected_ledger, i.ledger_amount, i.entries, i.hold_status,
       case when i.expected_ledger <> 0 and i.ledger_amount = 0 then 'missing'
            when i.expected_ledger = 0 and i.ledger_amount <> 0 then 'unexpected'
            when i.ledger_amount <> i.expected_ledger or i.entries > 1 then 'mismatched'
            when i.source = 'deposit' and i.status = 'PAID'
                 and (i.provider_amount is distinct from i.expected_ledger or i.provider_id is null) then 'mismatched'
            when i.hold_status is distinct from i.expected_hold_status then 'mismatched'
            else 'matched' end as outcome
from items i
union all
-- money credited as a deposit that no charge accounts for
select 'ledger_deposit', null, l.reference, null, null, null, null, null, null, 0, l.to_customers, l.entries, null,
       'unexpected'
from ledger l
where l.kind = 'deposit' and not exists (select from core.pix_charges c where c.reference = l.reference);
comment on view reporting.rails_reconciliation is
  'Every PIX deposit and withdrawal beside what the journal did for it: outcome matched, missing (the provider says paid / we paid out, the ledger has no entry), unexpected (an entry with no PAID charge or COMPLETED withdrawal behind it), or mismatched (amounts differ, more than one entry, a PAID charge without the provider''s payment id or amount, or a withdrawal whose hold is not captured / released / open as its status requires). Healthy: every row matched.';

create view reporting.rails_mismatches as
select r.* from reporting.rails_reconciliation r where r.outcome <> 'matched';
comment on view reporting.rails_mismatches is
  'The rows of reporting.rails_reconciliation that are not matched (missing, unexpected or mismatched). Healthy: empty.';

create view reporting.omnibus_position as
with orders as (
  select o.* from core.market_orders o where o.status = 'COMPLETED'
), settled as (
  select p.currency, sum(p.amount) as settled_net
  from orders o
  join core.postings p on p.entry_id = o.entry_id
  join core.accounts a on a.id = p.account_id and a.purpose = 'binance_omnibus'
  group by p.currency
), binance as (
  -- what Binance's fills say we gained (+) or gave (-) at Binance, per asset
  select o.base_currency as currency,
         sum(case when o.side = 'buy' then o.executed_qty - coalesce(o.commission, 0) else -o.executed_qty end) as net,
         sum(coalesce(o.dust_crypto, 0)) as dust, count(*) as orders
  from orders o group by o.base_currency
  union all
  select 'BRL',
         sum(case when o.side = 'sell' then o.cummulative_quote_qty - coalesce(o.commission, 0)
                  else -o.cummulative_quote_qty end),
         sum(coalesce(o.dust_brl, 0)), count(*)
  from orders o having count(*) > 0
)
select c.code as currency, o.balance as ledger_balance, coalesce(s.settled_net, 0) as from_settled_orders,
       o.balance - coalesce(s.settled_net, 0) as other_movements,
       coalesce(b.net, 0) as binance_net, coalesce(b.dust, 0) as dust,
       coalesce(b.net, 0) + coalesce(s.settled_net, 0) - coalesce(b.dust, 0) as difference,
       coalesce(b.orders, 0) as orders
from core.currencies c
cross join lateral (select coalesce(sum(a.balance), 0) as balance from core.accounts a
                    where a.purpose = 'binance_omnibus' and a.currency = c.code) o
left join settled s on s.currency = c.code
left join binance b on b.currency = c.code;
comment on view reporting.omnibus_position is
  'The Binance omnibus account per currency against the market orders we settled: the ledger balance (negative = assets held at Binance), the part that came from COMPLETED orders, what Binance''s fills say we gained or gave (binance_net, after commission), and the sub-unit dust the house kept. Healthy: difference = 0 for every currency, and other_movements = 0 or explained by a treasury transfer.';

-- ---------------------------------------------------------------------------
-- Stale items and suspicious activity (one row per item or per rule fired)
-- ---------------------------------------------------------------------------

create view reporting.stale_items as
with cfg as (
  select (select s.value::int from core.settings s where s.name = 'audit_stale_minutes') as stale_minutes,
         (select s.value::int from core.settings s where s.name = 'audit_dispute_stale_hours') as dispute_hours
)
select 'expired_hold'::text as item_kind, h.id as item_id, h.user_id, h.currency, h.amount, h.purpose as state,
       h.expires_at as since, now() - h.expires_at as overdue,
       format('hold %s (%s, %s) expired at %s and is still open', h.id, h.purpose, h.reference, h.expires_at) as detail
from core.holds h, cfg
where h.status = 'open' and h.expires_at < now() - make_interval(mins => cfg.stale_minutes)
union all
select 'p2p_trade_unpaid', t.id, t.seller_id, t.crypto, t.crypto_amount, t.status, t.payment_deadline,
       now() - t.payment_deadline, format('trade %s still OPEN past its payment deadline', t.id)
from core.p2p_trades t, cfg
where t.status = 'OPEN' and t.payment_deadline < now() - make_interval(mins => cfg.stale_minutes)
union all
select 'p2p_dispute_open', t.id, t.seller_id, t.crypto, t.crypto_amount, t.status, t.disputed_at,
       now() - t.disputed_at, format('trade %s in %s since %s', t.id, t.status, t.disputed_at)
from core.p2p_trades t, cfg
where t.status in ('DISPUTED', 'REVIEW') and coalesce(t.disputed_at, t.updated_at) < now() - make_interval(hours => cfg.dispute_hours)
union all
select 'p2p_offer_expired', o.id, o.user_id, o.crypto, o.remaining_amount, o.status, o.expires_at,
       now() - o.expires_at, format('offer %s still %s past its expiry', o.id, o.status)
from core.p2p_offers o, cfg
where o.status in ('active', 'paused') and o.expires_at < now() - make_interval(mins => cfg.stale_minutes)
union all
select 'deposit_pending', c.id, c.user_id, 'BRL', c.amount, c.status, c.expires_at, now() - c.expires_at,
       format('deposit %s still PENDING past its expiry', c.reference)
from core.pix_charges c, cfg
where c.status = 'PENDING' and c.expires_at < now() - make_interval(mins => cfg.stale_minutes)
union all
select 'withdrawal_' || lower(w.status), w.id, w.user_id, 'BRL', w.amount, w.status,
       coalesce(w.claimed_at, w.created_at), now() - coalesce(w.claimed_at, w.created_at),
       format('withdrawal %s %s since %s', w.reference, w.status, coalesce(w.claimed_at, w.created_at))
from core.withdrawals w, cfg
where w.status in ('PENDING', 'PROCESSING')
  and coalesce(w.claimed_at, w.created_at) < now() - make_interval(mins => cfg.stale_minutes)
union all
select 'market_order_executing', o.id, o.user_id, case when o.side = 'buy' then 'BRL' else o.base_currency end,
       o.amount, o.status, o.created_at, now() - o.created_at,
       format('market order %s (%s %s) EXECUTING since %s', o.client_order_id, o.side, o.symbol, o.created_at)
from core.market_orders o, cfg
where o.status = 'EXECUTING' and o.created_at < now() - make_interval(mins => cfg.stale_minutes);
comment on view reporting.stale_items is
  'Items stuck past their deadline (by more than setting audit_stale_minutes): expired holds still open, P2P trades still OPEN after the payment deadline, offers still posted after expiry, deposits still PENDING after their charge expired, withdrawals PENDING or PROCESSING, market orders EXECUTING, and disputes open longer than audit_dispute_stale_hours. Each row says which kind. Healthy: empty (the worker''s sweeps and the admins keep it so).';

create view reporting.suspicious_activity as
with cfg as (
  select make_interval(mins => (select s.value::int from core.settings s where s.name = 'audit_round_trip_minutes'))
           as round_trip_window,
         (select s.value::numeric from core.settings s where s.name = 'audit_dispute_rate_percent') as dispute_percent,
         (select s.value::int from core.settings s where s.name = 'audit_dispute_min_trades') as dispute_min_trades,
         (select s.value::numeric from core.settings s where s.name = 'audit_small_deposit_brl') as small_brl,
         (select s.value::int from core.settings s where s.name = 'audit_small_deposit_count') as small_count,
         make_interval(hours => (select s.value::int from core.settings s where s.name = 'audit_small_deposit_hours'))
           as small_window
),
transfers as (
  select e.id as entry_id, e.created_at, e.user_id as sender_id, a.user_id as recipient_id, p.currency, p.amount
  from core.entries e
  join core.postings p on p.entry_id = e.id and p.created_at = e.created_at
  join core.accounts a on a.id = p.account_id
  where e.kind = 'transfer' and a.user_id is not null and a.user_id <> e.user_id and p.amount > 0
),
trades as (
  select t.id, t.created_at, t.seller_id, t.buyer_id, t.crypto, t.crypto_amount, t.disputed_at, t.status
  from core.p2p_trades t
),
trade_parties as (
  select t.seller_id as user_id, t.id, t.disputed_at from trades t
  union all
  select t.buyer_id, t.id, t.disputed_at from trades t
)
-- Money sent to a customer who sends (about) the same amount back soon after.
select 'rapid_round_trip_transfer'::text as rule, t1.sender_id as user_id, t1.recipient_id as counterparty_id,
       t1.currency, t1.amount, t2.created_at as occurred_at,
       format('user %s sent %s %s to user %s (entry %s), who sent %s back %s later (entry %s)',
              t1.sender_id, t1.amount, t1.currency, t1.recipient_id, t1.entry_id, t2.amount,
              date_trunc('second', t2.created_at - t1.created_at), t2.entry_id) as detail
from transfers t1
join transfers t2 on t2.sender_id = t1.recipient_id and t2.recipient_id = t1.sender_id
                 and t2.currency = t1.currency and t2.entry_id > t1.entry_id
                 and t2.amount between t1.amount * 0.9 and t1.amount * 1.1
cross join cfg
where t2.created_at <= t1.created_at + cfg.round_trip_window
union all
-- A sells crypto to B on P2P, and B sells (about) the same back to A soon after.
select 'rapid_round_trip_p2p', t1.seller_id, t1.buyer_id, t1.crypto, t1.crypto_amount, t2.created_at,
       format('trade %s: user %s sold %s %s to user %s; trade %s sold %s back %s later',
              t1.id, t1.seller_id, t1.crypto_amount, t1.crypto, t1.buyer_id, t2.id, t2.crypto_amount,
              date_trunc('second', t2.created_at - t1.created_at))
from trades t1
join trades t2 on t2.seller_id = t1.buyer_id and t2.buyer_id = t1.seller_id and t2.crypto = t1.crypto
              and t2.id > t1.id and t2.crypto_amount between t1.crypto_amount * 0.9 and t1.crypto_amount * 1.1
cross join cfg
where t1.status not in ('CANCELLED') and t2.status not in ('CANCELLED')
  and t2.created_at <= t1.created_at + cfg.round_trip_window
union all
-- A customer in too many disputes.
select 'high_dispute_rate', d.user_id, null, null, d.disputed, d.last_dispute_at,
       format('user %s: %s of %s P2P trades disputed (%s%%)', d.user_id, d.disputed, d.trades,
              round(100.0 * d.disputed / d.trades, 1))
from (select p.user_id, count(*) as trades, count(p.disputed_at) as disputed, max(p.disputed_at) as last_dispute_at
      from trade_parties p group by p.user_id) d
cross join cfg
where d.trades >= cfg.dispute_min_trades and 100.0 * d.disputed / d.trades > cfg.dispute_percent
union all
-- Many small deposits, then a withdrawal (structuring).
select 'small_deposits_then_withdrawal', w.user_id, null, 'BRL', w.amount, w.created_at,
       format('withdrawal %s of %s after %s deposits below %s (total %s) in the previous %s',
              w.reference, w.amount, d.n, cfg.small_brl, d.total, cfg.small_window)
from core.withdrawals w
cross join cfg
cross join lateral (
  select count(*) as n, sum(c.credited_amount) as total from core.pix_charges c
  where c.user_id = w.user_id and c.purpose = 'deposit' and c.status = 'PAID' and c.credited_amount < cfg.small_brl
    and c.paid_at between w.created_at - cfg.small_window and w.created_at
) d
where d.n >= cfg.small_count
union all
-- A PIX paid from a CPF that is not the customer's. The digits are taken inline, not with
-- core.cpf_digits: the auditor reading this view holds no right on core functions.
select 'deposit_payer_cpf_mismatch', c.user_id, null, 'BRL', coalesce(c.paid_amount, c.amount), coalesce(c.paid_at, c.updated_at),
       format('deposit %s paid by CPF ***%s, customer''s CPF ends in %s', c.reference,
              right(regexp_replace(c.payer_cpf, '[^0-9]', '', 'g'), 4), right(k.cpf, 4))
from core.pix_charges c
join core.kyc_profiles k on k.user_id = c.user_id
where c.purpose = 'deposit' and c.payer_cpf is not null
  and regexp_replace(c.payer_cpf, '[^0-9]', '', 'g') <> k.cpf
union all
select 'p2p_payer_cpf_mismatch', t.buyer_id, t.seller_id, 'BRL', pp.amount, pp.created_at,
       format('trade %s: PIX paid by CPF ***%s, the buyer''s CPF ends in %s (outcome %s)', t.id,
              right(regexp_replace(pp.payer_cpf, '[^0-9]', '', 'g'), 4), right(k.cpf, 4), pp.outcome)
from core.p2p_pix_payments pp
join core.p2p_trades t on t.id = pp.trade_id
join core.kyc_profiles k on k.user_id = t.buyer_id
where pp.payer_cpf is not null and regexp_replace(pp.payer_cpf, '[^0-9]', '', 'g') <> k.cpf;
comment on view reporting.suspicious_activity is
  'Patterns worth a human look, one row per time a rule fired (column rule): rapid_round_trip_transfer (a transfer answered by about the same amount back within audit_round_trip_minutes), rapid_round_trip_p2p (the same between two P2P traders), high_dispute_rate (over audit_dispute_rate_percent of at least audit_dispute_min_trades trades disputed), small_deposits_then_withdrawal (audit_small_deposit_count PIX deposits below audit_small_deposit_brl within audit_small_deposit_hours before a withdrawal), deposit_payer_cpf_mismatch and p2p_payer_cpf_mismatch (a PIX paid from a CPF other than the customer''s or the P2P buyer''s). Not errors: each row is reviewed. Healthy: empty or every row explained.';

-- ---------------------------------------------------------------------------
-- The dashboard: one row per check, failures = offending rows of view_name
-- ---------------------------------------------------------------------------

create view reporting.health_checks as
select 'trial_balance'::text as check_name, 'trial_balance'::text as view_name, 'error'::text as severity,
       (select count(*) from reporting.trial_balance t where t.total <> 0 or t.cached_total <> 0) as failures,
       'Every currency sums to zero (postings and cached balances).'::text as description
union all
select 'balance_mismatches', 'balance_mismatches', 'error', (select count(*) from reporting.balance_mismatches),
       'Cached balance = sum of postings on every account.'
union all
select 'held_mismatches', 'held_mismatches', 'error', (select count(*) from reporting.held_mismatches),
       'Locked balance = open holds for every customer.'
union all
select 'books_health', 'books_health', 'error', (select count(*) from reporting.books_health),
       'Every ledger invariant of admin.check_books() holds right now.'
union all
select 'book_alerts', 'book_alerts', 'error', (select count(*) from reporting.book_alerts b where b.latest),
       'The latest scheduled books check (worker) found nothing.'
union all
select 'escrow_mismatches', 'escrow_mismatches', 'error', (select count(*) from reporting.escrow_mismatches),
       'P2P escrow matches the offers and trades it backs.'
union all
select 'rails_reconciliation', 'rails_mismatches', 'error', (select count(*) from reporting.rails_mismatches),
       'Every PIX deposit and withdrawal matches the journal.'
union all
select 'omnibus_position', 'omnibus_position', 'error',
       (select count(*) from reporting.omnibus_position o where o.difference <> 0),
       'The Binance omnibus account matches the fills of the settled market orders.'
union all
select 'stale_items', 'stale_items', 'warning', (select count(*) from reporting.stale_items),
       'Nothing stuck past its deadline.'
union all
select 'suspicious_activity', 'suspicious_activity', 'warning', (select count(*) from reporting.suspicious_activity),
       'No suspicious pattern waiting for review.'
union all
select 'liability_snapshots', 'liability_snapshots', 'warning',
       (select case when max(s.created_at) is null
                      or max(s.created_at) < now() - make_interval(hours => 2 * (select c.value::int from core.settings c
                                                                               where c.name = 'liabilities_snapshot_hours'))
                    then 1 else 0 end
        from core.liability_snapshots s),
       'A proof of liabilities was published recently.';
comment on view reporting.health_checks is
  'The /audit dashboard: one row per health check with the number of offending rows in view_name (severity error or warning). Healthy: failures = 0 on every row.';

grant select on all tables in schema reporting to exchange_auditor, exchange_admin;

-- ---------------------------------------------------------------------------
-- The scheduled books check
-- ---------------------------------------------------------------------------

create function admin.record_books_check()
returns table (check_name text, detail text)
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_failures jsonb;
begin
  select coalesce(jsonb_agg(jsonb_build_object('check_name', h.check_name, 'detail', h.detail)), '[]')
    into v_failures from reporting.books_health h;
  insert into core.book_checks (failure_count, failures) values (jsonb_array_length(v_failures), v_failures);
  return query select f ->> 'check_name', f ->> 'detail' from jsonb_array_elements(v_failures) f;
end
$$;
revoke all on function admin.record_books_check() from public;
grant execute on function admin.record_books_check() to exchange_worker, exchange_admin;
comment on function admin.record_books_check() is
  'Runs admin.check_books() and remembers the outcome in core.book_checks (shown in /audit as reporting.book_alerts); returns the failures. Called by the worker every 5 minutes.';

-- ---------------------------------------------------------------------------
-- Proof of liabilities
-- ---------------------------------------------------------------------------

create function admin.publish_liabilities_snapshot(admin_id bigint default null, only_if_due boolean default false)
returns table (snapshot_id bigint, created_at timestamptz, currency text, root text, total numeric,
               leaf_count int, replayed boolean)
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
#variable_conflict use_column
declare
  v_snapshot bigint;
  v_last core.liability_snapshots;
  v_level int := 0;
  v_rows int;
begin
  if admin_id is not null then
    perform core.assert_admin(admin_id);
  end if;
  -- One publication at a time.
  perform pg_advisory_xact_lock(hashtext('bs-market:liabilities-snapshot'));
  if only_if_due then
    select * into v_last from core.liability_snapshots s order by s.id desc limit 1;
    if found and v_last.created_at > now() - make_interval(hours => (select c.value::int from core.settings c
                                                                      where c.name = 'liabilities_snapshot_hours')) then
      return query select r.snapshot_id, v_last.created_at, r.currency, encode(r.root_hash, 'hex'), r.total,
                          r.leaf_count, true
                   from core.liability_roots r where r.snapshot_id = v_last.id order by r.currency;
      return;
    end if;
  end if;

  insert into core.liability_snapshots (published_by) values (admin_id) returning id into v_snapshot;

  -- One statement reads every balance, so all currencies come from one
  -- snapshot of the ledger even under READ COMMITTED. One random salt per
  -- customer and publication: a leaf reveals nothing without it.
  insert into core.liability_leaves (snapshot_id, currency, user_id, balance, salt, leaf_hash, leaf_index)
  with balances as (
    select a.user_id, a.currency, round(sum(a.balance), c.scale) as balance
    from core.accounts a join core.currencies c on c.code = a.currency
    where a.user_id is not null
    group by a.user_id, a.currency, c.scale
  ), salts as materialized (
    select u.user_id,
           encode(sha256(convert_to(gen_random_uuid()::text || gen_random_uuid()::text, 'UTF8')), 'hex') as salt
    from (select distinct b.user_id from balances b) u
  ), leaves as (
    select b.user_id, b.currency, b.balance, s.salt,
           sha256(convert_to(s.salt || ':' || b.user_id || ':' || b.currency || ':' || b.balance::text, 'UTF8'))
             as leaf_hash
    from balances b join salts s on s.user_id = b.user_id
  )
  select v_snapshot, l.currency, l.user_id, l.balance, l.salt, l.leaf_hash,
         (row_number() over (partition by l.currency order by l.leaf_hash) - 1)::int
  from leaves l;

  insert into core.liability_nodes (snapshot_id, currency, level, node_index, hash)
  select l.snapshot_id, l.currency, 0, l.leaf_index, l.leaf_hash
  from core.liability_leaves l where l.snapshot_id = v_snapshot;

  -- Level by level: node i of level n+1 hashes nodes 2i and 2i+1 of level n;
  -- a node without a right sibling is promoted as it is.
  loop
    insert into core.liability_nodes (snapshot_id, currency, level, node_index, hash)
    select v_snapshot, n.currency, v_level + 1, n.node_index / 2,
           case when count(*) = 2 then sha256(string_agg(n.hash, ''::bytea order by n.node_index))
                else (array_agg(n.hash))[1] end
    from core.liability_nodes n
    where n.snapshot_id = v_snapshot and n.level = v_level
      and n.currency in (select m.currency from core.liability_nodes m
                         where m.snapshot_id = v_snapshot and m.level = v_level
                         group by m.currency having count(*) > 1)
    group by n.currency, n.node_index / 2;
    get diagnostics v_rows = row_count;
    exit when v_rows = 0;
    v_level := v_level + 1;
  end loop;

  -- An empty tree's root is sha256 of nothing.
  insert into core.liability_roots (snapshot_id, currency, root_hash, total, leaf_count)
  select v_snapshot, c.code,
         coalesce((select n.hash from core.liability_nodes n where n.snapshot_id = v_snapshot and n.currency = c.code
                   order by n.level desc limit 1), sha256(''::bytea)),
         coalesce((select sum(l.balance) from core.liability_leaves l
                   where l.snapshot_id = v_snapshot and l.currency = c.code), 0),
         (select count(*) from core.liability_leaves l where l.snapshot_id = v_snapshot and l.currency = c.code)
  from core.currencies c;

  if admin_id is not null then
    perform core.audit(admin_id, 'publish_liabilities_snapshot', null, 'Publicação da prova de passivos',
                       jsonb_build_object('snapshot_id', v_snapshot));
  end if;
  return query select r.snapshot_id, s.created_at, r.currency, encode(r.root_hash, 'hex'), r.total, r.leaf_count, false
               from core.liability_roots r join core.liability_snapshots s on s.id = r.snapshot_id
               where r.snapshot_id = v_snapshot order by r.currency;
end
$$;
revoke all on function admin.publish_liabilities_snapshot(bigint, boolean) from public;
grant execute on function admin.publish_liabilities_snapshot(bigint, boolean) to exchange_app, exchange_worker, exchange_admin;
comment on function admin.publish_liabilities_snapshot(bigint, boolean) is
  'Publishes the proof of liabilities: at one point in time, a Merkle tree per currency over every customer balance (available + locked), leaf = sha256(salt:user_id:currency:balance) with a fresh random salt per customer, leaves sorted by hash, parent = sha256(left || right), an odd node promoted. Stores roots, totals and every leaf; past publications are kept. admin_id NULL = the worker (else BSA01 unless an active admin; audit-logged). With only_if_due (the worker''s hourly job), returns the last publication (replayed = true) while it is younger than setting liabilities_snapshot_hours.';

create function api.list_liability_roots(max_rows int default 30)
returns table (snapshot_id bigint, created_at timestamptz, currency text, root text, total numeric, leaf_count int)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  select r.snapshot_id, s.created_at, r.currency, encode(r.root_hash, 'hex'), r.total, r.leaf_count
  from core.liability_roots r
  join core.liability_snapshots s on s.id = r.snapshot_id
  join core.currencies c on c.code = r.currency
  where r.snapshot_id in (select s2.id from core.liability_snapshots s2 order by s2.id desc
                          limit least(greatest(list_liability_roots.max_rows, 1), 365))
  order by r.snapshot_id desc, c.sort_order
$$;
revoke all on function api.list_liability_roots(int) from public;
grant execute on function api.list_liability_roots(int) to exchange_app;
comment on function api.list_liability_roots(int) is
  'Public: the latest published proofs of liabilities (newest first), each with its Merkle root, total owed and number of leaves per currency. Needs no user.';

create function api.get_liabilities_proof(user_id bigint, currency text, snapshot_id bigint default null)
returns jsonb
language plpgsql stable security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_snapshot bigint := get_liabilities_proof.snapshot_id;
  v_leaf core.liability_leaves;
  v_root core.liability_roots;
  v_index int;
  v_top int;
  v_sibling bytea;
  v_path jsonb := '[]';
begin
  if not exists (select from core.currencies c where c.code = get_liabilities_proof.currency) then
    raise exception 'Moeda desconhecida: %.', coalesce(get_liabilities_proof.currency, '(vazia)')
      using errcode = 'BSN01', column = 'currency';
  end if;
  if v_snapshot is null then
    select max(s.id) into v_snapshot from core.liability_snapshots s;
  end if;
  select * into v_root from core.liability_roots r
  where r.snapshot_id = v_snapshot and r.currency = get_liabilities_proof.currency;
  if not found then
    raise exception 'Nenhuma prova de passivos publicada ainda.' using errcode = 'BSN01', column = 'snapshot_id';
  end if;
  select * into v_leaf from core.liability_leaves l
  where l.snapshot_id = v_snapshot and l.currency = get_liabilities_proof.currency
    and l.user_id = get_liabilities_proof.user_id;
  if not found then
    raise exception 'Sua conta não consta desta publicação (ela é anterior ao seu cadastro).'
      using errcode = 'BSN01', column = 'snapshot_id';
  end if;
  select max(n.level) into v_top from core.liability_nodes n
  where n.snapshot_id = v_snapshot and n.currency = v_leaf.currency;
  -- Walk up: at each level the sibling is node (index xor 1), when it exists.
  v_index := v_leaf.leaf_index;
  for v_level in 0 .. v_top - 1 loop
    select n.hash into v_sibling from core.liability_nodes n
    where n.snapshot_id = v_snapshot and n.currency = v_leaf.currency
      and n.level = v_level and n.node_index = (v_index # 1);
    if found then
      v_path := v_path || jsonb_build_array(jsonb_build_object(
        'side', case when v_index % 2 = 1 then 'left' else 'right' end, 'hash', encode(v_sibling, 'hex')));
    end if;
    v_index := v_index / 2;
  end loop;
  -- Amounts as text: a JSON number would lose the exact decimals.
  return (select jsonb_build_object(
            'snapshot_id', v_snapshot, 'published_at', s.created_at, 'currency', v_leaf.currency,
            'user_id', v_leaf.user_id, 'balance', v_leaf.balance::text, 'salt', v_leaf.salt,
            'leaf_hash', encode(v_leaf.leaf_hash, 'hex'), 'leaf_index', v_leaf.leaf_index,
            'root', encode(v_root.root_hash, 'hex'), 'total', v_root.total::text, 'leaf_count', v_root.leaf_count,
            'path', v_path)
          from core.liability_snapshots s where s.id = v_snapshot);
end
$$;
revoke all on function api.get_liabilities_proof(bigint, text, bigint) from public;
grant execute on function api.get_liabilities_proof(bigint, text, bigint) to exchange_app;
comment on function api.get_liabilities_proof(bigint, text, bigint) is
  'A customer''s inclusion proof in a published proof of liabilities (the latest when snapshot_id is NULL), as JSON: snapshot_id, published_at, currency, user_id, balance (text), salt, leaf_hash, leaf_index, root, total, leaf_count and path, the sibling hashes from the leaf up ([{side: left|right, hash}]). Siblings are hashes only, so nothing about other customers is revealed. BSN01 unknown currency, nothing published, or the customer is not in that publication.';
