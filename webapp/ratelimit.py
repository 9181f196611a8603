"""Flask-Limiter's counters in memory (RATELIMIT_STORAGE_URI "swept-memory://", the default).

limits' MemoryStorage frees expired counters from a `threading.Timer` it starts on a hit whenever
the previous one has finished (10 ms later): on a busy rate-limited form that is a new thread per
request, and each of those threads walks every key. Counting does not need it — a fixed window's
counter is reset when it is read after its expiry, and a moving window compares times — so here
the sweep runs at most once a second. Same limits, same counts, same refusals
(tests/test_formatting.py counts a limit through it).
"""
from __future__ import annotations

import time

from limits.storage import MemoryStorage


class SweptMemoryStorage(MemoryStorage):
    STORAGE_SCHEME = ["swept-memory"]
    SWEEP_EVERY = 1.0   # seconds

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, **options):
        self._next_sweep = 0.0
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)

    def _MemoryStorage__schedule_expiry(self) -> None:   # MemoryStorage's private __schedule_expiry
        now = time.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + self.SWEEP_EVERY
            super()._MemoryStorage__schedule_expiry()
