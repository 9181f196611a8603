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
