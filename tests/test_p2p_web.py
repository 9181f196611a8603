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
    assert fake.status_code == 422 and "Formato não aceito: envie uma foto PNG ou JPEG, ou um PDF" in fake.get_data(as_text=True)
    big = web.alice.post(f"{url}/paid", {"proof": (io.BytesIO(PNG + b"0" * (5 * 1024 * 1024)), "big.png")},
                         form_url=url)
    assert big.status_code == 422 and "Arquivo grande demais: o máximo é 5 MB" in big.get_data(as_text=True)
    assert web.owner.execute("select status from core.p2p_trades where id = %s", (trade["id"],)).fetchone()["status"] == "OPEN"

    paid = web.alice.post(f"{url}/paid", {"proof": (io.BytesIO(PNG), "comprovante.png")}, form_url=url)
    assert paid.status_code == 302
    proof = latest(web.owner, "p2p_proofs")
    assert proof["content_type"] == "image/png" and proof["original_name"] == "comprovante.png"
    assert re.fullmatch(r"[A-Za-z0-9_-]{32}\.png", proof["stored_name"])
    assert (web.uploads / proof["stored_name"]).read_bytes() == PNG
    # the one upload store (webapp/uploads.py): only the app's user reads it
    assert (web.uploads / proof["stored_name"]).stat().st_mode & 0o777 == 0o600
    assert web.uploads.stat().st_mode & 0o777 == 0o700
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


# --------------------------------------------------------------------------- what each side is told
# Four kinds of offer (BUY/SELL × paid outside by PIX/TED or settled from the BRL balance), seen by the maker
# and by the taker: bank details are asked only where a payment outside the balance happens, and the texts
# say who pays what and who receives what.

ASKS_DETAILS = 'name="payment_details"'
BUYER_GETS_CRYPTO = "Você recebe a cripto equivalente"
SELLER_GIVES_CRYPTO = "Você entrega a cripto equivalente"
PAYS_OUTSIDE = "direto na conta do vendedor"
FROM_BALANCE = "o valor sai do seu saldo em reais"
INTO_BALANCE = "o valor entra no seu saldo em reais"


def offer_of(web, side, methods, details=""):
    created = post_offer(web.bob, side=side, payment_methods=methods, payment_details=details)
    assert created.status_code == 302, created.get_data(as_text=True)[:3000]
    return latest(web.owner, "p2p_offers")


def test_maker_is_asked_for_bank_details_only_on_a_sell_offer_paid_outside(web):
    form = web.bob.text("/p2p/offers/new")
    assert 'data-show-for="SELL:PIX,TED"' in form and "Só em ofertas de venda com PIX ou TED" in form
    assert 'data-testid="flow-SELL"' in form and 'data-testid="flow-BUY"' in form
    assert "BTC 0,1%" in form  # the maker fee, from the configured schedule
    # a balance-only SELL offer and a BUY offer need no bank details
    sell_balance = offer_of(web, "SELL", ["BALANCE"])
    buy_pix = offer_of(web, "BUY", ["PIX", "TED"])
    buy_balance = offer_of(web, "BUY", ["BALANCE"])
    sell_pix = offer_of(web, "SELL", ["PIX"], details="PIX: bob@example.com (Bob Oliveira)")
    for offer in (sell_balance, buy_pix, buy_balance):
        page = web.bob.text(f"/p2p/offers/{offer['id']}/edit")
        assert ASKS_DETAILS not in page, offer
    page = web.bob.text(f"/p2p/offers/{sell_pix['id']}/edit")
    assert ASKS_DETAILS in page and "PIX: bob@example.com (Bob Oliveira)" in page
    assert 'data-testid="flow-SELL"' in page and 'data-testid="flow-BUY"' not in page
    page = web.bob.text(f"/p2p/offers/{buy_balance['id']}/edit")
    assert 'data-testid="flow-BUY"' in page and 'data-testid="flow-SELL"' not in page


@pytest.mark.parametrize("side, methods, asks, right, wrong", [
    # taker buys from a SELL offer paid by PIX/TED: pays the seller outside, no details of theirs
    ("SELL", ["PIX", "TED"], False, [BUYER_GETS_CRYPTO, PAYS_OUTSIDE, "descontada do que você recebe"],
     [SELLER_GIVES_CRYPTO, FROM_BALANCE]),
    # taker buys from a balance-only SELL offer: the balance pays, nothing outside
    ("SELL", ["BALANCE"], False, [BUYER_GETS_CRYPTO, FROM_BALANCE, "Nenhum pagamento fora da plataforma"],
     [SELLER_GIVES_CRYPTO, PAYS_OUTSIDE]),
    # taker sells on a BUY offer paid by PIX/TED: says where to be paid, delivers crypto
    ("BUY", ["PIX", "TED"], True, [SELLER_GIVES_CRYPTO, "Onde o comprador vai te pagar por PIX ou TED",
                                   "direto na sua conta", "somada ao que você entrega"],
     [BUYER_GETS_CRYPTO, INTO_BALANCE, "Só se você escolher"]),
    # taker sells on a balance-only BUY offer: receives reais in the balance, no bank details
    ("BUY", ["BALANCE"], False, [SELLER_GIVES_CRYPTO, INTO_BALANCE, "nenhum dado bancário"],
     [BUYER_GETS_CRYPTO, "receber o pagamento", "direto na sua conta"]),
    # both: details asked, for PIX/TED only
    ("BUY", ["PIX", "BALANCE"], True, [SELLER_GIVES_CRYPTO, "Só se você escolher PIX ou TED", INTO_BALANCE],
     [BUYER_GETS_CRYPTO]),
])
def test_taker_is_told_what_happens_on_each_kind_of_offer(web, side, methods, asks, right, wrong):
    details = "PIX: bob@example.com (Bob Oliveira)" if side == "SELL" and "PIX" in methods else ""
    offer = offer_of(web, side, methods, details)
    page = web.alice.text(f"/p2p/offers/{offer['id']}")
    assert (ASKS_DETAILS in page) is asks
    for text in right:
        assert text in page, text
    for text in wrong:
        assert text not in page, text
    assert "0,2%" in page  # the taker fee, before anything is confirmed


@pytest.mark.parametrize("side, method, buyer_texts, seller_texts", [
    ("SELL", "PIX", ["Pague o vendedor", PAYS_OUTSIDE], ["direto na sua conta, fora da bs-market"]),
    ("BUY", "PIX", ["Pague o vendedor", PAYS_OUTSIDE], ["direto na sua conta, fora da bs-market"]),
    ("SELL", "BALANCE", ["saíram do seu saldo em reais para o vendedor", FROM_BALANCE],
     ["entraram no seu saldo em reais", INTO_BALANCE]),
    ("BUY", "BALANCE", ["saíram do seu saldo em reais para o vendedor", FROM_BALANCE],
     ["entraram no seu saldo em reais", INTO_BALANCE]),
])
def test_trade_page_tells_buyer_and_seller_what_moves(web, side, method, buyer_texts, seller_texts):
    details = "PIX: bob@example.com (Bob Oliveira)" if side == "SELL" and method == "PIX" else ""
    offer = offer_of(web, side, [method], details)
    data = {"brl_amount": "600,00", "payment_method": method}
    if side == "BUY" and method == "PIX":
        data["payment_details"] = "PIX: alice@example.com (Alice Souza)"
    opened = web.alice.post(f"/p2p/offers/{offer['id']}", data)
    assert opened.status_code == 302, opened.get_data(as_text=True)[:3000]
    trade = latest(web.owner, "p2p_trades")
    assert trade["status"] == ("COMPLETED" if method == "BALANCE" else "OPEN")
    buyer, seller = (web.alice, web.bob) if side == "SELL" else (web.bob, web.alice)
    url = f"/p2p/trades/{trade['id']}"
    buyer_page, seller_page = buyer.text(url), seller.text(url)
    for text in buyer_texts:
        assert text in buyer_page, text
    for text in seller_texts:
        assert text in seller_page, text
    if method == "BALANCE":
        for page in (buyer_page, seller_page):
            assert 'data-testid="payment-details"' not in page and "Pague o vendedor" not in page
            assert "fora da bs-market" not in page
    else:
        shown = "PIX: bob@example.com (Bob Oliveira)" if side == "SELL" else "PIX: alice@example.com (Alice Souza)"
        assert shown in buyer_page and shown in seller_page
        assert "entraram no seu saldo em reais" not in seller_page and FROM_BALANCE not in buyer_page
    books(web.owner)


def test_preview_shows_the_fee_and_net_from_the_database_before_opening(web):
    sell = offer_of(web, "SELL", ["PIX"], details="PIX: bob@example.com (Bob Oliveira)")
    url = f"/p2p/offers/{sell['id']}"
    shown = web.alice.post(url, {"brl_amount": "600,00", "payment_method": "PIX", "action": "preview"})
    page = shown.get_data(as_text=True)
    assert shown.status_code == 200 and 'data-testid="trade-preview"' in page
    # 600 ÷ 300 000 = 0,002 BTC; the taker's 0,2% is 0,000004 BTC off what alice receives
    assert 'data-testid="preview-pay">R$ 600,00' in page
    assert 'data-testid="preview-fee">0,000004 BTC' in page or 'data-testid="preview-fee">0,00000400 BTC' in page
    receive = re.search(r'data-testid="preview-receive">([^<]+)<', page).group(1)
    assert receive in ("0,001996 BTC", "0,00199600 BTC")
    assert "Confirmar e abrir negociação" in page
    assert web.owner.execute("select count(*) as n from core.p2p_trades").fetchone()["n"] == 0  # nothing opened yet
    opened = web.alice.post(url, {"brl_amount": "600,00", "payment_method": "PIX", "action": "open"})
    assert opened.status_code == 302
    trade = latest(web.owner, "p2p_trades")
    assert trade["buyer_fee"] == D("0.000004") and trade["crypto_amount"] - trade["buyer_fee"] == D("0.001996")

    # the seller's side on a BUY offer: crypto plus the fee leaves, the reais come in
    buy = offer_of(web, "BUY", ["BALANCE"])
    page = web.alice.post(f"/p2p/offers/{buy['id']}", {"brl_amount": "600,00", "payment_method": "BALANCE",
                                                       "action": "preview"}).get_data(as_text=True)
    deliver = re.search(r'data-testid="preview-deliver">([^<]+)<', page).group(1)
    assert deliver in ("0,002004 BTC", "0,00200400 BTC")
    assert 'data-testid="preview-receive">R$ 600,00' in page
    # a refusal of the amount is shown on the form, not as a 500
    too_big = web.alice.post(f"/p2p/offers/{buy['id']}", {"brl_amount": "9.000,00", "payment_method": "BALANCE",
                                                          "action": "preview"})
    assert too_big.status_code == 422 and "Esta oferta tem apenas 0,01 BTC disponíveis" in too_big.get_data(as_text=True)


def test_the_demo_seed_fills_the_offer_book(app, client, forms, login, owner, priced):
    """What `make run` runs (flask seed-demo): demo makers with offers on both sides, books balanced."""
    runner = app.test_cli_runner()
    with app.app_context():
        result = runner.invoke(args=["seed-demo", "--mark-development"])
        assert result.exit_code == 0, result.output
        assert "6 demo P2P offers" in result.output
        assert runner.invoke(args=["seed-demo"]).exit_code == 0  # again: nothing new
    offers = owner.execute("select side, crypto, payment_methods from core.p2p_offers where status = 'active'").fetchall()
    assert len(offers) == 6
    assert {o["side"] for o in offers} == {"BUY", "SELL"} and {o["crypto"] for o in offers} == {"BTC", "ETH", "USDT"}
    assert any(o["payment_methods"] == ["BALANCE"] for o in offers)
    books(owner)

    login("alice@example.com")
    sells = client.get("/p2p?side=SELL").get_data(as_text=True)
    buys = client.get("/p2p?side=BUY").get_data(as_text=True)
    assert sells.count('data-testid="offer-row"') == 3 and buys.count('data-testid="offer-row"') == 3
    assert "Carla Mendes" in sells and "Diego Lima" in sells and "cotação indisponível" not in sells
    # a balance-only demo offer settles at once
    offer = owner.execute("""select o.id from core.p2p_offers o join core.users u on u.id = o.user_id
                             where u.email = 'diego@example.com' and o.side = 'SELL'""").fetchone()
    opened = forms.post(f"/p2p/offers/{offer['id']}", {"brl_amount": "500,00", "payment_method": "BALANCE"})
    assert opened.status_code == 302, opened.get_data(as_text=True)[:3000]
    assert latest(owner, "p2p_trades")["status"] == "COMPLETED"
    books(owner)
