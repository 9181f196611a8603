"""Ids the emulators hand out, never the same twice, across restarts too.

A restarted emulator forgets its charges, but the exchange's database does not:
an id handed out again (payment 1312345678 for a second deposit) would collide
with the first deposit's row (issue 20). So every number is above both

- the last one this emulator handed out, kept in `<state dir>/<name>-ids.json`
  when a state directory is given (`make run`: `.local/sandbox/`), and
- the clock, in milliseconds since 2024-01-01 (so even without the file, or
  with the file deleted, a restart starts above anything handed out before,
  unless the previous run handed out more than one id per millisecond).
"""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

EPOCH_MS = 1_704_067_200_000          # 2024-01-01T00:00:00Z
_B36 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def clock_ms() -> int:
    return int(time.time() * 1000) - EPOCH_MS


def base36(n: int, width: int) -> str:
    out = ""
    while n:
        n, r = divmod(n, 36)
        out = _B36[r] + out
    return out.rjust(width, "0")[-width:]


class IdSource:
    """`next(kind)`: a number per kind, strictly increasing, never repeated."""

    def __init__(self, name: str, state_dir: str | os.PathLike | None = None):
        self.lock = threading.Lock()
        self.path = Path(state_dir) / f"{name}-ids.json" if state_dir else None
        self.last: dict[str, int] = {}
        if self.path and self.path.exists():
            try:
                loaded = json.loads(self.path.read_text())
                self.last = {str(k): int(v) for k, v in loaded.items()}
            except (ValueError, TypeError, AttributeError):
                self.last = {}      # unreadable: the clock alone still keeps ids apart

    def next(self, kind: str, floor: int = 0) -> int:
        with self.lock:
            n = max(self.last.get(kind, 0) + 1, int(floor), clock_ms())
            self.last[kind] = n
            self._save()
            return n

    def _save(self):
        if not self.path:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.last, sort_keys=True))
        os.replace(tmp, self.path)
