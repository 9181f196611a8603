"""One guard for the staff pages (webapp/auth/guards.py): every /admin page (wherever its blueprint
lives: back office, disputes, withdrawal and crypto queues) needs an active admin with 2FA on, every
/audit page an active auditor. The URL map is walked, so a page added without the guard fails here."""
from __future__ import annotations

import pytest
from werkzeug.routing.converters import AnyConverter

from webapp.auth import guards

STAFF_PREFIXES = {"/admin": "admin", "/audit": "auditor"}


def staff_rules(app):
    """(rule, role it needs) for every URL under /admin or /audit."""
    found = []
    for rule in app.url_map.iter_rules():
        for prefix, role in STAFF_PREFIXES.items():
            if rule.rule == prefix or rule.rule.startswith(prefix + "/"):
                found.append((rule, role))
    return found


def example_url(app, rule) -> str:
    """A concrete URL for a rule: the first choice of an any(), 1 for anything else."""
    values = {}
    for name, converter in rule._converters.items():
        values[name] = sorted(converter.items)[0] if isinstance(converter, AnyConverter) else "1"
    with app.test_request_context():
        return app.url_for(rule.endpoint, **values)


def requests_for(app, client, token):
    """(url, response) for every method of every staff rule."""
    for rule, role in staff_rules(app):
        url = example_url(app, rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            data = {"csrf_token": token, "reason": "tentativa", "note": "tentativa", "outcome": "refund",
                    "currency": "BRL", "amount": "1000", "idempotency_key": "k1"} if method == "POST" else None
            yield rule, role, method, url, client.open(url, method=method, data=data)


def test_there_are_staff_pages_in_several_blueprints(app):
    blueprints = {rule.endpoint.split(".")[0] for rule, _ in staff_rules(app)}
    assert {"admin", "audit", "p2p", "withdrawals", "crypto"} <= blueprints, blueprints
    assert len(staff_rules(app)) >= 20


def test_every_staff_view_carries_the_guard(app):
    unguarded = [f"{rule.rule} ({rule.endpoint}): {getattr(app.view_functions[rule.endpoint], 'required_role', None)}"
                 for rule, role in staff_rules(app)
                 if getattr(app.view_functions[rule.endpoint], "required_role", None) != role]
    assert unguarded == []


def test_the_walk_finds_an_unguarded_page(app):
    """The check can fail: a page under /admin without the decorator is named."""
    app.add_url_rule("/admin/forgotten", "forgotten", lambda: "secret")
    assert ("/admin/forgotten", "admin") in [(rule.rule, role) for rule, role in staff_rules(app)]
    assert getattr(app.view_functions["forgotten"], "required_role", None) is None


@pytest.mark.parametrize("who", ["alice@example.com", "auditor@example.com", "admin@example.com"])
def test_the_wrong_role_gets_403_on_every_page(app, client, forms, demo, login, owner, who):
    login(who)
    token = forms.token("/account/security")
    role_of = {"alice@example.com": "customer", "auditor@example.com": "auditor", "admin@example.com": "admin"}[who]
    before = owner.execute("select count(*) as n from core.admin_audit_log").fetchone()["n"]
    checked = 0
    for rule, role, method, url, response in requests_for(app, client, token):
        if role == role_of:
            continue
        assert response.status_code == 403, (method, url, response.status_code)
        checked += 1
    assert checked >= 3
    assert owner.execute("select count(*) as n from core.admin_audit_log").fetchone()["n"] == before


def test_anonymous_is_sent_to_login_everywhere(app, client, forms):
    token = forms.token("/login")
    for rule, role, method, url, response in requests_for(app, client, token):
        assert response.status_code == 302 and "/login" in response.headers["Location"], (method, url)


def test_an_admin_without_2fa_is_sent_to_set_it_up(app, client, forms, demo, login, owner):
    owner.execute("delete from core.user_totp where user_id = %s", (demo["admin@example.com"],))
    login("admin@example.com")
    for rule, role in staff_rules(app):
        if role == "admin" and "GET" in rule.methods:
            response = client.get(example_url(app, rule))
            assert response.status_code == 302 and response.headers["Location"].endswith("/account/2fa"), rule.rule


def test_a_frozen_auditor_is_refused(app, client, demo, login, owner):
    login("auditor@example.com")
    assert client.get("/audit").status_code == 200
    owner.execute("update core.users set status = 'frozen' where email = 'auditor@example.com'")
    assert client.get("/audit").status_code in (302, 403)


def test_an_ended_session_is_anonymous(app, client, demo, login, owner):
    """The role comes from the database through the session: revoke the session, the guard sends to login."""
    login("auditor@example.com")
    assert client.get("/audit").status_code == 200
    owner.execute("update core.user_sessions set ended_at = now(), end_reason = 'ended_by_user' where user_id = %s",
                  (demo["auditor@example.com"],))
    response = client.get("/audit")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_an_unknown_role_is_a_programming_error():
    with pytest.raises(ValueError):
        guards.role_required("superuser")
