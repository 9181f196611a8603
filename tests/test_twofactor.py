"""TOTP 2FA: enrolment, login second step, replay refused, recovery codes once, disabling,
password change, the helper for withdrawals, rate limits and cookie/header settings."""
from __future__ import annotations

import re
import time

import pyotp
import pytest

from tests.conftest import DEMO_PASSWORD
from webapp.auth import twofactor
from webapp.errors import DomainError

ALICE = "alice@example.com"


def code_at(secret: str, steps_from_now: int = 0) -> str:
    return pyotp.TOTP(secret).generate_otp(int(time.time() // 30) + steps_from_now)


def enrol(client, forms) -> tuple[str, list[str]]:
    page = client.get("/account/2fa").get_data(as_text=True)
    secret = re.search(r'data-testid="totp-secret">([A-Z2-7]+)<', page).group(1)
    done = forms.post("/account/2fa", {"totp_code": code_at(secret)})
    assert done.status_code == 200, done.get_data(as_text=True)[:1500]
    codes = re.findall(r'<li class="col">([0-9a-f]{5}-[0-9a-f]{5})</li>', done.get_data(as_text=True))
    assert len(codes) == 10
    return secret, codes


def logout(forms):
    assert forms.post("/logout", {}, form_url="/wallet").status_code == 302


def password_step(forms, email=ALICE, password=DEMO_PASSWORD):
    response = forms.post("/login", {"email": email, "password": password})
    assert response.status_code == 302 and response.headers["Location"].endswith("/login/2fa")


def test_enrolment_wrong_code_then_right_code(client, forms, demo, login, owner):
    login(ALICE)
    assert "Desativada" in client.get("/account/security").get_data(as_text=True)
    page = client.get("/account/2fa").get_data(as_text=True)
    assert 'src="data:image/svg+xml' in page  # QR code generated locally, inline
    secret = re.search(r'data-testid="totp-secret">([A-Z2-7]+)<', page).group(1)
    # reloading the page keeps the secret already scanned
    assert secret in client.get("/account/2fa").get_data(as_text=True)

    wrong = forms.post("/account/2fa", {"totp_code": "000000" if code_at(secret) != "000000" else "111111"})
    assert wrong.status_code == 422 and "Código incorreto" in wrong.get_data(as_text=True)
    assert owner.execute("select confirmed_at from core.user_totp where user_id = (select id from core.users where email = 'alice@example.com')").fetchone()["confirmed_at"] is None

    done = forms.post("/account/2fa", {"totp_code": code_at(secret)})
    assert done.status_code == 200
    codes = re.findall(r'<li class="col">([0-9a-f]{5}-[0-9a-f]{5})</li>', done.get_data(as_text=True))
    assert len(set(codes)) == 10
    stored = [r["code_hash"] for r in owner.execute("select code_hash from core.recovery_codes")]
    assert len(stored) == 10 and not set(stored) & {c for code in codes for c in (code, code.replace("-", ""))}
    assert owner.execute("select confirmed_at is not null as on from core.user_totp where user_id = (select id from core.users where email = 'alice@example.com')").fetchone()["on"]

    security = client.get("/account/security").get_data(as_text=True)
    assert "Ativa" in security and "Verificação em duas etapas ativada" in security
    assert client.get("/account/2fa").status_code == 302  # already on
    assert owner.execute("select count(*) as n from core.notifications where kind = 'security.twofactor_enabled'"
                         ).fetchone()["n"] == 1


def test_login_asks_for_the_code_and_refuses_a_replayed_one(client, forms, demo, login):
    login(ALICE)
    secret, _ = enrol(client, forms)
    used_at_enrolment = code_at(secret)
    logout(forms)

    password_step(forms)
    assert client.get("/wallet").status_code == 302  # not logged in yet
    replay = forms.post("/login/2fa", {"totp_code": used_at_enrolment})
    assert replay.status_code == 422 and "já foi usado" in replay.get_data(as_text=True)
    wrong = forms.post("/login/2fa", {"totp_code": "12345x"})
    assert wrong.status_code == 422
    next_code = code_at(secret, 1)
    ok = forms.post("/login/2fa", {"totp_code": next_code})
    assert ok.status_code == 302 and ok.headers["Location"].endswith("/wallet")
    assert client.get("/wallet").status_code == 200

    logout(forms)
    password_step(forms)
    again = forms.post("/login/2fa", {"totp_code": next_code})
    assert again.status_code == 422 and "já foi usado" in again.get_data(as_text=True)
    events = client.get("/account/security")
    assert events.status_code == 302  # still not logged in


def test_recovery_code_works_once(client, forms, demo, login, owner):
    login(ALICE)
    _, codes = enrol(client, forms)
    logout(forms)

    password_step(forms)
    ok = forms.post("/login/2fa", {"totp_code": codes[3].upper()})
    assert ok.status_code == 302
    page = client.get("/account/security").get_data(as_text=True)
    assert "Código de recuperação usado" in page
    assert owner.execute("select count(*) as n from core.recovery_codes where used_at is null").fetchone()["n"] == 9
    logout(forms)

    password_step(forms)
    again = forms.post("/login/2fa", {"totp_code": codes[3]})
    assert again.status_code == 422 and "já usado" in again.get_data(as_text=True)


def test_pending_login_is_dropped_after_five_wrong_codes(client, forms, demo, login, owner):
    login(ALICE)
    enrol(client, forms)
    logout(forms)
    password_step(forms)
    for _ in range(4):
        assert forms.post("/login/2fa", {"totp_code": "99999a"}).status_code == 422
    last = forms.post("/login/2fa", {"totp_code": "99999a"})
    assert last.status_code == 302 and last.headers["Location"].endswith("/login")
    assert client.get("/login/2fa").status_code == 302
    assert owner.execute("select count(*) as n from core.security_events where kind = 'twofactor_failed'"
                         ).fetchone()["n"] == 5


def test_disabling_needs_a_current_code(client, forms, demo, login, owner):
    login(ALICE)
    secret, _ = enrol(client, forms)
    missing = forms.post("/account/2fa/disable", {"totp_code": ""}, form_url="/account/security")
    assert missing.status_code == 422
    wrong = forms.post("/account/2fa/disable", {"totp_code": "000001" if code_at(secret, 1) != "000001" else "000002"},
                       form_url="/account/security")
    assert wrong.status_code == 422
    ok = forms.post("/account/2fa/disable", {"totp_code": code_at(secret, 1)}, form_url="/account/security")
    assert ok.status_code == 302
    assert owner.execute("select count(*) as n from core.user_totp where user_id = (select id from core.users where email = 'alice@example.com')").fetchone()["n"] == 0
    assert owner.execute("select count(*) as n from core.recovery_codes").fetchone()["n"] == 0
    assert "Verificação em duas etapas desativada" in client.get("/account/security").get_data(as_text=True)
    logout(forms)
    login(ALICE)  # no second step any more


def test_password_change_needs_current_password_and_code(client, forms, demo, login, owner):
    login(ALICE)
    secret, _ = enrol(client, forms)
    new = "outra-senha-forte-77"
    bad_current = forms.post("/account/password", {"current_password": "nope-nope-nope", "new_password": new,
                                                   "confirm": new, "totp_code": code_at(secret, 1)})
    assert bad_current.status_code == 422 and "Senha atual incorreta" in bad_current.get_data(as_text=True)
    weak = forms.post("/account/password", {"current_password": DEMO_PASSWORD, "new_password": "123",
                                            "confirm": "123", "totp_code": code_at(secret, 1)})
    assert weak.status_code == 422 and "pelo menos 10 caracteres" in weak.get_data(as_text=True)
    no_code = forms.post("/account/password", {"current_password": DEMO_PASSWORD, "new_password": new,
                                               "confirm": new, "totp_code": ""})
    assert no_code.status_code == 422 and "Informe o código" in no_code.get_data(as_text=True)
    ok = forms.post("/account/password", {"current_password": DEMO_PASSWORD, "new_password": new,
                                          "confirm": new, "totp_code": code_at(secret, 1)})
    assert ok.status_code == 302
    assert "Senha alterada" in client.get("/account/security").get_data(as_text=True)
    logout(forms)
    assert forms.post("/login", {"email": ALICE, "password": DEMO_PASSWORD}).status_code == 401
    password_step(forms, password=new)


def test_password_change_without_2fa(client, forms, demo, login):
    login("bob@example.com")
    page = client.get("/account/password").get_data(as_text=True)
    assert 'name="totp_code"' not in page
    new = "mais-uma-senha-boa-9"
    assert forms.post("/account/password", {"current_password": DEMO_PASSWORD, "new_password": new,
                                            "confirm": new}).status_code == 302
    logout(forms)
    login("bob@example.com", new)


def test_require_code_helper_for_withdrawals(app, client, forms, demo, login):
    alice = demo[ALICE]
    with app.test_request_context():
        assert twofactor.require_code(None, user_id=alice) is None  # 2FA off, not required
        with pytest.raises(DomainError) as exc:
            twofactor.require_code("123456", user_id=alice, required=True)
        assert exc.value.code == "BSS01" and exc.value.field == "totp_code"

    login(ALICE)
    secret, codes = enrol(client, forms)
    with app.test_request_context():
        for bad in (None, "", "000000" if code_at(secret, 1) != "000000" else "000009", code_at(secret)):
            with pytest.raises(DomainError) as exc:
                twofactor.require_code(bad, user_id=alice, required=True, context="withdrawal")
            assert exc.value.code == "BSV01" and exc.value.field == "totp_code" and exc.value.status == 422
        assert twofactor.require_code(code_at(secret, 1), user_id=alice, required=True) is None
        with pytest.raises(DomainError):  # replay
            twofactor.require_code(code_at(secret, 1), user_id=alice)
        assert twofactor.require_code(codes[0], user_id=alice) is None
        with pytest.raises(DomainError):
            twofactor.require_code(codes[0], user_id=alice)
        with pytest.raises(DomainError):
            twofactor.require_code(codes[1], user_id=alice, allow_recovery=False)


def test_twofactor_verification_is_rate_limited(client, forms, demo, login):
    login(ALICE)
    statuses = [forms.post("/account/2fa", {"totp_code": "abcdef"}).status_code for _ in range(11)]
    assert statuses[:10] == [422] * 10 and statuses[10] == 429


def test_registration_is_rate_limited(client, forms):
    statuses = [forms.post("/register", {"display_name": "X", "email": f"x{i}@example.com", "password": "curta",
                                         "confirm": "curta"}).status_code for i in range(11)]
    assert statuses[:10] == [422] * 10 and statuses[10] == 429


def test_session_cookie_and_security_headers(client, forms, demo, monkeypatch):
    response = forms.post("/login", {"email": ALICE, "password": DEMO_PASSWORD})
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    headers = client.get("/login").headers
    assert "script-src 'self'" in headers["Content-Security-Policy"] and "unsafe-inline" not in headers["Content-Security-Policy"]
    assert headers["X-Frame-Options"] == "DENY" and headers["X-Content-Type-Options"] == "nosniff"
    from webapp.config import from_environment
    monkeypatch.setenv("APP_URL", "https://bs-market.example")
    assert from_environment()["SESSION_COOKIE_SECURE"] is True
    monkeypatch.setenv("APP_URL", "http://127.0.0.1:8000")
    assert from_environment()["SESSION_COOKIE_SECURE"] is False


def test_a_replayed_cookie_gets_no_extra_code_guesses(client, forms, demo, login, owner):
    """The count of wrong codes at login lives in the database, not in the session cookie."""
    login(ALICE)
    secret, _ = enrol(client, forms)
    logout(forms)
    password_step(forms)
    cookie = client.get_cookie("session").value             # the pending login, before any guess
    wrong = "000000" if code_at(secret) != "000000" else "111111"
    for _ in range(4):
        client.set_cookie("session", cookie)                 # replay the same cookie every time
        assert forms.post("/login/2fa", {"totp_code": wrong}).status_code == 422
    client.set_cookie("session", cookie)
    locked = forms.post("/login/2fa", {"totp_code": wrong})
    assert locked.status_code == 302 and locked.headers["Location"].endswith("/login")
    # locked: not even the right code opens it now, whatever cookie is replayed
    client.set_cookie("session", cookie)
    assert forms.post("/login/2fa", {"totp_code": code_at(secret)}).status_code in (302, 422)
    assert "Sair" not in client.get("/wallet", follow_redirects=True).get_data(as_text=True)
    row = owner.execute("select locked_until from core.user_totp where user_id = (select id from core.users "
                        "where email = %s)", (ALICE,)).fetchone()
    assert row["locked_until"] is not None
