"""Benchmarks (not tests): `make bench` runs `python -m bench.ledger`; results in docs/PERFORMANCE.md."""
