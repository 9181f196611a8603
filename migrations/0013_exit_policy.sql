-- 0013_exit_policy: one policy for every way value leaves a customer
-- (sql/exits.sql), TOTP checked by the database, withdrawal destinations,
-- PIX clawbacks (MED), a login role for the worker and a development flag
-- for the demo seed.

-- HMAC-SHA1 for TOTP codes checked in SQL (core.totp_code).
create extension if not exists pgcrypto with schema public;

-- The worker logs in as its own role: the functions that book what a
-- provider said (a PIX paid, an order filled, a payout done) are granted to
-- it and not to the web's exchange_app (sql/*.sql grant them).
do $$
begin
  if not exists (select from pg_roles where rolname = 'exchange_worker') then
    create role exchange_worker login;
  end if;
end
$$;

-- Reversible exposure: every credit that a PIX payer can still claw back
-- (MED) — a deposit, the BRL a seller got from a PIX-confirmed trade — until
-- matures_at. While a customer has any, each exit must leave assets (valued
-- at the bid) worth at least the exposure (core.assert_exit_covered).
create table core.reversible_credits (
  id bigint generated always as identity primary key,
  user_id bigint not null references core.users (id) on delete restrict,
  source text not null check (source in ('deposit', 'p2p_pix_sale')),
  pix_charge_id bigint references core.pix_charges (id) on delete restrict,
  amount numeric not null check (amount > 0),
  reversed numeric not null default 0 check (reversed >= 0 and reversed <= amount),
  entry_id bigint not null references core.entries (id) on delete restrict,
  credited_at timestamptz not null default now(),
  matures_at timestamptz not null,
  unique (pix_charge_id, user_id)
);
create index reversible_credits_user_idx on core.reversible_credits (user_id, matures_at);
comment on table core.reversible_credits is
  'Credits a PIX payer can claw back (MED) until matures_at: deposits and the BRL of PIX-confirmed P2P sales. Their unreversed sum is the customer''s reversible exposure.';
comment on column core.reversible_credits.amount is 'BRL credited from the PIX.';
comment on column core.reversible_credits.reversed is 'BRL of it already clawed back (core.pix_clawbacks): no longer exposure.';

-- users.brl_maturing_until becomes the moment until which the customer may
-- have exposure (a fast path for every exit), infinity while exits are blocked.
alter table core.users rename column brl_maturing_until to exposure_until;
alter table core.users
  add column exits_blocked_at timestamptz,
  add column exits_blocked_reason text,
  add column exits_paused_until timestamptz,
  add column created_by_seed boolean not null default false;
comment on column core.users.exits_paused_until is 'No exit before this moment: set for a while after 2FA is turned off (a stolen session turning it off gains nothing at once).';
comment on column core.users.exposure_until is
  'Until when the customer may have reversible exposure or blocked exits (never earlier than the truth): exits check the policy only before it.';
comment on column core.users.exits_blocked_at is 'Set when a PIX credited to the customer was clawed back and not fully recovered: no exit until an admin unblocks.';

insert into core.reversible_credits (user_id, source, pix_charge_id, amount, entry_id, credited_at, matures_at)
select c.user_id, 'deposit', c.id, c.credited_amount, c.entry_id, c.resolved_at,
       c.resolved_at + make_interval(hours => (select s.value::int from core.settings s
                                               where s.name = 'deposit_maturation_hours'))
from core.pix_charges c
where c.purpose = 'deposit' and c.status = 'PAID' and c.entry_id is not null;

-- A PIX credit clawed back at the provider (refunded, charged back, blocked
-- by MED): journaled against the customer it was credited to; what their
-- available BRL could not cover is a debt (the receivables account).
create table core.pix_clawbacks (
  id bigint generated always as identity primary key,
  pix_charge_id bigint not null references core.pix_charges (id) on delete restrict,
  user_id bigint not null references core.users (id) on delete restrict,
  provider_status text not null check (provider_status in ('refunded', 'charged_back', 'in_mediation')),
  amount numeric not null check (amount > 0),
  recovered numeric not null check (recovered >= 0),
  debt numeric not null check (debt >= 0),
  debt_recovered numeric not null default 0 check (debt_recovered >= 0 and debt_recovered <= debt),
  entry_id bigint not null references core.entries (id) on delete restrict,
  created_at timestamptz not null default now(),
  check (recovered + debt = amount)
);
create index pix_clawbacks_charge_idx on core.pix_clawbacks (pix_charge_id);
comment on table core.pix_clawbacks is
  'PIX credits taken back by the payer''s bank (MED) or refunded at the provider, one row per clawback event (a partial MED then a full chargeback are two): what was taken from the customer''s BRL and what remains their debt.';
comment on column core.pix_clawbacks.debt is 'BRL the customer owes (the receivables account holds it as an asset) after their balance was used.';

-- TOTP failures counted in the database (login and step-up alike).
alter table core.user_totp
  add column failed_attempts int not null default 0 check (failed_attempts >= 0),
  add column locked_until timestamptz;
-- Whether 2FA is on, on the row every exit already reads (kept by a trigger on
-- user_totp, sql/security.sql): the transfer's hot path needs no extra lookup.
alter table core.users add column twofactor_on boolean not null default false;
update core.users u set twofactor_on = true
 where exists (select from core.user_totp t where t.user_id = u.id and t.confirmed_at is not null);

alter table core.security_events drop constraint security_events_kind_check;
alter table core.security_events add constraint security_events_kind_check check (kind in (
  'twofactor_enabled', 'twofactor_disabled', 'twofactor_failed', 'recovery_code_used',
  'password_changed', 'kyc_data_confirmed', 'kyc_documents_submitted', 'kyc_approved', 'kyc_rejected',
  'withdrawal_destination_added'));

-- PIX keys a customer withdraws to: their own CPF at once, any other key
-- after a cooling-off period from when it was added.
create table core.withdrawal_destinations (
  id bigint generated always as identity primary key,
  user_id bigint not null references core.users (id) on delete restrict,
  key_type text not null check (key_type in ('CPF', 'CNPJ', 'EMAIL', 'PHONE', 'EVP')),
  pix_key text not null check (length(pix_key) between 1 and 100),
  label text not null default '' check (length(label) <= 60),
  usable_from timestamptz not null,
  created_at timestamptz not null default now(),
  removed_at timestamptz
);
create unique index withdrawal_destinations_key on core.withdrawal_destinations (user_id, key_type, pix_key)
  where removed_at is null;
comment on table core.withdrawal_destinations is
  'A customer''s saved PIX keys for withdrawals; a key other than their own CPF is usable from usable_from (cooling-off).';

insert into core.settings (name, value, description) values
  ('withdrawal_destination_cooloff_hours', '24',
   'Hours before a newly saved withdrawal PIX key (other than the customer''s own CPF) can be used.'),
  ('totp_max_failures', '5', 'Wrong 2FA codes in a row before 2FA is locked for totp_lock_minutes.'),
  ('totp_lock_minutes', '15', 'Minutes 2FA stays locked after too many wrong codes.'),
  ('twofactor_off_exit_pause_hours', '24', 'Hours with no exit after a customer turns 2FA off.'),
  ('p2p_fixed_price_max_deviation_percent', '50',
   'A fixed P2P price may differ from the Binance index by at most this many percent.'),
  ('environment', 'production',
   'development lets `seed-demo` create and fund the demo accounts; anything else refuses it.');

-- A PIX that arrived for a P2P trade that had already ended is never
-- credited as free BRL: it is refunded to the payer at the provider.
alter table core.p2p_pix_payments drop constraint p2p_pix_payments_outcome_check;
alter table core.p2p_pix_payments add constraint p2p_pix_payments_outcome_check
  check (outcome in ('completed', 'review', 'credited_to_buyer', 'rejected', 'refund'));

-- Refunds we ask a provider to make (step 1 records the intent, the worker
-- calls the provider with the refund's id as idempotency key, then records
-- the outcome).
create table core.pix_refunds (
  id bigint generated always as identity primary key,
  provider text not null check (provider in ('mercadopago', 'inter')),
  provider_payment_id text not null,
  pix_charge_id bigint references core.pix_charges (id) on delete restrict,
  trade_id bigint references core.p2p_trades (id) on delete restrict,
  amount numeric not null check (amount > 0),
  reason text not null,
  status text not null default 'PENDING' check (status in ('PENDING', 'DONE', 'FAILED', 'CLAWED_BACK')),
  provider_refund_id text,
  attempts int not null default 0,
  last_error text,
  last_tried_at timestamptz,
  created_at timestamptz not null default now(),
  resolved_at timestamptz,
  unique (provider, provider_payment_id),
  check ((status = 'PENDING') = (resolved_at is null))
);
comment on table core.pix_refunds is
  'PIX payments returned to their payer at the provider (a late payment for an ended P2P trade, a payment nobody can be credited with): PENDING → DONE | FAILED. Nothing is booked in the ledger: the money never became a customer''s.';

-- The receivables account: what customers owe after a PIX credited to them
-- was clawed back and their balance could not cover it (negative = an asset).
-- The refunds_payable account: PIX payments at the provider that belong to
-- their payer until the refund is made (a liability, positive).
do $$
declare
  v_has_trigger boolean := exists (select from pg_trigger where tgname = 'accounts_valid'
                                   and tgrelid = 'core.accounts'::regclass);
begin
  -- (the trigger of sql/ledger.sql, on a database that already has it,
  -- knows the purposes of before this migration)
  if v_has_trigger then
    alter table core.accounts disable trigger accounts_valid;
  end if;
  insert into core.accounts (user_id, currency, purpose, shard, must_not_go_negative)
  select null, c.code, p.purpose, 0, false from core.currencies c
  cross join (values ('receivables'), ('refunds_payable')) p (purpose);
  if v_has_trigger then
    alter table core.accounts enable trigger accounts_valid;
  end if;
end
$$;

-- Provider notifications (webhooks): the web only checks the signature and
-- records them; the worker fetches the resource from the provider and books
-- it (the web role cannot call the functions that book money).
create table core.provider_notifications (
  id bigint generated always as identity primary key,
  provider text not null check (provider in ('mercadopago', 'inter')),
  topic text not null check (topic in ('payment', 'payout')),
  resource_id text not null check (length(resource_id) between 1 and 100),
  received_at timestamptz not null default now(),
  deliveries int not null default 1,
  attempts int not null default 0,
  last_error text,
  next_try_at timestamptz not null default now(),
  outcome text,
  processed_at timestamptz
);
create unique index provider_notifications_pending_key on core.provider_notifications (provider, topic, resource_id)
  where processed_at is null;
create index provider_notifications_due_idx on core.provider_notifications (next_try_at, id) where processed_at is null;
comment on table core.provider_notifications is
  'Verified webhook deliveries waiting for the worker (one pending row per resource; repeats count deliveries). The worker fetches each resource from the provider and books what it says.';

-- Market orders are placed on Binance by the worker (placed_at: when it
-- committed to sending; an order never placed is failed by the reconciler).
alter table core.market_orders add column placed_at timestamptz;
update core.market_orders set placed_at = created_at;
