"""A cross-customer transfer between two clusters by two-phase commit through dblink (DESIGN.md §7,
docs/SCALING.md): the debit on cluster A, the credit on cluster B, both PREPAREd, then both
committed; and failures that roll both back. bench/two_phase.py measures its cost."""
from __future__ import annotations

from decimal import Decimal

import psycopg
import pytest

from bench.two_phase import cross_shard_transfer, prepare_shard, start_cluster, stop_cluster
from tests.conftest import books, free_port
from webapp.config import role_url


@pytest.fixture(scope="module")
def shards(pg):
    if pg is None:
        pytest.skip("needs the private test clusters")
    other = start_cluster(free_port(), "shard-b")
    try:
        a, users_a = prepare_shard(pg, "two_phase_a")
        b, users_b = prepare_shard(other, "two_phase_b")
        yield {"a": a, "b": b, "users_a": users_a, "users_b": users_b}
    finally:
        stop_cluster(other)


def balance(url: str, user_id: int) -> Decimal:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute("select balance from core.accounts where user_id = %s and currency = 'BRL' "
                            "and purpose = 'available'", (user_id,)).fetchone()[0]


def prepared(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute("select count(*) from pg_prepared_xacts").fetchone()[0]


def run(shards, amount: Decimal, gid: str, admin_b: int | None = None):
    a, b = shards["a"], shards["b"]
    with psycopg.connect(a, autocommit=True) as coordinator:
        return cross_shard_transfer(coordinator, role_url(a, "exchange_admin"), role_url(b, "exchange_admin"),
                                    shards["users_a"]["admin@example.com"],
                                    admin_b or shards["users_b"]["admin@example.com"],
                                    shards["users_a"]["alice@example.com"], shards["users_b"]["bob@example.com"],
                                    "BRL", amount, gid)


def assert_books(shards):
    for url in (shards["a"], shards["b"]):
        with psycopg.connect(url, autocommit=True) as conn:
            books(conn)
        assert prepared(url) == 0


def test_the_clusters_allow_prepared_transactions(shards):
    for url in (shards["a"], shards["b"]):
        with psycopg.connect(url, autocommit=True) as conn:
            assert int(conn.execute("show max_prepared_transactions").fetchone()[0]) > 0


def test_a_cross_cluster_transfer_commits_on_both(shards):
    alice, bob = shards["users_a"]["alice@example.com"], shards["users_b"]["bob@example.com"]
    before = balance(shards["a"], alice), balance(shards["b"], bob)
    run(shards, Decimal("25.00"), "t-commit")
    assert balance(shards["a"], alice) == before[0] - Decimal("25.00")
    assert balance(shards["b"], bob) == before[1] + Decimal("25.00")
    # each leg is an entry of its own cluster, journaled with its idempotency key
    for url, key in ((shards["a"], "adjust:t-commit:debit"), (shards["b"], "adjust:t-commit:credit")):
        with psycopg.connect(url, autocommit=True) as conn:
            assert conn.execute("select count(*) from core.idempotency_keys"
                                " where key_digest = core.idempotency_digest('adjust_balance', %s)", (key,)).fetchone()[0] == 1
    assert_books(shards)


def test_a_failed_credit_rolls_back_the_prepared_debit(shards):
    """A is prepared when B refuses its leg (the acting admin is no admin on B: BSA01): A's prepared
    debit is rolled back, nothing moved anywhere."""
    alice, bob = shards["users_a"]["alice@example.com"], shards["users_b"]["bob@example.com"]
    before = balance(shards["a"], alice), balance(shards["b"], bob)
    with pytest.raises(psycopg.Error) as info:
        run(shards, Decimal("10.00"), "t-fail-b", admin_b=shards["users_b"]["alice@example.com"])  # not an admin on B
    assert info.value.sqlstate == "BSA01"
    assert (balance(shards["a"], alice), balance(shards["b"], bob)) == before
    assert_books(shards)


def test_a_failed_debit_moves_nothing_on_either(shards):
    alice, bob = shards["users_a"]["alice@example.com"], shards["users_b"]["bob@example.com"]
    before = balance(shards["a"], alice), balance(shards["b"], bob)
    with pytest.raises(psycopg.Error) as info:
        run(shards, before[0] + Decimal("1.00"), "t-fail-a")   # more than alice has on A
    assert info.value.sqlstate == "BSF01"
    assert (balance(shards["a"], alice), balance(shards["b"], bob)) == before
    assert_books(shards)


def test_a_retried_transfer_moves_nothing_twice(shards):
    """The same transfer id again (a coordinator retrying after a lost answer): both legs replay."""
    alice, bob = shards["users_a"]["alice@example.com"], shards["users_b"]["bob@example.com"]
    run(shards, Decimal("5.00"), "t-retry")
    after_first = balance(shards["a"], alice), balance(shards["b"], bob)
    run(shards, Decimal("5.00"), "t-retry")
    assert (balance(shards["a"], alice), balance(shards["b"], bob)) == after_first
    assert_books(shards)
