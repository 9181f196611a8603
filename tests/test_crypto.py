"""On-chain crypto deposits and withdrawals through Binance (sql/crypto.sql, webapp/crypto):
real PostgreSQL, real HTTP with real signatures to the Binance emulator in a thread.
Books are checked after every money scenario."""
from __future__ import annotations

import json
import threading
import uuid
from decimal import Decimal

import psycopg
import pytest
import requests
from psycopg.rows import dict_row

from tests.conftest import books, enable_totp, totp_code
from webapp.crypto import service
from webapp.providers.binance import BinanceClient
from sandbox.binance import BackgroundServer, create_app as create_sandbox

KEY, SECRET = "crypto-key", "crypto-secret"
D = Decimal
TRON_TO = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"
BTC_TO = "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"
EVM_TO = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"


@pytest.fixture(scope="module")
def sandbox():
    server = BackgroundServer(create_sandbox({"api_key": KEY, "secret_key": SECRET}))
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _reset(sandbox):
    requests.post(f"{sandbox.url}/_sandbox/reset", timeout=2).raise_for_status()


@pytest.fixture
def app(db_url, sandbox):
    from webapp import create_app
    from webapp.config import role_url
    app = create_app({
        "TESTING": True, "SECRET_KEY": "test-secret", "DATABASE_URL": db_url,
        "APP_DATABASE_URL": role_url(db_url, "exchange_app"), "AUDIT_DATABASE_URL": role_url(db_url, "exchange_auditor"),
        "WORKER_DATABASE_URL": role_url(db_url, "exchange_worker"),
        "RATELIMIT_ENABLED": False, "DB_POOL_MAX": 4,
        "BINANCE_API_KEY": KEY, "BINANCE_SECRET_KEY": SECRET, "BINANCE_BASE_URL": sandbox.url, "BINANCE_TIMEOUT": 0.6,
    })
    yield app
    from webapp import db
    db.close_pools(app)


@pytest.fixture
def crypto(owner, demo):
    """Demo users, fresh prices, rechecks due at once."""
    owner.execute("select admin.record_prices(%s)",
                  (json.dumps({"BTCBRL": "560000", "ETHBRL": "20000", "USDTBRL": "5.4"}),))
    owner.execute("update core.settings set value = '0' where name in ('crypto_withdrawal_recheck_seconds', "
                  "'crypto_sweep_recheck_seconds')")
    # large values are sent without a person here (test_crypto_withdrawals_above_the_threshold_wait_for_approval)
    owner.execute("update core.settings set value = '1000000.00' where name = 'withdrawal_approval_threshold_brl'")
    return demo


def control(sandbox, name, expect=200, **body):
    resp = requests.post(f"{sandbox.url}/_sandbox/wallet/{name}", json=body, timeout=2)
    assert resp.status_code == expect, resp.text
    return resp.json()


def state(sandbox):
    return requests.get(f"{sandbox.url}/_sandbox/wallet/state", timeout=2).json()


def master_free(sandbox, coin):
    return D(state(sandbox)["master"]["free"][coin])


def one(owner, query, *args):
    return owner.execute(query, args).fetchone()


def balance(owner, user_id, coin):
    row = one(owner, "select available, locked from api.get_wallet(%s) where currency = %s", user_id, coin)
    return row["available"], row["locked"]


def fails(owner, code, query, *args):
    with pytest.raises(psycopg.Error) as exc:
        owner.execute(query, args)
    assert exc.value.sqlstate == code, exc.value
    return exc.value.diag


def address_for(app, owner, user_id, coin, network):
    row = one(owner, "select * from api.request_crypto_deposit_address(%s, %s, %s)", user_id, coin, network)
    if not row["ready"]:
        service.provision(app)
        row = one(owner, "select * from api.request_crypto_deposit_address(%s, %s, %s)", user_id, coin, network)
    assert row["ready"], row
    return row["address"]


def deposit_rows(owner, user_id):
    return owner.execute("select * from core.crypto_deposits where user_id = %s order by id", (user_id,)).fetchall()


def saved_address(owner, user_id, coin, network, address, memo="", usable=True):
    row = one(owner, "select * from api.add_crypto_address(%s, %s, %s, %s, %s, 'test')", user_id, coin, network,
              address, memo)
    if usable:
        owner.execute("update core.crypto_address_book set usable_from = now() - interval '1 second' where id = %s",
                      (row["address_id"],))
    return row["address_id"]


def withdraw(owner, user_id, coin, address_id, amount, key=None, code=None):
    return one(owner, "select * from api.create_crypto_withdrawal(%s, %s, %s, %s, %s, %s)", user_id, coin, address_id,
               D(amount), key or str(uuid.uuid4()), code)


def cwd(owner, withdrawal_id):
    return one(owner, "select * from core.crypto_withdrawals where id = %s", withdrawal_id)


# ---------------------------------------------------------------- deposits

def test_deposit_credited_once_after_confirmations_and_swept(app, owner, crypto, sandbox, client, login):
    alice = crypto["alice@example.com"]
    before = balance(owner, alice, "USDT")[0]
    addr = address_for(app, owner, alice, "USDT", "ETH")
    assert addr.startswith("0x") and len(addr) == 42
    sent = control(sandbox, "send", coin="USDT", network="ETH", address=addr, amount="250.5")
    assert service.poll_deposits(app) == {"pending": 1}
    assert balance(owner, alice, "USDT")[0] == before
    control(sandbox, "confirm", id=sent["id"], confirmations=3)
    service.poll_deposits(app)
    (dep,) = deposit_rows(owner, alice)
    assert (dep["status"], dep["confirmations"], dep["required_confirmations"]) == ("PENDING", 3, 6)
    login("alice@example.com")
    page = client.get("/wallet/usdt/deposit").get_data(as_text=True)
    assert addr in page and "data:image/svg+xml" in page and "aguardando confirmações 3/6" in page

    control(sandbox, "confirm", id=sent["id"], status=6)  # credited on Binance but locked: still pending here
    service.poll_deposits(app)
    assert deposit_rows(owner, alice)[0]["status"] == "PENDING" and balance(owner, alice, "USDT")[0] == before

    control(sandbox, "confirm", id=sent["id"])
    assert service.poll_deposits(app) == {"credited": 1}
    assert balance(owner, alice, "USDT")[0] == before + D("250.5")
    control(sandbox, "duplicate", kind="deposit", id=sent["id"])
    service.poll_deposits(app)
    service.poll_deposits(app)
    assert balance(owner, alice, "USDT")[0] == before + D("250.5")
    (dep,) = deposit_rows(owner, alice)
    entry = one(owner, "select kind, reference from core.entries where id = %s", dep["entry_id"])
    assert entry == {"kind": "crypto_deposit", "reference": f"cdep-{dep['id']}"}

    free = master_free(sandbox, "USDT")
    assert service.sweep(app) == {"done": 1}
    assert master_free(sandbox, "USDT") == free + D("250.5")
    assert service.sweep(app) == {}
    sweep = one(owner, "select * from reporting.crypto_deposits where id = %s", dep["id"])
    assert sweep["sweep_status"] == "DONE" and sweep["sweep_tran_id"]
    assert owner.execute("select * from reporting.crypto_in_transit").fetchall() == []

    statement = client.get("/wallet/USDT").get_data(as_text=True)
    assert "ETH · " + addr in statement and dep["tx_id"][:16] in statement and "etherscan.io/tx/" in statement
    books(owner)


def test_wrong_network_is_recorded_never_credited_and_shown_to_admins(app, owner, crypto, sandbox, client, login):
    bob = crypto["bob@example.com"]
    before = balance(owner, bob, "ETH")[0]
    evm = address_for(app, owner, bob, "ETH", "ETH")
    control(sandbox, "send", coin="ETH", network="BSC", address=evm, amount="1")  # ETH over BSC
    assert service.poll_deposits(app) == {"wrong_network": 1}
    service.poll_deposits(app)
    (dep,) = deposit_rows(owner, bob)
    assert (dep["status"], dep["binance_status"], dep["entry_id"]) == ("WRONG_NETWORK", 7, None)
    assert balance(owner, bob, "ETH")[0] == before
    admin = crypto["admin@example.com"]
    rows = owner.execute("select * from admin.list_crypto_deposits(%s)", (admin,)).fetchall()
    assert rows[0]["status"] == "WRONG_NETWORK" and rows[0]["email"] == "bob@example.com"
    login("admin@example.com")
    page = client.get("/admin/crypto").get_data(as_text=True)
    assert "Rede errada" in page and "bob@example.com" in page and dep["tx_id"] in page
    assert "Binance: depósito errado" in page          # Binance's status 7, in the client's words
    books(owner)


def test_concurrent_pollers_credit_once(app, owner, crypto, sandbox, db_url):
    alice = crypto["alice@example.com"]
    before = balance(owner, alice, "BTC")[0]
    addr = address_for(app, owner, alice, "BTC", "BTC")
    sent = control(sandbox, "send", coin="BTC", network="BTC", address=addr, amount="0.0123")
    control(sandbox, "confirm", id=sent["id"])
    history = [service.deposit_json(d) for d in
               BinanceClient(KEY, SECRET, base_url=sandbox.url).sub_deposit_history(
                   one(owner, "select email from core.binance_sub_accounts where user_id = %s", alice)["email"])]
    history = history + history  # a duplicate row too
    barrier = threading.Barrier(6)
    credited = []

    def worker():
        with psycopg.connect(db_url, autocommit=True, row_factory=dict_row) as conn:
            barrier.wait()
            rows = conn.execute("select * from admin.record_crypto_deposits(%s, %s)",
                                (alice, json.dumps(history))).fetchall()
            credited.extend(r for r in rows if r["credited"])

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(credited) == 1
    assert balance(owner, alice, "BTC")[0] == before + D("0.0123")
    books(owner)


def test_sweep_crash_between_send_and_record_is_repaired(app, owner, crypto, sandbox):
    alice = crypto["alice@example.com"]
    addr = address_for(app, owner, alice, "USDT", "TRX")
    control(sandbox, "send", coin="USDT", network="TRX", address=addr, amount="40", confirmations=1)
    assert service.poll_deposits(app) == {"credited": 1}
    from webapp import db
    (claimed,) = db.worker_call(app, "admin.claim_crypto_sweeps")
    free = master_free(sandbox, "USDT")
    service.client(app).sweep_to_master(claimed["email"], "USDT", claimed["amount"], claimed["client_tran_id"])
    # ... the worker dies here: the sweep is SENDING without its tranId.
    assert one(owner, "select status from core.crypto_sweeps")["status"] == "SENDING"
    assert service.sweep(app) == {"done": 1}  # looked up by clientTranId, not moved again
    assert master_free(sandbox, "USDT") == free + D("40")
    assert one(owner, "select status, tran_id from core.crypto_sweeps")["tran_id"]
    books(owner)


# ---------------------------------------------------------------- withdrawals

def test_withdrawal_happy_path_with_txid(app, owner, crypto, sandbox, client, login, caplog):
    alice = crypto["alice@example.com"]
    before = balance(owner, alice, "USDT")[0]
    book_id = saved_address(owner, alice, "USDT", "TRX", TRON_TO, usable=False)
    diag = fails(owner, "BSL01", "select * from api.create_crypto_withdrawal(%s, 'USDT', %s, 100, 'k0')", alice, book_id)
    assert diag.column_name == "address_id" and "a partir de" in diag.message_primary
    owner.execute("update core.crypto_address_book set usable_from = now() where id = %s", (book_id,))
    w = withdraw(owner, alice, "USDT", book_id, "100", key="k1")
    assert (w["status"], w["fee"], w["replayed"]) == ("PENDING", D("1"), False)
    assert withdraw(owner, alice, "USDT", book_id, "100", key="k1")["replayed"]  # idempotent
    assert balance(owner, alice, "USDT") == (before - 101, 101)
    free = master_free(sandbox, "USDT")
    assert service.send_withdrawals(app) == {"processing": 1}
    assert master_free(sandbox, "USDT") == free - 101  # Binance takes the fee out of what we send
    row = cwd(owner, w["withdrawal_id"])
    assert row["status"] == "PROCESSING" and row["binance_id"] and row["binance_status"] == 4
    control(sandbox, "withdrawal", withdrawOrderId=f"cwd-{w['withdrawal_id']}", status=6)
    assert service.recheck_withdrawals(app) == {"completed": 1}
    row = cwd(owner, w["withdrawal_id"])
    assert row["status"] == "COMPLETED" and row["tx_id"]
    assert balance(owner, alice, "USDT") == (before - 101, 0)
    kinds = [r["kind"] for r in owner.execute(
        "select e.kind from core.entries e where e.reference = %s order by e.id", (row["reference"],))]
    assert kinds == ["hold", "crypto_withdrawal"]
    assert service.recheck_withdrawals(app) == {}
    login("alice@example.com")
    page = client.get("/wallet/usdt/withdraw").get_data(as_text=True)
    assert f"https://tronscan.org/#/transaction/{row['tx_id']}" in page
    assert "ALERT" not in caplog.text  # Binance's amount + fee is what we sent
    assert owner.execute("select * from reporting.crypto_withdrawal_mismatches").fetchall() == []
    books(owner)


def test_provider_rejects_apply_and_later_rejection_release_the_hold(app, owner, crypto, sandbox):
    bob = crypto["bob@example.com"]
    before = balance(owner, bob, "BTC")[0]
    book_id = saved_address(owner, bob, "BTC", "BTC", BTC_TO)
    control(sandbox, "network", coin="BTC", network="BTC", withdrawEnable=False)  # our config does not know yet
    w1 = withdraw(owner, bob, "BTC", book_id, "0.01")
    assert service.send_withdrawals(app) == {"failed": 1}
    row = cwd(owner, w1["withdrawal_id"])
    assert row["status"] == "FAILED" and "Binance" in row["failure_reason"]
    assert balance(owner, bob, "BTC") == (before, 0)
    assert state(sandbox)["withdrawals"] == []
    service.refresh_config(app)  # the worker learns the suspension
    fails(owner, "BSS01", "select * from api.create_crypto_withdrawal(%s, 'BTC', %s, 0.01, 'k2')", bob, book_id)
    control(sandbox, "network", coin="BTC", network="BTC", withdrawEnable=True)
    service.refresh_config(app)
    w2 = withdraw(owner, bob, "BTC", book_id, "0.01")
    service.send_withdrawals(app)
    control(sandbox, "withdrawal", withdrawOrderId=f"cwd-{w2['withdrawal_id']}", status=3)
    assert service.recheck_withdrawals(app) == {"failed": 1}
    assert cwd(owner, w2["withdrawal_id"])["status"] == "FAILED"
    assert balance(owner, bob, "BTC") == (before, 0)
    books(owner)


def test_timeout_is_looked_up_and_never_sent_again(app, owner, crypto, sandbox):
    alice = crypto["alice@example.com"]
    book_id = saved_address(owner, alice, "ETH", "ETH", EVM_TO)
    w = withdraw(owner, alice, "ETH", book_id, "0.1")
    control(sandbox, "next_withdraw", mode="timeout", delay_seconds=1.5)
    assert service.send_withdrawals(app) == {"unknown": 1}
    row = cwd(owner, w["withdrawal_id"])
    assert row["status"] == "PROCESSING" and row["binance_id"] is None and row["last_error"]
    assert service.recheck_withdrawals(app) == {"processing": 1}
    assert cwd(owner, w["withdrawal_id"])["binance_id"]
    assert service.send_withdrawals(app) == {}
    assert len(state(sandbox)["withdrawals"]) == 1
    control(sandbox, "withdrawal", withdrawOrderId=f"cwd-{w['withdrawal_id']}", status=6)
    assert service.recheck_withdrawals(app) == {"completed": 1}
    assert len(state(sandbox)["withdrawals"]) == 1
    books(owner)


def test_5xx_not_created_fails_after_the_safe_window(app, owner, crypto, sandbox):
    alice = crypto["alice@example.com"]
    before = balance(owner, alice, "ETH")[0]
    book_id = saved_address(owner, alice, "ETH", "ETH", EVM_TO)
    w = withdraw(owner, alice, "ETH", book_id, "0.1")
    control(sandbox, "next_withdraw", mode="error500")
    assert service.send_withdrawals(app) == {"unknown": 1}
    assert service.recheck_withdrawals(app) == {"not_found": 1}  # not yet: Binance may still show it
    owner.execute("update core.crypto_withdrawals set claimed_at = now() - interval '31 minutes' where id = %s",
                  (w["withdrawal_id"],))
    assert service.recheck_withdrawals(app) == {"failed": 1}
    assert balance(owner, alice, "ETH") == (before, 0)
    assert state(sandbox)["withdrawals"] == []
    books(owner)


def test_crash_between_apply_and_record_is_repaired_by_the_reconciler(app, owner, crypto, sandbox):
    alice = crypto["alice@example.com"]
    book_id = saved_address(owner, alice, "BTC", "BTC", BTC_TO)
    w = withdraw(owner, alice, "BTC", book_id, "0.02")
    from webapp import db
    (claimed,) = db.worker_call(app, "admin.claim_crypto_withdrawals")
    service.client(app).withdraw("BTC", "BTC", claimed["address"], claimed["send_amount"], claimed["reference"])
    # ... the worker dies before recording: PROCESSING without Binance's id.
    assert cwd(owner, w["withdrawal_id"])["binance_id"] is None
    control(sandbox, "withdrawal", withdrawOrderId=claimed["reference"], status=6)
    assert service.recheck_withdrawals(app) == {"completed": 1}
    row = cwd(owner, w["withdrawal_id"])
    assert row["status"] == "COMPLETED" and row["binance_id"] and row["tx_id"]
    assert len(state(sandbox)["withdrawals"]) == 1
    books(owner)


def test_step_up_limit_and_balance_checks(app, owner, crypto):
    alice = crypto["alice@example.com"]
    book_id = saved_address(owner, alice, "BTC", "BTC", BTC_TO)
    enable_totp(owner, alice)
    diag = fails(owner, "BSV01", "select * from api.create_crypto_withdrawal(%s, 'BTC', %s, 0.01, 'k3')", alice, book_id)
    assert diag.column_name == "totp_code"
    code = totp_code(owner, alice)
    assert withdraw(owner, alice, "BTC", book_id, "0.01", code=code)["status"] == "PENDING"
    owner.execute("update core.kyc_limits set daily_crypto_withdrawal_brl = 6000")  # 0.01002 BTC ≈ 5.5k BRL at the bid
    diag = fails(owner, "BSL01", "select * from api.create_crypto_withdrawal(%s, 'BTC', %s, 0.01, 'k4', %s)", alice,
                 book_id, totp_code(owner, alice))
    assert "saque de cripto" in diag.message_primary
    owner.execute("update core.kyc_limits set daily_crypto_withdrawal_brl = 1000000")
    diag = fails(owner, "BSF01", "select * from api.create_crypto_withdrawal(%s, 'BTC', %s, 1, 'k5', %s)", alice,
                 book_id, totp_code(owner, alice))
    assert "taxa da rede" in diag.message_primary
    fails(owner, "BSV01", "select * from api.create_crypto_withdrawal(%s, 'BTC', %s, 0.00001, 'k6', %s)", alice,
          book_id, totp_code(owner, alice))  # below the network minimum
    fails(owner, "BSV01", "select * from api.create_crypto_withdrawal(%s, 'ETH', %s, 0.1, 'k7', %s)", alice,
          book_id, totp_code(owner, alice))  # a BTC address for ETH
    owner.execute("delete from core.prices")
    fails(owner, "BSS01", "select * from api.create_crypto_withdrawal(%s, 'BTC', %s, 0.01, 'k8', %s)", alice,
          book_id, totp_code(owner, alice))  # no price: no valuation
    books(owner)


def test_parallel_withdrawals_never_overdraw(app, owner, crypto, db_url):
    bob = crypto["bob@example.com"]
    book_id = saved_address(owner, bob, "BTC", "BTC", BTC_TO)
    avail = balance(owner, bob, "BTC")[0]  # 0.12
    barrier = threading.Barrier(16)
    outcomes = []

    def worker():
        with psycopg.connect(db_url, autocommit=True, row_factory=dict_row) as conn:
            barrier.wait()
            try:
                conn.execute("select * from api.create_crypto_withdrawal(%s, 'BTC', %s, 0.01, %s)",
                             (bob, book_id, str(uuid.uuid4())))
                outcomes.append("ok")
            except psycopg.Error as exc:
                outcomes.append(exc.sqlstate)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    fit = int(avail // D("0.01002"))
    assert outcomes.count("ok") == fit and set(outcomes) <= {"ok", "BSF01"}
    available, locked = balance(owner, bob, "BTC")
    assert available >= 0 and locked == fit * D("0.01002") and available + locked == avail
    books(owner)


@pytest.mark.parametrize("coin,network,address,memo,field", [
    ("BTC", "BTC", "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t5", "", "address"),  # bad bech32 checksum
    ("BTC", "BTC", TRON_TO, "", "address"),
    ("BTC", "BTC", BTC_TO, "123", "memo"),  # no memo on Bitcoin
    ("ETH", "ETH", "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD", "", "address"),  # EIP-55 checksum
    ("ETH", "ETH", "0x123", "", "address"),
    ("USDT", "ETH", BTC_TO, "", "address"),
    ("USDT", "BSC", "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAe", "", "address"),
    ("USDT", "TRX", "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6T", "", "address"),  # base58check
    ("USDT", "TRX", EVM_TO, "", "address"),
])
def test_invalid_addresses_are_refused_with_a_clear_message(app, owner, crypto, client, login, forms,
                                                            coin, network, address, memo, field):
    login("alice@example.com")
    url = f"/wallet/{coin.lower()}/addresses"
    resp = forms.post(url, {"network": network, "address": address, "memo": memo}, form_url=f"/wallet/{coin.lower()}/withdraw")
    assert resp.status_code == 422
    page = resp.get_data(as_text=True)
    assert "invalid-feedback" in page and ("inválid" in page or "memo" in page.lower())
    assert owner.execute("select count(*) as n from core.crypto_address_book").fetchone()["n"] == 0


@pytest.mark.parametrize("coin,network,address", [
    ("BTC", "BTC", "bc1qnotvalid"), ("BTC", "BTC", TRON_TO), ("ETH", "ETH", "0x123"), ("USDT", "ETH", TRON_TO),
    ("USDT", "BSC", BTC_TO), ("USDT", "TRX", EVM_TO), ("USDT", "TRX", "T123"),
])
def test_database_refuses_addresses_of_another_network(owner, crypto, coin, network, address):
    diag = fails(owner, "BSV01", "select * from api.add_crypto_address(%s, %s, %s, %s)",
                 crypto["alice@example.com"], coin, network, address)
    assert diag.column_name == "address" and "rede" in diag.message_primary


def test_web_journey_deposit_then_withdraw(app, owner, crypto, sandbox, client, login, forms):
    bob = crypto["bob@example.com"]
    login("bob@example.com")
    wallet = client.get("/wallet").get_data(as_text=True)
    assert 'href="/wallet/btc/deposit"' in wallet and 'href="/wallet/usdt/withdraw"' in wallet
    resp = forms.post("/wallet/usdt/deposit", {"network": "TRX"})
    assert resp.status_code == 302
    assert "Gerando seu endereço" in client.get("/wallet/usdt/deposit").get_data(as_text=True)
    service.provision(app)
    page = client.get("/wallet/usdt/deposit?network=TRX").get_data(as_text=True)
    addr = one(owner, "select address from core.crypto_deposit_addresses where user_id = %s", bob)["address"]
    assert addr in page and "Tron (TRC20)" in page and "Envie apenas USDT" in page
    before = balance(owner, bob, "USDT")[0]
    control(sandbox, "send", coin="USDT", network="TRX", address=addr, amount="75", confirmations=1)
    service.poll_deposits(app)
    assert balance(owner, bob, "USDT")[0] == before + 75

    resp = forms.post("/wallet/usdt/addresses", {"network": "TRX", "address": TRON_TO, "label": "Ledger"},
                      form_url="/wallet/usdt/withdraw")
    assert resp.status_code == 302
    page = client.get("/wallet/usdt/withdraw").get_data(as_text=True)
    assert "Ledger" in page and "liberado em" in page
    book_id = one(owner, "select id from core.crypto_address_book where user_id = %s", bob)["id"]
    resp = forms.post("/wallet/usdt/withdraw", {"address_id": book_id, "amount": "50"})
    assert resp.status_code == 422 and "a partir de" in resp.get_data(as_text=True)
    owner.execute("update core.crypto_address_book set usable_from = now() where id = %s", (book_id,))
    resp = forms.post("/wallet/usdt/withdraw", {"address_id": book_id, "amount": "50"})
    assert resp.status_code == 302, resp.get_data(as_text=True)[:3000]
    assert balance(owner, bob, "USDT") == (before + 75 - 51, 51)
    service.send_withdrawals(app)
    (w,) = owner.execute("select * from core.crypto_withdrawals").fetchall()
    control(sandbox, "withdrawal", withdrawOrderId=w["reference"], status=6)
    service.recheck_withdrawals(app)
    page = client.get("/wallet/usdt/withdraw").get_data(as_text=True)
    assert "Concluído" in page and "tronscan.org/#/transaction/" in page
    statement = client.get("/wallet/USDT").get_data(as_text=True)
    assert "TRX · " + TRON_TO in statement
    books(owner)


def test_reporting_views_for_the_auditor(app, owner, crypto, sandbox, db_url):
    alice = crypto["alice@example.com"]
    addr = address_for(app, owner, alice, "USDT", "TRX")
    control(sandbox, "send", coin="USDT", network="TRX", address=addr, amount="12")
    service.poll_deposits(app)
    service.refresh_config(app)
    from webapp.config import role_url
    with psycopg.connect(role_url(db_url, "exchange_auditor"), row_factory=dict_row) as conn:
        transit = conn.execute("select * from reporting.crypto_in_transit").fetchall()
        assert [(r["direction"], r["amount"]) for r in transit] == [("deposit", D("12"))]
        omni = {r["currency"]: r for r in conn.execute("select * from reporting.omnibus_vs_ledger")}
        assert set(omni) == {"BTC", "ETH", "USDT"} and omni["USDT"]["binance_free"] == D("100000")
        assert conn.execute("select count(*) as n from reporting.crypto_withdrawals").fetchone()["n"] == 0


def test_exit_policy_applies_and_med_tracing_follows_crypto_withdrawals(app, owner, crypto, sandbox):
    from tests.rails_support import new_customer
    admin = crypto["admin@example.com"]
    carla = new_customer(owner, "carla@example.com", kyc_level=2)
    owner.execute("select admin.adjust_balance(%s, %s, 'BTC', 0.02, 'saldo antigo', 'carla-btc')", (admin, carla))
    dep = one(owner, "select * from api.create_deposit(%s, 5000, 'mercadopago', 'carla-dep')", carla)
    owner.execute("select * from admin.confirm_pix_charge(reference => %s, provider => 'mercadopago', "
                  "provider_payment_id => 'mp-c1', status => 'approved', paid_amount => 5000, "
                  "end_to_end_id => 'E2ECARLA1')", (dep["reference"],))
    owner.execute("update core.settings set value = '24' where name = 'deposit_maturation_hours'")
    # the fresh BRL is gone (spent elsewhere): only the BTC covers the PIX that can still be clawed back
    owner.execute("select admin.adjust_balance(%s, %s, 'BRL', -5000, 'simula gasto', 'carla-brl')", (admin, carla))
    book_id = saved_address(owner, carla, "BTC", "BTC", BTC_TO)
    diag = fails(owner, "BSL01", "select * from api.create_crypto_withdrawal(%s, 'BTC', %s, 0.015, 'c1')", carla, book_id)
    assert "Hoje você pode sacar até" in diag.message_primary and diag.column_name == "amount"
    assert balance(owner, carla, "BTC") == (D("0.02"), 0)
    w = withdraw(owner, carla, "BTC", book_id, "0.01")  # what stays (0.00998 BTC at the bid) still covers R$ 5.000
    service.send_withdrawals(app)
    control(sandbox, "withdrawal", withdrawOrderId=f"cwd-{w['withdrawal_id']}", status=6)
    assert service.recheck_withdrawals(app) == {"completed": 1}
    trace = owner.execute("select * from admin.trace_pix_funds(%s, 'E2ECARLA1')", (admin,)).fetchall()
    assert [(t["kind"], t["currency"], t["amount"]) for t in trace if t["depth"] == 1] == [
        ("crypto_withdrawal", "BTC", D("0.01002"))]
    books(owner)


def test_sub_account_created_before_a_crash_is_found_not_recreated(app, owner, crypto, sandbox):
    alice = crypto["alice@example.com"]
    one(owner, "select * from api.request_crypto_deposit_address(%s, 'BTC', 'BTC')", alice)
    from webapp import db
    (row,) = db.worker_call(app, "admin.crypto_sub_accounts_to_create")
    email = service.client(app).create_virtual_sub_account(row["sub_account_string"])
    # ... the worker dies before recording the email; the next run must find it.
    owner.execute("update core.binance_sub_accounts set last_tried_at = now() - interval '1 minute'")
    service.provision(app)
    sub = one(owner, "select * from core.binance_sub_accounts where user_id = %s", alice)
    assert (sub["status"], sub["email"]) == ("READY", email)
    assert len(state(sandbox)["subAccounts"]) == 1
    assert one(owner, "select address from core.crypto_deposit_addresses where user_id = %s", alice)["address"]


def test_omnibus_vs_ledger_stays_level_through_deposit_sweep_and_withdrawal(app, owner, crypto, sandbox):
    alice = crypto["alice@example.com"]

    def difference():
        service.refresh_config(app)
        return one(owner, "select difference from reporting.omnibus_vs_ledger where currency = 'USDT'")["difference"]

    base = difference()
    addr = address_for(app, owner, alice, "USDT", "TRX")
    control(sandbox, "send", coin="USDT", network="TRX", address=addr, amount="40", confirmations=1)
    service.poll_deposits(app)
    assert difference() == base  # credited, still on the sub-account
    service.sweep(app)
    assert difference() == base  # on the master now
    book_id = saved_address(owner, alice, "USDT", "TRX", TRON_TO)
    w = withdraw(owner, alice, "USDT", book_id, "20")
    service.send_withdrawals(app)
    assert difference() == base  # Binance is sending it; the ledger still owes it
    control(sandbox, "withdrawal", withdrawOrderId=f"cwd-{w['withdrawal_id']}", status=6)
    service.recheck_withdrawals(app)
    assert difference() == base
    books(owner)


def test_customer_cancels_a_queued_withdrawal_and_suspended_deposits_are_refused(app, owner, crypto, sandbox):
    bob = crypto["bob@example.com"]
    before = balance(owner, bob, "ETH")
    book_id = saved_address(owner, bob, "ETH", "ETH", EVM_TO)
    w = withdraw(owner, bob, "ETH", book_id, "0.5")
    assert one(owner, "select api.cancel_crypto_withdrawal(%s, %s) as s", bob, w["withdrawal_id"])["s"] == "CANCELLED"
    assert balance(owner, bob, "ETH") == before and service.send_withdrawals(app) == {}
    w2 = withdraw(owner, bob, "ETH", book_id, "0.5")
    service.send_withdrawals(app)
    fails(owner, "BSS01", "select api.cancel_crypto_withdrawal(%s, %s)", bob, w2["withdrawal_id"])  # already sent
    fails(owner, "BSN01", "select api.cancel_crypto_withdrawal(%s, %s)", crypto["alice@example.com"], w2["withdrawal_id"])
    control(sandbox, "network", coin="USDT", network="BSC", depositEnable=False)
    service.refresh_config(app)
    fails(owner, "BSS01", "select * from api.request_crypto_deposit_address(%s, 'USDT', 'BSC')", bob)
    books(owner)


def test_a_network_that_needs_a_memo_refuses_a_missing_one(owner, crypto):
    alice = crypto["alice@example.com"]
    owner.execute("update core.crypto_networks set needs_memo = true, memo_regex = '^[0-9]{1,10}$' "
                  "where coin = 'USDT' and network = 'TRX'")
    diag = fails(owner, "BSV01", "select * from api.add_crypto_address(%s, 'USDT', 'TRX', %s)", alice, TRON_TO)
    assert diag.column_name == "memo" and "exige memo" in diag.message_primary
    diag = fails(owner, "BSV01", "select * from api.add_crypto_address(%s, 'USDT', 'TRX', %s, 'abc')", alice, TRON_TO)
    assert diag.column_name == "memo"
    row = one(owner, "select * from api.add_crypto_address(%s, 'USDT', 'TRX', %s, '12345')", alice, TRON_TO)
    assert row["created"]
    assert one(owner, "select memo from core.crypto_address_book where id = %s", row["address_id"])["memo"] == "12345"


def test_crypto_withdrawals_above_the_threshold_wait_for_approval(app, owner, crypto, sandbox, client, login):
    """The day's PIX and crypto withdrawals together, valued in BRL, pass the approval threshold: the
    withdrawal waits for an admin (nothing is sent), who approves or rejects it on /admin/crypto."""
    alice = crypto["alice@example.com"]
    owner.execute("update core.settings set value = '5000.00' where name = 'withdrawal_approval_threshold_brl'")
    book = saved_address(owner, alice, "BTC", "BTC", "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq")
    small = withdraw(owner, alice, "BTC", book, "0.002")                 # ~R$ 1.110: sent as usual
    big = withdraw(owner, alice, "BTC", book, "0.01")                    # ~R$ 5.550 more today: waits
    assert (small["status"], big["status"]) == ("PENDING", "AWAITING_APPROVAL")
    claimed = [r["withdrawal_id"] for r in owner.execute("select * from admin.claim_crypto_withdrawals()")]
    assert big["withdrawal_id"] not in claimed
    login("admin@example.com")
    page = client.get("/admin/crypto").get_data(as_text=True)
    assert f'data-testid="approve-crypto-{big["withdrawal_id"]}"' in page
    from tests.conftest import Forms
    Forms(client).post(f"/admin/crypto/withdrawals/{big['withdrawal_id']}/reject", {"reason": "Destino suspeito"},
                       form_url="/admin/crypto")
    row = cwd(owner, big["withdrawal_id"])
    assert row["status"] == "REJECTED" and row["failure_reason"] == "Destino suspeito"
    assert owner.execute("select status from core.holds where id = %s", (row["hold_id"],)).fetchone()["status"] == "released"
    books(owner)
