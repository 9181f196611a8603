"""Proof of liabilities: Merkle trees over customer balances, verified the way a customer would."""
from __future__ import annotations

import hashlib
import importlib.util
import json
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from tests.conftest import books

ROOT = Path(__file__).resolve().parents[1]


def load_verifier():
    spec = importlib.util.spec_from_file_location("verify_liabilities", ROOT / "docs" / "verify_liabilities.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


verifier = load_verifier()


def publish(owner, admin_id=None):
    return owner.execute("select * from admin.publish_liabilities_snapshot(admin_id => %s)", (admin_id,)).fetchall()


def proof(owner, user_id, currency, snapshot_id=None):
    return owner.execute("select api.get_liabilities_proof(%s, %s, %s) as p",
                         (user_id, currency, snapshot_id)).fetchone()["p"]


def add_customers(owner, admin_id, n):
    ids = []
    for i in range(n):
        uid = owner.execute("select api.register_user(%s, %s, %s) as id",
                            (f"c{i}@example.com", "x" * 30, f"Cliente {i}")).fetchone()["id"]
        owner.execute("select * from admin.adjust_balance(%s, %s, 'BRL', %s, 'Saldo de teste', %s)",
                      (admin_id, uid, Decimal(i + 1) / 100, f"t-{i}"))
        ids.append(uid)
    return ids


def test_every_customer_path_verifies_against_the_published_root(owner, demo):
    roots = {r["currency"]: r for r in publish(owner)}
    users = [uid for uid in demo.values()]
    for currency in ("BRL", "BTC", "ETH", "USDT"):
        assert roots[currency]["leaf_count"] == len(users)
        for uid in users:
            p = proof(owner, uid, currency)
            assert p["root"] == roots[currency]["root"]
            assert verifier.verify(p) == [], (currency, uid)
    alice = proof(owner, demo["alice@example.com"], "BRL")
    assert alice["balance"] == "10000.00" and alice["total"] == "15000.00"
    assert roots["BRL"]["total"] == Decimal("15000.00")
    # the leaf is exactly the documented hash
    text = f"{alice['salt']}:{alice['user_id']}:BRL:10000.00"
    assert hashlib.sha256(text.encode()).hexdigest() == alice["leaf_hash"]


@pytest.mark.parametrize("extra", [1, 2, 3, 5, 8])
def test_odd_and_even_trees_verify_for_every_leaf(owner, demo, extra):
    add_customers(owner, demo["admin@example.com"], extra)
    roots = {r["currency"]: r for r in publish(owner)}
    uids = [r["id"] for r in owner.execute("select id from core.users").fetchall()]
    assert roots["BRL"]["leaf_count"] == len(uids)
    for uid in uids:
        assert verifier.verify(proof(owner, uid, "BRL")) == []
    books(owner)


def test_a_tampered_balance_or_path_fails(owner, demo):
    publish(owner)
    good = proof(owner, demo["bob@example.com"], "BTC")
    assert verifier.verify(good) == []
    assert verifier.verify(dict(good, balance="0.13000000")) != []
    assert verifier.verify(dict(good, balance="0.12")) != []  # the exact text counts
    assert verifier.verify(dict(good, user_id=demo["alice@example.com"])) != []
    flipped = [dict(step, side="left" if step["side"] == "right" else "right") for step in good["path"]]
    assert verifier.verify(dict(good, path=flipped)) != []
    wrong_hash = [dict(good["path"][0], hash="00" * 32)] + good["path"][1:]
    assert verifier.verify(dict(good, path=wrong_hash)) != []


def test_salts_hide_balances_and_change_every_publication(owner, demo):
    first = publish(owner)[0]["snapshot_id"]
    second = publish(owner)[0]["snapshot_id"]
    a1 = proof(owner, demo["alice@example.com"], "BRL", first)
    a2 = proof(owner, demo["alice@example.com"], "BRL", second)
    assert a1["salt"] != a2["salt"] and a1["leaf_hash"] != a2["leaf_hash"] and a1["root"] != a2["root"]
    # the path holds only hashes: nothing about bob's balance, salt or id
    bob = proof(owner, demo["bob@example.com"], "BRL", second)
    text = json.dumps(a2["path"])
    assert bob["salt"] not in text and "5000" not in text
    assert a2["path"] and all(set(step) == {"side", "hash"} for step in a2["path"])
    # past roots are kept and cannot be rewritten
    assert len(owner.execute("select * from reporting.liability_snapshots").fetchall()) == 8
    with pytest.raises(psycopg.Error) as refused:
        owner.execute("update core.liability_roots set total = 0")
    assert refused.value.sqlstate == "BSX02"


def test_publication_follows_the_ledger_and_admins_are_audited(owner, demo):
    admin = demo["admin@example.com"]
    owner.execute("select * from api.transfer(%s, 'bob@example.com', 'BRL', 100, 'k1')", (demo["alice@example.com"],))
    owner.execute("select core.place_hold(%s, 'BRL', 50, 'withdrawal', 'w:1')", (demo["bob@example.com"],))
    rows = publish(owner, admin)
    brl = next(r for r in rows if r["currency"] == "BRL")
    liab = owner.execute("select * from reporting.liabilities where currency = 'BRL'").fetchone()
    assert brl["total"] == liab["total"] == liab["last_proof_total"] == Decimal("15000.00")
    assert proof(owner, demo["bob@example.com"], "BRL")["balance"] == "5100.00"  # available + locked
    log = owner.execute("select * from reporting.admin_audit_log where action = 'publish_liabilities_snapshot'").fetchall()
    assert len(log) == 1 and log[0]["admin_id"] == admin
    with pytest.raises(psycopg.Error) as refused:
        publish(owner, demo["alice@example.com"])
    assert refused.value.sqlstate == "BSA01"
    # the worker's hourly call publishes only when due
    again = owner.execute("select * from admin.publish_liabilities_snapshot(only_if_due => true)").fetchall()
    assert all(r["replayed"] for r in again) and again[0]["snapshot_id"] == rows[0]["snapshot_id"]
    books(owner)


def test_errors_are_clear(owner, demo):
    with pytest.raises(psycopg.Error) as nothing:
        proof(owner, demo["alice@example.com"], "BRL")
    assert nothing.value.sqlstate == "BSN01"
    publish(owner)
    with pytest.raises(psycopg.Error) as currency:
        proof(owner, demo["alice@example.com"], "DOGE")
    assert currency.value.sqlstate == "BSN01"
    late = owner.execute("select api.register_user('late@example.com', %s, 'Late') as id", ("x" * 30,)).fetchone()["id"]
    with pytest.raises(psycopg.Error) as absent:
        proof(owner, late, "BRL")
    assert absent.value.sqlstate == "BSN01"


# ---------------------------------------------------------------------------
# The pages: public roots, the customer's own proof, the script
# ---------------------------------------------------------------------------

def test_public_page_shows_roots_and_totals_without_login(client, owner, demo):
    assert 'data-testid="no-proof"' in client.get("/proof-of-liabilities").get_data(as_text=True)
    first = {r["currency"]: r for r in publish(owner)}
    second = {r["currency"]: r for r in publish(owner)}
    html = client.get("/proof-of-liabilities").get_data(as_text=True)
    assert second["BRL"]["root"] in html and "R$ 15.000,00" in html
    assert first["BRL"]["root"] in html.split('data-testid="past-roots"')[1]  # past roots kept
    data = client.get("/proof-of-liabilities.json").get_json()
    assert {(r["snapshot_id"], r["currency"], r["root"]) for r in data["roots"]} >= \
        {(r["snapshot_id"], c, r["root"]) for c, r in second.items()}
    assert next(r for r in data["roots"] if r["currency"] == "ETH")["total"] == "3.750000000000000000"


def test_customer_page_and_script_verify_the_own_leaf(client, owner, demo, login, tmp_path, capsys):
    publish(owner)
    assert client.get("/proof-of-liabilities/me").status_code == 302  # login first
    login("alice@example.com")
    page = client.get("/proof-of-liabilities/me?currency=BTC")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    mine = proof(owner, demo["alice@example.com"], "BTC")
    bob = proof(owner, demo["bob@example.com"], "BTC")
    assert mine["leaf_hash"] in html and mine["root"] in html and "0,05000000 BTC" in html
    for step in mine["path"]:
        assert step["hash"] in html
    assert bob["salt"] not in html and "0.12000000" not in html  # nothing of bob's
    assert 'src="/static/js/liabilities.js"' in html and "<script>" not in html  # CSP: no inline script
    assert client.get("/static/js/liabilities.js").status_code == 200

    download = client.get("/proof-of-liabilities/me.json?currency=BTC")
    assert "attachment" in download.headers["Content-Disposition"]
    proof_file = tmp_path / "proof.json"
    proof_file.write_bytes(download.data)
    published = tmp_path / "roots.json"
    published.write_bytes(client.get("/proof-of-liabilities.json").data)
    assert verifier.main([str(proof_file), "--published", str(published)]) == 0
    assert "OK: 0.05000000 BTC" in capsys.readouterr().out

    tampered = json.loads(proof_file.read_text())
    tampered["balance"] = "0.50000000"
    proof_file.write_text(json.dumps(tampered))
    assert verifier.main([str(proof_file)]) == 1
    assert "FAILED" in capsys.readouterr().out

    # a root the exchange did not publish for everyone is caught too
    forged = json.loads(download.data)
    forged["root"] = "ab" * 32
    proof_file.write_text(json.dumps(forged))
    assert verifier.main([str(proof_file), "--published", str(published)]) == 1


def test_customer_page_before_any_publication(client, demo, login):
    login("bob@example.com")
    page = client.get("/proof-of-liabilities/me")
    assert page.status_code == 404
    assert "Nenhuma prova de passivos publicada ainda." in page.get_data(as_text=True)
    assert client.get("/proof-of-liabilities/me?currency=XYZ").status_code == 404


def test_worker_job_publishes_daily(app, owner, demo):
    from webapp.audit import tasks
    with app.app_context():
        first = tasks.publish_liabilities(app)
        again = tasks.publish_liabilities(app)
    assert not first[0]["replayed"] and again[0]["replayed"]
    assert owner.execute("select count(*) as n from core.liability_snapshots").fetchone()["n"] == 1
    from webapp.jobs import collect_jobs
    names = [job.__name__ for job, _ in collect_jobs()]
    assert "record_books_check" in names and "publish_liabilities" in names
