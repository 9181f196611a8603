-- 0016_privacy_tax: LGPD (Lei 13.709/2018) — data export, account closure and
-- the anonymisation of closed accounts after the legal retention period — and
-- the yearly tax statement (IRPF). Functions live in sql/privacy.sql and
-- sql/tax.sql.

-- A customer may close their own account: status closed (no login, no
-- operation, the ledger kept).
alter table core.users drop constraint users_status_check;
alter table core.users add constraint users_status_check check (status in ('active', 'frozen', 'closed'));

-- One row per closed account. Personal data are anonymised by the worker
-- once closed_at + personal_data_retention_years has passed (Lei 9.613/98
-- art. 10 and the COAF/BCB rules: records kept for 5 years after the end of
-- the relationship).
create table core.account_closures (
  user_id bigint primary key references core.users (id) on delete restrict,
  closed_at timestamptz not null default now(),
  ip text,
  reason text not null default '' check (length(reason) <= 500),
  anonymised_at timestamptz,
  -- why the job left a due account as it is (a balance arrived after the
  -- closure, a clawback debt…): an operator decides
  anonymise_blocked text,
  anonymise_checked_at timestamptz
);
create index account_closures_due_idx on core.account_closures (closed_at) where anonymised_at is null;
comment on table core.account_closures is
  'Accounts closed by their customer (api.close_account): when, from which IP, and when the worker anonymised their personal data (admin.anonymise_due_accounts) — or why it could not yet.';

-- Customer requests under LGPD art. 18 (access/export, closure): when they
-- were made, so that an auditor can see them answered.
create table core.privacy_requests (
  id bigint generated always as identity primary key,
  user_id bigint not null references core.users (id) on delete restrict,
  kind text not null check (kind in ('export_json', 'export_csv', 'closure')),
  ip text,
  created_at timestamptz not null default now()
);
create index privacy_requests_user_idx on core.privacy_requests (user_id, id desc);
comment on table core.privacy_requests is
  'Requests a customer made under LGPD art. 18: a download of their data (JSON or CSV) or the closure of the account.';

-- Files to delete from storage (KYC documents, P2P proofs of anonymised
-- accounts). The database records the intent in the anonymising
-- transaction; the worker deletes the file outside it and records that it did.
create table core.file_deletions (
  id bigint generated always as identity primary key,
  user_id bigint not null references core.users (id) on delete restrict,
  store text not null check (store in ('kyc', 'p2p')),
  path text not null check (path ~ '^[A-Za-z0-9_/-]+\.(png|jpg|pdf)$' and path !~ '\.\.'),
  requested_at timestamptz not null default now(),
  attempts int not null default 0,
  last_error text,
  deleted_at timestamptz,
  unique (store, path)
);
create index file_deletions_pending_idx on core.file_deletions (id) where deleted_at is null;
comment on table core.file_deletions is
  'Stored files (KYC documents under UPLOAD_DIR, P2P proofs under UPLOAD_DIR/p2p) whose deletion was decided in SQL; the worker unlinks them and sets deleted_at.';

-- How each crypto is declared in the IRPF "Bens e Direitos" (group 08,
-- Criptoativos): 01 Bitcoin, 02 other cryptos (altcoins), 03 stablecoins.
-- A DBA adds a row when a currency is added; a crypto without a row is
-- declared as 02.
create table core.tax_asset_codes (
  currency text primary key references core.currencies (code) on delete restrict,
  irpf_group text not null default '08' check (irpf_group ~ '^[0-9]{2}$'),
  irpf_code text not null check (irpf_code ~ '^[0-9]{2}$'),
  description text not null
);
comment on table core.tax_asset_codes is
  'IRPF Bens e Direitos group and code of each crypto (group 08: 01 Bitcoin, 02 other cryptoassets, 03 stablecoins). A DBA edits this table.';
insert into core.tax_asset_codes (currency, irpf_group, irpf_code, description) values
  ('BTC', '08', '01', 'Criptoativo Bitcoin (BTC)'),
  ('ETH', '08', '02', 'Outros criptoativos, do tipo moeda digital (altcoins): Ether (ETH)'),
  ('USDT', '08', '03', 'Criptoativos conhecidos como stablecoins: Tether USD (USDT)');

insert into core.settings (name, value, description) values
  ('personal_data_retention_years', '5',
   'Years after an account is closed before its personal data are anonymised (Lei 9.613/98 art. 10, COAF/BCB: 5 years of records); the ledger is kept for ever.'),
  ('tax_monthly_exemption_brl', '35000.00',
   'Monthly total of crypto sales below which gains were exempt under the rule in force until 2025 (informational on the tax statement; no tax is computed).');
