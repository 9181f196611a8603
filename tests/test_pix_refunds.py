"""A charge for a P2P trade that ended is never credited as free BRL: the worker cancels it at the
provider, and a payment that arrives anyway goes back to its payer through the provider's refund
API — real HTTP to the Mercado Pago emulator with the official SDK, as the worker's jobs run."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
import requests

from tests.conftest import books
from tests.rails_support import app_call, brl, charge, close_app, control, make_app, mp_config, process
from webapp.deposits import service, tasks
from sandbox.mercadopago import start_in_thread

ALICE_CPF = "52601815906"


@pytest.fixture(scope="module")
def mp():
    server = start_in_thread(mp_config())
    yield server
    server.shutdown()


@pytest.fixture
def app(db_url, mp):
    mp.state.reset()
    app = make_app(db_url, worker=False, MERCADO_PAGO_BASE_URL=mp.url)
    yield app
    close_app(app)


def open_pix_trade_without_charge(app, owner, demo):
    """bob sells USDT for PIX-confirmed and alice opens a trade (no charge at the provider yet)."""
    owner.execute("insert into core.prices (symbol, price) values ('USDTBRL', 5.00)")
    alice, bob = demo["alice@example.com"], demo["bob@example.com"]
    offer = app_call(app, "api.create_p2p_offer", user_id=bob, side="SELL", crypto="USDT", price_type="fixed",
                     total_amount=Decimal("100"), min_brl=Decimal("10"), max_brl=Decimal("2000"),
                     payment_methods=["PIX_CONFIRMED"], idempotency_key=str(uuid.uuid4()),
                     fixed_price=Decimal("5.00"))[0]["offer_id"]
    trade = app_call(app, "api.open_p2p_trade", user_id=alice, offer_id=offer, payment_method="PIX_CONFIRMED",
                     idempotency_key=str(uuid.uuid4()), brl_amount=Decimal("100.00"))[0]["trade_id"]
    return alice, trade


def open_pix_trade(app, owner, demo):
    """bob sells USDT for PIX-confirmed; alice opens a trade and gets its charge at the provider."""
    alice, trade = open_pix_trade_without_charge(app, owner, demo)
    with app.app_context():
        made = service.create_charge_for_p2p_trade(app, trade, Decimal("100.00"), None, None,
                                                   datetime.now(timezone.utc) + timedelta(minutes=30))
    return alice, trade, made.provider_id


def test_the_charge_of_an_ended_trade_is_cancelled_at_the_provider(app, owner, demo, mp):
    alice, trade, pid = open_pix_trade(app, owner, demo)
    app_call(app, "api.cancel_p2p_trade", user_id=alice, trade_id=trade)
    owner.execute("update core.pix_charges set last_checked_at = now() - interval '1 minute'")
    with app.app_context():
        assert tasks.cancel_ended_trade_charges(app) == {"cancelled": 1}
    assert charge(owner, owner.execute("select id from core.pix_charges").fetchone()["id"])["status"] == "EXPIRED"
    assert mp.state.payments[int(pid)]["status"] == "cancelled"
    # the payer can no longer pay it
    assert requests.post(f"{mp.url}/_sandbox/payments/{pid}/pay", json={}, timeout=10).status_code >= 400
    books(owner)


def test_a_late_payment_goes_back_to_the_payer_through_the_refund_api(app, owner, demo, mp):
    alice, trade, pid = open_pix_trade(app, owner, demo)
    before = brl(owner, alice)
    app_call(app, "api.cancel_p2p_trade", user_id=alice, trade_id=trade)
    control(mp, f"/_sandbox/payments/{pid}/pay", payer_cpf=ALICE_CPF)    # paid anyway, before we cancelled
    process(app)                                                          # its webhook, booked by the worker
    owner.execute("update core.pix_charges set last_checked_at = now() - interval '1 minute'")
    with app.app_context():
        tasks.cancel_ended_trade_charges(app)                             # too late to cancel: it was paid
    refund = owner.execute("select * from core.pix_refunds").fetchone()
    assert refund["status"] == "PENDING" and refund["amount"] == Decimal("100.00")
    assert brl(owner, alice) == before                                    # never credited as free BRL
    with app.app_context():
        assert tasks.make_refunds(app) == {"DONE": 1}
        assert tasks.make_refunds(app) == {}                              # once
    refund = owner.execute("select * from core.pix_refunds").fetchone()
    assert refund["status"] == "DONE" and refund["provider_refund_id"]
    assert mp.state.payments[int(pid)]["status"] == "refunded"
    # the provider then reports the payment refunded: nothing was credited, nothing to claw back
    process(app)
    assert owner.execute("select count(*) as n from core.pix_clawbacks").fetchone()["n"] == 0
    assert owner.execute("select balance from core.accounts where purpose = 'refunds_payable' and currency = 'BRL'"
                         ).fetchone()["balance"] == 0
    books(owner)


def test_a_trade_whose_charge_the_web_could_not_create_gets_it_from_the_worker(app, owner, demo, mp):
    """The safety net (deposits/tasks.create_pending_p2p_charges): the provider was down when the
    trade opened, so the trade has no charge; the worker's job records it as exchange_worker, creates
    it at the provider and the trade page gets its QR code — once."""
    alice, trade = open_pix_trade_without_charge(app, owner, demo)
    assert owner.execute("select count(*) as n from core.pix_charges").fetchone()["n"] == 0
    with app.app_context():
        assert tasks.create_pending_p2p_charges(app) == 1
        assert tasks.create_pending_p2p_charges(app) == 0                 # the trade has its charge now
    made = owner.execute("select * from core.pix_charges where reference = %s", (f"p2p-{trade}",)).fetchone()
    assert made["amount"] == Decimal("100.00") and made["provider_payment_id"]
    assert mp.state.payments[int(made["provider_payment_id"])]["status"] == "pending"
    assert owner.execute("select pix_provider_payment_id from core.p2p_trades where id = %s",
                         (trade,)).fetchone()["pix_provider_payment_id"] == made["provider_payment_id"]
