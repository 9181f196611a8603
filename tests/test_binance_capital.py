"""Binance wallet client (capital / sub-account SAPI) against the emulator over real HTTP,
with real signatures. No database."""
from __future__ import annotations

import time
import urllib.parse
from datetime import datetime
from decimal import Decimal

import pytest
import requests

from webapp.chain import validate_address
from webapp.providers.binance import (
    DEPOSIT_CREDITED_CANNOT_WITHDRAW, DEPOSIT_PENDING, DEPOSIT_SUCCESS, DEPOSIT_WRONG, WITHDRAW_COMPLETED,
    WITHDRAW_FAILURE, WITHDRAW_PROCESSING, WITHDRAW_REJECTED, BinanceAuthError, BinanceClient,
    BinanceOutcomeUnknown, BinanceRejected, CoinConfig, sign,
)
from sandbox.binance import BackgroundServer, create_app

KEY, SECRET = "cap-key", "cap-secret"
D = Decimal


@pytest.fixture(scope="module")
def sandbox():
    server = BackgroundServer(create_app({"api_key": KEY, "secret_key": SECRET}))
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _reset(sandbox):
    requests.post(f"{sandbox.url}/_sandbox/reset", timeout=2).raise_for_status()


@pytest.fixture
def client(sandbox):
    return BinanceClient(KEY, SECRET, base_url=sandbox.url, timeout=2)


def control(sandbox, name, expect=200, **body):
    resp = requests.post(f"{sandbox.url}/_sandbox/wallet/{name}", json=body, timeout=2)
    assert resp.status_code == expect, resp.text
    return resp.json()


def state(sandbox):
    return requests.get(f"{sandbox.url}/_sandbox/wallet/state", timeout=2).json()


def master_free(sandbox, coin):
    return D(state(sandbox)["master"]["free"][coin])


# ---------------------------------------------------------------- signing / config

def test_sapi_endpoints_are_signed_and_weighted(sandbox, client):
    now = int(time.time() * 1000)
    qs = urllib.parse.urlencode({"recvWindow": 5000, "timestamp": now})
    url = f"{sandbox.url}/sapi/v1/capital/config/getall?{qs}"
    bad = requests.get(f"{url}&signature={sign('wrong', qs)}", headers={"X-MBX-APIKEY": KEY}, timeout=2)
    assert (bad.status_code, bad.json()["code"]) == (400, -1022)
    old_qs = urllib.parse.urlencode({"timestamp": now - 10_000})
    old = requests.get(f"{sandbox.url}/sapi/v1/capital/config/getall?{old_qs}&signature={sign(SECRET, old_qs)}",
                       headers={"X-MBX-APIKEY": KEY}, timeout=2)
    assert old.json()["code"] == -1021
    ok = requests.get(f"{url}&signature={sign(SECRET, qs)}", headers={"X-MBX-APIKEY": KEY}, timeout=2)
    assert ok.status_code == 200 and int(ok.headers["X-MBX-USED-WEIGHT-1M"]) >= 10
    with pytest.raises(BinanceAuthError):
        BinanceClient("nobody", SECRET, base_url=sandbox.url).coin_configs()


def test_coin_configs(client):
    cfg = client.coin_configs()
    assert set(cfg) == {"BTC", "ETH", "USDT"} and all(isinstance(c, CoinConfig) for c in cfg.values())
    assert set(cfg["USDT"].networks) == {"TRX", "ETH", "BSC"}
    assert set(cfg["BTC"].networks) == {"BTC"} and set(cfg["ETH"].networks) == {"ETH"}
    trc20 = cfg["USDT"].networks["TRX"]
    assert trc20.name == "Tron (TRC20)" and trc20.withdraw_fee == D("1") and trc20.withdraw_min == D("10")
    assert trc20.withdraw_integer_multiple == D("0.000001") and trc20.deposit_enable and trc20.withdraw_enable
    assert trc20.address_regex.startswith("^T") and trc20.memo_regex == "" and not trc20.same_address
    assert isinstance(trc20.min_confirm, int) and isinstance(trc20.unlock_confirm, int)
    assert [n.network for n in cfg["USDT"].networks.values() if n.is_default] == ["ETH"]
    assert cfg["BTC"].free == D("2") and isinstance(cfg["BTC"].free, Decimal)
    assert cfg["ETH"].networks["ETH"].min_confirm == 6
    assert list(client.coin_configs(["BTC"])) == ["BTC"]


def test_network_suspension_control(sandbox, client):
    control(sandbox, "network", coin="USDT", network="TRX", withdrawEnable=False)
    trc20 = client.coin_configs(["USDT"])["USDT"].networks["TRX"]
    assert not trc20.withdraw_enable and trc20.deposit_enable and trc20.withdraw_desc
    control(sandbox, "network", coin="USDT", network="TRX", depositEnable=False, withdrawEnable=True)
    trc20 = client.coin_configs(["USDT"])["USDT"].networks["TRX"]
    assert not trc20.deposit_enable and trc20.withdraw_enable


# ---------------------------------------------------------------- sub-accounts and addresses

def test_sub_account_and_valid_stable_addresses(sandbox, client):
    email = client.create_virtual_sub_account("cust42")
    assert email.startswith("cust42_virtual@") and email.endswith("noemail.com")
    assert email in client.sub_account_emails() and "nobody@x.com" not in client.sub_account_emails()
    with pytest.raises(BinanceRejected):
        client.create_virtual_sub_account("cust42")  # the same string twice
    other = client.create_virtual_sub_account("cust43")
    seen = {}
    for coin, network in (("BTC", "BTC"), ("ETH", "ETH"), ("USDT", "TRX"), ("USDT", "ETH"), ("USDT", "BSC")):
        addr = client.deposit_address(email, coin, network)
        assert validate_address(coin, network, addr.address) == addr.address  # valid AND normalised
        assert addr.tag == "" and addr.address in addr.url
        assert client.deposit_address(email, coin, network).address == addr.address  # stable
        assert client.deposit_address(other, coin, network).address != addr.address
        seen[(coin, network)] = addr.address
    assert seen[("BTC", "BTC")].startswith("bc1q") and seen[("USDT", "TRX")].startswith("T")
    assert seen[("ETH", "ETH")] == seen[("USDT", "ETH")] == seen[("USDT", "BSC")]  # one EVM key
    # Deterministic: the same email gets the same address after a restart of the emulator.
    requests.post(f"{sandbox.url}/_sandbox/reset", timeout=2)
    assert client.create_virtual_sub_account("cust42") == email
    assert client.deposit_address(email, "USDT", "TRX").address == seen[("USDT", "TRX")]
    with pytest.raises(BinanceRejected) as exc:
        client.deposit_address("ghost_virtual@x.com", "BTC", "BTC")
    assert exc.value.code == -12001
    with pytest.raises(BinanceRejected):
        client.deposit_address(email, "BTC", "TRX")


# ---------------------------------------------------------------- deposits

def test_deposit_lifecycle_and_sweep(sandbox, client):
    email = client.create_virtual_sub_account("dep1")
    addr = client.deposit_address(email, "USDT", "ETH").address
    sent = control(sandbox, "send", coin="USDT", network="ETH", address=addr.lower(), amount="250.5")
    (dep,) = client.sub_deposit_history(email)
    assert (dep.id, dep.status, dep.amount, dep.network, dep.email) == (sent["id"], DEPOSIT_PENDING, D("250.5"),
                                                                       "ETH", email)
    assert dep.tx_id.startswith("0x") and dep.address == addr.lower() and isinstance(dep.insert_time, datetime)
    assert (dep.confirmations, dep.required_confirmations) == (0, 6) and not dep.is_credited

    control(sandbox, "confirm", id=dep.id, confirmations=3)
    assert client.sub_deposit_history(email)[0].confirmations == 3
    control(sandbox, "confirm", id=dep.id, status=6)  # credited but cannot withdraw
    dep6 = client.sub_deposit_history(email)[0]
    assert dep6.status == DEPOSIT_CREDITED_CANNOT_WITHDRAW and dep6.is_credited
    with pytest.raises(BinanceRejected):  # locked coins cannot be swept yet
        client.sweep_to_master(email, "USDT", D("250.5"), "sweep_dep1")
    control(sandbox, "confirm", txId=dep.tx_id)  # all the way
    dep1 = client.sub_deposit_history(email, coin="USDT", status=DEPOSIT_SUCCESS)[0]
    assert dep1.status == DEPOSIT_SUCCESS and dep1.confirmations == dep1.required_confirmations
    control(sandbox, "confirm", expect=409, id=dep.id, status=0)  # never backwards

    before = master_free(sandbox, "USDT")
    t = client.sweep_to_master(email, "USDT", D("250.5"), "sweep_dep1")
    assert t.tran_id > 0 and t.client_tran_id == "sweep_dep1"
    assert master_free(sandbox, "USDT") == before + D("250.5")
    again = client.sweep_to_master(email, "USDT", D("250.5"), "sweep_dep1")  # a resend: no second move
    assert again.tran_id == t.tran_id and master_free(sandbox, "USDT") == before + D("250.5")
    found = client.get_universal_transfer("sweep_dep1", from_email=email)
    assert (found.tran_id, found.amount, found.status, found.from_email) == (t.tran_id, D("250.5"), "SUCCESS", email)
    assert client.get_universal_transfer("sweep_dep1") is None  # default lists transfers from the master
    assert [r.tran_id for r in client.universal_transfers(from_email=email)] == [t.tran_id]
    with pytest.raises(BinanceRejected) as exc:
        client.sweep_to_master(email, "USDT", D("1"), "sweep_dep1_b")  # nothing left
    assert exc.value.rejected and not exc.value.outcome_unknown


def test_deposit_history_filters_and_duplicate_rows(sandbox, client):
    email = client.create_virtual_sub_account("dep2")
    btc = client.deposit_address(email, "BTC", "BTC").address
    trx = client.deposit_address(email, "USDT", "TRX").address
    a = control(sandbox, "send", coin="BTC", network="BTC", address=btc.upper(), amount="0.01")
    b = control(sandbox, "send", coin="USDT", network="TRX", address=trx, amount="99", memo="", confirmations=1)
    assert b["status"] == DEPOSIT_SUCCESS  # TRC20 needs 1 confirmation and no unlock
    rows = client.sub_deposit_history(email)
    assert [r.id for r in rows] == [b["id"], a["id"]]  # newest first
    assert [r.id for r in client.sub_deposit_history(email, coin="BTC")] == [a["id"]]
    assert [r.id for r in client.sub_deposit_history(email, tx_id=b["txId"])] == [b["id"]]
    control(sandbox, "duplicate", kind="deposit", id=a["id"])
    ids = [r.id for r in client.sub_deposit_history(email, coin="BTC")]
    assert ids == [a["id"], a["id"]]  # the same row twice: callers dedupe by id


def test_wrong_network_deposit_is_recorded_but_never_credited(sandbox, client):
    email = client.create_virtual_sub_account("dep3")
    evm = client.deposit_address(email, "ETH", "ETH").address
    wrong = control(sandbox, "send", coin="ETH", network="BSC", address=evm, amount="1")  # ETH over BSC: not listed
    (dep,) = client.sub_deposit_history(email)
    assert dep.id == wrong["id"] and dep.status == DEPOSIT_WRONG and not dep.is_credited
    control(sandbox, "confirm", expect=409, id=dep.id)
    assert state(sandbox)["subAccounts"][0]["free"] == {}
    # USDT over BSC to the same EVM address is a normal deposit (the address is shared).
    assert control(sandbox, "send", coin="USDT", network="BSC", address=evm, amount="5")["status"] == 0
    control(sandbox, "send", expect=404, coin="USDT", network="TRX",
            address="TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t", amount="5")  # nobody's address
    control(sandbox, "send", expect=400, coin="USDT", network="SOL", address=evm, amount="5")


# ---------------------------------------------------------------- withdrawals

TRON_TO = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"
BTC_TO = "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"


def test_withdraw_and_complete(sandbox, client):
    before = master_free(sandbox, "USDT")
    wid = client.withdraw("USDT", "TRX", TRON_TO, D("100"), "wd_1001")
    assert len(wid) == 32 and master_free(sandbox, "USDT") == before - D("100")
    w = client.get_withdrawal("wd_1001", coin="USDT")
    assert (w.id, w.status, w.withdraw_order_id, w.network, w.address) == (wid, WITHDRAW_PROCESSING, "wd_1001",
                                                                         "TRX", TRON_TO)
    assert w.transaction_fee == D("1") and w.amount == D("99") and w.tx_id == "" and not (w.is_completed or w.is_failed)
    assert isinstance(w.apply_time, datetime) and w.apply_time.tzinfo is not None
    assert client.coin_configs(["USDT"])["USDT"].withdrawing == D("100")
    control(sandbox, "withdrawal", id=wid, status=WITHDRAW_COMPLETED)
    done = client.get_withdrawal("wd_1001")
    assert done.is_completed and done.tx_id and done.complete_time is not None and done.confirm_no >= 1
    control(sandbox, "withdrawal", expect=409, id=wid, status=WITHDRAW_FAILURE)  # final
    assert client.get_withdrawal("wd_unknown") is None
    assert [x.id for x in client.withdraw_history(ids=[wid])] == [wid]


def test_withdraw_fail_and_reject_give_the_coins_back(sandbox, client):
    before = master_free(sandbox, "BTC")
    a = client.withdraw("BTC", "BTC", BTC_TO, D("0.5"), "wd_f1")
    b = client.withdraw("BTC", "BTC", BTC_TO, D("0.25"), "wd_r1")
    assert master_free(sandbox, "BTC") == before - D("0.75")
    control(sandbox, "withdrawal", id=a, status=WITHDRAW_FAILURE, info="node down")
    control(sandbox, "withdrawal", withdrawOrderId="wd_r1", status=WITHDRAW_REJECTED)
    fa, fb = client.get_withdrawal("wd_f1"), client.get_withdrawal("wd_r1")
    assert (fa.id, fa.status, fa.info, fa.is_failed) == (a, WITHDRAW_FAILURE, "node down", True)
    assert (fb.id, fb.status, fb.is_failed) == (b, WITHDRAW_REJECTED, True) and fb.info
    assert master_free(sandbox, "BTC") == before
    assert {x.id for x in client.withdraw_history(coin="BTC", status=WITHDRAW_FAILURE)} == {a}
    control(sandbox, "duplicate", kind="withdrawal", id=a)
    assert [x.id for x in client.withdraw_history(withdraw_order_id="wd_f1")] == [a, a]


@pytest.mark.parametrize("kwargs,code", [
    ({"coin": "USDT", "network": "TRX", "address": TRON_TO, "amount": D("9")}, -4022),  # below withdrawMin 10
    ({"coin": "USDT", "network": "TRX", "address": TRON_TO, "amount": D("10.0000001")}, -4024),  # multiple
    ({"coin": "USDT", "network": "TRX", "address": BTC_TO, "amount": D("50")}, -4021),  # address for another chain
    ({"coin": "USDT", "network": "ETH", "address": "0x123", "amount": D("50")}, -4021),
    ({"coin": "BTC", "network": "BTC", "address": BTC_TO, "amount": D("3")}, -4026),  # master has 2 BTC
    ({"coin": "BTC", "network": "TRX", "address": TRON_TO, "amount": D("1")}, -4018),  # no such network
    ({"coin": "USDT", "network": "TRX", "address": TRON_TO, "amount": D("50"), "address_tag": "1"}, -4106),
])
def test_withdraw_rejections(sandbox, client, kwargs, code):
    with pytest.raises(BinanceRejected) as exc:
        client.withdraw(withdraw_order_id="wd_bad", **kwargs)
    assert exc.value.code == code and exc.value.rejected and not exc.value.outcome_unknown and exc.value.msg
    assert state(sandbox)["withdrawals"] == []


def test_withdraw_suspended_network(sandbox, client):
    control(sandbox, "network", coin="USDT", network="TRX", withdrawEnable=False)
    with pytest.raises(BinanceRejected) as exc:
        client.withdraw("USDT", "TRX", TRON_TO, D("50"), "wd_s1")
    assert exc.value.code == -4019
    assert client.withdraw("USDT", "ETH", "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", D("50"), "wd_s2")


def test_insufficient_balance_after_setting_it(sandbox, client):
    control(sandbox, "balance", coin="ETH", free="0.01")
    with pytest.raises(BinanceRejected) as exc:
        client.withdraw("ETH", "ETH", "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", D("0.02"), "wd_i1")
    assert exc.value.code == -4026 and "insufficient" in exc.value.msg


def test_repeated_withdraw_order_id_never_creates_a_second_withdrawal(sandbox, client):
    first = client.withdraw("USDT", "TRX", TRON_TO, D("100"), "wd_dup")
    after_first = master_free(sandbox, "USDT")
    assert client.withdraw("USDT", "TRX", TRON_TO, D("100"), "wd_dup") == first  # refused by Binance → existing
    assert master_free(sandbox, "USDT") == after_first and len(state(sandbox)["withdrawals"]) == 1
    # Raw: the emulator refuses the repeat (the client hid that above).
    qs = urllib.parse.urlencode({"coin": "USDT", "network": "TRX", "address": TRON_TO, "amount": "100",
                                 "withdrawOrderId": "wd_dup", "timestamp": int(time.time() * 1000)})
    raw = requests.post(f"{sandbox.url}/sapi/v1/capital/withdraw/apply", data=f"{qs}&signature={sign(SECRET, qs)}",
                        headers={"X-MBX-APIKEY": KEY, "Content-Type": "application/x-www-form-urlencoded"},
                        timeout=2)
    assert raw.status_code == 400 and raw.json()["code"] == -4035


def test_timeout_after_create_is_outcome_unknown_and_found_by_history(sandbox):
    quick = BinanceClient(KEY, SECRET, base_url=sandbox.url, timeout=0.4)
    control(sandbox, "next_withdraw", mode="timeout", delay_seconds=1.2)
    with pytest.raises(BinanceOutcomeUnknown) as exc:
        quick.withdraw("USDT", "TRX", TRON_TO, D("20"), "wd_t1")
    assert exc.value.outcome_unknown and not exc.value.rejected
    found = quick.get_withdrawal("wd_t1")
    assert found is not None and found.status == WITHDRAW_PROCESSING
    time.sleep(1)  # let the sandbox's late answer finish


def test_5xx_is_outcome_unknown_created_or_not(sandbox, client):
    control(sandbox, "next_withdraw", mode="error500")  # not created
    with pytest.raises(BinanceOutcomeUnknown) as exc:
        client.withdraw("USDT", "TRX", TRON_TO, D("20"), "wd_e1")
    assert (exc.value.http_status, exc.value.code) == (500, -1007)
    assert client.get_withdrawal("wd_e1") is None  # so resending the same id is safe
    assert client.withdraw("USDT", "TRX", TRON_TO, D("20"), "wd_e1")
    control(sandbox, "next_withdraw", mode="error500", create=True, status=503)
    with pytest.raises(BinanceOutcomeUnknown) as exc:
        client.withdraw("USDT", "TRX", TRON_TO, D("20"), "wd_e2")
    assert exc.value.http_status == 503 and client.get_withdrawal("wd_e2") is not None


def test_client_validates_arguments(client):
    with pytest.raises(TypeError):
        client.withdraw("USDT", "TRX", TRON_TO, 20.0, "wd_x")
    with pytest.raises(ValueError):
        client.withdraw("USDT", "TRX", TRON_TO, D("20"), "has space")
    with pytest.raises(TypeError):
        client.sweep_to_master("a@b", "USDT", 1, "t1")
    with pytest.raises(ValueError):
        client.sweep_to_master("a@b", "USDT", D("1"), "")


# ---------------------------------------------------------------- ids and the page

def test_ids_grow_across_emulator_restarts(client):
    seen = []
    for _ in range(2):  # two emulator instances one after the other, like a restart
        server = BackgroundServer(create_app({"api_key": KEY, "secret_key": SECRET}))
        try:
            c = BinanceClient(KEY, SECRET, base_url=server.url, timeout=2)
            order = c.place_market_order("USDTBRL", "BUY", "ids_1", quote_order_qty=D("54"))
            wid = c.withdraw("USDT", "TRX", TRON_TO, D("20"), "ids_1")
            email = c.create_virtual_sub_account("ids")
            addr = c.deposit_address(email, "USDT", "TRX").address
            requests.post(f"{server.url}/_sandbox/wallet/send",
                          json={"coin": "USDT", "network": "TRX", "address": addr, "amount": "30",
                                "confirmations": 1}, timeout=2).raise_for_status()
            t = c.sweep_to_master(email, "USDT", D("30"), "ids_sweep")
            dep = c.sub_deposit_history(email)[0]
            seen.append((order.order_id, order.fills[0].trade_id, int(wid[:16], 16), t.tran_id, int(dep.id)))
        finally:
            server.stop()
    first, second = seen
    assert all(a > 10**15 for a in first)  # ms-time x 1000
    assert min(second) > max(first)


def test_wallet_page_and_form_controls(sandbox, client):
    email = client.create_virtual_sub_account("page1")
    addr = client.deposit_address(email, "BTC", "BTC").address
    page = requests.get(f"{sandbox.url}/_sandbox/wallet", timeout=2)
    assert page.status_code == 200 and addr in page.text and "Send an on-chain deposit" in page.text
    resp = requests.post(f"{sandbox.url}/_sandbox/wallet/send", allow_redirects=False, timeout=2,
                         data={"coin": "BTC", "network": "BTC", "address": addr, "amount": "0.002", "memo": ""})
    assert resp.status_code == 303 and resp.headers["Location"].endswith("/_sandbox/wallet")
    assert client.sub_deposit_history(email)[0].amount == D("0.002")
