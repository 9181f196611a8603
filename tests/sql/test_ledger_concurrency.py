"""The ledger under concurrent load: no deadlock, no lost update, exactly-once.

16 threads, each with its own connections (api.transfer as exchange_app, the
core.* hold helpers as the owner, since only SQL domain functions may call
them), fire 250 random operations each on a handful of hot customers:
transfers in both directions in three currencies, overdrafts that must be
refused, holds placed, partly captured and released — and every 25 operations
all 16 threads send the SAME transfer with the SAME idempotency key at the same
moment. Afterwards the books balance, nothing is negative, locked = open holds,
the customers' money is conserved, each shared key made one entry, and the
database counted no deadlock. A second test races 100 connections to resolve
one hold.
"""
from __future__ import annotations

import random
import threading
import time
from collections import Counter, defaultdict
from decimal import ROUND_DOWN, Decimal

import psycopg
from psycopg.rows import dict_row

from tests.conftest import books
from webapp.config import role_url

THREADS = 16
OPS_PER_THREAD = 250
SHARED_EVERY = 25
HOT = 4
RETRY = {"40P01", "40001"}
FUNDING = {"BRL": Decimal("1000000.00"), "BTC": Decimal("1000.00000000"), "USDT": Decimal("1000000.000000")}
SCALES = {"BRL": 2, "BTC": 8, "USDT": 6}


def make_customers(owner, count: int) -> tuple[int, list[int]]:
    admin = owner.execute("select api.register_user('admin@load.test', %s, 'Admin') as id", ("x" * 40,)).fetchone()["id"]
    owner.execute("update core.users set role = 'admin' where id = %s", (admin,))
    from tests.conftest import enable_totp
    enable_totp(owner, admin)
    users = []
    for i in range(count):
        user = owner.execute("select api.register_user(%s, %s, 'Hot') as id", (f"hot{i}@load.test", "x" * 40)).fetchone()["id"]
        users.append(user)
        owner.execute("select core.mark_email_verified(%s)", (user,))
        for currency, amount in FUNDING.items():
            owner.execute("select * from admin.adjust_balance(%s, %s, %s, %s, 'Carga inicial', %s)",
                          (admin, user, currency, amount, f"load-{currency}"))
    return admin, users


def deadlocks(owner) -> int:
    owner.execute("select pg_stat_clear_snapshot()")
    return owner.execute("select deadlocks from pg_stat_database where datname = current_database()").fetchone()["deadlocks"]


def wait_for_backends_to_exit(owner, timeout: float = 10):
    """Backends report their statistics when they exit: wait for the workers' ones."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        others = owner.execute("select count(*) as n from pg_stat_activity "
                               "where datname = current_database() and pid <> pg_backend_pid()").fetchone()["n"]
        if others == 0:
            return
        time.sleep(0.05)


class Worker:
    """One client: its own connections, its own random stream, its own holds."""

    def __init__(self, number: int, db_url: str, users: list[int], barrier: threading.Barrier,
                 shared: dict, seed: int):
        self.number = number
        self.db_url = db_url
        self.users = users
        self.barrier = barrier
        self.shared = shared
        self.rnd = random.Random(seed)
        self.stats = Counter()
        self.error: BaseException | None = None

    def call(self, conn, query: str, params: tuple, refusals=()):
        """One statement in its own transaction; retries deadlocks/serialization failures (counted)."""
        for _ in range(20):
            try:
                return conn.execute(query, params).fetchone()
            except psycopg.Error as exc:
                if exc.sqlstate in RETRY:
                    self.stats[f"retry_{exc.sqlstate}"] += 1
                    continue
                if exc.sqlstate in refusals:
                    self.stats[f"refused_{exc.sqlstate}"] += 1
                    return None
                raise
        raise AssertionError("gave up after 20 retries")

    def run(self):
        try:
            with psycopg.connect(role_url(self.db_url, "exchange_app"), autocommit=True, row_factory=dict_row) as app, \
                 psycopg.connect(self.db_url, autocommit=True, row_factory=dict_row) as owner:
                self.loop(app, owner)
        except BaseException as exc:  # reported by the test
            self.error = exc
            self.barrier.abort()

    def loop(self, app, owner):
        rnd = self.rnd
        holds: list[tuple[int, str, Decimal, int]] = []
        transfer = "select * from api.transfer(%s, %s, %s, %s, %s)"
        for n in range(OPS_PER_THREAD):
            if n % SHARED_EVERY == 0:
                # every thread, at the same moment, the same request with the same key
                self.barrier.wait(timeout=120)
                row = self.call(app, transfer, (self.users[0], "hot1@load.test", "BRL", Decimal("1.00"), f"shared-{n}"))
                self.shared[n].append((row["entry_id"], row["replayed"]))
                self.stats["shared"] += 1
                continue
            currency = rnd.choice(list(FUNDING))
            sender, recipient = rnd.sample(range(len(self.users)), 2)
            unit = Decimal(1).scaleb(-SCALES[currency])
            op = rnd.random()
            if op < 0.55:
                amount = unit * rnd.randint(1, 10**SCALES[currency] * 5)
                self.call(app, transfer, (self.users[sender], f"hot{recipient}@load.test", currency, amount,
                                          f"t-{self.number}-{n}"))
                self.stats["transfer"] += 1
            elif op < 0.6:
                # far more than anyone has: must be refused, whatever the interleaving
                row = self.call(app, transfer, (self.users[sender], f"hot{recipient}@load.test", currency,
                                                FUNDING[currency] * len(self.users) + unit, f"o-{self.number}-{n}"),
                                refusals=("BSF01",))
                assert row is None, "an overdraft went through"
            elif op < 0.75 or not holds:
                amount = unit * rnd.randint(1, 10**SCALES[currency] * 5)
                row = self.call(owner, "select core.place_hold(%s, %s, %s, 'load', %s) as id",
                                (self.users[sender], currency, amount, f"h-{self.number}-{n}"))
                holds.append((row["id"], currency, amount, sender))
                self.stats["hold"] += 1
            elif op < 0.9:
                hold, currency, amount, owner_index = holds.pop(rnd.randrange(len(holds)))
                dest = rnd.choice([i for i in range(len(self.users)) if i != owner_index])
                unit = Decimal(1).scaleb(-SCALES[currency])
                part = max(unit, (amount * rnd.randint(1, 100) / 100).quantize(unit, rounding=ROUND_DOWN))
                self.call(owner, "select core.resolve_hold(%s, 'capture', 'load', array[core.user_account(%s, %s)], "
                                 "array[%s]::numeric[]) as id", (hold, self.users[dest], currency, part))
                self.stats["capture"] += 1
            else:
                hold, *_ = holds.pop(rnd.randrange(len(holds)))
                self.call(owner, "select core.release_hold(%s) as id", (hold,))
                self.stats["release"] += 1


def test_concurrent_operations_keep_the_books(db_url, owner):
    admin, users = make_customers(owner, HOT)
    deadlocks_before = deadlocks(owner)
    barrier = threading.Barrier(THREADS)
    shared: dict[int, list] = defaultdict(list)
    seed = random.randrange(1 << 30)
    workers = [Worker(i, db_url, users, barrier, shared, seed + i) for i in range(THREADS)]
    threads = [threading.Thread(target=w.run, name=f"ledger-load-{i}") for i, w in enumerate(workers)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    elapsed = time.monotonic() - started
    errors = [(w.number, repr(w.error)) for w in workers if w.error and not isinstance(w.error, threading.BrokenBarrierError)]
    assert errors == [], f"seed {seed}: {errors}"
    assert not any(t.is_alive() for t in threads)
    stats = sum((w.stats for w in workers), Counter())
    print(f"\n{THREADS} threads, {sum(stats[k] for k in ('transfer', 'hold', 'capture', 'release', 'shared'))} "
          f"operations in {elapsed:.1f}s (seed {seed}): {dict(stats)}")
    assert stats["transfer"] + stats["hold"] + stats["capture"] + stats["release"] + stats["shared"] + \
        stats["refused_BSF01"] == THREADS * OPS_PER_THREAD

    # the same key from 16 connections at once: one entry, the same answer for everyone
    assert len(shared) == OPS_PER_THREAD // SHARED_EVERY
    for n, answers in shared.items():
        assert len(answers) == THREADS
        assert len({entry for entry, _ in answers}) == 1, answers
        assert sum(1 for _, replayed in answers if not replayed) == 1, answers
        assert owner.execute("select count(*) as n from core.entries where reference = %s",
                             (f"transfer:shared-{n}",)).fetchone()["n"] == 1

    # the books, and the customers' money conserved (it only moved between them)
    books(owner)
    totals = owner.execute("""select a.currency, sum(a.balance) as total from core.accounts a
                              where a.user_id = any(%s) group by a.currency""", (users,)).fetchall()
    assert {r["currency"]: r["total"] for r in totals} == {
        "BRL": FUNDING["BRL"] * HOT, "BTC": FUNDING["BTC"] * HOT, "USDT": FUNDING["USDT"] * HOT, "ETH": 0}
    assert owner.execute("select * from reporting.balance_mismatches").fetchall() == []
    assert owner.execute("select * from reporting.held_mismatches").fetchall() == []
    assert owner.execute("select * from admin.check_books()").fetchall() == []

    # no deadlock, neither seen by a client nor counted by the server
    assert stats["retry_40P01"] == 0, stats
    wait_for_backends_to_exit(owner)
    assert deadlocks(owner) == deadlocks_before


def test_one_hundred_connections_race_to_resolve_one_hold(db_url, owner, demo):
    alice, bob = demo["alice@example.com"], demo["bob@example.com"]
    hold = owner.execute("select core.place_hold(%s, 'BRL', 100, 'race', 'race-1') as id", (alice,)).fetchone()["id"]
    racers = 100
    barrier = threading.Barrier(racers)
    outcomes: list = [None] * racers
    connections = [psycopg.connect(db_url, autocommit=True) for _ in range(racers)]

    def race(i: int):
        conn = connections[i]
        try:
            barrier.wait(timeout=60)
            if i % 2:
                conn.execute("select core.resolve_hold(%s, 'capture', 'race', array[core.user_account(%s, 'BRL')], "
                             "array[60]::numeric[])", (hold, bob))
                outcomes[i] = "captured"
            else:
                conn.execute("select core.release_hold(%s)", (hold,))
                outcomes[i] = "released"
        except psycopg.Error as exc:
            outcomes[i] = exc.sqlstate

    try:
        threads = [threading.Thread(target=race, args=(i,)) for i in range(racers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    finally:
        for conn in connections:
            conn.close()
    counts = Counter(outcomes)
    winners = [o for o in outcomes if o in ("captured", "released")]
    assert len(winners) == 1 and counts["BSH01"] == racers - 1, counts
    status = owner.execute("select status from core.holds where id = %s", (hold,)).fetchone()["status"]
    assert status == winners[0]
    assert owner.execute("select count(*) as n from core.entries where resolves_hold_id = %s",
                         (hold,)).fetchone()["n"] == 1
    expected_bob = Decimal("5060.00") if status == "captured" else Decimal("5000.00")
    assert owner.execute("select balance from core.accounts where id = core.user_account(%s, 'BRL')",
                         (bob,)).fetchone()["balance"] == expected_bob
    books(owner)


def test_one_key_from_many_connections_makes_one_transfer(db_url, owner, demo):
    alice = demo["alice@example.com"]
    racers = 50
    barrier = threading.Barrier(racers)
    answers: list = [None] * racers
    app_url = role_url(db_url, "exchange_app")
    connections = [psycopg.connect(app_url, autocommit=True) for _ in range(racers)]

    def race(i: int):
        try:
            barrier.wait(timeout=60)
            answers[i] = connections[i].execute("select * from api.transfer(%s, 'bob@example.com', 'BTC', 0.001, "
                                                "'one-key')", (alice,)).fetchone()
        except psycopg.Error as exc:
            answers[i] = exc.sqlstate

    try:
        threads = [threading.Thread(target=race, args=(i,)) for i in range(racers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    finally:
        for conn in connections:
            conn.close()
    assert len({a[0] for a in answers if isinstance(a, tuple)}) == 1, answers
    assert sorted(a[2] for a in answers) == [False] + [True] * (racers - 1)
    assert owner.execute("select balance from core.accounts where id = core.user_account(%s, 'BTC')",
                         (alice,)).fetchone()["balance"] == Decimal("0.04900000")
    books(owner)
