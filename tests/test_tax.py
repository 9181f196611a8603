"""The tax statement (sql/tax.sql, webapp/tax) of a scripted year of trades, against figures worked
out by hand below (written as literals, not by running the same formula again).

The year is 2025: a customer buys BTC at the desk at two prices (one buy in 2024, carried), buys by P2P
(paying the taker's fee in BTC), receives BTC from another customer, sells part at the desk twice,
withdraws to an own wallet (with the network fee), buys ETH, and sends BTC to another customer at 23:30
of 31/12 (Brasília: in 2025) and at 00:30 of 1/1 (in 2026). Each operation runs through the real
functions now, then its entries are dated back to the day of the script (the owner lifts the
immutability trigger for that, in this throwaway database only). Books checked at the end.
"""
from __future__ import annotations

import csv
import io
import uuid
from datetime import datetime, timezone
from decimal import Decimal as D
from zoneinfo import ZoneInfo

import psycopg
import pytest
from werkzeug.security import generate_password_hash

from tests.conftest import DEMO_PASSWORD, books
from tests.sql.test_market_sql import fill, quote, settle, setup_market

BRT = ZoneInfo("America/Sao_Paulo")
BTC_TO = "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"


def key() -> str:
    return str(uuid.uuid4())


def one(conn, query: str, *args):
    return conn.execute(query, args).fetchone()


class Script:
    """Runs each step through the real functions, then dates its entries back to the step's day."""

    def __init__(self, owner, worker, bob, admin):
        self.owner, self.worker, self.bob, self.admin = owner, worker, bob, admin
        self.mark = self._last_entry()
        self.tina = one(owner, "select api.register_user('tina@example.com', %s, 'Tina Reis') as id",
                        generate_password_hash(DEMO_PASSWORD, method="pbkdf2:sha256:1000"))["id"]
        owner.execute("update core.users set kyc_level = 2 where id = %s", (self.tina,))
        owner.execute("select core.mark_email_verified(%s)", (self.tina,))
        owner.execute("select * from admin.adjust_balance(%s, %s, 'BRL', 10000.00, 'saldo de teste', %s)",
                      (admin, self.tina, key()))
        self.at(2024, 10, 1, 9, 0)

    def _last_entry(self) -> int:
        return one(self.owner, "select coalesce(max(id), 0) as n from core.entries")["n"]

    def at(self, year, month, day, hour=12, minute=0):
        """Every entry since the last step happened at this moment of Brasília."""
        when = datetime(year, month, day, hour, minute, tzinfo=BRT)
        # the ledger is partitioned by month: the month must exist, and an entry's postings carry its time
        self.owner.execute("select core.create_ledger_partition(%s::date)", (when.astimezone(timezone.utc).date(),))
        self.owner.execute("alter table core.entries disable trigger entries_immutable")
        self.owner.execute("alter table core.postings disable trigger postings_immutable")
        try:
            self.owner.execute("update core.entries set created_at = %s where id > %s", (when, self.mark))
            self.owner.execute("update core.postings set created_at = %s where entry_id > %s", (when, self.mark))
        finally:
            self.owner.execute("alter table core.entries enable trigger entries_immutable")
            self.owner.execute("alter table core.postings enable trigger postings_immutable")
        self.mark = self._last_entry()

    def desk(self, side, crypto, amount, executed, cumm, price):
        """A market order settled from one Binance fill without commission; returns the settlement."""
        order = one(self.owner, "select * from api.execute_quote(%s, %s, %s)", self.tina,
                    quote(self.owner, self.tina, side, crypto, amount), key())
        return settle(self.owner, order["order_id"], int(order["order_id"]) + 1000, executed, cumm,
                      [fill(price, executed, "0", crypto if side == "buy" else "BRL")])

    def send(self, sender, recipient_email, amount):
        one(self.owner, "select * from api.transfer(%s, %s, 'BTC', %s, %s)", sender, recipient_email, D(amount), key())


@pytest.fixture
def script(owner, worker, demo):
    setup_market(owner, {"BTCBRL": "560000", "ETHBRL": "20000", "USDTBRL": "5.40"})
    return Script(owner, worker, demo["bob@example.com"], demo["admin@example.com"])


def run_year(script) -> None:
    s, owner = script, script.owner
    # 2024-11-10 desk buy: R$ 1000.00 less spread 5.00 and fee 3.00 = 992.00 sent, 0.002 BTC bought
    r = s.desk("buy", "BTC", "1000.00", "0.002", "992.00", "496000")
    assert (r["brl_amount"], r["crypto_amount"]) == (D("1000.00"), D("0.002"))
    s.at(2024, 11, 10)
    # 2025-01-15 desk buy: R$ 2000.00 less 10.00 and 6.00 = 1984.00 sent, 0.003 BTC
    r = s.desk("buy", "BTC", "2000.00", "0.003", "1984.00", "661333.33")
    assert (r["brl_amount"], r["crypto_amount"]) == (D("2000.00"), D("0.003"))
    s.at(2025, 1, 15)
    # 2025-02-10 P2P buy from bob, platform balance: R$ 600.00 at 600000 = 0.001 BTC, 0.2 % taker fee
    offer = one(owner, "select * from api.create_p2p_offer(user_id => %s, side => 'SELL', crypto => 'BTC', "
                       "price_type => 'fixed', total_amount => 0.01, min_brl => 100.00, max_brl => 3000.00, "
                       "payment_methods => array['BALANCE'], idempotency_key => %s, fixed_price => 600000.00)",
                s.bob, key())["offer_id"]
    trade = one(owner, "select * from api.open_p2p_trade(user_id => %s, offer_id => %s, payment_method => 'BALANCE', "
                       "idempotency_key => %s, brl_amount => 600.00)", s.tina, offer, key())
    row = one(owner, "select * from core.p2p_trades where id = %s", trade["trade_id"])
    assert (row["status"], row["crypto_amount"], row["buyer_fee"], row["brl_amount"]) == \
        ("COMPLETED", D("0.001"), D("0.000002"), D("600.00"))
    s.at(2025, 2, 10)
    # 2025-03-05 bob sends 0.000002 BTC
    s.send(s.bob, "tina@example.com", "0.000002")
    s.at(2025, 3, 5)
    # 2025-04-20 desk sell 0.003 BTC for 2100.00: less spread 10.50 and fee 6.30 = 2083.20 received
    r = s.desk("sell", "BTC", "0.003", "0.003", "2100.00", "700000")
    assert r["brl_amount"] == D("2083.20")
    s.at(2025, 4, 20)
    # 2025-06-01 on-chain withdrawal of 0.001 BTC plus the 0.00002 network fee, to her own wallet
    book = one(owner, "select * from api.add_crypto_address(%s, 'BTC', 'BTC', %s, '', 'minha carteira')",
               s.tina, BTC_TO)["address_id"]
    owner.execute("update core.crypto_address_book set usable_from = now() - interval '1 second' where id = %s", (book,))
    w = one(owner, "select * from api.create_crypto_withdrawal(%s, 'BTC', %s, 0.001, %s)", s.tina, book, key())
    assert w["fee"] == D("0.00002")
    assert [c["withdrawal_id"] for c in s.worker.execute("select * from admin.claim_crypto_withdrawals()")] == \
        [w["withdrawal_id"]]
    assert one(s.worker, "select admin.record_crypto_withdrawal(%s, 'b-1', 6, 'tx-1') as s",
               w["withdrawal_id"])["s"] == "COMPLETED"
    s.at(2025, 6, 1)
    # 2025-06-15 desk sell 0.00098 BTC for 686.00: less 3.43 and 2.06 (0.3 % of 686 = 2.058) = 680.51
    r = s.desk("sell", "BTC", "0.00098", "0.00098", "686.00", "700000")
    assert r["brl_amount"] == D("680.51")
    s.at(2025, 6, 15)
    # 2025-07-01 desk buy of ETH: R$ 500.00 less 2.50 and 1.50 = 496.00 sent, 0.0248 ETH
    r = s.desk("buy", "ETH", "500.00", "0.0248", "496.00", "20000")
    assert (r["brl_amount"], r["crypto_amount"]) == (D("500.00"), D("0.0248"))
    s.at(2025, 7, 1)
    # 0.0001 BTC to bob at 23:30 of 31/12/2025 and again at 00:30 of 1/1/2026 (Brasília)
    s.send(s.tina, "bob@example.com", "0.0001")
    s.at(2025, 12, 31, 23, 30)
    s.send(s.tina, "bob@example.com", "0.0001")
    s.at(2026, 1, 1, 0, 30)


# Worked out by hand (BTC, weighted average cost; Q quantity, C total cost in BRL):
#   2024-11-10 buy            +0.002              Q 0.002     C 1000.00
#   2025-01-15 buy            +0.003  cost 2000   Q 0.005     C 3000.00
#   2025-02-10 P2P buy        +0.000998 (0.001 − 0.000002 fee)  cost 600.00   Q 0.005998  C 3600.00
#   2025-03-05 received       +0.000002 cost 0    Q 0.006     C 3600.00  (average 600 000 per BTC)
#   2025-04-20 sell 0.003     cost 3600 × 0.003 / 0.006 = 1800.00, proceeds 2083.20, gain 283.20
#                                                 Q 0.003     C 1800.00
#   2025-06-01 withdrawal     0.00102 out at 1800 × 0.00102 / 0.003 = 612.00 (not a sale)
#                                                 Q 0.00198   C 1188.00
#   2025-06-15 sell 0.00098   cost 1188 × 0.00098 / 0.00198 = 588.00, proceeds 680.51, gain 92.51
#                                                 Q 0.001     C 600.00
#   2025-12-31 23:30 sent     0.0001 out at 60.00 Q 0.0009    C 540.00   ← 31/12/2025
#   2026-01-01 00:30 sent     0.0001 out at 60.00 Q 0.0008    C 480.00   (next year)
# ETH: 0.0248 for 500.00; average 500 / 0.0248 = 20161.2903225806… (10 places).
def test_statement_of_a_scripted_year_matches_the_hand_computation(script):
    run_year(script)
    owner, tina = script.owner, script.tina
    positions = {r["currency"]: r for r in owner.execute("select * from api.tax_positions(%s, 2025)", (tina,))}
    assert list(positions) == ["BTC", "ETH", "USDT"]  # every crypto of core.currencies, in order
    btc, eth, usdt = positions["BTC"], positions["ETH"], positions["USDT"]
    assert (btc["irpf_group"], btc["irpf_code"], eth["irpf_code"], usdt["irpf_code"]) == ("08", "01", "02", "03")
    assert (btc["previous_quantity"], btc["previous_cost"]) == (D("0.002"), D("1000.00"))
    assert (btc["quantity"], btc["total_cost"], btc["average_cost"]) == (D("0.0009"), D("540.00"), D("600000"))
    assert (btc["acquired_quantity"], btc["acquired_cost"], btc["zero_cost_quantity"]) == \
        (D("0.004"), D("2600.00"), D("0.000002"))
    assert (btc["disposed_quantity"], btc["proceeds"], btc["disposed_cost"], btc["gain"]) == \
        (D("0.00398"), D("2763.71"), D("2388.00"), D("375.71"))
    assert (btc["moved_out_quantity"], btc["moved_out_cost"]) == (D("0.00112"), D("672.00"))
    assert (eth["previous_quantity"], eth["quantity"], eth["total_cost"]) == (0, D("0.0248"), D("500.00"))
    assert eth["average_cost"] == D("20161.2903225806")
    assert (usdt["quantity"], usdt["total_cost"], usdt["average_cost"]) == (0, 0, None)

    movements = owner.execute("select * from api.tax_movements(%s, 2025)", (tina,)).fetchall()
    assert [(m["currency"], m["kind"], m["quantity"], m["cost"]) for m in movements] == [
        ("BTC", "buy_desk", D("0.003"), D("2000.00")),
        ("BTC", "buy_p2p", D("0.000998"), D("600.00")),
        ("BTC", "transfer_in", D("0.000002"), D("0")),
        ("BTC", "sell_desk", D("0.003"), D("1800.00")),
        ("BTC", "withdrawal_onchain", D("0.00102"), D("612.00")),
        ("BTC", "sell_desk", D("0.00098"), D("588.00")),
        ("ETH", "buy_desk", D("0.0248"), D("500.00")),
        ("BTC", "transfer_out", D("0.0001"), D("60.00")),
    ]
    disposals = [(m["occurred_at"].astimezone(BRT).date().isoformat(), m["brl_value"], m["cost"], m["gain"])
                 for m in movements if m["disposal"]]
    assert disposals == [("2025-04-20", D("2083.20"), D("1800.00"), D("283.20")),
                         ("2025-06-15", D("680.51"), D("588.00"), D("92.51"))]
    assert [m["zero_cost"] for m in movements] == [False, False, True, False, False, False, False, False]
    assert movements[-1]["occurred_at"].astimezone(BRT).isoformat() == "2025-12-31T23:30:00-03:00"

    months = {m["month"]: m for m in owner.execute("select * from api.tax_monthly_sales(%s, 2025)", (tina,))}
    assert sorted(months) == list(range(1, 13))
    assert (months[4]["disposals"], months[4]["proceeds"], months[4]["cost"], months[4]["gain"]) == \
        (1, D("2083.20"), D("1800.00"), D("283.20"))
    assert (months[6]["disposals"], months[6]["proceeds"], months[6]["gain"]) == (1, D("680.51"), D("92.51"))
    assert all(months[m]["disposals"] == 0 and months[m]["proceeds"] == 0 for m in months if m not in (4, 6))
    assert months[4]["within_exemption"] and months[4]["exemption_limit"] == D("35000.00")

    # the next year starts from 31/12/2025 and holds what the wallet holds
    next_year = one(owner, "select * from api.tax_positions(%s, 2026) where currency = 'BTC'", tina)
    assert (next_year["previous_quantity"], next_year["previous_cost"]) == (D("0.0009"), D("540.00"))
    assert (next_year["quantity"], next_year["total_cost"]) == (D("0.0008"), D("480.00"))
    wallet = one(owner, "select available + locked as b from api.get_wallet(%s) where currency = 'BTC'", tina)["b"]
    assert wallet == next_year["quantity"]
    assert [r["year"] for r in owner.execute("select * from api.tax_years(%s)", (tina,))][:3] == [2026, 2025, 2024]
    with pytest.raises(psycopg.Error) as exc:
        owner.execute("select * from api.tax_positions(%s, 1500)", (tina,))
    assert exc.value.sqlstate == "BSV01"
    books(owner)


def test_a_sale_above_the_monthly_limit_is_flagged(script):
    s = script
    s.owner.execute("update core.settings set value = '2000.00' where name = 'tax_monthly_exemption_brl'")
    s.desk("buy", "BTC", "1000.00", "0.002", "992.00", "496000")
    s.at(2025, 5, 2)
    s.desk("sell", "BTC", "0.002", "0.002", "2100.00", "1050000")   # 2100.00 − 10.50 − 6.30 = 2083.20 > 2000
    s.at(2025, 5, 3)
    may = one(s.owner, "select * from api.tax_monthly_sales(%s, 2025) where month = 5", s.tina)
    # the whole position sold: the cost is all of it, 1000.00
    assert (may["proceeds"], may["cost"], may["gain"], may["within_exemption"]) == \
        (D("2083.20"), D("1000.00"), D("1083.20"), False)
    books(s.owner)


def test_tax_page_and_csv(script, app, client, login):
    run_year(script)
    login("tina@example.com")
    page = client.get("/tax?year=2025").get_data(as_text=True)
    assert "Informe para o Imposto de Renda" in page and "ano-calendário 2025" in page
    assert 'data-testid="cost-BTC">R$ 540,00<' in page and 'data-testid="cost-ETH">R$ 500,00<' in page
    assert "R$ 2.083,20" in page and "R$ 283,20" in page and "R$ 92,51" in page and "R$ 612,00" in page
    assert "Situação em 31/12/2024" in page and "MP 1.303/2025" in page and "Lei 14.754/2023" in page
    assert "08.01" in page and "08.02" in page and "08.03" in page
    assert "Recebido de outro cliente (custo zero)" in page
    response = client.get("/tax/2025.csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"] == 'attachment; filename="bs-market-irpf-2025.csv"'
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True).lstrip("\ufeff"))))
    assert ["08", "01", "BTC", "Criptoativo Bitcoin (BTC)", "0.002", "1000.00", "0.0009", "540.00", "600000.00"] in rows
    assert ["20/04/2025", "BTC", "sell_desk", "0.003", "2083.20", "1800.00", "283.20"] in rows
    assert ["6", "1", "680.51", "588.00", "92.51", "35000.00", "sim"] in rows
    assert client.get("/tax?year=abc").status_code == 200          # not a number: the default year
    assert client.get("/tax?year=1500").status_code == 404
    assert client.get("/tax/1500.csv").status_code == 404
    assert app.test_client().get("/tax/2025.csv").status_code == 302   # log in first
