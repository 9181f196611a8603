-- 0009_ledger_tuning: idempotency keys per operation, and two cheaper writes.
--
-- Idempotency keys were one namespace per user, so a key sent to one
-- operation (a customer's transfer) could block the same key in another (an
-- admin's adjustment of that customer). They are now scoped per operation.
alter table core.idempotency_keys drop constraint idempotency_keys_pkey;
alter table core.idempotency_keys add primary key (user_id, operation, key);

-- Only hold resolutions name a hold: keep the NULLs of every other entry out
-- of the unique index (one index tuple less per entry).
alter table core.entries drop constraint entries_resolves_hold_id_key;
create unique index entries_resolves_hold_key on core.entries (resolves_hold_id) where resolves_hold_id is not null;

-- Balance updates change no indexed column: with room on the page they are
-- HOT updates and write no index entries.
alter table core.accounts set (fillfactor = 50);
