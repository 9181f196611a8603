-- 0010_ledger_set_checks: checks that cost every transfer, moved to where
-- they cost once (docs/PERFORMANCE.md, "What a transfer costs").
--
-- 1. A posting must name an entry that exists and an account of its own
--    currency. Two foreign keys checked that one row at a time (four extra
--    queries and a row lock per transfer). The statement trigger that
--    already proves each entry balanced now checks both, for all the
--    postings of a statement in one query (core.tg_postings__checked).
alter table core.postings drop constraint postings_entry_id_fkey;
alter table core.postings drop constraint postings_account_id_currency_fkey;

-- 2. What an account is (its purpose, whether it belongs to a customer, its
--    shard, whether it may go negative) is fixed when it is opened: the
--    trigger accounts_fixed refuses any later change, and accounts_valid
--    checks these rules on insert. As table CHECKs they were compiled again
--    for every statement that moves a balance, the largest single cost of a
--    transfer. The balance rule itself stays a CHECK: a customer balance
--    can never go negative, whatever writes it.
alter table core.accounts drop constraint accounts_check1;        -- customer purposes have an owner
alter table core.accounts drop constraint accounts_check2;        -- customer accounts never go negative
alter table core.accounts drop constraint accounts_purpose_check;
alter table core.accounts drop constraint accounts_shard_check;
alter table core.accounts rename constraint accounts_check to accounts_balance_check;

-- 3. Checks that only repeated what the functions and the statement trigger
--    already guarantee, each compiled again for every statement that writes
--    the table: a posting of zero is refused by core.tg_postings__checked;
--    versions only ever count up from 0 and their chain is checked by
--    admin.check_books; an idempotency key is validated by the function that
--    claims it.
alter table core.postings drop constraint postings_amount_check;
alter table core.postings drop constraint postings_account_version_check;
alter table core.accounts drop constraint accounts_version_check;
alter table core.idempotency_keys drop constraint idempotency_keys_key_check;
-- An idempotency key is only a name, scoped per customer and operation; the
-- customer is checked by the operation that claims it. (Customers are never
-- deleted: their accounts refer to them.)
alter table core.idempotency_keys drop constraint idempotency_keys_user_id_fkey;
