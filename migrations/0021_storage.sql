-- 0021_storage: fewer bytes per transfer (issue 15 part 4), no guarantee lost.
--
-- Measured with `python -m bench.storage` (docs/PERFORMANCE.md, "Storage and
-- growth"): a two-posting api.transfer wrote ~900 B to core's tables and
-- indexes; the target is 800 B. Two tables are rebuilt in place (their rows
-- copied, so the migration works on a database with history):
--
-- 1. core.idempotency_keys keeps a 16-byte digest of (operation, key) instead
--    of the key text and the operation in its primary key, and a 16-byte
--    digest of the request's hash instead of 32 hex characters:
--    - key_digest = the first 16 bytes of sha256(operation, NUL, key) as a
--      uuid (core.idempotency_digest). Text never holds a NUL byte, so
--      distinct (operation, key) pairs give distinct inputs, and a 128-bit
--      prefix of SHA-256 makes two of them meeting on one digest
--      unimaginable even on purpose (~2^64 work for a collision, and a
--      customer could only collide two keys of their own). The primary key
--      (user_id, key_digest) thus refuses exactly what (user_id, operation,
--      key) refused: one row per customer, operation and key, also
--      concurrently (the first inserter wins, a duplicate waits for it);
--    - request_digest = md5(request_hash)::uuid (the callers pass an md5 of
--      the request's fields; only equality is ever asked of it);
--    - the operation stays as a column, for a reader of the table; the key's
--      text is not kept (an operator finds a key's row with
--      core.idempotency_digest(operation, key); a transfer's key is also in its
--      entry's reference).
--    Columns in alignment order: 8-byte ones first, then the uuids
--    (byte-aligned), then the variable-length ones (no padding between).
-- 2. core.postings, same columns, reordered for alignment: the five 8-byte
--    columns first, then leg (2 bytes), then the variable-length currency,
--    amount and balance_after. The old order padded 6 bytes after leg, 3
--    after currency and 7 after amount: 16 bytes a posting. Rebuilt as a new
--    partitioned table with the same partitions (months), the same keys and
--    constraints, the same triggers (sql/ledger.sql re-creates the row and
--    statement triggers on the parent; each partition gets its TRUNCATE
--    guard and its comment here, as core.create_ledger_partition does) and the
--    same comments. The reporting views that read postings are dropped with
--    the old table and re-created by sql/ right after the migrations.
--
-- core.entries is left as it is: in the transfer's entry the reordering
-- saves nothing (its row rounds up to the same 8-byte boundary).

-- 1. Idempotency keys.
create table core.idempotency_keys_rebuilt (
  user_id bigint not null,
  created_at timestamptz not null default now(),
  key_digest uuid not null,
  request_digest uuid not null,
  operation text not null,
  result jsonb not null,
  primary key (user_id, key_digest)
);
insert into core.idempotency_keys_rebuilt (user_id, created_at, key_digest, request_digest, operation, result)
select k.user_id, k.created_at,
       encode(substring(sha256(convert_to(k.operation, 'UTF8') || '\x00'::bytea || convert_to(k.key, 'UTF8'))
                        from 1 for 16), 'hex')::uuid,
       md5(k.request_hash)::uuid, k.operation, k.result
  from core.idempotency_keys k;
drop table core.idempotency_keys;
alter table core.idempotency_keys_rebuilt rename to idempotency_keys;
alter table core.idempotency_keys rename constraint idempotency_keys_rebuilt_pkey to idempotency_keys_pkey;
comment on table core.idempotency_keys is
  'One row per (customer, operation, idempotency key) of a money operation, keyed by a digest of the operation and key (core.idempotency_digest): the digest of the request and its result, so a retried request returns the first result instead of running twice (core.claim_idempotency).';
comment on column core.idempotency_keys.key_digest is
  'core.idempotency_digest(operation, key): the first 16 bytes of SHA-256 over the operation, a NUL byte and the key; with user_id the primary key, so a key is claimed once per customer and operation.';
comment on column core.idempotency_keys.request_digest is
  'md5 of the request hash the operation passed (its fields): a replay with other fields is refused (BSI01).';

-- 2. Postings, columns in alignment order.
create table core.postings_rebuilt (
  entry_id bigint not null,
  account_id bigint not null,
  account_version bigint not null,
  -- the account's owner (null: a system account), so that a customer's
  -- postings can live with the customer's accounts (DESIGN.md §7, Citus)
  user_id bigint,
  created_at timestamptz not null default now(),
  leg smallint not null,
  currency text not null,
  amount numeric not null,
  balance_after numeric not null,
  primary key (entry_id, leg, created_at),
  unique (account_id, account_version, created_at)
) partition by range (created_at);

do $$
declare
  v record;
  v_new text;
begin
  for v in select c.relname, pg_get_expr(c.relpartbound, c.oid) as bound
             from pg_inherits i join pg_class c on c.oid = i.inhrelid
            where i.inhparent = 'core.postings'::regclass order by c.relname loop
    v_new := replace(v.relname, 'postings_', 'postings_rebuilt_');
    execute format('create table core.%I partition of core.postings_rebuilt %s', v_new, v.bound);
    execute format('insert into core.%I (entry_id, account_id, account_version, user_id, created_at, leg, currency,'
                   ' amount, balance_after) select entry_id, account_id, account_version, user_id, created_at, leg,'
                   ' currency, amount, balance_after from core.%I order by entry_id, leg', v_new, v.relname);
  end loop;
end
$$;

drop table core.postings cascade;
alter table core.postings_rebuilt rename to postings;
alter table core.postings rename constraint postings_rebuilt_pkey to postings_pkey;
alter table core.postings rename constraint postings_rebuilt_account_id_account_version_created_at_key
  to postings_account_id_account_version_created_at_key;

do $$
declare
  v record;
  v_index record;
  v_name text;
begin
  for v in select c.oid, c.relname from pg_inherits i join pg_class c on c.oid = i.inhrelid
            where i.inhparent = 'core.postings'::regclass loop
    v_name := replace(v.relname, 'postings_rebuilt_', 'postings_');
    execute format('alter table core.%I rename to %I', v.relname, v_name);
    -- (the partitions' index names were generated, and truncated to 63 characters)
    for v_index in select x.indexrelid::regclass::text as name, x.indisprimary from pg_index x
                    where x.indrelid = v.oid loop
      execute format('alter index %s rename to %I', v_index.name,
                     v_name || case when v_index.indisprimary then '_pkey'
                                    else '_account_id_account_version_created_at_key' end);
    end loop;
    execute format('create trigger postings_no_truncate before truncate on core.%I'
                   ' for each statement execute function core.tg_forbid_change()', v_name);
    execute format('comment on table core.%I is %L', v_name,
                   format('Partition of core.postings for %s (UTC).', replace(substring(v_name from 10), '_', '-')));
  end loop;
end
$$;

comment on table core.postings is
  'Postings (append-only), partitioned by month on their entry''s created_at (same month as the entry): core.postings_YYYY_MM. Written only by core.post_entry. Columns in alignment order (8-byte ones first, then leg, then the variable-length ones).';
comment on column core.postings.amount is
  'Signed amount in the posting''s currency: positive adds to the account''s balance, negative takes from it; an entry''s postings sum to zero per currency.';
comment on column core.postings.balance_after is
  'The account''s balance right after this posting (its account_version): the balance chain that admin.check_books verifies.';
