"""make bench-http's arithmetic (the run itself is not part of make test): parsing wrk's line, ratios, growth."""
import pytest

from bench import http


LINE = "noise\nBENCH requests=1200 duration_us=10000000 ok=1195 bad=5 p50_us=4200.0 p99_us=51000.5 mean_us=5000.0 errors=0\n"


def test_parse_wrk_counts_only_expected_statuses():
    r = http.parse_wrk(LINE)
    assert r["ok"] == 1195 and r["bad"] == 5 and r["errors"] == 0
    assert r["rps"] == pytest.approx(119.5)          # refused requests do not count as throughput
    assert r["p50_ms"] == pytest.approx(4.2) and r["p99_ms"] == pytest.approx(51.0005)


def test_parse_wrk_refuses_output_without_our_line():
    with pytest.raises(ValueError):
        http.parse_wrk("Running 10s test @ http://127.0.0.1:8000\n")


def test_verdicts_ratio_and_goals():
    results = {"hello": {"rps": 4000, "p99_ms": 10}, "wallet": {"rps": 1000, "p99_ms": 49.9},
               "transfer": {"rps": 1999, "p99_ms": 50.0}, "healthz": {"rps": 100, "p99_ms": 1}}
    kinds = {"hello": "baseline", "wallet": "page", "transfer": "money", "healthz": "health"}
    v = http.verdicts(results, kinds)
    assert v["wallet"]["ratio"] == pytest.approx(0.25) and v["wallet"]["ratio_ok"] and v["wallet"]["p99_ok"]
    assert not v["transfer"]["ratio_ok"] and not v["transfer"]["p99_ok"]     # 0.49975 < 0.50; 50 ms is not < 50
    assert v["healthz"]["goal"] is None and v["healthz"]["ratio_ok"]


def test_growth_is_flat_within_a_quarter():
    small = {"statement": {"mean_ms": 10.0}, "offer_book": {"mean_ms": 10.0}, "trade_open": {"mean_ms": 8.0}}
    large = {"statement": {"mean_ms": 12.4}, "offer_book": {"mean_ms": 13.0}, "trade_open": {"mean_ms": 6.0}}
    g = http.growth(small, large)
    assert g["statement"]["ok"] and not g["offer_book"]["ok"] and g["trade_open"]["ok"]
    assert g["offer_book"]["change"] == pytest.approx(0.30)


def test_median_of_rounds():
    runs = [{"rps": r, "p50_ms": 1, "p99_ms": p, "mean_ms": 1} for r, p in ((100, 9), (300, 1), (200, 5))]
    m = http.median_result(runs)
    assert m["rps"] == 200 and m["p99_ms"] == 5 and m["rounds"] == [100, 300, 200]


def test_cpf_has_valid_check_digits():
    from webapp import cpf as cpf_module  # the app's own validator
    made = {http.cpf(n) for n in range(1, 2000)}
    assert len(made) == 1999 and all(cpf_module.is_valid(c) for c in made)
