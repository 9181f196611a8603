-- 0008_audit: what the auditors' section and the proof of liabilities keep.
--
-- * core.book_checks: every scheduled run of the ledger invariants
--   (admin.record_books_check), so an alert is visible in /audit, not only in
--   the worker's log.
-- * core.liability_*: published Merkle trees over every customer balance per
--   currency (admin.publish_liabilities_snapshot). Roots are public; each
--   customer can fetch their own salted leaf and sibling path
--   (api.get_liabilities_proof). Past publications are kept, append-only.
--
-- Functions and views live in sql/reporting.sql. No extension is needed:
-- sha256(bytea) and gen_random_uuid() are built into PostgreSQL 13+.

create table core.book_checks (
  id bigint generated always as identity primary key,
  checked_at timestamptz not null default now(),
  failure_count int not null check (failure_count >= 0),
  failures jsonb not null default '[]' check (jsonb_typeof(failures) = 'array')
);
create index book_checks_time_idx on core.book_checks (checked_at desc);
comment on table core.book_checks is
  'One row per run of the ledger invariants by the worker (admin.record_books_check): failures as [{check_name, detail}].';

create table core.liability_snapshots (
  id bigint generated always as identity primary key,
  -- NULL: published by the worker's daily job.
  published_by bigint references core.users (id) on delete restrict,
  created_at timestamptz not null default now()
);
comment on table core.liability_snapshots is 'One publication of the proof of liabilities (a Merkle root per currency).';

create table core.liability_roots (
  snapshot_id bigint not null references core.liability_snapshots (id) on delete restrict,
  currency text not null references core.currencies (code) on delete restrict,
  root_hash bytea not null check (length(root_hash) = 32),
  total numeric not null check (total >= 0),
  leaf_count int not null check (leaf_count >= 0),
  primary key (snapshot_id, currency)
);
comment on table core.liability_roots is 'The published Merkle root, total owed and number of leaves, per snapshot and currency.';

-- leaf_hash = sha256(utf8(salt || ':' || user_id || ':' || currency || ':' || balance)),
-- balance written with exactly the currency's scale; leaves sorted by hash.
create table core.liability_leaves (
  snapshot_id bigint not null references core.liability_snapshots (id) on delete restrict,
  currency text not null references core.currencies (code) on delete restrict,
  user_id bigint not null references core.users (id) on delete restrict,
  balance numeric not null check (balance >= 0),
  salt text not null check (salt ~ '^[0-9a-f]{64}$'),
  leaf_hash bytea not null check (length(leaf_hash) = 32),
  leaf_index int not null check (leaf_index >= 0),
  primary key (snapshot_id, currency, user_id),
  unique (snapshot_id, currency, leaf_index)
);
create index liability_leaves_user_idx on core.liability_leaves (user_id, snapshot_id desc);
comment on table core.liability_leaves is 'Every customer''s salted leaf of a published Merkle tree (private: a customer sees only their own).';

-- Every node of every tree: level 0 are the leaves (in leaf_index order);
-- node i of level n+1 = sha256(node 2i || node 2i+1) of level n, or node 2i
-- itself when it has no right sibling (an odd node is promoted).
create table core.liability_nodes (
  snapshot_id bigint not null references core.liability_snapshots (id) on delete restrict,
  currency text not null references core.currencies (code) on delete restrict,
  level int not null check (level >= 0),
  node_index int not null check (node_index >= 0),
  hash bytea not null check (length(hash) = 32),
  primary key (snapshot_id, currency, level, node_index)
);
comment on table core.liability_nodes is 'All nodes of the published Merkle trees, so a customer''s sibling path is a lookup.';

insert into core.settings (name, value, description) values
  ('audit_stale_minutes', '15',
   'Minutes past its deadline (hold expiry, P2P payment deadline) before an item shows in reporting.stale_items.'),
  ('audit_round_trip_minutes', '60',
   'Window in which money going from one customer to another and back (transfers, P2P trades) is flagged as a rapid round trip.'),
  ('audit_dispute_rate_percent', '20',
   'A customer with at least audit_dispute_min_trades P2P trades and more than this share of them disputed is flagged.'),
  ('audit_dispute_min_trades', '5', 'Fewest P2P trades before the dispute-rate rule applies to a customer.'),
  ('audit_dispute_stale_hours', '48', 'Hours a P2P dispute may stay open before it shows in reporting.stale_items.'),
  ('audit_small_deposit_brl', '500.00', 'A PIX deposit below this amount (BRL) counts as small for the structuring rule.'),
  ('audit_small_deposit_count', '5',
   'This many small deposits within audit_small_deposit_hours, followed by a withdrawal within the same window, are flagged.'),
  ('audit_small_deposit_hours', '24', 'Window of the many-small-deposits-then-a-withdrawal rule, in hours.'),
  ('liabilities_snapshot_hours', '24', 'Hours between two publications of the proof of liabilities by the worker.');
