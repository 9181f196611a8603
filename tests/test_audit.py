"""/audit: the auditors' dashboard, tables and CSV export, through the real app and database."""
from __future__ import annotations

import csv
import io
import logging
from decimal import Decimal

import pytest

from tests.conftest import books


@pytest.fixture
def as_auditor(demo, login):
    login("auditor@example.com")
    return demo


def test_customers_admins_and_strangers_are_refused(client, forms, demo, login):
    assert client.get("/audit").status_code == 302  # to the login page
    assert client.get("/audit/views/liabilities").status_code == 302
    login("alice@example.com")
    for url in ("/audit", "/audit/views/liabilities", "/audit/views/liabilities/export.csv"):
        assert client.get(url).status_code == 403, url
    forms.post("/logout", {}, form_url="/wallet")
    login("admin@example.com")
    assert client.get("/audit").status_code == 403
    assert client.get("/audit/views/journal/export.csv").status_code == 403


def test_dashboard_is_green_on_healthy_books(client, as_auditor, owner):
    owner.execute("select * from admin.publish_liabilities_snapshot()")
    owner.execute("select * from admin.record_books_check()")
    page = client.get("/audit")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'data-testid="books-status"' in html and "alert-success" in html
    assert 'data-ok="false"' not in html
    for name in ("health_checks", "liabilities", "customer_statements", "suspicious_activity", "stale_items"):
        assert f"reporting.{name}" in html
    assert "Auditoria" in html  # the nav link of the auditor


def test_every_view_renders_as_a_table(client, as_auditor, owner):
    names = [r["relname"] for r in owner.execute(
        "select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace "
        "where n.nspname = 'reporting' and c.relkind = 'v'").fetchall()]
    for name in names:
        page = client.get(f"/audit/views/{name}")
        assert page.status_code == 200, name
        assert 'data-testid="report"' in page.get_data(as_text=True)
    assert client.get("/audit/views/no_such_view").status_code == 404
    assert client.get("/audit/views/pg_user").status_code == 404
    assert client.get("/audit/views/Trial%20Balance").status_code == 404


def test_sorting_paging_and_filters_are_whitelisted(client, as_auditor, owner):
    alice = as_auditor["alice@example.com"]
    for i in range(60):
        owner.execute("select * from api.transfer(%s, 'bob@example.com', 'BRL', %s, %s)", (alice, Decimal(i + 1).quantize(Decimal("0.01")), f"p-{i}"))
    page = client.get(f"/audit/views/customer_statements?sort=amount&dir=desc&f_user_id={alice}&f_currency=BRL")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "61 linhas" in html and "1 / 2" in html
    assert html.index("10.000,00") < html.index("−1,00")  # sorted by amount, descending (pt-BR notation)
    second = client.get(f"/audit/views/customer_statements?sort=amount&dir=desc&f_user_id={alice}&f_currency=BRL&page=2")
    assert "−60,00" in second.get_data(as_text=True)
    # an unknown sort column or filter is ignored, never put into SQL
    odd = client.get("/audit/views/journal?sort=amount;drop table core.users&f_nope=1&f_amount%3B=2")
    assert odd.status_code == 200
    # a value the column cannot take is a 400, not a 500
    assert client.get("/audit/views/customer_statements?f_user_id=abc").status_code == 400
    # the little filter form redirects to f_<column>
    redirect = client.get(f"/audit/views/user_balances?filter_column=user_id&filter_value={alice}")
    assert redirect.status_code == 302 and f"f_user_id={alice}" in redirect.headers["Location"]
    books(owner)


def test_csv_export_streams_the_whole_view(client, as_auditor, owner):
    alice = as_auditor["alice@example.com"]
    for i in range(3):
        owner.execute("select * from api.transfer(%s, 'bob@example.com', 'ETH', 0.000000000000000001, %s)", (alice, f"c-{i}"))
    response = client.get("/audit/views/journal/export.csv?sort=entry_id")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert 'filename="journal.csv"' in response.headers["Content-Disposition"]
    table = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    header, body = table[0], table[1:]
    assert header[:3] == ["entry_id", "created_at", "kind"]
    count = owner.execute("select count(*) as n from reporting.journal").fetchone()["n"]
    assert len(body) == count == 8 * 2 + 3 * 2
    amounts = [row[header.index("amount")] for row in body if row[header.index("currency")] == "ETH"]
    assert "0.000000000000000001" in amounts  # exact decimals, no float
    filtered = client.get(f"/audit/views/user_balances/export.csv?f_user_id={alice}")
    assert len(list(csv.reader(io.StringIO(filtered.get_data(as_text=True))))) == 1 + 4


def test_dashboard_turns_red_with_the_offending_rows(client, as_auditor, owner):
    bob = as_auditor["bob@example.com"]
    account = owner.execute("select core.user_account(%s, 'USDT') as id", (bob,)).fetchone()["id"]
    owner.execute("update core.accounts set balance = balance + 7 where id = %s", (account,))
    html = client.get("/audit").get_data(as_text=True)
    assert "alert-danger" in html
    assert 'data-check="balance_mismatches" data-ok="false"' in html
    offending = html.split('data-testid="offending-balance_mismatches"')[1].split("</table>")[0]
    assert f">{account}</td>" in offending and ">1.507</td>" in offending


def test_books_alert_from_the_worker_job_shows_on_audit(client, as_auditor, owner, app, caplog):
    from webapp.audit import tasks
    with app.app_context():
        assert tasks.record_books_check(app) == []
    html = client.get("/audit").get_data(as_text=True)
    assert 'data-check="book_alerts" data-ok="true"' in html

    owner.execute("update core.accounts set balance = balance + 1 where id = core.user_account(%s, 'BRL')",
                  (as_auditor["alice@example.com"],))
    with caplog.at_level(logging.ERROR, logger="bs-market.audit"), app.app_context():
        failures = tasks.record_books_check(app)
    assert failures and "ALERT books" in caplog.text
    owner.execute("update core.accounts set balance = balance - 1 where id = core.user_account(%s, 'BRL')",
                  (as_auditor["alice@example.com"],))
    # the books are repaired, but the worker's last run found a failure: still red until the next run
    html = client.get("/audit").get_data(as_text=True)
    assert 'data-check="book_alerts" data-ok="false"' in html and "alert-danger" in html
    alerts = html.split('data-testid="offending-book_alerts"')[1].split("</table>")[0]
    assert "cached_balance" in alerts
    with app.app_context():
        assert tasks.record_books_check(app) == []
    assert 'data-check="book_alerts" data-ok="true"' in client.get("/audit").get_data(as_text=True)


def test_auditor_pool_is_read_only_even_by_a_bug(app, demo):
    from webapp import db
    with app.app_context():
        with pytest.raises(ValueError):
            db.audit_query("core.accounts")
        with pytest.raises(ValueError):
            db.audit_query("reporting.x; delete from core.accounts")
        with db.pool(app, "audit").connection() as conn:
            role = conn.execute("select current_user as r").fetchone()["r"]
        assert role == "exchange_auditor"


def test_every_column_and_code_reads_in_portuguese(owner):
    """Every column of every reporting view has a header in the reader's language (the identifier stays
    in the tooltip, the filters and the CSV), and so has every code a view can show (entry kinds,
    account buckets, statuses…) as the database's CHECK constraints and enums list them."""
    from webapp.audit.labels import CODE_COLUMNS, CODES, COLUMNS
    columns = {r["attname"] for r in owner.execute(
        "select a.attname from pg_attribute a join pg_class c on c.oid = a.attrelid "
        "join pg_namespace n on n.oid = c.relnamespace "
        "where n.nspname = 'reporting' and c.relkind = 'v' and a.attnum > 0 and not a.attisdropped").fetchall()}
    missing = sorted(columns - COLUMNS.keys())
    assert missing == [], " ".join(missing)
    codes = {r["code"] for r in owner.execute(
        "select distinct m[1] as code from pg_constraint k "
        "join pg_namespace n on n.oid = k.connamespace "
        "join pg_attribute a on a.attrelid = k.conrelid and a.attnum = k.conkey[1], "
        "regexp_matches(pg_get_constraintdef(k.oid), '''([A-Za-z_]+)''::text', 'g') m "
        "where n.nspname = 'core' and k.contype = 'c' and cardinality(k.conkey) = 1 "
        "  and a.attname = any(%s)", (list(CODE_COLUMNS),)).fetchall()}
    missing = sorted(codes - CODES.keys())
    assert missing == [], " ".join(missing)
