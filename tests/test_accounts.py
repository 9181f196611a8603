"""Issue 14, accounts: real mail (outbox → worker → SMTP sink), e-mail verification, password reset,
lost-2FA recovery and the anti-phishing code. Every mail is read from a real aiosmtpd sink
(sandbox/mail.py) and its link followed through the app. Sessions: tests/test_sessions.py."""
from __future__ import annotations

import hashlib
import re
from urllib.parse import urlsplit

import psycopg
import pytest
from werkzeug.security import generate_password_hash

from tests.conftest import DEMO_PASSWORD, Forms, enable_totp, totp_code
from sandbox.mail import InboxServer, links_of, text_of

CARLA = {"display_name": "Carla Dias", "email": "carla@example.com", "password": "um-cavalo-azul-42",
         "confirm": "um-cavalo-azul-42"}
CSRF_VALUE = re.compile(r'value="[^"]{40,}"')


def sqlstate(conn, query, params=()):
    try:
        conn.execute(query, params)
    except psycopg.Error as exc:
        return exc.sqlstate
    return None


def mail_to(sink, address, subject_part):
    return sink.wait_for(lambda m: m["To"] == address and subject_part in m["Subject"])


def link_path(msg, marker: str) -> str:
    link = next(url for url in links_of(msg) if marker in url)
    parts = urlsplit(link)
    return parts.path


def token_of(path: str) -> str:
    return path.rsplit("/", 1)[1]


def register_carla(forms, mail_sink):
    response = forms.post("/register", CARLA)
    assert response.status_code == 302
    assert mail_sink.deliver() == 1
    return mail_to(mail_sink, "carla@example.com", "Confirme seu e-mail")


# ---------------------------------------------------------------------------
# Mail and e-mail verification
# ---------------------------------------------------------------------------

def test_register_mails_a_verification_link_that_unlocks_money(client, forms, owner, mail_sink):
    msg = register_carla(forms, mail_sink)
    user = owner.execute("select id, email_verified_at from core.users where email = 'carla@example.com'").fetchone()
    assert user["email_verified_at"] is None
    # the banner, and the database refuses money while unverified (the web shows its message, 403)
    page = client.get("/wallet").get_data(as_text=True)
    assert 'data-testid="verify-banner"' in page
    refused = forms.post("/wallet", {"recipient_email": "bob@example.com", "currency": "BRL", "amount": "1,00"})
    assert refused.status_code == 422 and "Confirme seu e-mail" in refused.get_data(as_text=True)

    # a real message: Message-ID from the outbox row, the anti-phishing tip on top, Portuguese then English
    mail = owner.execute("select * from core.mail_outbox where user_id = %s", (user["id"],)).fetchone()
    assert mail["status"] == "sent" and mail["sent_at"] is not None and mail["attempts"] == 1
    assert msg["Message-ID"].startswith(f"<mail-{mail['id']}@")
    text = text_of(msg)
    assert text.splitlines()[0].startswith("Dica: defina um código anti-phishing")
    assert "Olá, Carla Dias." in text and "-- English --" in text and "Confirm that carla@example.com" in text
    path = link_path(msg, "/account/verify/")
    raw = token_of(path)
    # only the sha256 of the token is stored; the raw token is nowhere in the database
    token = owner.execute("select * from core.account_tokens where mail_id = %s", (mail["id"],)).fetchone()
    assert token["token_hash"] == hashlib.sha256(raw.encode()).hexdigest() and token["expires_at"] > token["issued_at"]
    dump = owner.execute("select row_to_json(m)::text || row_to_json(t)::text as s from core.mail_outbox m "
                         "join core.account_tokens t on t.mail_id = m.id").fetchone()["s"]
    assert raw not in dump

    followed = client.get(path)
    assert followed.status_code == 302 and followed.headers["Location"].endswith("/wallet")
    assert owner.execute("select email_verified_at from core.users where id = %s", (user["id"],)).fetchone()["email_verified_at"]
    assert 'data-testid="verify-banner"' not in client.get("/wallet").get_data(as_text=True)
    # single use
    again = client.get(path)
    assert again.status_code == 409 and "já foi usado" in again.get_data(as_text=True)
    # the money path now reaches its own checks (no BSE01): not enough balance
    after = forms.post("/wallet", {"recipient_email": "bob@example.com", "currency": "BRL", "amount": "1,00"})
    assert "Confirme seu e-mail" not in after.get_data(as_text=True)


def test_forged_expired_and_replaced_links_are_refused(client, forms, owner, mail_sink):
    first = register_carla(forms, mail_sink)
    first_path = link_path(first, "/account/verify/")
    assert client.get("/account/verify/" + "A" * 43).status_code == 400                     # forged
    assert client.get("/account/verify/" + token_of(first_path)[:-1] + "x").status_code == 400   # tampered
    assert client.get("/account/verify/" + "x" * 300).status_code == 400                    # absurd: never reaches SQL
    owner.execute("update core.account_tokens set expires_at = now() - interval '1 second' where user_id = "
                  "(select id from core.users where email = 'carla@example.com')")
    expired = client.get(first_path)
    assert expired.status_code == 410 and "expirou" in expired.get_data(as_text=True)

    # a resend replaces the link (rate-limited: the first one is too soon)
    owner.execute("update core.settings set value = '60' where name = 'verification_resend_seconds'")
    too_soon = forms.post("/account/email/resend", {}, form_url="/account/security", follow_redirects=True)
    assert "Aguarde alguns minutos" in too_soon.get_data(as_text=True)
    owner.execute("update core.settings set value = '0' where name = 'verification_resend_seconds'")
    forms.post("/account/email/resend", {}, form_url="/account/security")
    assert mail_sink.deliver() == 1
    second = [m for m in mail_sink.messages() if "Confirme" in m["Subject"]][-1]
    second_path = link_path(second, "/account/verify/")
    assert second_path != first_path
    owner.execute("update core.account_tokens set expires_at = now() + interval '1 hour' where token_hash = %s",
                  (hashlib.sha256(token_of(first_path).encode()).hexdigest(),))
    replaced = client.get(first_path)
    assert replaced.status_code == 409 and "substituído" in replaced.get_data(as_text=True)
    assert client.get(second_path).status_code == 302


def test_unverified_customers_are_refused_every_money_path_in_sql(owner, web, demo, priced):
    user = owner.execute("select api.register_user('eve@example.com', %s, 'Eve') as id", ("x" * 40,)).fetchone()["id"]
    owner.execute("update core.users set kyc_level = 2 where id = %s", (user,))
    owner.execute("select * from admin.adjust_balance(%s, %s, 'BRL', 100, 'Saldo de teste', 'eve-1')",
                  (demo["admin@example.com"], user))
    offer = owner.execute("select id from core.p2p_offers limit 1").fetchone()
    calls = [
        ("select * from api.create_deposit(%s, 50, 'mercadopago', 'k1')", (user,)),
        ("select * from api.transfer(%s, 'bob@example.com', 'BRL', 1, 'k2')", (user,)),
        ("select * from api.create_withdrawal(%s, 20, 'EMAIL', 'eve@example.com', 'k3')", (user,)),
        ("select * from api.execute_quote(%s, 1, 'k4')", (user,)),
        ("select * from api.create_p2p_offer(%s, 'SELL', 'USDT', 'fixed', 10, 10, 100, array['PIX'], 'k5', 5.00)", (user,)),
        ("select * from api.open_p2p_trade(%s, %s, 'PIX', 'k6', 10)", (user, offer["id"] if offer else 1)),
        ("select * from api.request_crypto_deposit_address(%s, 'BTC', 'BTC')", (user,)),
        ("select * from api.create_crypto_withdrawal(%s, 'BTC', 1, 0.001, 'k7')", (user,)),
    ]
    for query, params in calls:
        assert sqlstate(web, query, params) == "BSE01", query
    # looking around is fine
    assert web.execute("select * from api.get_wallet(%s)", (user,)).fetchall()
    owner.execute("select core.mark_email_verified(%s)", (user,))
    assert sqlstate(web, "select * from api.transfer(%s, 'bob@example.com', 'BRL', 1, 'k2')", (user,)) is None


def test_email_change_goes_to_the_new_address_and_warns_the_old(client, forms, demo, login, owner, mail_sink):
    login("alice@example.com")
    wrong = forms.post("/account/email", {"new_email": "alice.nova@example.com", "current_password": "errada-123"})
    assert wrong.status_code == 422 and "Senha atual incorreta" in wrong.get_data(as_text=True)
    taken = forms.post("/account/email", {"new_email": "bob@example.com", "current_password": DEMO_PASSWORD})
    assert taken.status_code == 422 and "já está cadastrado" in taken.get_data(as_text=True)
    ok = forms.post("/account/email", {"new_email": "Alice.Nova@example.com", "current_password": DEMO_PASSWORD})
    assert ok.status_code == 302
    assert 'data-testid="pending-email"' in client.get("/account/security").get_data(as_text=True)
    assert mail_sink.deliver() == 2
    notice = mail_to(mail_sink, "alice@example.com", "Troca do e-mail")
    assert "alice.nova@example.com" in text_of(notice)
    link = mail_to(mail_sink, "alice.nova@example.com", "Confirme seu e-mail")
    assert client.get(link_path(link, "/account/verify/")).status_code == 302
    assert owner.execute("select email from core.users where id = %s", (demo["alice@example.com"],)).fetchone()["email"] \
        == "alice.nova@example.com"


# ---------------------------------------------------------------------------
# Password reset
# ---------------------------------------------------------------------------

def test_reset_answers_the_same_for_known_and_unknown_addresses(client, forms, demo, owner, mail_sink):
    known = forms.post("/password/forgot", {"email": "alice@example.com"})
    unknown = forms.post("/password/forgot", {"email": "ninguem@example.com"})
    assert known.status_code == unknown.status_code == 200
    same = [CSRF_VALUE.sub("", r.get_data(as_text=True)) for r in (known, unknown)]
    assert same[0] == same[1] and 'data-testid="reset-sent"' in same[0]
    assert mail_sink.deliver() == 1
    assert [m["To"] for m in mail_sink.messages()] == ["alice@example.com"]


def test_reset_ends_every_session_pauses_exits_and_the_new_password_works(app, client, forms, demo, login, owner,
                                                                         web, mail_sink):
    alice = demo["alice@example.com"]
    other = app.test_client()
    Forms(other).post("/login", {"email": "alice@example.com", "password": DEMO_PASSWORD})
    assert other.get("/wallet").status_code == 200

    forms.post("/password/forgot", {"email": "alice@example.com"})
    mail_sink.deliver()
    msg = mail_to(mail_sink, "alice@example.com", "Redefinição de senha")
    path = link_path(msg, "/password/reset/")
    page = client.get(path)
    assert page.status_code == 200 and "alice@example.com" in page.get_data(as_text=True)
    weak = forms.post(path, {"password": "curta", "confirm": "curta"})
    assert weak.status_code == 422
    done = forms.post(path, {"password": "nova-senha-forte-77", "confirm": "nova-senha-forte-77"})
    assert done.status_code == 302 and done.headers["Location"].endswith("/login")
    # every session ended (the other browser's cookie now gets /login)
    assert other.get("/wallet").status_code == 302
    assert owner.execute("select count(*) as n from core.user_sessions where user_id = %s and ended_at is null",
                         (alice,)).fetchone()["n"] == 0
    assert owner.execute("select count(*) as n from core.user_sessions where user_id = %s and end_reason = 'password_reset'",
                         (alice,)).fetchone()["n"] == 1
    # single use
    assert client.get(path).status_code == 409
    # exits paused for 24 h (the exit-pause mechanism of sql/exits.sql)
    paused = owner.execute("select exits_paused_until - now() as left, exits_paused_reason from core.users where id = %s",
                           (alice,)).fetchone()
    assert paused["exits_paused_reason"] == "password_reset" and 23.9 < paused["left"].total_seconds() / 3600 <= 24
    with pytest.raises(psycopg.Error) as refused:
        web.execute("select * from api.transfer(%s, 'bob@example.com', 'BRL', 1, 'after-reset')", (alice,))
    assert refused.value.sqlstate == "BSA02" and "senha foi redefinida" in refused.value.diag.message_primary
    # old password no more, new one yes
    assert forms.post("/login", {"email": "alice@example.com", "password": DEMO_PASSWORD}).status_code == 401
    assert forms.post("/login", {"email": "alice@example.com", "password": "nova-senha-forte-77"}).status_code == 302


def test_expired_and_forged_reset_links(client, forms, demo, owner, mail_sink):
    forms.post("/password/forgot", {"email": "bob@example.com"})
    mail_sink.deliver()
    path = link_path(mail_to(mail_sink, "bob@example.com", "Redefinição"), "/password/reset/")
    assert client.get("/password/reset/" + "B" * 43).status_code == 400
    owner.execute("update core.account_tokens set expires_at = now() - interval '1 second' where purpose = 'password_reset'")
    expired = client.get(path)
    assert expired.status_code == 410 and 'data-testid="error-action"' in expired.get_data(as_text=True)
    posted = forms.post(path, {"password": "x" * 12, "confirm": "x" * 12}, form_url="/password/forgot")
    assert posted.status_code == 410


def test_reset_is_rate_limited_per_address_and_per_ip_with_a_page(app, forms, demo):
    statuses = [forms.post("/password/forgot", {"email": "alice@example.com"}).status_code for _ in range(6)]
    assert statuses == [200] * 5 + [429]
    page = forms.post("/password/forgot", {"email": "alice@example.com"})
    assert page.status_code == 429 and "Muitas tentativas" in page.get_data(as_text=True)
    # other addresses from the same IP: the IP's limit (10 an hour) comes next
    more = [forms.post("/password/forgot", {"email": f"x{i}@example.com"}).status_code for i in range(6)]
    assert more[:4] == [200] * 4 and more[-1] == 429


# ---------------------------------------------------------------------------
# Lost 2FA, the anti-phishing code
# ---------------------------------------------------------------------------

def test_lost_2fa_request_admin_approval_with_step_up_audit_and_48h_pause(app, client, forms, demo, login, owner,
                                                                         mail_sink):
    alice, admin = demo["alice@example.com"], demo["admin@example.com"]
    enable_totp(owner, alice, "KRSXG5CTMVRXEZLUKRSXG5CTMVRXEZLU")
    assert client.get("/login/2fa/recovery").status_code == 302   # not without the password first
    first = forms.post("/login", {"email": "alice@example.com", "password": DEMO_PASSWORD})
    assert first.headers["Location"].endswith("/login/2fa")
    assert 'data-testid="lost-2fa-link"' in client.get("/login/2fa").get_data(as_text=True)
    short = forms.post("/login/2fa/recovery", {"reason": "perdi"})
    assert short.status_code == 422
    sent = forms.post("/login/2fa/recovery", {"reason": "Meu celular foi roubado ontem e não tenho os códigos."})
    assert sent.status_code == 200 and 'data-testid="recovery-sent"' in sent.get_data(as_text=True)
    assert client.get("/wallet").status_code == 302   # still not logged in
    mail_sink.deliver()
    assert "Se não foi você" in text_of(mail_to(mail_sink, "alice@example.com", "Pedido de remoção"))
    request_id = owner.execute("select id from core.twofactor_recovery_requests where user_id = %s", (alice,)).fetchone()["id"]

    admin_client = app.test_client()
    admin_forms = Forms(admin_client)
    admin_forms.post("/login", {"email": "admin@example.com", "password": DEMO_PASSWORD})
    admin_forms.post("/login/2fa", {"totp_code": totp_code(owner, admin)})
    queue = admin_client.get("/admin/twofactor-recoveries").get_data(as_text=True)
    assert "52601815906" in queue and "Alice Souza" in queue and "Meu celular foi roubado" in queue
    url = f"/admin/twofactor-recoveries/{request_id}/approve"
    no_code = admin_forms.post(url, {"reason": "Identidade conferida por vídeo com o RG."},
                               form_url="/admin/twofactor-recoveries")
    assert no_code.status_code == 422
    assert owner.execute("select twofactor_on from core.users where id = %s", (alice,)).fetchone()["twofactor_on"]
    approved = admin_forms.post(url, {"reason": "Identidade conferida por vídeo com o RG.",
                                      "totp_code": totp_code(owner, admin)}, form_url="/admin/twofactor-recoveries")
    assert approved.status_code == 302
    row = owner.execute("select twofactor_on, exits_paused_until - now() as left, exits_paused_reason from core.users "
                        "where id = %s", (alice,)).fetchone()
    assert not row["twofactor_on"] and row["exits_paused_reason"] == "twofactor_recovered"
    assert 47.9 < row["left"].total_seconds() / 3600 <= 48
    audit = owner.execute("select * from core.admin_audit_log where action = 'approve_twofactor_recovery'").fetchone()
    assert (audit["admin_id"], audit["target_user_id"], audit["details"]["request_id"]) == (admin, alice, request_id)
    mail_sink.deliver()
    assert "pausados até" in text_of(mail_to(mail_sink, "alice@example.com", "removida"))
    # reviewed once only; now the password alone logs in
    assert admin_forms.post(url, {"reason": "de novo", "totp_code": totp_code(owner, admin)},
                            form_url="/admin/twofactor-recoveries").status_code == 409
    assert forms.post("/login", {"email": "alice@example.com", "password": DEMO_PASSWORD}).headers["Location"].endswith("/wallet")


def test_a_customer_without_kyc_cannot_be_approved_and_rejection_is_mailed(owner, demo, mail_sink, app):
    carla = owner.execute("select api.register_user('carla@example.com', %s, 'Carla') as id",
                          (generate_password_hash(DEMO_PASSWORD, method="pbkdf2:sha256:1000"),)).fetchone()["id"]
    enable_totp(owner, carla, "KRSXG5CTMVRXEZLUKRSXG5CTMVRXEZLU")
    admin = demo["admin@example.com"]
    rid = owner.execute("select api.request_twofactor_recovery(%s, 'Perdi o celular na viagem.') as id", (carla,)).fetchone()["id"]
    assert sqlstate(owner, "select api.request_twofactor_recovery(%s, 'Perdi o celular na viagem.')", (carla,)) == "BSS01"
    assert sqlstate(owner, "select admin.approve_twofactor_recovery(%s, %s, 'sem KYC')", (admin, rid)) == "BSS01"
    owner.execute("select admin.reject_twofactor_recovery(%s, %s, 'Sem identidade verificada.')", (admin, rid))
    assert owner.execute("select twofactor_on from core.users where id = %s", (carla,)).fetchone()["twofactor_on"]
    mail_sink.deliver()
    assert "Sem identidade verificada." in text_of(mail_to(mail_sink, "carla@example.com", "recusado"))


def test_anti_phishing_code_tops_every_mail_and_the_inbox_shows_it(app, client, forms, demo, login, owner, mail_sink):
    import requests
    login("alice@example.com")
    bad = forms.post("/account/anti-phishing", {"anti_phishing_code": "<b>"}, form_url="/account/security")
    assert bad.status_code == 422
    assert forms.post("/account/anti-phishing", {"anti_phishing_code": "girassol-42"},
                      form_url="/account/security").status_code == 302
    # an outbox mail (a reset link) and a notification's e-mail copy both carry it first
    forms.post("/password/forgot", {"email": "alice@example.com"})
    mail_sink.deliver()
    reset = mail_to(mail_sink, "alice@example.com", "Redefinição")
    assert text_of(reset).splitlines()[0] == "Código anti-phishing: girassol-42"
    assert "Anti-phishing code: girassol-42" in text_of(reset)
    owner.execute("select core.notify(%s, 'kyc.approved', 'Documentos aprovados.', '/kyc')", (demo["alice@example.com"],))
    from webapp.notifications.tasks import send_notification_emails
    with app.app_context():
        assert send_notification_emails(app) >= 1
    note = mail_to(mail_sink, "alice@example.com", "Verificação de identidade")
    assert text_of(note).splitlines()[0] == "Código anti-phishing: girassol-42" and note["Message-ID"].startswith("<notification-")
    # the sandbox inbox page: the list, one message with its link clickable
    inbox = InboxServer(mail_sink)
    try:
        listing = requests.get(inbox.url, timeout=5).text
        assert "Redefinição de senha" in listing
        index = next(i for i, m in enumerate(mail_sink.messages()) if "Redefinição" in m["Subject"])
        one = requests.get(f"{inbox.url}/{index}", timeout=5).text
        assert "Código anti-phishing: girassol-42" in one and '<a href="http' in one and "/password/reset/" in one
    finally:
        inbox.close()


def test_smtp_down_is_retried_with_back_off_then_delivered(app, forms, owner, mail_sink):
    from tests.conftest import free_port
    forms.post("/register", CARLA)
    good = app.config["SMTP_URL"]
    app.config["SMTP_URL"] = f"smtp://127.0.0.1:{free_port()}"   # nobody listens there
    assert mail_sink.deliver() == 0
    row = owner.execute("select * from core.mail_outbox where kind = 'verify_email'").fetchone()
    assert row["status"] == "pending" and row["attempts"] == 1 and row["last_error"] and row["next_try_at"] > row["created_at"]
    assert mail_sink.deliver() == 0          # not due yet: nothing claimed
    owner.execute("update core.mail_outbox set next_try_at = now()")
    app.config["SMTP_URL"] = good
    assert mail_sink.deliver() == 1
    row = owner.execute("select * from core.mail_outbox where kind = 'verify_email'").fetchone()
    assert row["status"] == "sent" and row["attempts"] == 2
    assert len(mail_sink.messages()) == 1
    # recording the outcome again changes nothing (idempotent by row id)
    assert owner.execute("select admin.record_mail_outcome(%s, false, 'late') as s", (row["id"],)).fetchone()["s"] == "sent"


def test_worker_functions_are_the_workers(owner):
    for fn in ("admin.claim_mail(integer)", "admin.issue_mail_token(bigint,text)",
               "admin.record_mail_outcome(bigint,boolean,text)"):
        assert not owner.execute("select has_function_privilege('exchange_app', %s, 'EXECUTE') as ok", (fn,)).fetchone()["ok"]
        assert owner.execute("select has_function_privilege('exchange_worker', %s, 'EXECUTE') as ok", (fn,)).fetchone()["ok"]
    assert not owner.execute("select has_function_privilege('exchange_app', 'core.mark_email_verified(bigint)', "
                             "'EXECUTE') as ok").fetchone()["ok"]


def test_each_refusal_has_its_code(owner, web, worker, demo):
    """BST01 unknown, BST02 expired, BST03 used/replaced, BSR01 too soon, BSU01 taken — by SQLSTATE."""
    alice = demo["alice@example.com"]
    web.execute("select api.request_password_reset('alice@example.com')")
    mail = owner.execute("select id from core.mail_outbox where kind = 'password_reset'").fetchone()["id"]
    raw = "t" * 43
    digest = hashlib.sha256(raw.encode()).hexdigest()
    worker.execute("select admin.issue_mail_token(%s, %s)", (mail, digest))
    assert sqlstate(web, "select api.get_password_reset(%s)", ("0" * 64,)) == "BST01"
    assert sqlstate(web, "select api.reset_password(%s, %s)", (digest, "short")) == "BSV01"
    owner.execute("update core.account_tokens set expires_at = now() - interval '1 s' where mail_id = %s", (mail,))
    assert sqlstate(web, "select api.get_password_reset(%s)", (digest,)) == "BST02"
    owner.execute("update core.account_tokens set expires_at = now() + interval '1 h' where mail_id = %s", (mail,))
    assert web.execute("select api.reset_password(%s, %s) as u", (digest, "h" * 40)).fetchone()["u"] == alice
    assert sqlstate(web, "select api.reset_password(%s, %s)", (digest, "h" * 40)) == "BST03"
    # a replaced link: the next request revokes it, and its unsent mail is cancelled when the worker gets to it
    web.execute("select api.request_password_reset('bob@example.com')")
    web.execute("select api.request_password_reset('bob@example.com')")
    first, second = owner.execute("select id from core.mail_outbox where kind = 'password_reset' and recipient = "
                                  "'bob@example.com' order by id").fetchall()
    assert owner.execute("select status from core.mail_outbox where id = %s", (first["id"],)).fetchone()["status"] == "cancelled"
    assert worker.execute("select admin.issue_mail_token(%s, %s) as e", (first["id"], "1" * 64)).fetchone()["e"] is None
    owner.execute("update core.settings set value = '3600' where name = 'verification_resend_seconds'")
    carla = web.execute("select api.register_user('carla@example.com', %s, 'Carla') as id", ("x" * 40,)).fetchone()["id"]
    assert sqlstate(web, "select api.resend_verification(%s)", (carla,)) == "BSR01"
    assert sqlstate(web, "select api.resend_verification(%s)", (alice,)) == "BSS01"
    assert sqlstate(web, "select api.request_email_change(%s, 'bob@example.com')", (alice,)) == "BSU01"
    assert sqlstate(web, "select api.set_anti_phishing_code(%s, 'abc')", (alice,)) == "BSV01"
    assert second  # (the newer link stays usable)
