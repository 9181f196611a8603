"""P2P pages through the real app and database: the book, offers, a trade between two logged-in customers,
proof uploads and who may see them, refusals shown with their status, the dispute back office."""
from __future__ import annotations

import io
import re
from decimal import Decimal as D

import pytest

from tests.conftest import DEMO_PASSWORD, Forms, books, totp_code

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 200
PDF = b"%PDF-1.4\n" + b"0" * 200


class Browser:
    """A logged-in customer: their own cookie jar, posting forms like a browser."""

    def __init__(self, app, email, owner=None):
        self.client = app.test_client()
        self.forms = Forms(self.client)
        response = self.forms.post("/login", {"email": email, "password": DEMO_PASSWORD})
        assert response.status_code == 302, response.get_data(as_text=True)[:500]
        if response.headers["Location"].endswith("/login/2fa"):      # admins have 2FA on
            user_id = owner.execute("select id from core.users where email = %s", (email,)).fetchone()["id"]
            response = self.forms.post("/login/2fa", {"totp_code": totp_code(owner, user_id)})
            assert response.status_code == 302, response.get_data(as_text=True)[:500]

    def get(self, url, **kw):
        return self.client.get(url, **kw)

    def text(self, url) -> str:
        response = self.client.get(url)
        assert response.status_code == 200, (url, response.status_code)
        return response.get_data(as_text=True)

    def post(self, url, data=None, form_url=None, **kw):
        return self.forms.post(url, data or {}, form_url=form_url, **kw)


@pytest.fixture
def web(app, demo, owner, tmp_path):
    app.config["UPLOAD_DIR"] = str(tmp_path / "uploads")

    class World:
        pass

    w = World()
    w.app, w.owner, w.demo, w.uploads = app, owner, demo, tmp_path / "uploads" / "p2p"
    # an index an hour old: stale for floating prices, enough to bound a fixed one
    owner.execute("insert into core.prices (symbol, price, fetched_at) values ('BTCBRL', 300000, now() - interval '1 hour')")
    w.alice = Browser(app, "alice@example.com")
    w.bob = Browser(app, "bob@example.com")
    w.admin = Browser(app, "admin@example.com", owner)
    return w


def offer_form(**overrides) -> dict:
    data = {"side": "SELL", "crypto": "BTC", "price_type": "fixed", "fixed_price": "300.000,00",
            "total_amount": "0,01", "min_brl": "100", "max_brl": "3.000,00", "payment_methods": ["PIX", "TED"],
            "payment_window_minutes": "", "payment_details": "PIX: bob@example.com (Bob Oliveira)",
            "terms": "Pague de conta no seu nome.", "min_counterparty_kyc": "0", "min_counterparty_trades": "0",
            "expires_in_days": "7"}
    data.update(overrides)
    return data


def post_offer(browser, **overrides):
    return browser.post("/p2p/offers/new", offer_form(**overrides))


def latest(owner, table):
    return owner.execute(f"select * from core.{table} order by id desc limit 1").fetchone()


def open_trade(web, brl="600,00", method="PIX"):
    assert post_offer(web.bob).status_code == 302
    offer = latest(web.owner, "p2p_offers")
    response = web.alice.post(f"/p2p/offers/{offer['id']}", {"brl_amount": brl, "payment_method": method})
    assert response.status_code == 302, response.get_data(as_text=True)[:3000]
    trade = latest(web.owner, "p2p_trades")
    assert response.headers["Location"].endswith(f"/p2p/trades/{trade['id']}")
    return offer, trade


def test_pages_need_login_and_the_nav_links_p2p(client, web):
    assert client.get("/p2p").status_code == 302
    page = web.alice.text("/p2p")
    assert 'href="/p2p"' in page and "Comprar cripto" in page and "Nenhuma oferta" in page


def test_create_offer_validation_and_book(web):
    bad = post_offer(web.bob, price_type="floating", fixed_price="", premium_percent="25")
    assert bad.status_code == 422
    assert "O ágio deve ficar entre -20 e +20 por cento" in bad.get_data(as_text=True)
    no_details = post_offer(web.bob, payment_details="")
    assert no_details.status_code == 422 and "Informe seus dados para receber PIX/TED" in no_details.get_data(as_text=True)
    too_much = post_offer(web.bob, total_amount="5")
    assert too_much.status_code == 422 and "Saldo insuficiente em BTC" in too_much.get_data(as_text=True)

    created = post_offer(web.bob)
    assert created.status_code == 302 and created.headers["Location"].endswith("/p2p/offers/mine")
    mine = web.bob.text("/p2p/offers/mine")
    assert "Venda BTC" in mine and "Ativa" in mine and "0,01001000 BTC" in mine  # held with the maker fee
    book = web.alice.text("/p2p?side=SELL")
    assert "Bob Oliveira" in book and "R$ 300.000,00" in book and "0 negociações" in book
    assert "Bob Oliveira" not in web.alice.text("/p2p?side=BUY")
    assert "Bob Oliveira" not in web.alice.text("/p2p?side=SELL&method=BALANCE")
    assert "Bob Oliveira" in web.alice.text("/p2p?side=SELL&crypto=BTC&amount=500")
    books(web.owner)


def test_offer_pause_resume_edit_cancel_from_my_offers(web):
    post_offer(web.bob)
    offer = latest(web.owner, "p2p_offers")
    base = f"/p2p/offers/{offer['id']}"
    assert web.bob.post(f"{base}/pause", form_url="/p2p/offers/mine").status_code == 302
    assert "Bob Oliveira" not in web.alice.text("/p2p")
    again = web.bob.post(f"{base}/pause", form_url="/p2p/offers/mine")
    assert again.status_code == 409 and "Só uma oferta ativa pode ser pausada" in again.get_data(as_text=True)
    assert web.bob.post(f"{base}/resume", form_url="/p2p/offers/mine").status_code == 302
    edit = web.bob.text(f"{base}/edit")
    assert 'value="0.01000000"' in edit or 'value="0.01"' in edit
    edited = web.bob.post(f"{base}/edit", offer_form(remaining_amount="0,02", fixed_price="310.000,00"))
    assert edited.status_code == 302, edited.get_data(as_text=True)[:2000]
    assert web.owner.execute("select remaining_amount from core.p2p_offers where id = %s",
                             (offer["id"],)).fetchone()["remaining_amount"] == D("0.02")
    assert "R$ 310.000,00" in web.alice.text("/p2p")
    # somebody else's offer cannot be edited or cancelled
    assert web.alice.get(f"{base}/edit").status_code == 404
    assert web.alice.post(f"{base}/cancel", form_url="/p2p/offers/mine").status_code == 404
    assert web.bob.post(f"{base}/cancel", form_url="/p2p/offers/mine").status_code == 302
    assert "Cancelada" in web.bob.text("/p2p/offers/mine")
    books(web.owner)


def test_trade_through_the_pages_with_proof_release_and_rating(web):
    offer, trade = open_trade(web)
    url = f"/p2p/trades/{trade['id']}"
    page = web.alice.text(url)
    assert "Pague o vendedor" in page and "PIX: bob@example.com (Bob Oliveira)" in page and "R$ 600,00" in page
    assert 'data-countdown="' in page and 'data-refresh-url="/p2p/trades/%d/chat"' % trade["id"] in page
    assert "Aguardando o pagamento do comprador" in web.bob.text(url)

    # refusals are shown with their status, never a 500
    seller_cancel = web.bob.post(f"{url}/cancel", form_url=url)
    assert seller_cancel.status_code == 403 and "Só o comprador pode cancelar" in seller_cancel.get_data(as_text=True)
    early_release = web.bob.post(f"{url}/release", form_url=url)
    assert early_release.status_code == 409

    # chat
    assert web.alice.post(f"{url}/messages", {"body": "Pagando agora!"}, form_url=url).status_code == 302
    fragment = web.bob.text(f"{url}/chat")
    assert "Pagando agora!" in fragment and 'data-chat-status="OPEN"' in fragment and "<html" not in fragment

    # a proof that is not an image or PDF is refused by content, whatever its name
    fake = web.alice.post(f"{url}/paid", {"proof": (io.BytesIO(b"MZ\x90\x00 not an image"), "comprovante.png")},
                          form_url=url)
    assert fake.status_code == 422 and "Envie uma imagem PNG ou JPEG, ou um PDF" in fake.get_data(as_text=True)
    big = web.alice.post(f"{url}/paid", {"proof": (io.BytesIO(PNG + b"0" * (5 * 1024 * 1024)), "big.png")},
                         form_url=url)
    assert big.status_code == 422 and "passa de 5 MB" in big.get_data(as_text=True)
    assert web.owner.execute("select status from core.p2p_trades where id = %s", (trade["id"],)).fetchone()["status"] == "OPEN"

    paid = web.alice.post(f"{url}/paid", {"proof": (io.BytesIO(PNG), "comprovante.png")}, form_url=url)
    assert paid.status_code == 302
    proof = latest(web.owner, "p2p_proofs")
    assert proof["content_type"] == "image/png" and proof["original_name"] == "comprovante.png"
    assert re.fullmatch(r"[A-Za-z0-9_-]{32}\.png", proof["stored_name"])
    assert (web.uploads / proof["stored_name"]).read_bytes() == PNG
    # visible to both parties and admins, to nobody else
    assert web.bob.get(f"/p2p/proofs/{proof['id']}").data == PNG
    assert web.admin.get(f"/p2p/proofs/{proof['id']}").status_code == 200
    web.owner.execute("select api.register_user('carol@example.com', %s, 'Carol Lima')",
                      (web.owner.execute("select password_hash from core.users where email = 'bob@example.com'")
                       .fetchone()["password_hash"],))
    stranger = Browser(web.app, "carol@example.com")
    assert stranger.get(f"/p2p/proofs/{proof['id']}").status_code == 404
    assert stranger.get(url).status_code == 404
    assert stranger.get(f"{url}/chat").status_code == 404
    assert stranger.post(f"{url}/messages", {"body": "oi"}, form_url="/p2p").status_code == 404

    page = web.bob.text(url)
    assert "Confira o recebimento" in page and "comprovante.png" in page
    released = web.bob.post(f"{url}/release", form_url=url)
    assert released.status_code == 302
    assert "Negociação concluída" in web.alice.text(url)

    rated = web.alice.post(f"{url}/rate", {"positive": "1", "comment": "Tudo certo"}, form_url=url)
    assert rated.status_code == 302
    again = web.alice.post(f"{url}/rate", {"positive": "0"}, form_url=url)
    assert again.status_code in (302, 409, 422)
    profile = web.alice.text(f"/p2p/users/{trade['seller_id']}")
    assert "Negociações concluídas" in profile and "100%" in profile and "Tudo certo" in profile
    trades = web.bob.text("/p2p/trades")
    assert f"P2P-{trade['id']}" in trades and "Concluída" in trades
    books(web.owner)


def test_trade_open_refusals_show_on_the_form(web):
    post_offer(web.bob, total_amount="0,002")
    offer = latest(web.owner, "p2p_offers")
    url = f"/p2p/offers/{offer['id']}"
    assert "Abrir negociação" in web.alice.text(url)
    too_big = web.alice.post(url, {"brl_amount": "900", "payment_method": "PIX"})
    assert too_big.status_code == 422 and "apenas 0,002 BTC" in too_big.get_data(as_text=True)
    too_small = web.alice.post(url, {"brl_amount": "50", "payment_method": "PIX"})
    assert too_small.status_code == 422 and "O mínimo por negociação" in too_small.get_data(as_text=True)
    nonsense = web.alice.post(url, {"brl_amount": "abc", "payment_method": "PIX"})
    assert nonsense.status_code == 422 and "O valor decimal não é válido" in nonsense.get_data(as_text=True)
    # a second tab loaded before the offer ran out
    stale_page = web.alice.text(url)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', stale_page).group(1)
    stale_key = re.search(r'name="idempotency_key" type="hidden" value="([^"]+)"', stale_page).group(1)
    assert web.alice.post(url, {"brl_amount": "600", "payment_method": "PIX"}).status_code == 302
    gone = web.alice.client.post(url, data={"brl_amount": "300", "payment_method": "PIX", "csrf_token": token,
                                            "idempotency_key": stale_key})
    assert gone.status_code == 409 and "totalmente negociada" in gone.get_data(as_text=True)
    assert web.alice.get("/p2p/offers/999999").status_code == 404


def test_block_from_the_profile_hides_offers(web):
    post_offer(web.bob)
    bob_id = web.demo["bob@example.com"]
    profile = f"/p2p/users/{bob_id}"
    assert web.alice.post(f"{profile}/block", form_url=profile).status_code == 302
    assert "Bob Oliveira" not in web.alice.text("/p2p")
    assert "Desbloquear" in web.alice.text(profile)
    assert web.alice.post(f"{profile}/unblock", form_url=profile).status_code == 302
    assert "Bob Oliveira" in web.alice.text("/p2p")


def test_dispute_and_admin_resolution_pages(web):
    offer, trade = open_trade(web)
    url = f"/p2p/trades/{trade['id']}"
    web.alice.post(f"{url}/paid", {}, form_url=url)
    early = web.alice.post(f"{url}/dispute", {"reason": "O vendedor não libera."}, form_url=url)
    assert early.status_code == 409 and "Aguarde o prazo de liberação" in early.get_data(as_text=True)
    web.owner.execute("update core.p2p_trades set paid_at = now() - interval '2 hours' where id = %s", (trade["id"],))
    opened = web.alice.post(f"{url}/dispute", {"reason": "Paguei há duas horas e nada."}, form_url=url)
    assert opened.status_code == 302
    evidence = web.alice.post(f"{url}/proofs", {"file": (io.BytesIO(PDF), "extrato.pdf")}, form_url=url)
    assert evidence.status_code == 302
    assert latest(web.owner, "p2p_proofs")["purpose"] == "evidence"

    assert web.alice.get("/admin/disputes").status_code == 403
    assert web.alice.get(f"/admin/disputes/{trade['id']}").status_code == 403
    listing = web.admin.text("/admin/disputes")
    assert f"P2P-{trade['id']}" in listing and "Paguei há duas horas" in listing
    detail_url = f"/admin/disputes/{trade['id']}"
    detail = web.admin.text(detail_url)
    assert "extrato.pdf" in detail and "Registrar decisão" in detail
    # the admin writes in the chat
    assert web.admin.post(f"{url}/messages", {"body": "Analisando os comprovantes."}, form_url=detail_url).status_code == 302
    assert "Analisando os comprovantes." in web.bob.text(f"{url}/chat")
    no_note = web.admin.post(detail_url, {"outcome": "release", "note": ""})
    assert no_note.status_code == 422
    resolved = web.admin.post(detail_url, {"outcome": "release", "note": "Extrato confere.", "at_fault": "seller",
                                           "totp_code": totp_code(web.owner, web.demo["admin@example.com"])})
    assert resolved.status_code == 302, resolved.get_data(as_text=True)[:2000]
    assert web.owner.execute("select status from core.p2p_trades where id = %s", (trade["id"],)).fetchone()["status"] == "COMPLETED"
    assert "Nenhuma disputa aberta" in web.admin.text("/admin/disputes")
    assert web.owner.execute("select count(*) as n from core.admin_audit_log where action = 'p2p_resolve_dispute'").fetchone()["n"] == 1
    books(web.owner)


def test_balance_trade_completes_at_once_and_floating_offer_form(web):
    web.owner.execute("insert into core.prices (symbol, price) values ('BTCBRL', 320000)")
    form = web.bob.text("/p2p/offers/new")
    assert "320000" in form and 'id="effective-price"' in form
    created = post_offer(web.bob, price_type="floating", fixed_price="", premium_percent="-2,5",
                         payment_methods=["BALANCE"])
    assert created.status_code == 302
    offer = latest(web.owner, "p2p_offers")
    assert "R$ 312.000,00" in web.alice.text("/p2p")
    opened = web.alice.post(f"/p2p/offers/{offer['id']}", {"brl_amount": "624,00", "payment_method": "BALANCE"})
    assert opened.status_code == 302
    trade = latest(web.owner, "p2p_trades")
    assert trade["status"] == "COMPLETED" and trade["crypto_amount"] == D("0.002")
    assert "Negociação concluída" in web.alice.text(f"/p2p/trades/{trade['id']}")
    books(web.owner)
