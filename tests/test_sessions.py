"""Server-side sessions (issue 14): the cookie carries only a token, SQL decides whether it is still a
session. Ended sessions really are ended: the very same cookie, replayed, gets /login."""
from __future__ import annotations

import re

from tests.conftest import DEMO_PASSWORD, Forms, totp_code
from sandbox.mail import text_of

FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
CHROME_ANDROID = ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
                  "Chrome/126.0.0.0 Mobile Safari/537.36")


def browser(app, user_agent=FIREFOX):
    client = app.test_client()
    client.environ_base["HTTP_USER_AGENT"] = user_agent
    return client, Forms(client)


def log_in(app, email="alice@example.com", user_agent=FIREFOX, password=DEMO_PASSWORD):
    client, forms = browser(app, user_agent)
    response = forms.post("/login", {"email": email, "password": password})
    assert response.status_code == 302 and response.headers["Location"].endswith("/wallet"), response.headers
    return client, forms


def open_sessions(owner, user_id):
    return owner.execute("select * from core.user_sessions where user_id = %s and ended_at is null order by id",
                         (user_id,)).fetchall()


def test_the_cookie_holds_a_token_not_the_user_id_and_a_replayed_cookie_after_logout_gets_login(app, demo, owner):
    client, forms = log_in(app)
    cookie = client.get_cookie("session").value
    row = open_sessions(owner, demo["alice@example.com"])[0]
    assert row["browser"] == "Firefox / Linux" and row["ip"] == "127.0.0.1"
    assert forms.post("/logout", {}, form_url="/wallet").status_code == 302
    assert owner.execute("select end_reason from core.user_sessions where id = %s", (row["id"],)).fetchone()["end_reason"] == "logout"
    # the old cookie, replayed in another browser: the session is over
    thief = app.test_client()
    thief.set_cookie("session", cookie)
    replay = thief.get("/wallet")
    assert replay.status_code == 302 and "/login" in replay.headers["Location"]


def test_security_page_lists_devices_and_end_all_others_works(app, demo, owner):
    alice = demo["alice@example.com"]
    phone, _ = log_in(app, user_agent=CHROME_ANDROID)
    laptop, laptop_forms = log_in(app)
    page = laptop.get("/account/security").get_data(as_text=True)
    assert "Chrome / Android" in page and "Firefox / Linux" in page and page.count('data-testid="this-device"') == 1
    assert phone.get("/wallet").status_code == 200
    assert laptop_forms.post("/account/sessions/end-others", {}, form_url="/account/security").status_code == 302
    assert phone.get("/wallet").status_code == 302          # ended
    assert laptop.get("/wallet").status_code == 200         # this one stays
    assert [s["browser"] for s in open_sessions(owner, alice)] == ["Firefox / Linux"]
    assert owner.execute("select count(*) as n from core.user_sessions where user_id = %s and end_reason = 'ended_other'",
                         (alice,)).fetchone()["n"] == 1


def test_end_one_session_and_end_this_one(app, demo, owner):
    alice = demo["alice@example.com"]
    phone, _ = log_in(app, user_agent=CHROME_ANDROID)
    laptop, laptop_forms = log_in(app)
    phone_id = open_sessions(owner, alice)[0]["id"]
    laptop_id = open_sessions(owner, alice)[1]["id"]
    # nobody else's session can be ended (bob's form on alice's id does nothing)
    bob, bob_forms = log_in(app, "bob@example.com")
    bob_forms.post(f"/account/sessions/{phone_id}/end", {}, form_url="/account/security")
    assert phone.get("/wallet").status_code == 200
    laptop_forms.post(f"/account/sessions/{phone_id}/end", {}, form_url="/account/security")
    assert phone.get("/wallet").status_code == 302
    own = laptop_forms.post(f"/account/sessions/{laptop_id}/end", {}, form_url="/account/security")
    assert own.status_code == 302 and own.headers["Location"].endswith("/login")
    assert laptop.get("/wallet").status_code == 302
    # no CSRF token, no ending
    assert bob.post(f"/account/sessions/{phone_id}/end").status_code in (302, 400)


def test_password_change_and_2fa_changes_end_the_other_sessions(app, demo, owner):
    alice = demo["alice@example.com"]
    phone, _ = log_in(app, user_agent=CHROME_ANDROID)
    laptop, laptop_forms = log_in(app)
    changed = laptop_forms.post("/account/password", {"current_password": DEMO_PASSWORD, "new_password": "outra-senha-boa-31",
                                                      "confirm": "outra-senha-boa-31"})
    assert changed.status_code == 302
    assert phone.get("/wallet").status_code == 302 and laptop.get("/wallet").status_code == 200
    assert owner.execute("select count(*) as n from core.user_sessions where user_id = %s and end_reason = 'password_changed'",
                         (alice,)).fetchone()["n"] == 1

    # turning 2FA on (then off) ends the others too
    phone, _ = log_in(app, user_agent=CHROME_ANDROID, password="outra-senha-boa-31")
    page = laptop.get("/account/2fa").get_data(as_text=True)
    secret = re.search(r'data-testid="totp-secret"[^>]*>([A-Z2-7 ]+)<', page) or re.search(r"secret=([A-Z2-7]+)", page)
    import pyotp
    code = pyotp.TOTP(secret.group(1).replace(" ", "")).now()
    assert laptop_forms.post("/account/2fa", {"totp_code": code}).status_code == 200
    assert phone.get("/wallet").status_code == 302 and laptop.get("/wallet").status_code == 200
    phone, phone_forms = browser(app, CHROME_ANDROID)
    phone_forms.post("/login", {"email": "alice@example.com", "password": "outra-senha-boa-31"})
    phone_forms.post("/login/2fa", {"totp_code": totp_code(owner, alice)})
    assert phone.get("/wallet").status_code == 200
    off = laptop_forms.post("/account/2fa/disable", {"totp_code": totp_code(owner, alice)}, form_url="/account/security")
    assert off.status_code == 302
    assert phone.get("/wallet").status_code == 302 and laptop.get("/wallet").status_code == 200
    assert owner.execute("select count(*) as n from core.user_sessions where user_id = %s and end_reason = 'twofactor_changed'",
                         (alice,)).fetchone()["n"] == 2


def test_a_login_from_a_new_device_mails_an_alert(app, demo, owner, mail_sink):
    log_in(app)                                   # the first login: the baseline, no alert
    log_in(app)                                   # the same browser and IP: no alert
    assert mail_sink.deliver() == 0
    log_in(app, user_agent=CHROME_ANDROID)        # new
    assert mail_sink.deliver() == 1
    msg = mail_sink.wait_for(lambda m: "Novo acesso" in m["Subject"])
    assert msg["To"] == "alice@example.com"
    text = text_of(msg)
    assert "Chrome / Android" in text and "127.0.0.1" in text and "/account/security" in text
    assert owner.execute("select count(*) as n from core.security_events where kind = 'new_device_login'").fetchone()["n"] == 1


def test_idle_sessions_expire_and_last_seen_is_written_rarely(app, demo, owner):
    alice = demo["alice@example.com"]
    client, _ = log_in(app)
    session = open_sessions(owner, alice)[0]
    for _ in range(3):
        assert client.get("/wallet").status_code == 200
    # no write per request: last_seen_at moves only after session_touch_minutes
    assert owner.execute("select last_seen_at from core.user_sessions where id = %s", (session["id"],)).fetchone()["last_seen_at"] \
        == session["last_seen_at"]
    owner.execute("update core.user_sessions set last_seen_at = now() - interval '10 minutes' where id = %s", (session["id"],))
    client.get("/wallet")
    seen = owner.execute("select last_seen_at from core.user_sessions where id = %s", (session["id"],)).fetchone()["last_seen_at"]
    assert seen > session["last_seen_at"]
    owner.execute("update core.user_sessions set last_seen_at = now() - interval '15 days' where id = %s", (session["id"],))
    assert client.get("/wallet").status_code == 302
    assert owner.execute("select end_reason from core.user_sessions where id = %s", (session["id"],)).fetchone()["end_reason"] == "expired"


def test_the_loader_is_one_call_with_the_badge_and_2fa_flag(app, demo, owner):
    """The per-request contract: api.session_user gives the navbar what it needs (no extra calls)."""
    alice = demo["alice@example.com"]
    owner.execute("select core.notify(%s, 'kyc.approved', 'Um aviso.', '/kyc')", (alice,))
    client, _ = log_in(app)
    from webapp import db
    calls = []
    real = db.call_with

    def counting(pool, function, kwargs, retries=3):
        calls.append(function)
        return real(pool, function, kwargs, retries)
    db.call_with = counting
    try:
        page = client.get("/notifications/missing-page")
        assert page.status_code == 404
        assert 'data-testid="unread-count">1<' in page.get_data(as_text=True)
    finally:
        db.call_with = real
    assert calls == ["api.session_user"]
