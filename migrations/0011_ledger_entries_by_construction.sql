-- 0011_ledger_entries_by_construction: what core.post_entry guarantees by
-- the way it writes an entry is no longer checked again, row by row, on every
-- transfer (docs/PERFORMANCE.md, "Third round").
--
-- 1. An entry's customer: a foreign key to users checked every entry with a
--    query and a row lock on the customer (a write to the users table on
--    every transfer). core.post_entry now requires more than the key did:
--    the entry's customer owns one of the accounts it moves, so the customer
--    exists and can never be deleted (accounts refer to their owner and are
--    never deleted). admin.check_books reports any entry that breaks it.
alter table core.entries drop constraint entries_user_id_fkey;

-- 2. The entry kind is a snake_case name: checked by core.post_entry, the only
--    writer of entries, instead of a CHECK compiled again for every entry.
alter table core.entries drop constraint entries_kind_check;

-- 3. Entries are looked up by reference only to reconcile deposits and
--    withdrawals with the provider (reporting.rails_reconciliation); every transfer
--    wrote a random key into this index for nothing.
drop index core.entries_reference_idx;
create index entries_reference_idx on core.entries (reference) where kind in ('deposit', 'withdrawal');

-- 4. Every currency has at least two decimal places (centavos, satoshis,
--    wei): an amount with at most two places is within scale in any currency,
--    so core.post_entry reads a currency's scale only for the legs that have
--    more.
alter table core.currencies drop constraint currencies_scale_check;
alter table core.currencies add constraint currencies_scale_check check (scale between 2 and 18);

-- 5. accounts (id, currency) was unique only so that postings could refer to
--    it with a foreign key (dropped in 0010): every balance update still
--    opened it.
alter table core.accounts drop constraint accounts_id_currency_key;
