-- currencies.sql: the currencies the exchange books (core.currencies), for the app.
--
-- The web and the worker read the list once per process (webapp/currencies.py)
-- for form choices, scales and page links; a currency added to core.currencies
-- (a migration) shows up after a restart with no Python change.

create or replace function api.list_currencies()
returns table (code text, name text, scale int, kind text, sort_order int)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  select c.code, c.name, c.scale, c.kind, c.sort_order from core.currencies c order by c.sort_order, c.code
$$;
revoke all on function api.list_currencies() from public;
grant execute on function api.list_currencies() to exchange_app;
comment on function api.list_currencies() is
  'Every currency the ledger books: code, name, scale (decimal places an amount may have), kind fiat|crypto, display order. Read once per process by webapp/currencies.py.';
