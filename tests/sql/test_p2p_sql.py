"""P2P marketplace at the SQL level: the trade state machine of DESIGN.md §4, escrow, fees, races.

Everything runs as `exchange_app` (the web's role) and `exchange_worker` (what the worker books) through the
api.*/admin.* functions; the owner
connection only reads the books, plants prices and moves clocks (deadlines) the way time would.
"""
from __future__ import annotations

import queue
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal as D

import psycopg
import pytest
from psycopg.rows import dict_row

from tests.conftest import books, totp_code
from webapp.config import role_url

BTC_PRICE = D("300000.00")


# --------------------------------------------------------------------------- helpers

def call(conn, function: str, **kwargs) -> list[dict]:
    args = ", ".join(f"{k} => %({k})s" for k in kwargs)
    return conn.execute(f"select * from {function}({args})", kwargs).fetchall()


def one(conn, function: str, **kwargs) -> dict:
    rows = call(conn, function, **kwargs)
    assert len(rows) == 1, rows
    return rows[0]


def refused(conn, function: str, **kwargs) -> str:
    """Call expecting a domain refusal; returns its SQLSTATE (BSxxx)."""
    with pytest.raises(psycopg.Error) as info:
        call(conn, function, **kwargs)
    code = info.value.diag.sqlstate
    assert code and code.startswith("BS"), f"not a domain error: {info.value!r}"
    return code


def key() -> str:
    return str(uuid.uuid4())


class P2P:
    """The demo world plus helpers: `app` is an exchange_app connection."""

    def __init__(self, db_url, owner, demo):
        self.db_url = db_url
        self.owner = owner
        self.app = psycopg.connect(role_url(db_url, "exchange_app"), autocommit=True, row_factory=dict_row)
        # what the worker books (sweeps, PIX payments) only it may call
        self.worker = psycopg.connect(role_url(db_url, "exchange_worker"), autocommit=True, row_factory=dict_row)
        # an index, so that fixed prices can be checked against the market
        # (an hour old: stale for trading, enough to bound a fixed price)
        owner.execute("insert into core.prices (symbol, price, fetched_at) values ('BTCBRL', %s, now() - interval '1 hour'), "
                      "('ETHBRL', 15000, now() - interval '1 hour'), ('USDTBRL', 5.00, now() - interval '1 hour')",
                      (BTC_PRICE,))
        self.alice = demo["alice@example.com"]
        self.bob = demo["bob@example.com"]
        self.admin = demo["admin@example.com"]
        self._carol = None

    def connect(self):
        return psycopg.connect(role_url(self.db_url, "exchange_app"), autocommit=True, row_factory=dict_row)

    @property
    def carol(self) -> int:
        """A third customer, KYC level 2, funded with 2000 BRL and 0.01 BTC."""
        if self._carol is None:
            self._carol = self.new_customer("carol@example.com", "Carol Lima", kyc=2, brl="2000", btc="0.01")
        return self._carol

    def new_customer(self, email, name, kyc=2, brl=None, btc=None) -> int:
        user_id = one(self.app, "api.register_user", email=email, password_hash="x" * 40,
                      display_name=name)["register_user"]
        self.owner.execute("update core.users set kyc_level = %s where id = %s", (kyc, user_id))
        self.owner.execute("select core.mark_email_verified(%s)", (user_id,))
        for currency, amount in (("BRL", brl), ("BTC", btc)):
            if amount:
                call(self.owner, "admin.adjust_balance", admin_id=self.admin, user_id=user_id, currency=currency,
                     amount=D(amount), reason="Saldo de teste", idempotency_key=f"seed-{user_id}-{currency}")
        return user_id

    def balance(self, user_id, currency="BTC") -> tuple[D, D]:
        row = self.owner.execute("select available, locked from reporting.user_balances where user_id = %s "
                                 "and currency = %s", (user_id, currency)).fetchone()
        return row["available"], row["locked"]

    def fees(self, currency="BTC") -> D:
        return self.owner.execute("select coalesce(sum(balance), 0) as b from core.accounts "
                                  "where purpose = 'fees' and currency = %s", (currency,)).fetchone()["b"]

    def offer(self, maker, side="SELL", **kw) -> int:
        args = dict(user_id=maker, side=side, crypto="BTC", price_type="fixed", fixed_price=BTC_PRICE,
                    total_amount=D("0.01"), min_brl=D("100.00"), max_brl=D("3000.00"),
                    payment_methods=["PIX", "TED", "BALANCE", "PIX_CONFIRMED"], idempotency_key=key(),
                    payment_details="PIX: bob@example.com (Bob Oliveira)")
        args.update(kw)
        return one(self.app, "api.create_p2p_offer", **args)["offer_id"]

    def get_offer(self, offer_id) -> dict:
        return self.owner.execute("select * from core.p2p_offers where id = %s", (offer_id,)).fetchone()

    def trade(self, taker, offer_id, brl="600.00", method="PIX", **kw) -> int:
        args = dict(user_id=taker, offer_id=offer_id, payment_method=method, idempotency_key=key(), brl_amount=D(brl))
        args.update(kw)
        return one(self.app, "api.open_p2p_trade", **args)["trade_id"]

    def get_trade(self, trade_id) -> dict:
        return self.owner.execute("select * from core.p2p_trades where id = %s", (trade_id,)).fetchone()

    def hold(self, hold_id) -> dict:
        return self.owner.execute("select * from core.holds where id = %s", (hold_id,)).fetchone()

    def expire(self, trade_id):
        """The payment deadline passes."""
        self.owner.execute("update core.p2p_trades set payment_deadline = now() - interval '1 second' where id = %s",
                           (trade_id,))

    def after_release_window(self, trade_id):
        self.owner.execute("update core.p2p_trades set paid_at = now() - interval '2 hours' where id = %s", (trade_id,))

    def price(self, symbol="BTCBRL", price=D("320000"), age_seconds=0):
        self.owner.execute("insert into core.prices (symbol, price, fetched_at) values (%s, %s, now() - make_interval(secs => %s))",
                           (symbol, price, age_seconds))

    def check(self):
        """The books balance and every P2P escrow matches its hold."""
        books(self.owner)
        bad = self.owner.execute("select * from reporting.p2p_escrow_mismatches").fetchall()
        assert bad == [], bad

    def close(self):
        self.app.close()
        self.worker.close()


@pytest.fixture
def p2p(db_url, owner, demo):
    world = P2P(db_url, owner, demo)
    yield world
    world.close()


def messages(p2p, trade_id) -> list[str]:
    return [m["body"] for m in call(p2p.app, "api.list_p2p_messages", user_id=p2p.alice, trade_id=trade_id)]


def notifications(p2p, user_id) -> list[str]:
    return [n["kind"] for n in call(p2p.app, "api.list_notifications", user_id=user_id)]


# --------------------------------------------------------------------------- offers

def test_sell_offer_holds_crypto_and_pause_resume_edit_cancel_adjust_it(p2p):
    before = p2p.balance(p2p.bob)
    offer_id = p2p.offer(p2p.bob)
    offer = p2p.get_offer(offer_id)
    # 0.01 BTC + the maker fee (0.10 %) held
    assert p2p.hold(offer["hold_id"])["amount"] == D("0.01001")
    assert p2p.balance(p2p.bob) == (before[0] - D("0.01001"), D("0.01001"))
    p2p.check()

    assert one(p2p.app, "api.set_p2p_offer_status", user_id=p2p.bob, offer_id=offer_id, action="pause")["set_p2p_offer_status"] == "paused"
    assert p2p.balance(p2p.bob)[1] == D("0.01001")  # paused keeps its hold
    assert refused(p2p.app, "api.set_p2p_offer_status", user_id=p2p.bob, offer_id=offer_id, action="pause") == "BSS01"
    assert refused(p2p.app, "api.open_p2p_trade", user_id=p2p.alice, offer_id=offer_id, payment_method="PIX",
                   idempotency_key=key(), brl_amount=D("600")) == "BSS01"
    one(p2p.app, "api.set_p2p_offer_status", user_id=p2p.bob, offer_id=offer_id, action="resume")
    assert refused(p2p.app, "api.set_p2p_offer_status", user_id=p2p.alice, offer_id=offer_id, action="pause") == "BSN01"

    # edit: release + re-hold for the new amount
    call(p2p.app, "api.update_p2p_offer", user_id=p2p.bob, offer_id=offer_id, price_type="floating",
         premium_percent=D("2.5"), remaining_amount=D("0.02"), min_brl=D("50.00"), max_brl=D("5000.00"),
         payment_methods=["PIX"], payment_details="PIX: 123.456.789-09")
    offer = p2p.get_offer(offer_id)
    assert offer["remaining_amount"] == D("0.02") and offer["price_type"] == "floating"
    assert p2p.hold(offer["hold_id"])["amount"] == D("0.02002")
    assert p2p.balance(p2p.bob)[1] == D("0.02002")
    p2p.check()
    # more than the wallet has: refused, nothing changes
    assert refused(p2p.app, "api.update_p2p_offer", user_id=p2p.bob, offer_id=offer_id, price_type="fixed",
                   fixed_price=BTC_PRICE, remaining_amount=D("5"), min_brl=D("50.00"), max_brl=D("5000.00"),
                   payment_methods=["PIX"], payment_details="PIX: 123.456.789-09") == "BSF01"
    assert p2p.get_offer(offer_id)["remaining_amount"] == D("0.02")
    assert p2p.balance(p2p.bob)[1] == D("0.02002")

    one(p2p.app, "api.set_p2p_offer_status", user_id=p2p.bob, offer_id=offer_id, action="cancel")
    assert p2p.get_offer(offer_id)["status"] == "cancelled"
    assert p2p.balance(p2p.bob) == before
    assert refused(p2p.app, "api.set_p2p_offer_status", user_id=p2p.bob, offer_id=offer_id, action="resume") == "BSS01"
    p2p.check()


def test_offer_validation(p2p):
    base = dict(user_id=p2p.bob, side="SELL", crypto="BTC", price_type="fixed", fixed_price=BTC_PRICE,
                total_amount=D("0.01"), min_brl=D("100.00"), max_brl=D("3000.00"), payment_methods=["PIX"],
                idempotency_key=key(), payment_details="PIX: bob@example.com")

    def bad(**kw):
        return refused(p2p.app, "api.create_p2p_offer", **{**base, "idempotency_key": key(), **kw})

    assert bad(price_type="floating", fixed_price=None, premium_percent=D("25")) == "BSV01"
    assert bad(price_type="floating", fixed_price=None, premium_percent=D("-20.5")) == "BSV01"
    assert bad(total_amount=D("0.000000001")) == "BSV02"
    assert bad(max_brl=D("50.00")) == "BSV01"
    assert bad(payment_methods=["CASH"]) == "BSV01"
    assert bad(payment_methods=[]) == "BSV01"
    assert bad(payment_details=None) == "BSV01"          # a SELL with PIX needs the seller's PIX key
    assert bad(payment_window_minutes=10) == "BSV01"
    assert bad(payment_window_minutes=121) == "BSV01"
    assert bad(total_amount=D("1")) == "BSF01"           # bob has 0.12 BTC
    assert bad(crypto="DOGE") == "BSV01"
    assert bad(max_brl=D("200000.00")) == "BSL01"        # above the per-trade limit of level 2
    p2p.check()
    # default window per method: TED 60 minutes
    offer_id = p2p.offer(p2p.bob, payment_methods=["TED", "PIX"])
    assert p2p.get_offer(offer_id)["payment_window_minutes"] == 60
    assert p2p.get_offer(offer_id)["payment_methods"] == ["PIX", "TED"]


def test_floating_price_follows_the_index_and_stale_index_refuses(p2p):
    offer_id = p2p.offer(p2p.bob, price_type="floating", fixed_price=None, premium_percent=D("-5"))
    # no price yet: the book lists it without a price; opening is refused
    book = call(p2p.app, "api.list_p2p_offers", user_id=p2p.alice, side="SELL")
    assert [o["price"] for o in book] == [None]
    assert refused(p2p.app, "api.open_p2p_trade", user_id=p2p.alice, offer_id=offer_id, payment_method="PIX",
                   idempotency_key=key(), brl_amount=D("600")) == "BSP01"
    p2p.price(price=D("320000"))
    book = call(p2p.app, "api.list_p2p_offers", user_id=p2p.alice, side="SELL")
    assert book[0]["price"] == D("304000.00")  # 320000 × 0.95
    trade_id = p2p.trade(p2p.alice, offer_id, brl="608.00")
    assert p2p.get_trade(trade_id)["price"] == D("304000.00")
    assert p2p.get_trade(trade_id)["crypto_amount"] == D("0.002")
    # stale index: refused with BSP01
    p2p.owner.execute("delete from core.prices")
    p2p.price(price=D("320000"), age_seconds=3600)
    assert refused(p2p.app, "api.open_p2p_trade", user_id=p2p.alice, offer_id=offer_id, payment_method="PIX",
                   idempotency_key=key(), brl_amount=D("600")) == "BSP01"
    p2p.check()


def test_book_sorted_best_first_filtered_and_blocks_hide_offers(p2p):
    cheap = p2p.offer(p2p.bob, fixed_price=D("290000.00"), payment_methods=["PIX"])
    dear = p2p.offer(p2p.carol, fixed_price=D("310000.00"), total_amount=D("0.005"), payment_methods=["TED"],
                     payment_details="TED: banco 001 ag 1 cc 2")
    buy_low = p2p.offer(p2p.bob, side="BUY", fixed_price=D("280000.00"), payment_details=None)
    buy_high = p2p.offer(p2p.carol, side="BUY", fixed_price=D("295000.00"), payment_details=None)
    sells = call(p2p.app, "api.list_p2p_offers", user_id=p2p.alice, side="SELL")
    assert [o["offer_id"] for o in sells] == [cheap, dear]           # lowest price first to buy
    buys = call(p2p.app, "api.list_p2p_offers", user_id=p2p.alice, side="BUY")
    assert [o["offer_id"] for o in buys] == [buy_high, buy_low]      # highest price first to sell
    assert [o["offer_id"] for o in call(p2p.app, "api.list_p2p_offers", user_id=p2p.alice, side="SELL",
                                        payment_method="TED")] == [dear]
    # 2000 BRL: carol's 0.005 BTC is worth 1550 → only bob's
    assert [o["offer_id"] for o in call(p2p.app, "api.list_p2p_offers", user_id=p2p.alice, side="SELL",
                                        amount_brl=D("2000"))] == [cheap]
    assert sells[0]["maker_name"] == "Bob Oliveira" and sells[0]["completed_trades"] == 0

    # alice blocks bob: bob's offers vanish for alice, and bob cannot take alice's
    one(p2p.app, "api.set_p2p_block", user_id=p2p.alice, blocked_user_id=p2p.bob, blocked=True)
    assert [o["offer_id"] for o in call(p2p.app, "api.list_p2p_offers", user_id=p2p.alice, side="SELL")] == [dear]
    assert refused(p2p.app, "api.open_p2p_trade", user_id=p2p.alice, offer_id=cheap, payment_method="PIX",
                   idempotency_key=key(), brl_amount=D("600")) == "BSA01"
    alices = p2p.offer(p2p.alice, payment_methods=["PIX"], total_amount=D("0.001"),
                       payment_details="PIX: alice@example.com")
    assert alices not in [o["offer_id"] for o in call(p2p.app, "api.list_p2p_offers", user_id=p2p.bob, side="SELL")]
    assert refused(p2p.app, "api.open_p2p_trade", user_id=p2p.bob, offer_id=alices, payment_method="PIX",
                   idempotency_key=key(), brl_amount=D("150")) == "BSA01"
    one(p2p.app, "api.set_p2p_block", user_id=p2p.alice, blocked_user_id=p2p.bob, blocked=False)
    assert [o["offer_id"] for o in call(p2p.app, "api.list_p2p_offers", user_id=p2p.alice, side="SELL")] == [cheap, alices, dear]


def test_offer_expiry_sweeper_releases_the_hold(p2p):
    before = p2p.balance(p2p.bob)
    offer_id = p2p.offer(p2p.bob, expires_in_days=1)
    p2p.owner.execute("update core.p2p_offers set expires_at = now() - interval '1 second' where id = %s", (offer_id,))
    assert refused(p2p.app, "api.open_p2p_trade", user_id=p2p.alice, offer_id=offer_id, payment_method="PIX",
                   idempotency_key=key(), brl_amount=D("600")) == "BSS01"
    assert one(p2p.worker, "admin.expire_p2p_offers")["expire_p2p_offers"] == 1
    assert p2p.get_offer(offer_id)["status"] == "expired"
    assert p2p.balance(p2p.bob) == before
    assert "p2p.offer_expired" in notifications(p2p, p2p.bob)
    assert one(p2p.worker, "admin.expire_p2p_offers")["expire_p2p_offers"] == 0
    p2p.check()


# --------------------------------------------------------------------------- the happy path

def test_off_platform_pix_trade_open_paid_released(p2p):
    offer_id = p2p.offer(p2p.bob)
    bob_before, alice_before = p2p.balance(p2p.bob), p2p.balance(p2p.alice)
    trade_id = p2p.trade(p2p.alice, offer_id, brl="600.00")
    trade = p2p.get_trade(trade_id)
    assert trade["status"] == "OPEN" and trade["buyer_id"] == p2p.alice and trade["seller_id"] == p2p.bob
    assert trade["crypto_amount"] == D("0.002") and trade["price"] == BTC_PRICE
    assert (trade["seller_fee"], trade["buyer_fee"]) == (D("0.000002"), D("0.000004"))
    assert trade["payment_details"] == "PIX: bob@example.com (Bob Oliveira)"
    # escrow split out of the offer's hold: no money moved
    assert p2p.hold(trade["hold_id"])["amount"] == D("0.002002")
    assert p2p.hold(trade["hold_id"])["purpose"] == "p2p_trade"
    offer = p2p.get_offer(offer_id)
    assert offer["remaining_amount"] == D("0.008") and p2p.hold(offer["hold_id"])["amount"] == D("0.008008")
    assert p2p.balance(p2p.bob) == bob_before
    assert "p2p.trade_opened" in notifications(p2p, p2p.bob)
    p2p.check()

    view = one(p2p.app, "api.get_p2p_trade", user_id=p2p.alice, trade_id=trade_id)
    assert view["viewer_role"] == "buyer" and view["can_mark_paid"] and view["can_cancel"] and not view["can_release"]

    assert one(p2p.app, "api.mark_p2p_trade_paid", user_id=p2p.alice, trade_id=trade_id)["status"] == "PAID"
    assert "p2p.paid" in notifications(p2p, p2p.bob)
    assert one(p2p.app, "api.get_p2p_trade", user_id=p2p.bob, trade_id=trade_id)["can_release"]
    result = one(p2p.app, "api.release_p2p_trade", user_id=p2p.bob, trade_id=trade_id)
    assert result["status"] == "COMPLETED"
    trade = p2p.get_trade(trade_id)
    assert trade["status"] == "COMPLETED" and trade["completed_at"] is not None
    assert p2p.balance(p2p.alice) == (alice_before[0] + D("0.001996"), D("0"))
    assert p2p.balance(p2p.bob) == (bob_before[0], D("0.008008"))  # the rest stays on offer
    assert p2p.fees() == D("0.000006")
    assert "p2p.released" in notifications(p2p, p2p.alice)
    body = messages(p2p, trade_id)
    assert body[0].startswith("Negociação aberta") and any("liberou a cripto" in m for m in body)
    p2p.check()

    # ratings: once each, only after completion
    call(p2p.app, "api.rate_p2p_trade", user_id=p2p.alice, trade_id=trade_id, positive=True, comment="Rápido!")
    assert refused(p2p.app, "api.rate_p2p_trade", user_id=p2p.alice, trade_id=trade_id, positive=False) == "BSS01"
    call(p2p.app, "api.rate_p2p_trade", user_id=p2p.bob, trade_id=trade_id, positive=True)
    profile = one(p2p.app, "api.get_p2p_profile", user_id=p2p.alice, profile_user_id=p2p.bob)
    assert (profile["completed_trades"], profile["completion_rate"], profile["positive_ratings"]) == (1, D("100.0"), 1)
    assert profile["avg_release_seconds"] is not None


def test_buy_offer_escrows_the_takers_crypto(p2p):
    offer_id = p2p.offer(p2p.bob, side="BUY", payment_details=None, payment_methods=["PIX"])
    assert p2p.get_offer(offer_id)["hold_id"] is None
    alice_before = p2p.balance(p2p.alice)
    # the taker sells: their PIX details are required
    assert refused(p2p.app, "api.open_p2p_trade", user_id=p2p.alice, offer_id=offer_id, payment_method="PIX",
                   idempotency_key=key(), brl_amount=D("600")) == "BSV01"
    trade_id = p2p.trade(p2p.alice, offer_id, payment_details="PIX: alice@example.com")
    trade = p2p.get_trade(trade_id)
    assert (trade["buyer_id"], trade["seller_id"]) == (p2p.bob, p2p.alice)
    # seller = taker pays the taker fee (0.20 %) on top; buyer = maker pays 0.10 %
    assert (trade["seller_fee"], trade["buyer_fee"]) == (D("0.000004"), D("0.000002"))
    assert p2p.balance(p2p.alice) == (alice_before[0] - D("0.002004"), D("0.002004"))
    assert p2p.get_offer(offer_id)["remaining_amount"] == D("0.008")
    one(p2p.app, "api.mark_p2p_trade_paid", user_id=p2p.bob, trade_id=trade_id)
    one(p2p.app, "api.release_p2p_trade", user_id=p2p.alice, trade_id=trade_id)
    assert p2p.balance(p2p.alice) == (alice_before[0] - D("0.002004"), D("0"))
    assert p2p.fees() == D("0.000006")
    p2p.check()


# --------------------------------------------------------------------------- refused transitions

def test_wrong_actor_wrong_state_and_strangers_are_refused(p2p):
    offer_id = p2p.offer(p2p.bob)
    trade_id = p2p.trade(p2p.alice, offer_id)
    carol = p2p.carol
    # strangers do not even see the trade
    for fn in ("api.mark_p2p_trade_paid", "api.cancel_p2p_trade", "api.release_p2p_trade", "api.get_p2p_trade",
               "api.list_p2p_messages"):
        assert refused(p2p.app, fn, user_id=carol, trade_id=trade_id) == "BSN01"
    assert refused(p2p.app, "api.send_p2p_message", user_id=carol, trade_id=trade_id, body="oi") == "BSN01"
    # OPEN: the seller can neither mark paid, nor cancel, nor release yet
    assert refused(p2p.app, "api.mark_p2p_trade_paid", user_id=p2p.bob, trade_id=trade_id) == "BSA01"
    assert refused(p2p.app, "api.cancel_p2p_trade", user_id=p2p.bob, trade_id=trade_id) == "BSA01"
    assert refused(p2p.app, "api.release_p2p_trade", user_id=p2p.bob, trade_id=trade_id) == "BSS01"
    assert refused(p2p.app, "api.release_p2p_trade", user_id=p2p.alice, trade_id=trade_id) == "BSA01"
    assert refused(p2p.app, "api.open_p2p_dispute", user_id=p2p.alice, trade_id=trade_id,
                   reason="o vendedor sumiu do chat") == "BSS01"
    assert refused(p2p.app, "api.rate_p2p_trade", user_id=p2p.alice, trade_id=trade_id, positive=True) == "BSS01"
    # PAID: nobody cancels any more, the buyer cannot mark twice
    one(p2p.app, "api.mark_p2p_trade_paid", user_id=p2p.alice, trade_id=trade_id)
    assert refused(p2p.app, "api.mark_p2p_trade_paid", user_id=p2p.alice, trade_id=trade_id) == "BSS01"
    assert refused(p2p.app, "api.cancel_p2p_trade", user_id=p2p.alice, trade_id=trade_id) == "BSS01"
    assert refused(p2p.app, "api.cancel_p2p_trade", user_id=p2p.bob, trade_id=trade_id) == "BSA01"
    # dispute only after the release window
    assert refused(p2p.app, "api.open_p2p_dispute", user_id=p2p.alice, trade_id=trade_id,
                   reason="paguei e não recebi") == "BSS01"
    # admins only resolve disputes
    assert refused(p2p.app, "admin.resolve_p2p_dispute", admin_id=p2p.bob, trade_id=trade_id, outcome="release",
                   note="tentativa") == "BSA01"
    assert refused(p2p.app, "admin.resolve_p2p_dispute", admin_id=p2p.admin, trade_id=trade_id, outcome="release",
                   note="não está em disputa") == "BSS01"
    one(p2p.app, "api.release_p2p_trade", user_id=p2p.bob, trade_id=trade_id)
    # COMPLETED is final
    for fn, user in (("api.release_p2p_trade", p2p.bob), ("api.cancel_p2p_trade", p2p.alice),
                     ("api.mark_p2p_trade_paid", p2p.alice)):
        assert refused(p2p.app, fn, user_id=user, trade_id=trade_id) == "BSS01"
    p2p.check()


def test_buyer_cancels_escrow_returns_to_offer_and_counts_against_buyer(p2p):
    offer_id = p2p.offer(p2p.bob)
    offer_hold_before = p2p.hold(p2p.get_offer(offer_id)["hold_id"])["amount"]
    trade_id = p2p.trade(p2p.alice, offer_id)
    assert one(p2p.app, "api.cancel_p2p_trade", user_id=p2p.alice, trade_id=trade_id)["status"] == "CANCELLED"
    trade = p2p.get_trade(trade_id)
    assert (trade["status"], trade["cancel_reason"], trade["fault_user_id"]) == ("CANCELLED", "buyer_cancelled", p2p.alice)
    assert p2p.hold(trade["hold_id"])["status"] == "released"
    offer = p2p.get_offer(offer_id)
    assert offer["remaining_amount"] == D("0.01") and p2p.hold(offer["hold_id"])["amount"] == offer_hold_before
    assert "p2p.cancelled" in notifications(p2p, p2p.bob)
    assert refused(p2p.app, "api.cancel_p2p_trade", user_id=p2p.alice, trade_id=trade_id) == "BSS01"
    # the cancellation counts against the buyer only
    alice = one(p2p.app, "api.get_p2p_profile", user_id=p2p.bob, profile_user_id=p2p.alice)
    bob = one(p2p.app, "api.get_p2p_profile", user_id=p2p.alice, profile_user_id=p2p.bob)
    assert (alice["faulted_trades"], alice["completion_rate"]) == (1, D("0.0"))
    assert (bob["faulted_trades"], bob["completion_rate"]) == (0, None)
    p2p.check()


def test_deadline_enforced_at_the_moment_of_any_action_and_by_the_sweeper(p2p):
    offer_id = p2p.offer(p2p.bob)
    # marking paid past the deadline cancels instead
    late = p2p.trade(p2p.alice, offer_id)
    p2p.expire(late)
    result = one(p2p.app, "api.mark_p2p_trade_paid", user_id=p2p.alice, trade_id=late)
    assert result["status"] == "CANCELLED" and "prazo" in result["message"]
    assert p2p.get_trade(late)["cancel_reason"] == "deadline"
    assert p2p.get_offer(offer_id)["remaining_amount"] == D("0.01")
    p2p.check()
    # the seller trying to release a stale OPEN trade also cancels it
    stale = p2p.trade(p2p.alice, offer_id)
    p2p.expire(stale)
    assert one(p2p.app, "api.release_p2p_trade", user_id=p2p.bob, trade_id=stale)["status"] == "CANCELLED"
    # the sweeper: cancels OPEN trades past the deadline, leaves PAID ones
    swept = p2p.trade(p2p.alice, offer_id)
    paid = p2p.trade(p2p.alice, offer_id)
    one(p2p.app, "api.mark_p2p_trade_paid", user_id=p2p.alice, trade_id=paid)
    p2p.expire(swept)
    p2p.expire(paid)
    assert one(p2p.worker, "admin.expire_p2p_trades")["expire_p2p_trades"] == 1
    assert p2p.get_trade(swept)["status"] == "CANCELLED" and p2p.get_trade(paid)["status"] == "PAID"
    assert one(p2p.worker, "admin.expire_p2p_trades")["expire_p2p_trades"] == 0
    assert one(p2p.app, "api.release_p2p_trade", user_id=p2p.bob, trade_id=paid)["status"] == "COMPLETED"
    p2p.check()


def test_cancel_after_offer_closed_returns_crypto_to_the_seller(p2p):
    before = p2p.balance(p2p.bob)
    offer_id = p2p.offer(p2p.bob)
    trade_id = p2p.trade(p2p.alice, offer_id)
    one(p2p.app, "api.set_p2p_offer_status", user_id=p2p.bob, offer_id=offer_id, action="cancel")
    assert p2p.balance(p2p.bob)[1] == D("0.002002")  # only the trade's escrow remains locked
    one(p2p.app, "api.cancel_p2p_trade", user_id=p2p.alice, trade_id=trade_id)
    assert p2p.balance(p2p.bob) == before
    assert p2p.get_offer(offer_id)["status"] == "cancelled"
    p2p.check()


def test_dispute_then_admin_release_or_refund(p2p):
    offer_id = p2p.offer(p2p.bob)
    bob_before, alice_before = p2p.balance(p2p.bob), p2p.balance(p2p.alice)
    t1 = p2p.trade(p2p.alice, offer_id)
    t2 = p2p.trade(p2p.alice, offer_id)
    for t in (t1, t2):
        one(p2p.app, "api.mark_p2p_trade_paid", user_id=p2p.alice, trade_id=t)
        p2p.after_release_window(t)
    assert refused(p2p.app, "api.open_p2p_dispute", user_id=p2p.alice, trade_id=t1, reason="curto") == "BSV01"
    assert one(p2p.app, "api.open_p2p_dispute", user_id=p2p.alice, trade_id=t1,
               reason="Paguei via PIX e o vendedor não libera.")["status"] == "DISPUTED"
    assert one(p2p.app, "api.open_p2p_dispute", user_id=p2p.bob, trade_id=t2,
               reason="Não recebi nada na minha conta.")["status"] == "DISPUTED"
    assert "p2p.disputed" in notifications(p2p, p2p.bob)
    # in dispute, the seller can no longer release on their own and the buyer cannot cancel
    assert refused(p2p.app, "api.release_p2p_trade", user_id=p2p.bob, trade_id=t1) == "BSS01"
    assert refused(p2p.app, "api.cancel_p2p_trade", user_id=p2p.alice, trade_id=t1) == "BSS01"
    listed = call(p2p.app, "admin.list_p2p_disputes", admin_id=p2p.admin)
    assert {d["trade_id"] for d in listed} == {t1, t2}
    assert refused(p2p.app, "admin.list_p2p_disputes", admin_id=p2p.alice) == "BSA01"
    # admin can read the trade and the chat
    assert one(p2p.app, "api.get_p2p_trade", user_id=p2p.admin, trade_id=t1)["viewer_role"] == "admin"
    assert refused(p2p.app, "admin.resolve_p2p_dispute", admin_id=p2p.admin, trade_id=t1, outcome="release",
                   note="") == "BSV01"

    # releasing through the web needs the admin's fresh code (the escrow leaves on their word)
    assert refused(p2p.app, "admin.resolve_p2p_dispute", admin_id=p2p.admin, trade_id=t1, outcome="release",
                   note="Comprovante confere com o extrato.") == "BSV01"
    assert one(p2p.app, "admin.resolve_p2p_dispute", admin_id=p2p.admin, trade_id=t1, outcome="release",
               note="Comprovante confere com o extrato.", totp_code=totp_code(p2p.owner, p2p.admin))["status"] == "COMPLETED"
    assert one(p2p.app, "admin.resolve_p2p_dispute", admin_id=p2p.admin, trade_id=t2, outcome="refund",
               note="Comprovante falso.", at_fault="buyer")["status"] == "REFUNDED"
    assert refused(p2p.app, "admin.resolve_p2p_dispute", admin_id=p2p.admin, trade_id=t2, outcome="release",
                   note="de novo") == "BSS01"
    assert p2p.balance(p2p.alice)[0] == alice_before[0] + D("0.001996")
    # t2's escrow went back to bob's available balance; the offer kept 0.006
    assert p2p.balance(p2p.bob) == (bob_before[0] + D("0.002002"), D("0.006006"))
    audit = p2p.owner.execute("select * from reporting.admin_audit_log where action = 'p2p_resolve_dispute' "
                              "order by id").fetchall()
    assert [a["details"]["outcome"] for a in audit] == ["release", "refund"]
    assert audit[1]["target_user_id"] == p2p.alice and audit[1]["reason"] == "Comprovante falso."
    assert notifications(p2p, p2p.alice).count("p2p.resolved") == 2
    assert notifications(p2p, p2p.bob).count("p2p.resolved") == 2
    alice = one(p2p.app, "api.get_p2p_profile", user_id=p2p.bob, profile_user_id=p2p.alice)
    assert (alice["completed_trades"], alice["faulted_trades"]) == (1, 1)
    p2p.check()


# --------------------------------------------------------------------------- platform balance

def test_balance_method_settles_at_once(p2p):
    offer_id = p2p.offer(p2p.bob)
    bob_brl, alice_brl = p2p.balance(p2p.bob, "BRL"), p2p.balance(p2p.alice, "BRL")
    alice_btc = p2p.balance(p2p.alice)
    trade_id = p2p.trade(p2p.alice, offer_id, brl="900.00", method="BALANCE")
    trade = p2p.get_trade(trade_id)
    assert trade["status"] == "COMPLETED" and trade["crypto_amount"] == D("0.003")
    assert p2p.balance(p2p.alice, "BRL")[0] == alice_brl[0] - D("900.00")
    assert p2p.balance(p2p.bob, "BRL")[0] == bob_brl[0] + D("900.00")
    assert p2p.balance(p2p.alice)[0] == alice_btc[0] + D("0.003") - D("0.000006")
    assert p2p.fees() == D("0.000009")
    assert "p2p.completed" in notifications(p2p, p2p.bob)
    p2p.check()


def test_balance_method_all_or_nothing_when_buyer_is_short(p2p):
    poor = p2p.new_customer("dani@example.com", "Dani Reis", kyc=2, brl="100.00")
    offer_id = p2p.offer(p2p.bob)
    snapshot = p2p.owner.execute("select id, balance from core.accounts order by id").fetchall()
    offer_before = p2p.get_offer(offer_id)
    assert refused(p2p.app, "api.open_p2p_trade", user_id=poor, offer_id=offer_id, payment_method="BALANCE",
                   idempotency_key=key(), brl_amount=D("600.00")) == "BSF01"
    assert p2p.owner.execute("select id, balance from core.accounts order by id").fetchall() == snapshot
    assert p2p.get_offer(offer_id)["remaining_amount"] == offer_before["remaining_amount"]
    assert p2p.get_offer(offer_id)["hold_id"] == offer_before["hold_id"]
    assert p2p.owner.execute("select count(*) as n from core.p2p_trades").fetchone()["n"] == 0
    p2p.check()


# --------------------------------------------------------------------------- PIX-confirmed

def buyer_cpf(p2p, user_id) -> str:
    """The buyer's KYC CPF (the KYC domain's core.kyc_profiles; the demo customers have one)."""
    cpf = p2p.owner.execute("select core.user_cpf(%s) as cpf", (user_id,)).fetchone()["cpf"]
    if cpf is None:
        pytest.skip("the demo buyer has no KYC CPF")
    return cpf


def test_pix_confirmed_paid_by_the_buyer_releases(p2p):
    cpf = buyer_cpf(p2p, p2p.alice)
    formatted = f"{cpf[:3]}.{cpf[3:6]}.{cpf[6:9]}-{cpf[9:]}"
    offer_id = p2p.offer(p2p.bob)
    trade_id = p2p.trade(p2p.alice, offer_id, method="PIX_CONFIRMED")
    pending = call(p2p.worker, "admin.pending_p2p_pix_charges")
    assert [(c["trade_id"], c["external_reference"], c["brl_amount"]) for c in pending] == [(trade_id, f"p2p-{trade_id}", D("600.00"))]
    assert one(p2p.app, "admin.attach_p2p_pix_charge", trade_id=trade_id, provider="mercadopago",
               provider_payment_id="mp-1", qr_code="000201...", qr_code_base64="iVBOR", expires_at=None)["attach_p2p_pix_charge"]
    assert refused(p2p.app, "api.mark_p2p_trade_paid", user_id=p2p.alice, trade_id=trade_id) == "BSS01"
    bob_brl, alice_btc = p2p.balance(p2p.bob, "BRL"), p2p.balance(p2p.alice)
    result = one(p2p.worker, "admin.confirm_p2p_pix_payment", trade_id=trade_id, paid_amount=D("600.00"),
                 payer_cpf=formatted, provider_payment_id="mp-1")
    assert (result["outcome"], result["status"], result["replayed"]) == ("completed", "COMPLETED", False)
    assert p2p.balance(p2p.bob, "BRL")[0] == bob_brl[0] + D("600.00")
    assert p2p.balance(p2p.alice)[0] == alice_btc[0] + D("0.001996")
    again = one(p2p.worker, "admin.confirm_p2p_pix_payment", trade_id=trade_id, paid_amount=D("600.00"),
                payer_cpf=cpf, provider_payment_id="mp-1")
    assert again["replayed"] and p2p.balance(p2p.bob, "BRL")[0] == bob_brl[0] + D("600.00")
    p2p.check()


def test_pix_confirmed_paid_by_someone_else_goes_to_review(p2p):
    # The buyer's KYC CPF is unknown here or different: either way the payer is not the buyer.
    offer_id = p2p.offer(p2p.bob)
    trade_id = p2p.trade(p2p.alice, offer_id, method="PIX_CONFIRMED")
    call(p2p.app, "admin.attach_p2p_pix_charge", trade_id=trade_id, provider="mercadopago",
         provider_payment_id="mp-2", qr_code="000201...", qr_code_base64=None, expires_at=None)
    snapshot = p2p.owner.execute("select id, balance from core.accounts order by id").fetchall()
    result = one(p2p.worker, "admin.confirm_p2p_pix_payment", trade_id=trade_id, paid_amount=D("600.00"),
                 payer_cpf="111.444.777-35", provider_payment_id="mp-2")
    assert (result["outcome"], result["status"]) == ("review", "REVIEW")
    assert p2p.owner.execute("select id, balance from core.accounts order by id").fetchall() == snapshot
    assert p2p.hold(p2p.get_trade(trade_id)["hold_id"])["status"] == "open"
    assert "p2p.review" in notifications(p2p, p2p.bob)
    # nobody but an admin moves it now
    assert refused(p2p.app, "api.release_p2p_trade", user_id=p2p.bob, trade_id=trade_id) == "BSS01"
    assert refused(p2p.app, "api.cancel_p2p_trade", user_id=p2p.alice, trade_id=trade_id) == "BSS01"
    assert [d["trade_id"] for d in call(p2p.app, "admin.list_p2p_disputes", admin_id=p2p.admin)] == [trade_id]
    # the admin releases after checking: the seller gets the BRL from the clearing account
    bob_brl = p2p.balance(p2p.bob, "BRL")
    one(p2p.app, "admin.resolve_p2p_dispute", admin_id=p2p.admin, trade_id=trade_id, outcome="release",
        note="Pagador é o cônjuge, confirmado por telefone.", totp_code=totp_code(p2p.owner, p2p.admin))
    assert p2p.balance(p2p.bob, "BRL")[0] == bob_brl[0] + D("600.00")
    assert p2p.get_trade(trade_id)["status"] == "COMPLETED"
    p2p.check()


def test_pix_confirmed_review_refund_and_late_payments(p2p):
    offer_id = p2p.offer(p2p.bob)
    wrong_amount = p2p.trade(p2p.alice, offer_id, method="PIX_CONFIRMED")
    result = one(p2p.worker, "admin.confirm_p2p_pix_payment", trade_id=wrong_amount, paid_amount=D("599.99"),
                 payer_cpf="11144477735", provider_payment_id="mp-3")
    assert result["status"] == "REVIEW"
    one(p2p.app, "admin.resolve_p2p_dispute", admin_id=p2p.admin, trade_id=wrong_amount, outcome="refund",
        note="Valor e pagador não conferem.")
    assert p2p.get_trade(wrong_amount)["status"] == "REFUNDED"
    assert [r["provider_payment_id"] for r in p2p.owner.execute("select * from reporting.p2p_pix_refunds_due")] == ["mp-3"]
    # a payment for a trade already cancelled by its deadline, by a stranger: not booked
    late = p2p.trade(p2p.alice, offer_id, method="PIX_CONFIRMED")
    p2p.expire(late)
    one(p2p.worker, "admin.expire_p2p_trades")
    customers = "select id, balance from core.accounts where user_id is not null order by id"
    snapshot = p2p.owner.execute(customers).fetchall()
    assert one(p2p.worker, "admin.confirm_p2p_pix_payment", trade_id=late, paid_amount=D("600.00"),
               payer_cpf="11144477735", provider_payment_id="mp-4")["outcome"] == "refund"
    assert p2p.owner.execute(customers).fetchall() == snapshot          # nobody was credited
    # the money at the provider is the payers' until refunded: journaled as a refund payable
    assert p2p.owner.execute("select balance from core.accounts where purpose = 'refunds_payable' and currency = 'BRL'"
                             ).fetchone()["balance"] == D("1199.99")
    # ... it goes back to the payer: both wait for the worker's refund at the provider
    assert [r["provider_payment_id"] for r in p2p.owner.execute(
        "select * from reporting.p2p_pix_refunds_due order by created_at")] == ["mp-3", "mp-4"]
    # the same provider payment for another trade: refused
    assert refused(p2p.worker, "admin.confirm_p2p_pix_payment", trade_id=wrong_amount, paid_amount=D("600.00"),
                   payer_cpf="11144477735", provider_payment_id="mp-4") == "BSI01"
    # charges: one per trade
    other = p2p.trade(p2p.alice, offer_id, method="PIX_CONFIRMED")
    call(p2p.app, "admin.attach_p2p_pix_charge", trade_id=other, provider="mercadopago", provider_payment_id="mp-5",
         qr_code="x", qr_code_base64=None, expires_at=None)
    assert not one(p2p.app, "admin.attach_p2p_pix_charge", trade_id=other, provider="mercadopago",
                   provider_payment_id="mp-5", qr_code="x", qr_code_base64=None, expires_at=None)["attach_p2p_pix_charge"]
    assert refused(p2p.app, "admin.attach_p2p_pix_charge", trade_id=other, provider="mercadopago",
                   provider_payment_id="mp-6", qr_code="x", qr_code_base64=None, expires_at=None) == "BSS01"
    pix_trade = p2p.trade(p2p.alice, offer_id, method="PIX")
    assert refused(p2p.app, "admin.attach_p2p_pix_charge", trade_id=pix_trade, provider="mercadopago",
                   provider_payment_id="mp-7", qr_code="x", qr_code_base64=None, expires_at=None) == "BSS01"
    p2p.check()


# --------------------------------------------------------------------------- limits, KYC, idempotency

def test_limits_kyc_requirements_and_amount_bounds(p2p):
    offer_id = p2p.offer(p2p.bob, min_counterparty_kyc=2, min_counterparty_trades=0)
    newbie = p2p.new_customer("edu@example.com", "Edu Alves", kyc=0, brl="1000")
    assert refused(p2p.app, "api.open_p2p_trade", user_id=newbie, offer_id=offer_id, payment_method="PIX",
                   idempotency_key=key(), brl_amount=D("200")) == "BSA01"
    experienced = p2p.offer(p2p.bob, min_counterparty_trades=3, total_amount=D("0.001"))
    assert refused(p2p.app, "api.open_p2p_trade", user_id=p2p.alice, offer_id=experienced, payment_method="PIX",
                   idempotency_key=key(), brl_amount=D("200")) == "BSA01"
    # per-trade limit of the taker's level (level 0: R$ 500)
    open_offer = p2p.offer(p2p.bob, total_amount=D("0.005"))
    assert refused(p2p.app, "api.open_p2p_trade", user_id=newbie, offer_id=open_offer, payment_method="PIX",
                   idempotency_key=key(), brl_amount=D("600")) == "BSL01"
    # daily P2P limit (level 0: R$ 1000 a day, counting trades in progress)
    p2p.trade(newbie, open_offer, brl="450.00")
    p2p.trade(newbie, open_offer, brl="450.00")
    assert refused(p2p.app, "api.open_p2p_trade", user_id=newbie, offer_id=open_offer, payment_method="PIX",
                   idempotency_key=key(), brl_amount=D("150")) == "BSL01"
    # min / max / remaining / own offer / unaccepted method
    assert refused(p2p.app, "api.open_p2p_trade", user_id=p2p.alice, offer_id=open_offer, payment_method="PIX",
                   idempotency_key=key(), brl_amount=D("50")) == "BSV01"
    assert refused(p2p.app, "api.open_p2p_trade", user_id=p2p.alice, offer_id=offer_id, payment_method="PIX",
                   idempotency_key=key(), brl_amount=D("3000.01")) == "BSV01"
    assert refused(p2p.app, "api.open_p2p_trade", user_id=p2p.alice, offer_id=open_offer, payment_method="PIX",
                   idempotency_key=key(), brl_amount=D("2000")) == "BSV01"  # only 0.002 BTC left
    assert refused(p2p.app, "api.open_p2p_trade", user_id=p2p.bob, offer_id=offer_id, payment_method="PIX",
                   idempotency_key=key(), brl_amount=D("200")) == "BSV01"
    pix_only = p2p.offer(p2p.bob, payment_methods=["PIX"])
    assert refused(p2p.app, "api.open_p2p_trade", user_id=p2p.alice, offer_id=pix_only, payment_method="BALANCE",
                   idempotency_key=key(), brl_amount=D("200")) == "BSV01"
    # the last piece may be below the minimum: it takes everything that is left
    left = p2p.get_offer(open_offer)["remaining_amount"]
    last = one(p2p.app, "api.open_p2p_trade", user_id=p2p.alice, offer_id=open_offer, payment_method="PIX",
               idempotency_key=key(), crypto_amount=left)["trade_id"]
    assert p2p.get_trade(last)["crypto_amount"] == left
    assert p2p.get_offer(open_offer)["status"] == "filled"
    p2p.check()


def test_open_is_idempotent(p2p):
    offer_id = p2p.offer(p2p.bob)
    k = key()
    first = one(p2p.app, "api.open_p2p_trade", user_id=p2p.alice, offer_id=offer_id, payment_method="PIX",
                idempotency_key=k, brl_amount=D("600.00"))
    again = one(p2p.app, "api.open_p2p_trade", user_id=p2p.alice, offer_id=offer_id, payment_method="PIX",
                idempotency_key=k, brl_amount=D("600.00"))
    assert again["trade_id"] == first["trade_id"] and again["replayed"] and not first["replayed"]
    assert p2p.get_offer(offer_id)["remaining_amount"] == D("0.008")
    assert refused(p2p.app, "api.open_p2p_trade", user_id=p2p.alice, offer_id=offer_id, payment_method="PIX",
                   idempotency_key=k, brl_amount=D("900.00")) == "BSI01"
    # create offer too
    k2 = key()
    o1 = p2p.offer(p2p.bob, idempotency_key=k2)
    o2 = p2p.offer(p2p.bob, idempotency_key=k2)
    assert o1 == o2
    p2p.check()


def test_chat_proofs_and_privileges(p2p):
    offer_id = p2p.offer(p2p.bob)
    trade_id = p2p.trade(p2p.alice, offer_id)
    call(p2p.app, "api.send_p2p_message", user_id=p2p.alice, trade_id=trade_id, body="Olá, vou pagar agora.")
    assert "p2p.message" in notifications(p2p, p2p.bob)
    assert refused(p2p.app, "api.send_p2p_message", user_id=p2p.alice, trade_id=trade_id, body="   ") == "BSV01"
    one(p2p.app, "api.mark_p2p_trade_paid", user_id=p2p.alice, trade_id=trade_id, proof_stored_name="a" * 32 + ".png",
        proof_original_name="comprovante.png", proof_content_type="image/png", proof_size_bytes=1234,
        proof_sha256="0" * 64)
    proofs = call(p2p.app, "api.list_p2p_proofs", user_id=p2p.bob, trade_id=trade_id)
    assert [(p["purpose"], p["original_name"]) for p in proofs] == [("payment", "comprovante.png")]
    assert one(p2p.app, "api.get_p2p_proof", user_id=p2p.admin, proof_id=proofs[0]["proof_id"])["stored_name"] == "a" * 32 + ".png"
    assert refused(p2p.app, "api.get_p2p_proof", user_id=p2p.carol, proof_id=proofs[0]["proof_id"]) == "BSN01"
    chat = call(p2p.app, "api.list_p2p_messages", user_id=p2p.bob, trade_id=trade_id)
    assert [m["is_system"] for m in chat] == [True, True, False, True]
    assert chat[2]["author_role"] == "buyer" and not chat[2]["is_mine"]
    # the app role cannot touch the tables
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        p2p.app.execute("update core.p2p_trades set status = 'COMPLETED'")
    definers = p2p.owner.execute("""
        select p.proname, p.prosecdef, p.proconfig from pg_proc p join pg_namespace n on n.oid = p.pronamespace
        where n.nspname in ('api', 'admin') and p.proname like '%p2p%'""").fetchall()
    assert len(definers) >= 25
    assert all(d["prosecdef"] and d["proconfig"] == ["search_path=pg_catalog, pg_temp"] for d in definers), definers
    undocumented = p2p.owner.execute("""
        select p.proname from pg_proc p join pg_namespace n on n.oid = p.pronamespace
        where n.nspname in ('api', 'admin', 'core') and p.proname like '%p2p%'
          and obj_description(p.oid, 'pg_proc') is null""").fetchall()
    assert undocumented == []


# --------------------------------------------------------------------------- races

def run_together(functions):
    """Run callables at the same moment on their own threads; returns results or exceptions."""
    barrier = threading.Barrier(len(functions))

    def wrap(fn):
        barrier.wait()
        try:
            return fn()
        except psycopg.Error as exc:
            return exc

    with ThreadPoolExecutor(max_workers=len(functions)) as pool:
        return list(pool.map(wrap, functions))


def test_race_two_takers_for_the_last_amount(p2p):
    offer_id = p2p.offer(p2p.bob, total_amount=D("0.002"))
    carol = p2p.carol
    conns = [p2p.connect(), p2p.connect()]
    try:
        results = run_together([
            lambda: one(conns[0], "api.open_p2p_trade", user_id=p2p.alice, offer_id=offer_id, payment_method="PIX",
                        idempotency_key=key(), brl_amount=D("600.00")),
            lambda: one(conns[1], "api.open_p2p_trade", user_id=carol, offer_id=offer_id, payment_method="PIX",
                        idempotency_key=key(), brl_amount=D("600.00")),
        ])
    finally:
        for c in conns:
            c.close()
    wins = [r for r in results if isinstance(r, dict)]
    losses = [r for r in results if isinstance(r, psycopg.Error)]
    assert len(wins) == 1 and len(losses) == 1, results
    assert losses[0].diag.sqlstate in ("BSS01", "BSV01")
    assert "oferta" in losses[0].diag.message_primary
    assert p2p.get_offer(offer_id)["status"] == "filled"
    assert p2p.owner.execute("select count(*) as n from core.p2p_trades").fetchone()["n"] == 1
    p2p.check()


def test_race_daily_limit_two_trades_at_once(p2p):
    """Two trades opened by one buyer at the same instant cannot both pass the daily P2P limit."""
    p2p.owner.execute("update core.kyc_limits set daily_p2p_brl = 1000.00 where kyc_level = 2")
    first, second = p2p.offer(p2p.bob), p2p.offer(p2p.carol, total_amount=D("0.005"))
    conns = [p2p.connect(), p2p.connect()]
    try:
        results = run_together([
            lambda: one(conns[0], "api.open_p2p_trade", user_id=p2p.alice, offer_id=first, payment_method="PIX",
                        idempotency_key=key(), brl_amount=D("600.00")),
            lambda: one(conns[1], "api.open_p2p_trade", user_id=p2p.alice, offer_id=second, payment_method="PIX",
                        idempotency_key=key(), brl_amount=D("600.00")),
        ])
    finally:
        for c in conns:
            c.close()
    wins = [r for r in results if isinstance(r, dict)]
    losses = [r for r in results if isinstance(r, psycopg.Error)]
    assert len(wins) == 1 and len(losses) == 1, results
    assert losses[0].diag.sqlstate == "BSL01"
    p2p.check()


def test_race_release_against_cancel(p2p):
    offer_id = p2p.offer(p2p.bob)
    outcomes = set()
    for _ in range(4):
        trade_id = p2p.trade(p2p.alice, offer_id, brl="300.00")
        one(p2p.app, "api.mark_p2p_trade_paid", user_id=p2p.alice, trade_id=trade_id)
        conns = [p2p.connect(), p2p.connect()]
        try:
            release, cancel = run_together([
                lambda: one(conns[0], "api.release_p2p_trade", user_id=p2p.bob, trade_id=trade_id),
                lambda: one(conns[1], "api.cancel_p2p_trade", user_id=p2p.alice, trade_id=trade_id),
            ])
        finally:
            for c in conns:
                c.close()
        # once paid, the buyer can no longer cancel: the release always wins
        assert release["status"] == "COMPLETED"
        assert isinstance(cancel, psycopg.Error) and cancel.diag.sqlstate == "BSS01"
        outcomes.add(p2p.get_trade(trade_id)["status"])
    # on an OPEN trade the cancel wins and the release is refused
    trade_id = p2p.trade(p2p.alice, offer_id, brl="300.00")
    conns = [p2p.connect(), p2p.connect()]
    try:
        release, cancel = run_together([
            lambda: one(conns[0], "api.release_p2p_trade", user_id=p2p.bob, trade_id=trade_id),
            lambda: one(conns[1], "api.cancel_p2p_trade", user_id=p2p.alice, trade_id=trade_id),
        ])
    finally:
        for c in conns:
            c.close()
    assert isinstance(release, psycopg.Error) and release.diag.sqlstate == "BSS01"
    assert cancel["status"] == "CANCELLED"
    assert outcomes == {"COMPLETED"}
    p2p.check()


def test_race_release_and_mark_paid_against_the_deadline_sweep(p2p):
    offer_id = p2p.offer(p2p.bob)
    # a PAID trade past the payment deadline: the sweep leaves it, the release completes it
    paid = p2p.trade(p2p.alice, offer_id, brl="300.00")
    one(p2p.app, "api.mark_p2p_trade_paid", user_id=p2p.alice, trade_id=paid)
    p2p.expire(paid)
    # an OPEN trade past the deadline: sweep and mark-paid race; exactly one cancellation
    stale = p2p.trade(p2p.alice, offer_id, brl="300.00")
    p2p.expire(stale)
    conns = [p2p.connect() for _ in range(4)]
    try:
        results = run_together([
            lambda: one(conns[0], "api.release_p2p_trade", user_id=p2p.bob, trade_id=paid),
            lambda: one(conns[1], "admin.expire_p2p_trades"),
            lambda: one(conns[2], "api.mark_p2p_trade_paid", user_id=p2p.alice, trade_id=stale),
            lambda: one(conns[3], "api.release_p2p_trade", user_id=p2p.bob, trade_id=stale),
        ])
    finally:
        for c in conns:
            c.close()
    assert results[0]["status"] == "COMPLETED"
    assert p2p.get_trade(paid)["status"] == "COMPLETED"
    assert p2p.get_trade(stale)["status"] == "CANCELLED"
    # the stale trade was cancelled once: its escrow hold released by exactly one entry
    hold = p2p.hold(p2p.get_trade(stale)["hold_id"])
    assert hold["status"] == "released"
    entries = p2p.owner.execute("select count(*) as n from core.entries where resolves_hold_id = %s", (hold["id"],)).fetchone()
    assert entries["n"] == 1
    assert p2p.get_offer(offer_id)["remaining_amount"] == D("0.009")
    p2p.check()


def test_race_100_concurrent_releases_release_once(p2p):
    offer_id = p2p.offer(p2p.bob)
    trade_id = p2p.trade(p2p.alice, offer_id)
    one(p2p.app, "api.mark_p2p_trade_paid", user_id=p2p.alice, trade_id=trade_id)
    alice_before = p2p.balance(p2p.alice)
    conns = [p2p.connect() for _ in range(25)]  # 100 callers share 25 connections, like a web pool
    free: queue.Queue = queue.Queue()
    for c in conns:
        free.put(c)
    barrier = threading.Barrier(100)

    def release(_):
        barrier.wait()
        conn = free.get()
        try:
            return one(conn, "api.release_p2p_trade", user_id=p2p.bob, trade_id=trade_id)["status"]
        except psycopg.Error as exc:
            return exc.diag.sqlstate
        finally:
            free.put(conn)

    try:
        with ThreadPoolExecutor(max_workers=100) as pool:
            results = list(pool.map(release, range(100)))
    finally:
        for c in conns:
            c.close()
    assert results.count("COMPLETED") == 1, results
    assert results.count("BSS01") == 99
    assert p2p.balance(p2p.alice)[0] == alice_before[0] + D("0.001996")
    assert p2p.owner.execute("select count(*) as n from core.entries where kind = 'p2p_release'").fetchone()["n"] == 1
    p2p.check()
