-- 0006_kyc_security: KYC data and documents, TOTP two-factor authentication,
-- the log of security events, and e-mail delivery of notifications.
--
-- KYC levels live on core.users.kyc_level (0 e-mail only, 1 CPF data
-- verified, 2 documents approved by an admin); the limits per level are
-- core.kyc_limits (0002). Uploaded files stay on disk; the database keeps
-- their metadata. Functions are in sql/kyc.sql, sql/security.sql and
-- sql/backoffice.sql.

-- One row per customer who confirmed their data (level 1). The CPF is
-- unique across customers: one person, one account.
create table core.kyc_profiles (
  user_id bigint primary key references core.users (id) on delete restrict,
  full_name text not null check (length(btrim(full_name)) between 3 and 120),
  cpf text not null check (cpf ~ '^[0-9]{11}$'),
  birth_date date not null,
  address text not null check (length(btrim(address)) between 5 and 300),
  verified_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
create unique index kyc_profiles_cpf_key on core.kyc_profiles (cpf);

-- A set of documents (identity document + selfie) sent for review. At most
-- one pending submission per customer; an admin approves (level 2) or
-- rejects it with a reason.
create table core.kyc_submissions (
  id bigint generated always as identity primary key,
  user_id bigint not null references core.users (id) on delete restrict,
  status text not null default 'pending' check (status in ('pending', 'approved', 'rejected')),
  created_at timestamptz not null default now(),
  reviewed_by bigint references core.users (id) on delete restrict,
  reviewed_at timestamptz,
  review_reason text,
  check ((status = 'pending') = (reviewed_at is null)),
  check (status <> 'rejected' or length(btrim(review_reason)) > 0)
);
create unique index kyc_submissions_one_pending on core.kyc_submissions (user_id) where status = 'pending';
create index kyc_submissions_status_idx on core.kyc_submissions (status, id);

create table core.kyc_documents (
  id bigint generated always as identity primary key,
  submission_id bigint not null references core.kyc_submissions (id) on delete restrict,
  user_id bigint not null references core.users (id) on delete restrict,
  kind text not null check (kind in ('document', 'selfie')),
  storage_path text not null unique check (storage_path ~ '^[A-Za-z0-9_/-]+\.(png|jpg|pdf)$' and storage_path !~ '\.\.'),
  sha256 text not null check (sha256 ~ '^[0-9a-f]{64}$'),
  content_type text not null check (content_type in ('image/png', 'image/jpeg', 'application/pdf')),
  size_bytes int not null check (size_bytes between 1 and 5242880),
  created_at timestamptz not null default now(),
  unique (submission_id, kind)
);
create index kyc_documents_user_idx on core.kyc_documents (user_id);

-- TOTP: the shared secret (pending until the first code confirms it) and
-- the last time step accepted, so a code cannot be replayed.
create table core.user_totp (
  user_id bigint primary key references core.users (id) on delete restrict,
  secret text not null check (secret ~ '^[A-Z2-7]{16,64}$'),
  confirmed_at timestamptz,
  last_used_step bigint,
  created_at timestamptz not null default now()
);

-- Recovery codes: shown once, stored hashed (werkzeug), each usable once.
create table core.recovery_codes (
  id bigint generated always as identity primary key,
  user_id bigint not null references core.users (id) on delete restrict,
  code_hash text not null,
  used_at timestamptz,
  created_at timestamptz not null default now()
);
create index recovery_codes_user_idx on core.recovery_codes (user_id) where used_at is null;

create table core.security_events (
  id bigint generated always as identity primary key,
  user_id bigint not null references core.users (id) on delete restrict,
  kind text not null check (kind in (
    'twofactor_enabled', 'twofactor_disabled', 'twofactor_failed', 'recovery_code_used',
    'password_changed', 'kyc_data_confirmed', 'kyc_documents_submitted', 'kyc_approved', 'kyc_rejected')),
  detail text,
  ip text,
  created_at timestamptz not null default now()
);
create index security_events_user_idx on core.security_events (user_id, id desc);

-- E-mail copies of notifications: the worker sends the unsent ones and
-- marks them. Notifications that exist already are not e-mailed.
alter table core.notifications add column emailed_at timestamptz;
update core.notifications set emailed_at = created_at;
create index notifications_unsent_idx on core.notifications (id) where emailed_at is null;

insert into core.settings (name, value, description) values
  ('kyc_min_age_years', '18', 'Minimum age, in years, to confirm KYC data.');
