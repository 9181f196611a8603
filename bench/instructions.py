"""CPU instructions per api.transfer, counted by callgrind: a repeatable measure of the ledger's cost.

    python -m bench.instructions            # needs valgrind (apt-get install valgrind)
    INSTRUCTIONS_PORT=54387 python -m bench.instructions   # its cluster on another port

Wall-clock throughput on a small shared VM moves by ±30 % between identical runs; the number of
instructions a backend executes for a transfer does not (two runs agree to 0.1 %). So changes to
the ledger functions are compared here first, then confirmed with `make bench`.

What it does: prepares a ledger database like `make bench` (1000 funded customers) on a throwaway
cluster in `.local/instructions`, stops the server, and runs the single-user backend
(`postgres --single`) under `valgrind --tool=callgrind` twice, on 50 and on 550 transfers (each its
own transaction). The difference divided by 500 is the cost of one transfer, without start-up and
warm-up. For scale the same is done for api.health (a trivial call: what any call costs in this
mode, parsing the statement, the function call, the commit).
"""
from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import ledger
from devserver.cluster import Cluster, _run_as, default_base

TRANSFER = "select * from api.transfer({sender}, 'c{recipient}@bench.test', 'BRL', {amount}, '{key}')"
EMPTY = "select * from api.health()"


def statements(template: str, count: int, offset: int, tag: str) -> str:
    rnd = random.Random(7)  # the same senders, recipients and amounts on every run
    lines = []
    for i in range(count):
        a = rnd.randint(1, 1000)
        b = 1 + (a + rnd.randint(0, 998)) % 1000
        lines.append(template.format(sender=a + offset, recipient=b, amount=f"{rnd.randint(1000, 10000) / 100:.2f}",
                                     key=f"{tag}-{i}"))
    return "\n".join(lines) + "\n"


def instructions(cluster: Cluster, workdir: Path, sql: str, tag: str) -> int:
    script = workdir / f"{tag}.sql"
    script.write_text(sql)
    out = workdir / f"{tag}.callgrind"
    cmd = _run_as() + ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                       str(cluster.bindir / "postgres"), "--single", "-D", str(cluster.datadir),
                       "-c", "synchronous_commit=off", ledger.LEDGER_DB]
    with open(script) as stdin:
        result = subprocess.run(cmd, stdin=stdin, capture_output=True, text=True)
    if "ERROR" in result.stdout or result.returncode != 0:
        raise SystemExit(f"the single-user backend failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    match = re.search(r"^summary: (\d+)", out.read_text(), re.M)
    return int(match.group(1))


def per_call(cluster: Cluster, workdir: Path, template: str, offset: int, name: str) -> int:
    few = instructions(cluster, workdir, statements(template, 50, offset, f"{name}-a"), f"{name}-a")
    many = instructions(cluster, workdir, statements(template, 550, offset, f"{name}-b"), f"{name}-b")
    return (many - few) // 500


def main() -> int:
    if not shutil.which("valgrind"):
        raise SystemExit("valgrind is not installed: apt-get install valgrind")
    cluster = Cluster(base=default_base().parent / "instructions", port=int(os.environ.get("INSTRUCTIONS_PORT", "54349")))
    cluster.destroy()
    cluster.start()
    try:
        _, offset = ledger.prepare_ledger(cluster.url("postgres"), 1000)
    finally:
        cluster.stop()
    workdir = Path(tempfile.mkdtemp(prefix="bsm-callgrind-", dir=cluster.base))
    if _run_as():  # the backend runs as postgres and writes its profile here
        shutil.chown(workdir, "postgres")
    try:
        empty = per_call(cluster, workdir, EMPTY, offset, "empty")
        transfer = per_call(cluster, workdir, TRANSFER, offset, "transfer")
    finally:
        cluster.destroy()
    print(f"instructions per call: api.transfer {transfer:,}; api.health, a trivial call, {empty:,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
