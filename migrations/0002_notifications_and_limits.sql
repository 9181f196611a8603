-- 0002_notifications_and_limits: two things every domain uses.
--
-- In-app notifications (every status change a customer should know about)
-- and the limits per KYC level that deposits, withdrawals, market orders and
-- P2P trades enforce in SQL. A DBA edits core.kyc_limits directly.

create table core.notifications (
  id bigint generated always as identity primary key,
  user_id bigint not null references core.users (id) on delete restrict,
  kind text not null check (kind ~ '^[a-z][a-z0-9_.]*$'),
  message text not null,
  link text,
  created_at timestamptz not null default now(),
  read_at timestamptz
);
create index notifications_user_idx on core.notifications (user_id, id desc);
create index notifications_unread_idx on core.notifications (user_id) where read_at is null;

create table core.kyc_limits (
  kyc_level int primary key check (kyc_level between 0 and 2),
  daily_deposit_brl numeric not null check (daily_deposit_brl >= 0),
  daily_withdrawal_brl numeric not null check (daily_withdrawal_brl >= 0),
  daily_market_brl numeric not null check (daily_market_brl >= 0),
  daily_p2p_brl numeric not null check (daily_p2p_brl >= 0),
  per_trade_max_brl numeric not null check (per_trade_max_brl >= 0),
  how_to_raise text not null
);
comment on table core.kyc_limits is 'Daily limits in BRL per KYC level, enforced by the SQL functions of each domain. A DBA edits this table.';

insert into core.kyc_limits values
  (0, 1000.00, 500.00, 1000.00, 1000.00, 500.00,
   'Confirme seus dados (nome, CPF, data de nascimento) em /kyc para subir ao nível 1.'),
  (1, 10000.00, 5000.00, 20000.00, 20000.00, 5000.00,
   'Envie documento e selfie em /kyc para subir ao nível 2.'),
  (2, 200000.00, 100000.00, 500000.00, 500000.00, 100000.00,
   'Para limites maiores, fale com o suporte.');
