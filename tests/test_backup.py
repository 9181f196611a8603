"""Backups that restore (issue 15 part 2): WAL archiving, a base backup, and a point-in-time restore into a
new cluster, on a throwaway cluster of its own (the `make backup` / `make restore` code: devserver.cluster)."""
from __future__ import annotations

import shutil
import tempfile
import time
from decimal import Decimal as D
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row

from tests.conftest import books, free_port
from webapp import migrate
from webapp.config import role_url
from devserver.cluster import Cluster

DB = "bsmarket"


@pytest.fixture(scope="module")
def source():
    root = Path(tempfile.mkdtemp(prefix="bsm-backup-"))
    cluster = Cluster(base=root / "pg", port=free_port(), archive=True)
    cluster.start()
    cluster.ensure_database(DB)
    migrate.upgrade(cluster.url(DB), log=lambda *_: None)
    yield cluster, root
    cluster.destroy()
    shutil.rmtree(root, ignore_errors=True)


def transfers(url: str, sender: int, email: str, n: int) -> list[int]:
    """n committed transfers as the web does them; their entry ids."""
    with psycopg.connect(role_url(url, "exchange_app"), autocommit=True) as app:
        return [app.execute("select entry_id from api.transfer(%s, %s, 'BRL', %s, %s)",
                            (sender, email, D("1.25"), f"bk-{time.monotonic_ns()}")).fetchone()[0]
                for _ in range(n)]


def archived_up_to_now(cluster: Cluster):
    """Close the current WAL segment and wait until the archiver has copied it."""
    with psycopg.connect(cluster.url("postgres"), autocommit=True) as conn:
        segment = conn.execute("select pg_walfile_name(pg_switch_wal())").fetchone()[0]
        deadline = time.monotonic() + 30
        while not (cluster.archive_dir / segment).exists():
            assert time.monotonic() < deadline, f"{segment} was not archived"
            time.sleep(0.1)


def entries(url: str) -> list[int]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("select id from core.entries order by id")]


def check_books(url: str):
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        books(conn)


def test_point_in_time_restore_and_restore_to_the_end(source):
    cluster, root = source
    url = cluster.url(DB)
    with psycopg.connect(url, autocommit=True) as owner:
        assert owner.execute("show archive_mode").fetchone()[0] == "on"
        ids = [owner.execute("select api.register_user(%s, repeat('x', 40), %s)", (f"u{i}@example.com", f"U {i}")).fetchone()[0]
               for i in range(3)]
        admin, alice, bob = ids
        owner.execute("update core.users set role = 'admin' where id = %s", (admin,))
        owner.execute("update core.users set kyc_level = 2 where id = any(%s)", ([alice, bob],))
        owner.execute("select core.mark_email_verified(u) from unnest(%s::bigint[]) u", (ids,))
        owner.execute("select * from core.post_adjustment(%s, %s, 'BRL', 1000.00, 'saldo', 'bk-seed')", (admin, alice))

    backup = cluster.backup()
    assert (backup / "PG_VERSION").exists() and backup.parent == cluster.backups_dir
    assert cluster.latest_backup() == backup

    before = transfers(url, alice, "u2@example.com", 5)
    time.sleep(0.5)
    with psycopg.connect(url) as conn:
        target_time = conn.execute("select clock_timestamp()").fetchone()[0]
    time.sleep(0.5)
    after = transfers(url, alice, "u2@example.com", 4)
    archived_up_to_now(cluster)
    everything = entries(url)
    assert everything[-9:] == before + after

    # to T: the last entry is the last one committed before T, the later ones are absent
    at_t = cluster.restore(backup, Cluster(base=root / "restore-t", port=free_port(), archive=True), target_time.isoformat())
    try:
        restored = entries(at_t.url(DB))
        assert restored[-1] == before[-1]
        assert not set(after) & set(restored)
        assert restored == [e for e in everything if e <= before[-1]]
        check_books(at_t.url(DB))
        with psycopg.connect(at_t.url(DB), autocommit=True) as conn:   # promoted: it takes writes
            assert conn.execute("select pg_is_in_recovery()").fetchone()[0] is False
            conn.execute("select * from core.post_adjustment(%s, %s, 'BRL', 1.00, 'depois', 'bk-after')", (admin, bob))
        check_books(at_t.url(DB))
        # it archives into its own directory, never into the source's
        assert at_t.archive_dir != cluster.archive_dir
    finally:
        at_t.destroy()

    # to the end of the archive: everything
    at_end = cluster.restore(backup, Cluster(base=root / "restore-end", port=free_port(), archive=True))
    try:
        assert entries(at_end.url(DB)) == everything
        check_books(at_end.url(DB))
    finally:
        at_end.destroy()


def test_restore_refuses_a_directory_that_holds_a_cluster(source):
    cluster, root = source
    with pytest.raises(SystemExit):
        cluster.restore(cluster.latest_backup(), cluster)
