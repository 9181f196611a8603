"""The short version of `make chaos` (bench/chaos.py, docs/RELIABILITY.md): a few thousand random
operations from 8 concurrent workers while every kind of fault is injected at least once (terminated
backends, the worker SIGKILLed mid-payout, provider 5xx / timeouts / rejections, lost, duplicated and
out-of-order webhooks); then the reconcilers settle everything and nothing may be wrong: the books
balance and every provider-side effect is matched by exactly one ledger effect."""
from __future__ import annotations

import os

from bench.chaos import FaultInjector, run


def test_short_chaos_run_has_no_violations():
    report = run(ops=int(os.environ.get("CHAOS_TEST_OPS", 3000)), workers=8, seed=int(os.environ.get("CHAOS_SEED", 15)),
                 users=64, fault_every=0.3, fault_cycle=True, fault_pace=0.2, settle_timeout=120,
                 log=lambda *_: None)
    details = report["violation_details"]
    assert report["violations"] == dict.fromkeys(report["violations"], 0), details
    assert set(report["faults"]) == set(FaultInjector.KINDS), report["faults"]
    assert report["fault_errors"] == []
    assert report["ops_done"] >= 3000
    # every domain was exercised, and the provider side saw effects to match
    for kind in ("transfer", "deposit", "withdrawal", "market_execute", "p2p_trade_open", "p2p_release",
                 "p2p_cancel", "p2p_expire_sweep", "p2p_dispute_release", "p2p_dispute_refund"):
        assert report["ops"].get(kind), kind
    assert report["provider"].get("payments_approved") and report["provider"].get("payouts_approved")
    assert report["provider"].get("binance_orders_filled")
    assert report["fault_notes"].get("backends_terminated")
