-- metrics.sql: numbers for /metrics (Prometheus text format).
--
-- admin.get_metrics returns one row per sample; the metrics blueprint renders
-- them. Cheap queries only: this is scraped every few seconds.

create or replace function admin.get_metrics()
returns table (metric text, labels jsonb, value numeric)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  select 'bsm_users', jsonb_build_object('role', u.role), count(*)::numeric from core.users u group by u.role
  union all
  select 'bsm_customer_liabilities', jsonb_build_object('currency', a.currency, 'bucket', a.purpose), sum(a.balance)
  from core.accounts a where a.user_id is not null group by a.currency, a.purpose
  union all
  select 'bsm_fee_revenue', jsonb_build_object('currency', a.currency), sum(a.balance)
  from core.accounts a where a.purpose = 'fees' group by a.currency
  union all
  select 'bsm_open_holds', jsonb_build_object('purpose', h.purpose), count(*)::numeric
  from core.holds h where h.status = 'open' group by h.purpose
  union all
  select 'bsm_journal_entries', '{}'::jsonb, coalesce((select last_value from core.entries_id_seq), 0)::numeric
  union all
  select 'bsm_price_age_seconds', jsonb_build_object('symbol', m.symbol),
         round(extract(epoch from now() - max(p.fetched_at))::numeric, 3)
  from core.market_pairs m join core.prices p on p.symbol = m.symbol group by m.symbol
$$;
revoke all on function admin.get_metrics() from public;
grant execute on function admin.get_metrics() to exchange_app, exchange_admin;
comment on function admin.get_metrics() is
  'Samples for /metrics: users by role, customer liabilities per currency (available, locked), fee revenue, open holds by purpose, journal size, price age per pair.';
