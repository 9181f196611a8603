"""The back office: admins only (403 for everyone else), customer lookup, freeze, journaled adjustments,
the audit log; every admin action leaves an audit row and the books balance."""
from __future__ import annotations

from decimal import Decimal

import psycopg
import pytest

from tests.conftest import totp_code, books


def admin_urls(target: int) -> list[tuple[str, str]]:
    return [("get", "/admin/"), ("get", "/admin/kyc"), ("get", "/admin/kyc/1"), ("get", "/admin/users?q=bob"),
            ("get", f"/admin/users/{target}"), ("get", "/admin/audit-log"),
            ("post", "/admin/kyc/1/approve"), ("post", "/admin/kyc/1/reject"),
            ("post", f"/admin/users/{target}/freeze"), ("post", f"/admin/users/{target}/unfreeze"),
            ("post", f"/admin/users/{target}/adjust")]


def audit_count(owner) -> int:
    return owner.execute("select count(*) as n from core.admin_audit_log").fetchone()["n"]


@pytest.mark.parametrize("who", ["alice@example.com", "auditor@example.com"])
def test_non_admins_get_403_everywhere(client, forms, demo, login, owner, who):
    login(who)
    bob = demo["bob@example.com"]
    before = audit_count(owner)
    token = forms.token("/account/security")
    for method, url in admin_urls(bob):
        data = {"csrf_token": token, "reason": "tentativa", "currency": "BRL", "amount": "1000",
                "idempotency_key": "k1"}
        response = client.get(url) if method == "get" else client.post(url, data=data)
        assert response.status_code == 403, (url, response.status_code)
    assert audit_count(owner) == before
    assert owner.execute("select status from core.users where id = %s", (bob,)).fetchone()["status"] == "active"


def test_anonymous_is_sent_to_login(client):
    response = client.get("/admin/")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_dashboard_and_lookup(client, forms, demo, login, owner):
    carla = owner.execute("select api.register_user('carla@example.com', %s, 'Carla') as id",
                          ("pbkdf2:sha256:1000$salt$" + "0" * 40,)).fetchone()["id"]
    owner.execute("select api.submit_kyc_data(%s, 'Carla Dias', '111.444.777-35', '1980-02-03', 'Av. B, 2')", (carla,))
    login("admin@example.com")
    page = client.get("/admin/").get_data(as_text=True)
    assert 'data-testid="admin-stats"' in page and 'href="/admin/withdrawals"' in page and 'href="/admin/disputes"' in page

    by_email = client.get("/admin/users?q=bob@example.com")
    assert by_email.status_code == 302 and by_email.headers["Location"].endswith(f"/admin/users/{demo['bob@example.com']}")
    by_cpf = client.get("/admin/users?q=111.444.777-35")
    assert by_cpf.headers["Location"].endswith(f"/admin/users/{carla}")
    by_id = client.get(f"/admin/users?q=%23{carla}")
    assert by_id.headers["Location"].endswith(f"/admin/users/{carla}")
    several = client.get("/admin/users?q=example.com").get_data(as_text=True)
    assert "alice@example.com" in several and "bob@example.com" in several
    assert "Ninguém encontrado" in client.get("/admin/users?q=nobody-here").get_data(as_text=True)

    detail = client.get(f"/admin/users/{demo['alice@example.com']}").get_data(as_text=True)
    assert "R$ 10.000,00" in detail and "0,05000000 BTC" in detail
    assert "Saldo inicial de demonstração" in detail  # ledger history
    assert client.get("/admin/users/999999").status_code == 404
    assert client.get("/admin/kyc/999999").status_code == 404


def test_freeze_and_unfreeze_with_reason(client, forms, demo, login, owner):
    bob = demo["bob@example.com"]
    login("admin@example.com")
    before = audit_count(owner)
    no_reason = forms.post(f"/admin/users/{bob}/freeze", {"reason": ""}, form_url=f"/admin/users/{bob}")
    assert no_reason.status_code == 422 and "Informe o motivo" in no_reason.get_data(as_text=True)
    assert forms.post(f"/admin/users/{bob}/freeze", {"reason": "Suspeita de fraude"},
                      form_url=f"/admin/users/{bob}").status_code == 302
    page = client.get(f"/admin/users/{bob}").get_data(as_text=True)
    assert "Bloqueada" in page and "Suspeita de fraude" in page
    assert forms.post(f"/admin/users/{bob}/unfreeze", {"reason": "Documentos conferidos"},
                      form_url=f"/admin/users/{bob}").status_code == 302
    rows = owner.execute("select action, reason, admin_id from core.admin_audit_log where id > %s order by id",
                         (before,)).fetchall()
    assert [(r["action"], r["reason"]) for r in rows] == [("freeze_user", "Suspeita de fraude"),
                                                          ("unfreeze_user", "Documentos conferidos")]
    assert all(r["admin_id"] == demo["admin@example.com"] for r in rows)
    self_freeze = forms.post(f"/admin/users/{demo['admin@example.com']}/freeze", {"reason": "teste"},
                             form_url=f"/admin/users/{bob}")
    assert self_freeze.status_code == 403


def test_adjustments_are_journaled_audited_and_balanced(client, forms, demo, login, owner):
    alice = demo["alice@example.com"]
    login("admin@example.com")
    before = audit_count(owner)
    url = f"/admin/users/{alice}/adjust"
    no_reason = forms.post(url, {"currency": "BRL", "amount": "10,00", "reason": ""}, form_url=f"/admin/users/{alice}")
    assert no_reason.status_code == 422
    admin = demo["admin@example.com"]
    too_many_places = forms.post(url, {"currency": "BRL", "amount": "0,001", "reason": "Estorno de tarifa",
                                       "totp_code": totp_code(owner, admin)}, form_url=f"/admin/users/{alice}")
    assert too_many_places.status_code == 422 and "casas" in too_many_places.get_data(as_text=True)
    overdraft = forms.post(url, {"currency": "BRL", "amount": "-20000", "reason": "Correção de crédito",
                                 "totp_code": totp_code(owner, admin)}, form_url=f"/admin/users/{alice}")
    assert overdraft.status_code == 422 and "Saldo insuficiente" in overdraft.get_data(as_text=True)

    # through the web the admin confirms with a fresh code from the phone (the database checks it)
    no_code = forms.post(url, {"currency": "BRL", "amount": "1.234,56", "reason": "Estorno de tarifa"},
                         form_url=f"/admin/users/{alice}")
    assert no_code.status_code == 422 and "código" in no_code.get_data(as_text=True)
    credit = forms.post(url, {"currency": "BRL", "amount": "1.234,56", "reason": "Estorno de tarifa",
                              "totp_code": totp_code(owner, admin)}, form_url=f"/admin/users/{alice}")
    assert credit.status_code == 302
    debit = forms.post(url, {"currency": "BTC", "amount": "-0,01", "reason": "Correção de crédito em dobro",
                             "totp_code": totp_code(owner, admin)}, form_url=f"/admin/users/{alice}")
    assert debit.status_code == 302
    # the same form posted twice (same idempotency key) moves money once
    token = forms.token(f"/admin/users/{alice}")
    data = {"csrf_token": token, "currency": "USDT", "amount": "5", "reason": "Bônus de indicação",
            "idempotency_key": "adj-test-1", "totp_code": totp_code(owner, admin)}
    assert client.post(url, data=data).status_code == 302
    assert client.post(url, data=data).status_code == 302   # a replay: the first result, no code needed again

    balances = {r["currency"]: r for r in owner.execute("select * from reporting.user_balances where user_id = %s",
                                                        (alice,))}
    assert balances["BRL"]["available"] == Decimal("11234.56")
    assert balances["BTC"]["available"] == Decimal("0.04")
    assert balances["USDT"]["available"] == Decimal("2005")
    actions = owner.execute("select action, details from core.admin_audit_log where id > %s order by id",
                            (before,)).fetchall()
    assert [a["action"] for a in actions] == ["adjust_balance"] * 3
    books(owner)
    log = client.get("/admin/audit-log").get_data(as_text=True)
    assert "Estorno de tarifa" in log and "Bônus de indicação" in log and "adjust_balance" in log


def test_every_admin_function_checks_the_admin_and_audits(owner, demo):
    alice, bob, admin = demo["alice@example.com"], demo["bob@example.com"], demo["admin@example.com"]
    carla = owner.execute("select api.register_user('carla@example.com', %s, 'Carla') as id",
                          ("pbkdf2:sha256:1000$salt$" + "0" * 40,)).fetchone()["id"]
    owner.execute("select api.submit_kyc_data(%s, 'Carla Dias', '52998224725', '1990-01-01', 'Rua A, 10')", (carla,))
    sub = owner.execute("select api.submit_kyc_documents(%s, %s, %s, 'image/png', 10, %s, %s, 'image/jpeg', 10) as id",
                        (carla, f"{carla}/a.png", "a" * 64, f"{carla}/b.jpg", "b" * 64)).fetchone()["id"]
    calls = [
        ("select * from admin.dashboard(%s)", ()),
        ("select * from admin.list_kyc_submissions(%s)", ()),
        ("select * from admin.get_kyc_submission(%s, %s)", (sub,)),
        ("select admin.review_kyc(%s, %s, true, null)", (sub,)),
        ("select * from admin.search_users(%s, 'bob')", ()),
        ("select * from admin.get_customer(%s, %s)", (bob,)),
        ("select * from admin.customer_balances(%s, %s)", (bob,)),
        ("select * from admin.customer_history(%s, %s)", (bob,)),
        ("select * from admin.list_audit_log(%s)", ()),
        ("select admin.set_user_status(%s, %s, 'frozen', 'teste')", (bob,)),
        ("select * from admin.adjust_balance(%s, %s, 'BRL', 1, 'teste de ajuste', 'k')", (bob,)),
    ]
    for sql, args in calls:
        for impostor in (alice, demo["auditor@example.com"], None):
            with pytest.raises(psycopg.Error) as exc:
                owner.execute(sql, (impostor, *args))
            assert exc.value.diag.sqlstate == "BSA01", sql
    before = audit_count(owner)
    owner.execute("select admin.review_kyc(%s, %s, true, null)", (admin, sub))
    owner.execute("select admin.set_user_status(%s, %s, 'frozen', 'teste')", (admin, bob))
    owner.execute("select admin.set_user_status(%s, %s, 'active', 'teste')", (admin, bob))
    owner.execute("select * from admin.adjust_balance(%s, %s, 'BRL', 1, 'teste de ajuste', 'k')", (admin, bob))
    actions = [r["action"] for r in owner.execute(
        "select action from core.admin_audit_log where id > %s order by id", (before,))]
    assert actions == ["kyc_approve", "freeze_user", "unfreeze_user", "adjust_balance"]
    with pytest.raises(psycopg.Error) as exc:
        owner.execute("update core.admin_audit_log set reason = 'x'")
    assert exc.value.diag.sqlstate == "BSX02"
    books(owner)


def test_the_app_role_cannot_touch_the_new_tables(db_url):
    from webapp.config import role_url
    with psycopg.connect(role_url(db_url, "exchange_app"), autocommit=True) as conn:
        for table in ("kyc_profiles", "kyc_submissions", "kyc_documents", "user_totp", "recovery_codes",
                      "security_events"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(f"select * from core.{table}")
