"""LGPD (sql/privacy.sql, webapp/privacy): the data export holds the customer's own rows and nobody
else's; closure is refused while anything is owed or in progress and allowed at zero; a closed account
cannot log in; after the retention period the worker anonymises personal data and keeps the books.
Real PostgreSQL, real scripted data (deposits, trades, transfers); books checked after money scenarios."""
from __future__ import annotations

import io
import json
import uuid
import zipfile
from decimal import Decimal as D

import psycopg
import pytest
from psycopg.rows import dict_row

from tests.conftest import DEMO_PASSWORD, books, enable_totp, totp_code
from webapp.config import role_url

ALICE_CPF, BOB_CPF = "52601815906", "08301661305"


def key() -> str:
    return str(uuid.uuid4())


def one(conn, query: str, *args):
    return conn.execute(query, args).fetchone()


def fails(conn, code: str, query: str, *args):
    with pytest.raises(psycopg.Error) as exc:
        conn.execute(query, args)
    assert exc.value.sqlstate == code, exc.value
    return exc.value.diag.message_primary


def adjust(owner, admin, user_id, currency, amount):
    owner.execute("select * from admin.adjust_balance(%s, %s, %s, %s, 'ajuste de teste', %s)",
                  (admin, user_id, currency, D(amount), key()))


def zero_out(owner, admin, user_id):
    """Take every available balance of a customer out through journaled adjustments."""
    for row in owner.execute("select currency, available from api.get_wallet(%s)", (user_id,)).fetchall():
        if row["available"]:
            adjust(owner, admin, user_id, row["currency"], -row["available"])


def sell_offer(web, maker, methods=("PIX", "BALANCE")) -> int:
    return one(web, "select * from api.create_p2p_offer(user_id => %s, side => 'SELL', crypto => 'BTC', "
                    "price_type => 'fixed', total_amount => 0.01, min_brl => 100.00, max_brl => 3000.00, "
                    "payment_methods => %s, idempotency_key => %s, fixed_price => 300000.00, "
                    "payment_details => 'PIX: bob@example.com (Bob Oliveira)')",
               maker, list(methods), key())["offer_id"]


def open_trade(web, taker, offer_id, method, brl="600.00") -> dict:
    return one(web, "select * from api.open_p2p_trade(user_id => %s, offer_id => %s, payment_method => %s, "
                    "idempotency_key => %s, brl_amount => %s)", taker, offer_id, method, key(), D(brl))


def export_json(forms) -> dict:
    response = forms.post("/account/privacy/export", {"format": "json"}, form_url="/account/privacy")
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    assert response.headers["Content-Disposition"].startswith("attachment; filename=\"bs-market-meus-dados-")
    return json.loads(response.get_data(as_text=True), parse_float=D)


@pytest.fixture
def world(owner, demo, priced, web):
    """alice and bob with real activity between them: deposits, a transfer, a P2P trade, chat."""
    alice, bob = demo["alice@example.com"], demo["bob@example.com"]
    deposits = {}
    for user_id, amount in ((alice, "150.00"), (bob, "275.00")):
        deposits[user_id] = one(web, "select * from api.create_deposit(%s, %s, 'mercadopago', %s)",
                                user_id, D(amount), key())["reference"]
    one(web, "select * from api.transfer(%s, 'bob@example.com', 'BRL', 12.34, %s)", alice, key())
    trade = open_trade(web, alice, sell_offer(web, bob), "BALANCE")          # settles at once
    assert trade["status"] == "COMPLETED"
    pix_trade = open_trade(web, alice, sell_offer(web, bob), "PIX", "300.00")
    web.execute("select api.send_p2p_message(%s, %s, 'Oi Bob, pago já')", (alice, pix_trade["trade_id"]))
    web.execute("select api.send_p2p_message(%s, %s, 'segredo do bob: 99999')", (bob, pix_trade["trade_id"]))
    web.execute("select * from api.record_login('alice@example.com', true, '203.0.113.7')")
    return {"alice": alice, "bob": bob, "admin": demo["admin@example.com"], "deposits": deposits,
            "trade": trade["trade_id"], "pix_trade": pix_trade["trade_id"]}


def test_export_holds_the_customers_rows_and_none_of_anothers(client, forms, login, owner, world):
    alice, bob = world["alice"], world["bob"]
    login("alice@example.com")
    doc = export_json(forms)
    sections = doc["sections"]
    assert doc["user_id"] == alice and doc["format"] == "bs-market LGPD export v1"
    assert sections["profile"]["rows"][0]["email"] == "alice@example.com"
    assert sections["kyc_profile"]["rows"][0]["cpf"] == ALICE_CPF
    # her deposit, not bob's
    references = [r["reference"] for r in sections["pix_deposits"]["rows"]]
    assert references == [world["deposits"][alice]]
    # both trades, the counterparty by display name only, and bob's payment details never
    trades = {r["id"]: r for r in sections["p2p_trades"]["rows"]}
    assert set(trades) == {world["trade"], world["pix_trade"]}
    assert {r["counterparty"] for r in trades.values()} == {"Bob Oliveira"}
    assert all(r["my_side"] == "buyer" and r["my_payment_details"] is None for r in trades.values())
    assert trades[world["trade"]]["brl_amount"] == D("600.00") and trades[world["trade"]]["crypto_amount"] == D("0.002")
    # her ledger: only postings on her own accounts, with exact amounts
    her_accounts = {r["id"] for r in owner.execute("select id from core.accounts where user_id = %s", (alice,))}
    expected = owner.execute("select p.entry_id, p.amount from core.postings p where p.account_id = any(%s) "
                             "order by p.entry_id, p.account_id", (list(her_accounts),)).fetchall()
    assert [(r["entry_id"], r["amount"]) for r in sections["ledger_postings"]["rows"]] == \
        [(r["entry_id"], r["amount"]) for r in expected]
    bob_only = owner.execute("select distinct p.entry_id from core.postings p join core.accounts a on a.id = p.account_id "
                             "where a.user_id = %s except select p.entry_id from core.postings p "
                             "where p.account_id = any(%s)", (bob, list(her_accounts))).fetchall()
    assert bob_only, "bob has entries of his own (his demo funding)"
    exported_entries = {r["entry_id"] for r in sections["ledger_postings"]["rows"]}
    assert exported_entries.isdisjoint({r["entry_id"] for r in bob_only})
    # her chat message, not bob's; her login with its IP
    assert [m["body"] for m in sections["p2p_messages"]["rows"]] == ["Oi Bob, pago já"]
    assert "203.0.113.7" in [r["ip"] for r in sections["logins"]["rows"]]
    text = json.dumps(doc, default=str)
    for other in ("bob@example.com", BOB_CPF, "segredo do bob", world["deposits"][bob]):
        assert other not in text
    # the request is on record
    assert one(owner, "select kind from core.privacy_requests where user_id = %s", alice)["kind"] == "export_json"

    # the same through psql, as one jsonb document
    same = one(owner, "select api.export_my_data(%s) as d", alice)["d"]
    assert set(same["sections"]) == set(sections)
    assert len(same["sections"]["ledger_postings"]["rows"]) == len(expected)

    # the CSV set: one file per section, same rows
    response = forms.post("/account/privacy/export", {"format": "csv"}, form_url="/account/privacy")
    assert response.status_code == 200 and response.mimetype == "application/zip"
    assert response.headers["Content-Disposition"].endswith('.zip"')
    archive = zipfile.ZipFile(io.BytesIO(response.get_data()))
    names = set(archive.namelist())
    assert {"profile.csv", "ledger_postings.csv", "market_orders.csv", "p2p_trades.csv", "pix_deposits.csv",
            "pix_withdrawals.csv", "crypto_deposits.csv", "crypto_withdrawals.csv", "logins.csv", "LEIAME.csv"} <= names
    deposits_csv = archive.read("pix_deposits.csv").decode("utf-8-sig")
    assert world["deposits"][alice] in deposits_csv and world["deposits"][bob] not in deposits_csv
    postings_csv = archive.read("ledger_postings.csv").decode("utf-8-sig").splitlines()
    assert postings_csv[0].startswith("entry_id,created_at,kind,description,reference,currency,account,amount")
    assert len(postings_csv) == 1 + len(expected)
    everything = "".join(archive.read(n).decode("utf-8-sig") for n in names)
    assert "bob@example.com" not in everything and BOB_CPF not in everything
    books(owner)


def test_export_needs_a_login_and_a_form(client, forms, login, world):
    assert client.post("/account/privacy/export", data={"format": "json"}).status_code in (302, 400)
    login("alice@example.com")
    assert client.post("/account/privacy/export", data={"format": "json"}).status_code == 400  # no CSRF token
    response = forms.post("/account/privacy/export", {"format": "xml"}, form_url="/account/privacy")
    assert response.status_code == 422


def test_closure_refused_until_everything_is_settled_then_closed(app, client, forms, login, owner, web, world):
    alice, bob, admin = world["alice"], world["bob"], world["admin"]
    web.execute("select api.cancel_p2p_trade(%s, %s)", (alice, world["pix_trade"]))
    owner.execute("update core.pix_charges set status = 'EXPIRED', resolved_at = now() where reference = %s",
                  (world["deposits"][alice],))

    # 1. a balance
    msg = fails(web, "BSC01", "select api.close_account(%s)", alice)
    assert "BRL" in msg and "BTC" in msg and "saldo" in msg
    zero_out(owner, admin, alice)
    adjust(owner, admin, alice, "BRL", "100.00")
    # 2. a pending PIX withdrawal (its money is locked)
    w = one(web, "select * from api.create_withdrawal(%s, 100.00, 'CPF', %s, %s)", alice, ALICE_CPF, key())
    msg = fails(web, "BSC01", "select api.close_account(%s)", alice)
    assert "saque(s) PIX em andamento" in msg and "100 BRL" in msg
    codes = {r["code"] for r in web.execute("select * from api.closure_check(%s)", (alice,))}
    assert codes == {"balance", "pix_withdrawals"}
    web.execute("select api.cancel_withdrawal(%s, %s)", (alice, w["withdrawal_id"]))
    adjust(owner, admin, alice, "BRL", "-100.00")
    # 3. an open P2P trade
    trade = open_trade(web, alice, sell_offer(web, bob), "PIX")
    assert trade["status"] == "OPEN"
    msg = fails(web, "BSC01", "select api.close_account(%s)", alice)
    assert "negociação" in msg and "saldo" not in msg
    login("alice@example.com")
    page = client.get("/account/close").get_data(as_text=True)
    assert 'data-testid="blockers"' in page and "Negociações P2P em andamento" in page
    web.execute("select api.cancel_p2p_trade(%s, %s)", (alice, trade["trade_id"]))
    assert web.execute("select * from api.closure_check(%s)", (alice,)).fetchall() == []

    # 4. allowed at zero, through the form: password again, and the 2FA code (turned on now)
    other = app.test_client()  # a second session of alice, opened before the closure
    from tests.conftest import Forms
    Forms(other).post("/login", {"email": "alice@example.com", "password": DEMO_PASSWORD})
    assert other.get("/wallet").status_code == 200
    enable_totp(owner, alice)
    page = client.get("/account/close").get_data(as_text=True)
    assert 'data-testid="can-close"' in page and 'name="totp_code"' in page
    response = forms.post("/account/close", {"password": "wrong-password-1", "confirm": "y"})
    assert response.status_code == 422 and "Senha incorreta." in response.get_data(as_text=True)
    response = forms.post("/account/close", {"password": DEMO_PASSWORD, "confirm": "y"})
    assert response.status_code == 422 and "Informe o código de 6 dígitos" in response.get_data(as_text=True)
    response = forms.post("/account/close", {"password": DEMO_PASSWORD, "totp_code": totp_code(owner, alice),
                                             "reason": "não uso mais", "confirm": "y"})
    assert response.status_code == 302 and response.headers["Location"].endswith("/account/closed")
    assert one(owner, "select status from core.users where id = %s", alice)["status"] == "closed"
    closure = one(owner, "select * from core.account_closures where user_id = %s", alice)
    assert closure["reason"] == "não uso mais" and closure["anonymised_at"] is None

    # a closed account: logged out everywhere, login refused with a clear message, nothing moves in
    assert client.get("/wallet").status_code == 302
    assert other.get("/wallet").headers["Location"].startswith("/login")
    response = forms.post("/login", {"email": "alice@example.com", "password": DEMO_PASSWORD})
    assert response.status_code == 403 and "Esta conta foi encerrada" in response.get_data(as_text=True)
    response = forms.post("/login", {"email": "alice@example.com", "password": "not-her-password"})
    assert response.status_code == 401 and "encerrada" not in response.get_data(as_text=True)
    fails(web, "BSN01", "select * from api.transfer(%s, 'alice@example.com', 'BRL', 1.00, %s)", bob, key())
    fails(web, "BSA03", "select * from api.create_deposit(%s, 50.00, 'mercadopago', %s)", alice, key())
    fails(web, "BSA03", "select api.close_account(%s)", alice)
    # the auditor sees it
    with psycopg.connect(role_url(owner.info.dsn, "exchange_auditor"), row_factory=dict_row) as auditor:
        row = auditor.execute("select * from reporting.account_closures where user_id = %s", (alice,)).fetchone()
    assert row["state"] == "retained" and not row["holds_balance"] and row["ledger_entries"] > 0
    books(owner)


def test_operators_and_frozen_accounts_cannot_close_themselves(owner, web, demo):
    fails(web, "BSA01", "select api.close_account(%s)", demo["admin@example.com"])
    owner.execute("update core.users set status = 'frozen' where id = %s", (demo["bob@example.com"],))
    fails(web, "BSA02", "select api.close_account(%s)", demo["bob@example.com"])


def kyc_files(app, owner, user_id, tmp_path) -> list:
    """A reviewed KYC submission with two documents on disk, as the KYC page stores them."""
    app.config["UPLOAD_DIR"] = str(tmp_path)
    folder = tmp_path / str(user_id)
    folder.mkdir(parents=True)
    sub = one(owner, "insert into core.kyc_submissions (user_id, status, reviewed_at, review_reason) "
                     "values (%s, 'rejected', now(), 'selfie de Alice Souza escura') returning id", user_id)["id"]
    paths = []
    for kind in ("document", "selfie"):
        name = f"{user_id}/{kind}{uuid.uuid4().hex}.png"
        (tmp_path / name).write_bytes(b"\x89PNG\r\n\x1a\nfake")
        owner.execute("insert into core.kyc_documents (submission_id, user_id, kind, storage_path, sha256, content_type, "
                      "size_bytes) values (%s, %s, %s, %s, %s, 'image/png', 12)", (sub, user_id, kind, name, "a" * 64))
        paths.append(tmp_path / name)
    return paths


def test_anonymisation_after_the_retention_period_keeps_the_books(app, owner, web, world, tmp_path):
    from webapp.privacy import tasks
    alice, bob, admin = world["alice"], world["bob"], world["admin"]
    files = kyc_files(app, owner, alice, tmp_path)
    proof_dir = tmp_path / "p2p"
    proof_dir.mkdir()
    proof = "P" * 24 + ".png"
    (proof_dir / proof).write_bytes(b"\x89PNG\r\n\x1a\nproof")
    web.execute("select * from api.add_p2p_proof(%s, %s, %s, 'comprovante-alice-souza.png', 'image/png', 14, %s)",
                (alice, world["pix_trade"], proof, "b" * 64))
    web.execute("select * from api.add_withdrawal_destination(%s, 'PHONE', '+5511988887777', 'meu celular')", (alice,))
    web.execute("select api.cancel_p2p_trade(%s, %s)", (alice, world["pix_trade"]))
    owner.execute("update core.pix_charges set status = 'EXPIRED', resolved_at = now() where reference = %s",
                  (world["deposits"][alice],))
    zero_out(owner, admin, alice)
    web.execute("select api.close_account(%s, null, '', '198.51.100.4')", (alice,))
    # a mail still queued for her, and a device she logged in from
    owner.execute("insert into core.mail_outbox (user_id, recipient, kind) values (%s, 'alice@example.com', 'new_device')",
                  (alice,))
    owner.execute("insert into core.user_sessions (user_id, token_hash, ip, user_agent, browser) "
                  "values (%s, repeat('a', 64), '203.0.113.9', 'Mozilla/5.0 Firefox/130', 'Firefox / Linux')", (alice,))
    books_before = owner.execute(
        "select p.entry_id, p.leg, p.amount, p.balance_after from core.postings p join core.accounts a "
        "on a.id = p.account_id where a.user_id = %s order by 1, 2", (alice,)).fetchall()
    entries_before = one(owner, "select count(*) as n from core.entries")["n"]

    with app.app_context():
        assert tasks.anonymise_due_accounts(app) == {}          # closed just now: retained
    assert one(owner, "select email from core.users where id = %s", alice)["email"] == "alice@example.com"
    # five years (and a day) go by: the closure date is set back, as the owner
    owner.execute("update core.account_closures set closed_at = now() - interval '5 years 1 day' where user_id = %s",
                  (alice,))
    with app.app_context():
        assert tasks.anonymise_due_accounts(app) == {"anonymised": 1}
        assert tasks.delete_files(app) == {"deleted": 3, "failed": 0}
        assert tasks.delete_files(app) == {"deleted": 0, "failed": 0}
        assert tasks.anonymise_due_accounts(app) == {}           # once

    user = one(owner, "select * from core.users where id = %s", alice)
    assert user["email"] == f"encerrada-{alice}@anonimizada.invalid" and user["display_name"] == "Conta encerrada"
    assert user["status"] == "closed" and not user["password_hash"].startswith(("scrypt", "pbkdf2"))
    assert one(owner, "select count(*) as n from core.kyc_profiles where user_id = %s", alice)["n"] == 0
    assert one(owner, "select count(*) as n from core.kyc_documents where user_id = %s", alice)["n"] == 0
    assert not any(path.exists() for path in files) and not (proof_dir / proof).exists()
    assert one(owner, "select count(*) as n from core.file_deletions where user_id = %s and deleted_at is not null",
               alice)["n"] == 3
    assert one(owner, "select review_reason from core.kyc_submissions where user_id = %s", alice)["review_reason"] == "anonimizado"
    assert {r["ip"] for r in owner.execute("select ip from core.login_events where user_id = %s", (alice,))} == {None}
    assert {r["email"] for r in owner.execute("select email from core.login_events where user_id = %s", (alice,))} == \
        {user["email"]}
    assert [r["body"] for r in owner.execute("select body from core.p2p_messages where user_id = %s", (alice,))] == \
        ["[mensagem removida]"]
    assert [r["body"] for r in owner.execute("select body from core.p2p_messages where user_id = %s", (bob,))] == \
        ["segredo do bob: 99999"]                                # the other party's words are theirs
    assert one(owner, "select original_name from core.p2p_proofs where user_id = %s", alice)["original_name"] == "anonimizado"
    assert one(owner, "select pix_key from core.withdrawal_destinations where user_id = %s", alice)["pix_key"] == "anonimizado"
    assert one(owner, "select ip from core.account_closures where user_id = %s", alice)["ip"] is None
    mails = owner.execute("select recipient, status from core.mail_outbox where user_id = %s", (alice,)).fetchall()
    assert {m["recipient"] for m in mails} == {user["email"]} and "pending" not in {m["status"] for m in mails}
    assert "cancelled" in {m["status"] for m in mails}                # the queued one is never sent
    assert [(r["ip"], r["browser"]) for r in owner.execute(
        "select ip, browser from core.user_sessions where user_id = %s", (alice,))] == [(None, "")]
    everything = json.dumps(one(owner, "select api.export_my_data(%s) as d", alice)["d"], default=str)
    for personal in ("alice@example.com", "Alice Souza", ALICE_CPF, "203.0.113.7", "198.51.100.4", "988887777",
                     "Oi Bob", "Rua das Flores", "1990-05-17"):
        assert personal not in everything, personal

    # the books: every posting of hers exactly as before, no entry added, all invariants
    books_after = owner.execute(
        "select p.entry_id, p.leg, p.amount, p.balance_after from core.postings p join core.accounts a "
        "on a.id = p.account_id where a.user_id = %s order by 1, 2", (alice,)).fetchall()
    assert books_after == books_before and len(books_after) > 10
    assert one(owner, "select count(*) as n from core.entries")["n"] == entries_before
    with psycopg.connect(role_url(owner.info.dsn, "exchange_auditor"), row_factory=dict_row) as auditor:
        row = auditor.execute("select * from reporting.account_closures where user_id = %s", (alice,)).fetchone()
    assert row["state"] == "anonymised" and row["files_deleted"] == 3 and row["files_pending"] == 0
    books(owner)


def test_money_arriving_after_closure_blocks_anonymisation(app, owner, web, demo):
    bob, admin = demo["bob@example.com"], demo["admin@example.com"]
    zero_out(owner, admin, bob)
    web.execute("select api.close_account(%s)", (bob,))
    adjust(owner, admin, bob, "BTC", "0.001")                    # e.g. an on-chain deposit to his old address
    owner.execute("update core.account_closures set closed_at = now() - interval '6 years' where user_id = %s", (bob,))
    rows = owner.execute("select * from admin.anonymise_due_accounts()").fetchall()
    assert [(r["user_id"], r["outcome"]) for r in rows] == [(bob, "blocked")]
    closure = one(owner, "select * from core.account_closures where user_id = %s", bob)
    assert closure["anonymised_at"] is None and "BTC" in closure["anonymise_blocked"]
    assert one(owner, "select email from core.users where id = %s", bob)["email"] == "bob@example.com"
    # an operator reopens it (admin.set_user_status): it is not anonymised; closed again, the period restarts
    owner.execute("select admin.set_user_status(%s, %s, 'active', 'cliente voltou')", (admin, bob))
    assert [r["outcome"] for r in owner.execute("select * from admin.anonymise_due_accounts()")] == ["reopened"]
    zero_out(owner, admin, bob)
    web.execute("select api.close_account(%s)", (bob,))
    assert owner.execute("select * from admin.anonymise_due_accounts()").fetchall() == []
    assert one(owner, "select closed_at > now() - interval '1 minute' as fresh from core.account_closures "
                      "where user_id = %s", bob)["fresh"]
    books(owner)


def test_policy_and_terms_pages_in_both_languages(client, forms):
    for path, pt, en in (("/privacidade", "Política de privacidade", "Privacy policy"),
                         ("/termos", "Termos de uso", "Terms of use")):
        page = client.get(path).get_data(as_text=True)
        assert pt in page and "dpo@bs-market.com.br" in page
        assert 'href="/privacidade"' in page and 'href="/termos"' in page   # the footer
    page = client.get("/privacidade").get_data(as_text=True)
    for words in ("art. 7º", "art. 18", "5 anos", "Lei 9.613/98", "Baixar meus dados", "ANPD"):
        assert words in page
    forms.post("/language/en", {}, form_url="/privacidade")
    page = client.get("/privacidade").get_data(as_text=True)
    assert "Privacy policy" in page and "Download my data" in page and "Política de privacidade" not in page
    assert "Terms of use" in client.get("/termos").get_data(as_text=True)
