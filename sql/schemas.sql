-- schemas.sql: the public faces of the database, rebuilt on every deploy.
--
-- `api` (customer operations), `admin` (operator operations) and `reporting`
-- (read-only views) hold no data: only functions and views, all defined in
-- the files that follow. Dropping and re-creating them on each apply removes
-- functions whose signature changed or that were deleted from sql/, so what
-- is in the database is exactly what is in this folder. Data lives in `core`,
-- which only migrations change.

drop schema if exists api cascade;
drop schema if exists admin cascade;
drop schema if exists reporting cascade;

create schema api;
create schema admin;
create schema reporting;

revoke all on schema api, admin, reporting from public;
grant usage on schema api to exchange_app;
grant usage on schema admin to exchange_app, exchange_worker, exchange_admin;
grant usage on schema reporting to exchange_auditor, exchange_admin;

comment on schema api is 'Customer operations: SECURITY DEFINER functions, the acting user first. Executed by exchange_app.';
comment on schema admin is 'Operator operations: the back office (the acting admin is checked; exchange_app and exchange_admin) and the worker''s bookings of what providers said (exchange_worker only: the web role cannot book money).';
comment on schema reporting is 'Read-only views for auditors and reconciliation. SELECT for exchange_auditor and exchange_admin.';
comment on schema core is 'Private tables, types and internal helpers. Owner only.';
