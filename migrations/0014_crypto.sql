-- 0014_crypto: on-chain deposits and withdrawals of BTC, ETH and USDT through
-- Binance (sql/crypto.sql holds the functions). One Binance virtual
-- sub-account per customer carries their deposit addresses; what arrives is
-- credited against the binance_omnibus account and swept to the master
-- account; withdrawals leave from the master with withdrawOrderId = cwd-<id>.

-- The networks of each coin as Binance's capital/config/getall describes
-- them, refreshed by the worker (admin.record_crypto_networks). Seeded with
-- Binance's values so the pages work before the first refresh.
create table core.crypto_networks (
  coin text not null references core.currencies (code) on delete restrict,
  network text not null check (network ~ '^[A-Z0-9]{2,20}$'),
  name text not null,
  is_default boolean not null default false,
  deposit_enable boolean not null default true,
  withdraw_enable boolean not null default true,
  withdraw_fee numeric not null check (withdraw_fee >= 0),
  withdraw_min numeric not null check (withdraw_min >= 0),
  withdraw_max numeric not null check (withdraw_max >= 0),
  withdraw_multiple numeric not null check (withdraw_multiple > 0),
  min_confirm int not null check (min_confirm >= 0),
  unlock_confirm int not null default 0 check (unlock_confirm >= 0),
  address_regex text not null,
  memo_regex text not null default '',
  needs_memo boolean not null default false,
  tx_explorer_url text not null default '',
  updated_at timestamptz not null default now(),
  primary key (coin, network)
);
comment on table core.crypto_networks is
  'The blockchain networks each coin can be deposited and withdrawn on (from Binance capital/config/getall, refreshed by the worker): fee, minimum and step of a withdrawal, confirmations before a deposit is credited, the address and memo patterns the database checks, the explorer link of a transaction.';

insert into core.crypto_networks (coin, network, name, is_default, withdraw_fee, withdraw_min, withdraw_max,
                                  withdraw_multiple, min_confirm, unlock_confirm, address_regex, tx_explorer_url)
values
  ('BTC', 'BTC', 'Bitcoin', true, 0.00002, 0.0001, 7500, 0.00000001, 1, 2,
   '^[13][a-km-zA-HJ-NP-Z1-9]{25,34}$|^(bc1)[0-9A-Za-z]{39,59}$', 'https://mempool.space/tx/'),
  ('ETH', 'ETH', 'Ethereum (ERC20)', true, 0.0008, 0.0016, 10000000000, 0.00000001, 6, 64,
   '^(0x)[0-9A-Fa-f]{40}$', 'https://etherscan.io/tx/'),
  ('USDT', 'TRX', 'Tron (TRC20)', false, 1, 10, 10000000000, 0.000001, 1, 0,
   '^T[1-9A-HJ-NP-Za-km-z]{33}$', 'https://tronscan.org/#/transaction/'),
  ('USDT', 'ETH', 'Ethereum (ERC20)', true, 3, 6, 10000000000, 0.000001, 6, 64,
   '^(0x)[0-9A-Fa-f]{40}$', 'https://etherscan.io/tx/'),
  ('USDT', 'BSC', 'BNB Smart Chain (BEP20)', false, 0.3, 0.6, 10000000000, 0.000001, 15, 0,
   '^(0x)[0-9A-Fa-f]{40}$', 'https://bscscan.com/tx/');

-- One Binance virtual sub-account per customer (created by the worker).
create table core.binance_sub_accounts (
  user_id bigint primary key references core.users (id) on delete restrict,
  sub_account_string text not null unique check (sub_account_string ~ '^[A-Za-z0-9_]{1,32}$'),
  email text unique,
  status text not null default 'PENDING' check (status in ('PENDING', 'READY')),
  attempts int not null default 0,
  last_error text,
  last_tried_at timestamptz,
  last_polled_at timestamptz,
  created_at timestamptz not null default now(),
  ready_at timestamptz,
  check ((status = 'READY') = (email is not null))
);
create index binance_sub_accounts_poll_idx on core.binance_sub_accounts (last_polled_at nulls first) where status = 'READY';
comment on table core.binance_sub_accounts is
  'A customer''s Binance virtual sub-account (PENDING until the worker created it, READY with its email): their deposit addresses live on it.';

create table core.crypto_deposit_addresses (
  id bigint generated always as identity primary key,
  user_id bigint not null references core.users (id) on delete restrict,
  coin text not null,
  network text not null,
  address text,
  memo text not null default '',
  requested_at timestamptz not null default now(),
  ready_at timestamptz,
  foreign key (coin, network) references core.crypto_networks (coin, network) on delete restrict,
  unique (user_id, coin, network),
  check ((address is null) = (ready_at is null))
);
comment on table core.crypto_deposit_addresses is
  'A customer''s deposit address (and memo/tag) per coin and network, from Binance; address is NULL while the worker fetches it.';

create table core.crypto_deposits (
  id bigint generated always as identity primary key,
  user_id bigint not null references core.users (id) on delete restrict,
  coin text not null references core.currencies (code) on delete restrict,
  network text not null,
  tx_id text not null check (length(tx_id) between 1 and 200),
  binance_id text not null check (length(binance_id) between 1 and 100),
  address text not null default '',
  memo text not null default '',
  amount numeric not null check (amount > 0),
  status text not null default 'PENDING' check (status in ('PENDING', 'CREDITED', 'WRONG_NETWORK')),
  binance_status int not null,
  confirmations int not null default 0,
  required_confirmations int not null default 0,
  entry_id bigint references core.entries (id) on delete restrict,
  first_seen_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  credited_at timestamptz,
  unique (coin, tx_id, binance_id),
  unique (binance_id),
  check ((status = 'CREDITED') = (entry_id is not null))
);
create index crypto_deposits_user_idx on core.crypto_deposits (user_id, id desc);
comment on table core.crypto_deposits is
  'On-chain deposits seen in a customer''s sub-account deposit history, once per (coin, txId, Binance id): PENDING while confirming (Binance status 0 or 6), CREDITED exactly once (status 1, entry crypto_deposit), WRONG_NETWORK (status 7, or a coin/network we do not list) never credited.';

-- Coins credited on a sub-account move to the master account (Binance
-- universal transfer, clientTranId = csw-<id>). Nothing moves in the ledger:
-- both sides are the Binance omnibus; this row tracks where the coins are.
create table core.crypto_sweeps (
  id bigint generated always as identity primary key,
  deposit_id bigint not null unique references core.crypto_deposits (id) on delete restrict,
  user_id bigint not null references core.users (id) on delete restrict,
  coin text not null,
  amount numeric not null check (amount > 0),
  client_tran_id text not null unique,
  tran_id text,
  status text not null default 'PENDING' check (status in ('PENDING', 'SENDING', 'DONE')),
  attempts int not null default 0,
  last_error text,
  created_at timestamptz not null default now(),
  sent_at timestamptz,
  done_at timestamptz,
  check ((status = 'DONE') = (tran_id is not null))
);
comment on table core.crypto_sweeps is
  'Moves of credited deposits from the customer''s sub-account to the master account: PENDING → SENDING (the worker called Binance) → DONE with Binance''s tranId; the reconciler looks a SENDING one up by clientTranId.';

create table core.crypto_address_book (
  id bigint generated always as identity primary key,
  user_id bigint not null references core.users (id) on delete restrict,
  coin text not null,
  network text not null,
  address text not null check (length(address) between 1 and 128),
  memo text not null default '' check (length(memo) <= 100),
  label text not null default '' check (length(label) <= 60),
  usable_from timestamptz not null,
  created_at timestamptz not null default now(),
  removed_at timestamptz,
  foreign key (coin, network) references core.crypto_networks (coin, network) on delete restrict
);
create unique index crypto_address_book_key on core.crypto_address_book (user_id, coin, network, address, memo)
  where removed_at is null;
comment on table core.crypto_address_book is
  'A customer''s saved crypto withdrawal addresses (per coin and network, with memo and label): usable from usable_from (cooling-off after it was added).';

create table core.crypto_withdrawals (
  id bigint generated by default as identity primary key,
  user_id bigint not null references core.users (id) on delete restrict,
  reference text not null unique check (reference = 'cwd-' || id),
  coin text not null,
  network text not null,
  address_book_id bigint references core.crypto_address_book (id) on delete restrict,
  address text not null,
  memo text not null default '',
  amount numeric not null check (amount > 0),
  fee numeric not null check (fee >= 0),
  brl_value numeric not null check (brl_value >= 0),
  hold_id bigint not null unique references core.holds (id) on delete restrict,
  status text not null default 'PENDING'
    check (status in ('AWAITING_APPROVAL', 'PENDING', 'PROCESSING', 'COMPLETED', 'FAILED', 'CANCELLED', 'REJECTED')),
  binance_id text,
  binance_status int,
  tx_id text,
  failure_reason text,
  last_error text,
  attempts int not null default 0,
  created_at timestamptz not null default now(),
  claimed_at timestamptz,
  last_checked_at timestamptz,
  resolved_at timestamptz,
  updated_at timestamptz not null default now(),
  foreign key (coin, network) references core.crypto_networks (coin, network) on delete restrict,
  reviewed_by bigint references core.users (id) on delete restrict,
  reviewed_at timestamptz,
  check ((status in ('COMPLETED', 'FAILED', 'CANCELLED', 'REJECTED')) = (resolved_at is not null))
);
create index crypto_withdrawals_user_idx on core.crypto_withdrawals (user_id, id desc);
create index crypto_withdrawals_open_idx on core.crypto_withdrawals (status, id) where status in ('PENDING', 'PROCESSING');
comment on table core.crypto_withdrawals is
  'On-chain withdrawals: amount (what the address receives) + fee (the network fee) held, PENDING → PROCESSING (the worker sends POST withdraw/apply with withdrawOrderId = reference) → COMPLETED (hold captured to binance_omnibus, txId) | FAILED (released); CANCELLED by the customer while PENDING. brl_value: amount + fee at the bid when requested (daily limit).';

-- What Binance says the master holds, per coin (the worker records
-- capital/config/getall): reporting.omnibus_vs_ledger compares it with the ledger.
create table core.binance_balance_snapshots (
  id bigint generated always as identity primary key,
  coin text not null references core.currencies (code) on delete restrict,
  free numeric not null,
  locked numeric not null,
  withdrawing numeric not null,
  taken_at timestamptz not null default now()
);
create index binance_balance_snapshots_coin_idx on core.binance_balance_snapshots (coin, taken_at desc);
comment on table core.binance_balance_snapshots is
  'Snapshots of the Binance master account''s balance of each coin (free, locked, withdrawing) as capital/config/getall reported it.';

alter table core.kyc_limits add column daily_crypto_withdrawal_brl numeric not null default 0
  check (daily_crypto_withdrawal_brl >= 0);
update core.kyc_limits set daily_crypto_withdrawal_brl = case kyc_level when 0 then 0 when 1 then 10000 else 200000 end;
comment on column core.kyc_limits.daily_crypto_withdrawal_brl is
  'Crypto a customer may withdraw on-chain per day (Brazil time), valued in BRL at the bid when requested.';

insert into core.settings (name, value, description) values
  ('crypto_destination_cooloff_hours', '24',
   'Hours before a newly saved crypto withdrawal address can be used.'),
  ('crypto_withdrawal_recheck_seconds', '30',
   'A PROCESSING crypto withdrawal not looked at for this long is looked up on Binance by withdrawOrderId.'),
  ('crypto_withdrawal_unseen_fail_minutes', '30',
   'A crypto withdrawal Binance still does not know this long after it was sent is failed and its hold released.'),
  ('crypto_sweep_recheck_seconds', '30',
   'A sweep sent this long ago without a recorded tranId is looked up on Binance by clientTranId.');

-- Security events of the address book (and of the PIX destination list,
-- whose function logs one too).
alter table core.security_events drop constraint security_events_kind_check;
alter table core.security_events add constraint security_events_kind_check check (kind in (
  'twofactor_enabled', 'twofactor_disabled', 'twofactor_failed', 'recovery_code_used',
  'password_changed', 'kyc_data_confirmed', 'kyc_documents_submitted', 'kyc_approved', 'kyc_rejected',
  'withdrawal_destination_added', 'crypto_address_added'));
