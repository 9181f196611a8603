"""The makers' reputation as counters (issue 15 part 4, issue 16): core.p2p_reputation is kept by the
P2P state machine in the transaction that finishes a trade or rates it, the offer book reads it by
primary key, and admin.check_books compares it with a recount of the trades and ratings."""
from __future__ import annotations

import re
from decimal import Decimal as D
from pathlib import Path

import pytest

from tests.conftest import totp_code
from tests.sql.test_p2p_sql import P2P, call, one

ROOT = Path(__file__).resolve().parents[2]

# What core.p2p_user_stats returned before the counters: a scan of the customer's trades and ratings.
SCAN = """
select s.completed, s.faulted,
       case when s.completed + s.faulted > 0 then round(100.0 * s.completed / (s.completed + s.faulted), 1) end
         as completion_rate,
       s.avg_release,
       (select count(*) from core.p2p_ratings r where r.rated_id = %(u)s and r.positive) as positive,
       (select count(*) from core.p2p_ratings r where r.rated_id = %(u)s and not r.positive) as negative
from (select count(*) filter (where t.status = 'COMPLETED') as completed,
             count(*) filter (where t.status in ('CANCELLED', 'REFUNDED') and t.fault_user_id = %(u)s) as faulted,
             round(avg(extract(epoch from t.completed_at - t.paid_at))
                     filter (where t.status = 'COMPLETED' and t.seller_id = %(u)s
                             and t.paid_at is not null and t.resolution is null)) as avg_release
      from core.p2p_trades t where t.buyer_id = %(u)s or t.seller_id = %(u)s) s
"""


@pytest.fixture
def p2p(db_url, owner, demo):
    world = P2P(db_url, owner, demo)
    yield world
    world.close()


def stats(p2p, user_id) -> tuple:
    s = p2p.owner.execute("select * from core.p2p_user_stats(%s)", (user_id,)).fetchone()
    return (s["completed_trades"], s["faulted_trades"], s["completion_rate"], s["avg_release_seconds"],
            s["positive_ratings"], s["negative_ratings"])


def scanned(p2p, user_id) -> tuple:
    return tuple(p2p.owner.execute(SCAN, {"u": user_id}).fetchone().values())


def reputation_failures(p2p) -> list:
    return p2p.owner.execute("select * from admin.check_books() where check_name = 'p2p_reputation'").fetchall()


def history(p2p) -> None:
    """Every way a trade ends, and ratings."""
    carol = p2p.carol
    offer = p2p.offer(p2p.bob)
    # released by the seller two hours after payment (timed)
    t1 = p2p.trade(p2p.alice, offer)
    one(p2p.app, "api.mark_p2p_trade_paid", user_id=p2p.alice, trade_id=t1)
    p2p.after_release_window(t1)
    one(p2p.app, "api.release_p2p_trade", user_id=p2p.bob, trade_id=t1)
    call(p2p.app, "api.rate_p2p_trade", user_id=p2p.alice, trade_id=t1, positive=True)
    call(p2p.app, "api.rate_p2p_trade", user_id=p2p.bob, trade_id=t1, positive=False, comment="Demorou")
    # cancelled by the buyer (their fault)
    t2 = p2p.trade(carol, offer, brl="300.00")
    one(p2p.app, "api.cancel_p2p_trade", user_id=carol, trade_id=t2)
    # disputed: one refunded against the seller, one released by the admin (not timed)
    t3 = p2p.trade(p2p.alice, offer)
    t4 = p2p.trade(carol, offer, brl="300.00")
    for t, buyer in ((t3, p2p.alice), (t4, carol)):
        one(p2p.app, "api.mark_p2p_trade_paid", user_id=buyer, trade_id=t)
        p2p.after_release_window(t)
        one(p2p.app, "api.open_p2p_dispute", user_id=buyer, trade_id=t, reason="O vendedor não libera a cripto.")
    one(p2p.app, "admin.resolve_p2p_dispute", admin_id=p2p.admin, trade_id=t3, outcome="refund",
        note="Vendedor sumiu.", at_fault="seller")
    one(p2p.app, "admin.resolve_p2p_dispute", admin_id=p2p.admin, trade_id=t4, outcome="release",
        note="Comprovante confere.", totp_code=totp_code(p2p.owner, p2p.admin))
    call(p2p.app, "api.rate_p2p_trade", user_id=carol, trade_id=t4, positive=True)
    # settled at once with the platform balance (no payment time)
    p2p.trade(p2p.alice, offer, brl="300.00", method="BALANCE")
    # a trade still open counts nothing
    p2p.trade(carol, offer, brl="300.00")


def test_counters_follow_every_ending_and_equal_the_old_scan(p2p):
    history(p2p)
    for user in (p2p.alice, p2p.bob, p2p.carol):
        assert stats(p2p, user) == scanned(p2p, user), user
    assert stats(p2p, p2p.bob) == (3, 1, D("75.0"), D("7200"), 2, 0)
    assert stats(p2p, p2p.alice)[:2] == (2, 0) and stats(p2p, p2p.alice)[4:] == (0, 1)
    assert stats(p2p, p2p.carol)[:2] == (1, 1)
    assert reputation_failures(p2p) == []
    p2p.check()
    # a customer with no history has no row and reads zeros
    dani = p2p.new_customer("dani@example.com", "Dani Reis")
    assert stats(p2p, dani) == (0, 0, None, None, 0, 0) == scanned(p2p, dani)


def test_check_books_finds_a_counter_that_drifted(p2p):
    history(p2p)
    p2p.owner.execute("update core.p2p_reputation set completed_trades = completed_trades + 1 where user_id = %s",
                      (p2p.bob,))
    p2p.owner.execute("insert into core.p2p_reputation (user_id, negative_ratings) values (%s, 1)", (p2p.admin,))
    failures = reputation_failures(p2p)
    assert len(failures) == 2 and any(f"user {p2p.bob}:" in f["detail"] for f in failures)
    assert any(f"user {p2p.admin}:" in f["detail"] for f in failures)


def test_the_migration_backfill_reproduces_the_counters(p2p):
    history(p2p)
    before = p2p.owner.execute("select * from core.p2p_reputation order by user_id").fetchall()
    migration = (ROOT / "migrations" / "0020_comments.sql").read_text()
    backfill = re.search(r"^insert into core\.p2p_reputation .*?;$", migration, re.S | re.M).group(0)
    p2p.owner.execute("delete from core.p2p_reputation")
    p2p.owner.execute(backfill)
    after = p2p.owner.execute("select * from core.p2p_reputation order by user_id").fetchall()
    strip = lambda rows: [{k: v for k, v in r.items() if k != "updated_at"} for r in rows]  # noqa: E731
    assert strip(after) == strip(before) and len(before) == 3
    assert reputation_failures(p2p) == []


def test_the_offer_book_reads_no_trades(p2p):
    plan = "\n".join(r["QUERY PLAN"] for r in p2p.owner.execute(
        "explain select * from core.p2p_user_stats(%s)", (p2p.bob,)).fetchall())
    assert "p2p_reputation" in plan and "p2p_trades" not in plan and "p2p_ratings" not in plan, plan
    for function in ("api.list_p2p_offers", "api.get_p2p_offer", "api.get_p2p_profile", "core.p2p_user_stats"):
        source = p2p.owner.execute("select string_agg(prosrc, ' ') as s from pg_proc where oid::regproc::text = %s "
                                   "or proname = %s", (function, function.split(".")[1])).fetchone()["s"]
        assert "p2p_trades" not in source and "p2p_ratings" not in source, function
