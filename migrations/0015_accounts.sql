-- 0015_accounts: accounts a person can live with (issue 14): an outbox of
-- e-mails the worker sends through SMTP, single-use tokens for e-mail
-- verification and password reset (stored hashed), server-side sessions,
-- requests to recover a lost 2FA device, and the customer's anti-phishing code.
-- Functions are in sql/accounts.sql.

alter table core.users
  add column email_verified_at timestamptz,
  add column anti_phishing_code text
    check (length(anti_phishing_code) between 4 and 20 and anti_phishing_code = btrim(anti_phishing_code)
           and anti_phishing_code !~ '[[:cntrl:]<>&"]'),
  add column exits_paused_reason text;
-- Accounts made before e-mail verification existed are taken as verified:
-- they already received mail at that address.
update core.users set email_verified_at = created_at;
comment on column core.users.email_verified_at is
  'When the customer proved they read mail at `email` (followed the verification link). NULL: may look around, may not deposit, trade, transfer or withdraw (core.assert_email_verified).';
comment on column core.users.anti_phishing_code is
  'A short code the customer chose; every e-mail we send shows it at the top, so a phishing mail without it stands out.';
comment on column core.users.exits_paused_reason is
  'Why exits_paused_until was set: twofactor_disabled, password_reset or twofactor_recovered (the message of core.lock_for_exit).';

-- The outbox: every e-mail to send, written in the same transaction as the
-- event that causes it. The worker sends it (outside any transaction) with a
-- Message-ID made from the row id and records the outcome.
create table core.mail_outbox (
  id bigint generated always as identity primary key,
  user_id bigint references core.users (id) on delete restrict,
  recipient text not null check (recipient ~ '^[^@\s]+@[^@\s]+\.[^@\s]+$' and length(recipient) <= 254),
  kind text not null check (kind in ('verify_email', 'password_reset', 'new_device', 'email_change_notice',
                                     'twofactor_recovery_requested', 'twofactor_recovery_approved',
                                     'twofactor_recovery_rejected')),
  params jsonb not null default '{}',
  status text not null default 'pending' check (status in ('pending', 'sent', 'failed', 'cancelled')),
  attempts int not null default 0 check (attempts >= 0),
  last_error text,
  next_try_at timestamptz not null default now(),
  created_at timestamptz not null default now(),
  sent_at timestamptz,
  check ((status = 'sent') = (sent_at is not null))
);
create index mail_outbox_due_idx on core.mail_outbox (next_try_at, id) where status = 'pending';
create index mail_outbox_user_idx on core.mail_outbox (user_id, kind, created_at desc);
comment on table core.mail_outbox is
  'E-mails to send (pending → sent | failed after mail_max_attempts | cancelled when superseded). Written by the SQL function of the event; sent by the worker through SMTP_URL, idempotent by id (Message-ID <mail-ID@…>).';
comment on column core.mail_outbox.recipient is 'The address at the time the mail was queued (for an e-mail change: the new address).';
comment on column core.mail_outbox.kind is 'Which mail (the worker has one template per kind).';
comment on column core.mail_outbox.params is 'What the template needs (never a raw token: links with a token are completed by the worker, core.account_tokens).';
comment on column core.mail_outbox.attempts is 'SMTP attempts so far; the worker backs off between them.';
comment on column core.mail_outbox.next_try_at is 'Not before this moment (a claimed row is leased for a while, so a crashed run is retried).';

-- Tokens of the links we mail (verify an e-mail, reset a password). The raw
-- token exists only in the mail: the worker makes it (secrets.token_urlsafe)
-- when it sends the mail and stores its sha256 here. Single-use, expiring.
create table core.account_tokens (
  id bigint generated always as identity primary key,
  user_id bigint not null references core.users (id) on delete restrict,
  purpose text not null check (purpose in ('verify_email', 'password_reset')),
  email text not null,
  mail_id bigint not null unique references core.mail_outbox (id) on delete restrict,
  token_hash text unique check (token_hash ~ '^[0-9a-f]{64}$'),
  issued_at timestamptz,
  expires_at timestamptz,
  used_at timestamptz,
  revoked_at timestamptz,
  created_at timestamptz not null default now(),
  check ((token_hash is null) = (issued_at is null) and (issued_at is null) = (expires_at is null))
);
create index account_tokens_open_idx on core.account_tokens (user_id, purpose)
  where used_at is null and revoked_at is null;
comment on table core.account_tokens is
  'Single-use, expiring tokens of mailed links (verify_email, password_reset), stored as sha256. A newer request revokes the older ones.';
comment on column core.account_tokens.email is 'The address the link proves (for an e-mail change, the new one).';
comment on column core.account_tokens.token_hash is 'sha256 (hex) of the raw token in the link; NULL until the worker sends the mail.';
comment on column core.account_tokens.expires_at is 'Issue time + email_verification_hours or password_reset_minutes.';

-- Server-side sessions: the login cookie carries only a random token whose
-- sha256 is here; ending the row ends the session, whatever the cookie says.
create table core.user_sessions (
  id bigint generated always as identity primary key,
  user_id bigint not null references core.users (id) on delete restrict,
  token_hash text not null unique check (token_hash ~ '^[0-9a-f]{64}$'),
  ip text check (length(ip) <= 64),
  user_agent text not null default '' check (length(user_agent) <= 500),
  browser text not null default '' check (length(browser) <= 80),
  created_at timestamptz not null default now(),
  last_seen_at timestamptz not null default now(),
  ended_at timestamptz,
  end_reason text check (end_reason in ('logout', 'ended_by_user', 'ended_other', 'password_changed',
                                        'password_reset', 'twofactor_changed', 'twofactor_recovered', 'expired',
                                        'email_changed')),
  check ((ended_at is null) = (end_reason is null))
);
create index user_sessions_open_idx on core.user_sessions (user_id, last_seen_at desc) where ended_at is null;
create index user_sessions_device_idx on core.user_sessions (user_id, browser, ip);
comment on table core.user_sessions is
  'Logged-in devices: one row per login, ended by logout, by the customer (/account/security), by a password or 2FA change, or after session_idle_hours without use.';
comment on column core.user_sessions.token_hash is 'sha256 (hex) of the random token in the session cookie.';
comment on column core.user_sessions.browser is 'Browser and system read from the User-Agent (e.g. "Firefox / Linux"): with the IP, what makes a device new.';
comment on column core.user_sessions.last_seen_at is 'Last request, to within session_touch_minutes (no write on every request).';
comment on column core.user_sessions.end_reason is 'Why it ended (NULL while open).';

-- A customer who lost their 2FA device asks for it to be removed; an admin
-- checks the KYC identity and approves (2FA removed, exits paused) or rejects.
create table core.twofactor_recovery_requests (
  id bigint generated always as identity primary key,
  user_id bigint not null references core.users (id) on delete restrict,
  reason text not null check (length(btrim(reason)) between 10 and 1000),
  ip text,
  status text not null default 'pending' check (status in ('pending', 'approved', 'rejected')),
  created_at timestamptz not null default now(),
  reviewed_by bigint references core.users (id) on delete restrict,
  reviewed_at timestamptz,
  review_reason text,
  check ((status = 'pending') = (reviewed_at is null)),
  check (status = 'pending' or length(btrim(review_reason)) > 0)
);
create unique index twofactor_recovery_one_pending on core.twofactor_recovery_requests (user_id) where status = 'pending';
create index twofactor_recovery_status_idx on core.twofactor_recovery_requests (status, id);
comment on table core.twofactor_recovery_requests is
  'Requests to remove a lost 2FA device, filed after the right password at login; an admin approves (after checking the KYC identity) or rejects. At most one pending per customer.';
comment on column core.twofactor_recovery_requests.reason is 'What the customer says happened (shown to the admin).';
comment on column core.twofactor_recovery_requests.review_reason is 'The admin''s reason (also in the admin audit log).';

alter table core.security_events drop constraint security_events_kind_check;
alter table core.security_events add constraint security_events_kind_check check (kind in (
  'twofactor_enabled', 'twofactor_disabled', 'twofactor_failed', 'recovery_code_used',
  'password_changed', 'kyc_data_confirmed', 'kyc_documents_submitted', 'kyc_approved', 'kyc_rejected',
  'withdrawal_destination_added', 'crypto_address_added',
  'email_verified', 'email_change_requested', 'email_changed', 'password_reset_requested', 'password_reset',
  'new_device_login', 'session_ended', 'other_sessions_ended', 'anti_phishing_code_set',
  'twofactor_recovery_requested', 'twofactor_recovered', 'twofactor_recovery_rejected'));

insert into core.settings (name, value, description) values
  ('email_verification_hours', '48', 'Hours an e-mail verification link stays valid after it is sent.'),
  ('password_reset_minutes', '60', 'Minutes a password reset link stays valid after it is sent.'),
  ('password_reset_exit_pause_hours', '24', 'Hours with no exit after a password reset by e-mail.'),
  ('twofactor_recovery_exit_pause_hours', '48', 'Hours with no exit after an admin removes a lost 2FA device.'),
  ('account_mails_per_hour', '5', 'At most this many verification or reset e-mails per customer and kind per hour (more are silently not sent).'),
  ('verification_resend_seconds', '60', 'Seconds between two verification e-mails the customer asks for.'),
  ('session_idle_hours', '336', 'A session unused for this many hours ends (expired).'),
  ('session_touch_minutes', '5', 'A session''s last_seen_at is written at most once per this many minutes.'),
  ('mail_max_attempts', '8', 'SMTP attempts before an e-mail is given up (failed).');
