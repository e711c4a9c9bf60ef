"""Hydration through the VFS (apsw) over memory storage, both core twins: options,
PRAGMAs, status, reads switching to the local file, following the primary."""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import ModuleType

import apsw
import pytest

import litevfs
import litevfs.vfs.connect as api
from litevfs.engine.poller import poll_once
from litevfs.vfs.registry import file_of

from .vfs_support import FakeLitestream, make_accounts_db, transfer, unique_memory_url

QUERIES = [
    "SELECT count(*), sum(balance) FROM accounts",
    "SELECT id, name FROM accounts WHERE name BETWEEN 'name-00050' AND 'name-00070' ORDER BY name",
    "SELECT id, length(data), hex(substr(data, 5000, 8)) FROM blobs ORDER BY id",
]


@pytest.fixture
def primary(tmp_path: Path) -> FakeLitestream:
    make_accounts_db(tmp_path / "primary.db", accounts=500, blob_rows=40).close()
    ls = FakeLitestream(tmp_path / "primary.db", unique_memory_url("vfs-hyd"))
    ls.sync()
    return ls


def rows(con: apsw.Connection, sql: str) -> list[tuple]:
    return [tuple(r) for r in con.execute(sql)]


def wait_complete(con: apsw.Connection, txid: int | None = None, timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        st = litevfs.hydration_status(con)
        if st["state"] == "complete" and (txid is None or st["txid"] == txid):
            return st
        assert st["state"] not in ("failed", "off"), st
        assert time.monotonic() < deadline, st
        time.sleep(0.01)


def test_off_by_default(primary: FakeLitestream, core: ModuleType) -> None:
    con = api.connect(primary.storage.url, impl=core, poll_interval=0)
    try:
        assert rows(con, "PRAGMA litestream_hydration_progress") == [("0",)]
        assert rows(con, "PRAGMA litestream_hydration_file") == [("",)]
        assert litevfs.hydration_status(con)["state"] == "off"
    finally:
        con.close()


def test_hydrates_and_switches_to_local_reads(primary: FakeLitestream, core: ModuleType) -> None:
    con = api.connect(primary.storage.url, impl=core, poll_interval=0, hydration=True,
                      hydration_concurrency=2)
    try:
        before = [rows(con, q) for q in QUERIES]  # served at once, hydration or not
        st = wait_complete(con)
        path = rows(con, "PRAGMA litestream_hydration_file")[0][0]
        assert path and os.path.exists(path) and path == st["path"]
        assert rows(con, "PRAGMA litestream_hydration_progress") == [("100.0",)]
        assert Path(path).read_bytes() == primary.db_path.read_bytes()
        hydrator = file_of(con).replica.hydrator
        remote_before = hydrator.storage.stats.snapshot()["gets"]
        local_before = st["local_reads"]
        rows(con, "PRAGMA cache_size=0")
        after = [rows(con, q) for q in QUERIES]
        assert after == before
        assert rows(con, "PRAGMA integrity_check") == [("ok",)]
        assert litevfs.hydration_status(con)["local_reads"] > local_before
        assert hydrator.storage.stats.snapshot()["gets"] == remote_before  # all local
    finally:
        con.close()
    assert not os.path.exists(path)  # temporary file gone with the last connection


def test_follows_the_primary_with_isolation(primary: FakeLitestream, core: ModuleType) -> None:
    con = api.connect(primary.storage.url, impl=core, poll_interval=0, hydration=True)
    other = api.connect(primary.storage.url, impl=core, poll_interval=0, hydration=True)
    try:
        wait_complete(con)
        replica = file_of(con).replica
        other.execute("BEGIN")
        pinned = rows(other, "SELECT id, balance FROM accounts ORDER BY id")
        w = primary.db()
        transfer(w, 1, 2, 50)
        w.execute("UPDATE blobs SET data = randomblob(9000) WHERE id = 5")
        w.close()
        primary.sync()
        assert poll_once(replica.state, replica.views)
        wait_complete(con, replica.current.txid)
        # the open transaction still sees its snapshot, through the updated local file
        assert rows(other, "SELECT id, balance FROM accounts ORDER BY id") == pinned
        assert rows(other, "PRAGMA litestream_txid") == [(f"{1:016x}",)]
        other.execute("COMMIT")
        new = rows(other, "SELECT balance FROM accounts WHERE id IN (1, 2) ORDER BY id")
        assert new == [(950,), (1050,)]
        assert Path(litevfs.hydration_status(con)["path"]).read_bytes() == \
            primary.db_path.read_bytes()
    finally:
        other.close()
        con.close()


def test_uri_parameters_and_persistent_path(primary: FakeLitestream, core: ModuleType,
                                             tmp_path: Path) -> None:
    vfs = api.register(api._vfs_name_for(core), core)
    path = tmp_path / "keep" / "db.hydrated"
    uri = (f"file:x.db?vfs={vfs.vfs_name}&replica_url={primary.storage.url}"
           f"&poll_interval=0&hydration=true&hydration_path={path}")
    con = apsw.Connection(uri, flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI)
    try:
        wait_complete(con)
        assert rows(con, "PRAGMA litestream_hydration_file") == [(str(path),)]
    finally:
        con.close()
    assert path.exists() and Path(str(path) + ".litevfs-hydration").exists()
    assert path.read_bytes() == primary.db_path.read_bytes()


def test_environment_variables(primary: FakeLitestream, core: ModuleType, tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "env.hydrated"
    monkeypatch.setenv("LITESTREAM_HYDRATION_ENABLED", "true")
    monkeypatch.setenv("LITESTREAM_HYDRATION_PATH", str(path))
    con = api.connect(primary.storage.url, impl=core, poll_interval=0)
    try:
        st = wait_complete(con)
        assert st["path"] == str(path) and st["persistent"]
    finally:
        con.close()
    # restart: resumes without downloading anything
    con = api.connect(primary.storage.url, impl=core, poll_interval=0)
    try:
        st = wait_complete(con)
        assert st["resumed_pages"] == st["pages_total"] and st["bytes_fetched"] == 0
        assert rows(con, QUERIES[0]) == [(500, 500 * 1000)]
    finally:
        con.close()


def test_unwritable_path_keeps_reads_working(primary: FakeLitestream, core: ModuleType,
                                             tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    con = api.connect(primary.storage.url, impl=core, poll_interval=0, hydration=True,
                      hydration_path=str(blocker / "db"))
    try:
        st = litevfs.hydration_status(con)
        assert st["state"] == "failed" and "cannot create" in st["error"]
        assert rows(con, QUERIES[0]) == [(500, 500 * 1000)]
        assert rows(con, "PRAGMA integrity_check") == [("ok",)]
    finally:
        con.close()


def test_write_mode_synced_pages_enter_the_local_copy(primary: FakeLitestream,
                                                      core: ModuleType) -> None:
    con = api.connect(primary.storage.url, impl=core, poll_interval=0, write=True,
                      hydration=True)
    try:
        before = wait_complete(con)
        con.execute("INSERT INTO accounts VALUES(100000, 'new', 5)")
        con.execute("UPDATE accounts SET balance = balance + 1")
        litevfs.sync(con)
        txid = file_of(con).replica.current.txid
        after = wait_complete(con, txid)
        assert after["bytes_fetched"] == before["bytes_fetched"]  # written, not downloaded
        assert after["bytes_written"] > before["bytes_written"]
        assert rows(con, QUERIES[0]) == [(501, 500 * 1000 + 5 + 501)]
        import sqlite3

        local = sqlite3.connect(f"file:{after['path']}?mode=ro&immutable=1", uri=True)
        try:
            assert local.execute(QUERIES[0]).fetchall() == [(501, 500 * 1000 + 5 + 501)]
            assert local.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        finally:
            local.close()
    finally:
        con.close()


def test_temporary_file_removed_at_interpreter_exit(tmp_path: Path) -> None:
    """No close at all: the atexit hook still removes the temporary copy."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
        from pathlib import Path
        import litevfs
        from tests.vfs_support import FakeLitestream, make_accounts_db
        make_accounts_db(Path({str(tmp_path)!r}) / "p.db").close()
        ls = FakeLitestream(Path({str(tmp_path)!r}) / "p.db", "memory://atexit")
        ls.sync()
        con = litevfs.connect("memory://atexit", hydration=True, poll_interval=0)
        for _ in range(500):
            st = litevfs.hydration_status(con)
            if st["state"] == "complete":
                break
            time.sleep(0.01)
        print(st["state"], st["path"], flush=True)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    state, path = out.stdout.split()
    assert state == "complete" and path.endswith("hydration.db")
    assert not os.path.exists(path) and not os.path.exists(os.path.dirname(path))


def test_time_travel_reads_stay_exact(primary: FakeLitestream, core: ModuleType) -> None:
    """Time travel reads the old versions; pages that still match stay local, and
    LATEST returns to the hydrated copy (Litestream turns hydrated reads off for good)."""
    from litevfs.engine.timetravel import format_ms

    con = api.connect(primary.storage.url, impl=core, poll_interval=0, hydration=True)
    try:
        wait_complete(con)
        old = [rows(con, q) for q in QUERIES]
        moment = format_ms(primary.timestamp_ms + 500)
        w = primary.db()
        transfer(w, 7, 8, 30)
        w.execute("UPDATE blobs SET data = randomblob(9000) WHERE id = 2")
        w.close()
        primary.sync()
        replica = file_of(con).replica
        assert poll_once(replica.state, replica.views)
        wait_complete(con, replica.current.txid)
        new = [rows(con, q) for q in QUERIES]
        assert new != old
        con.execute(f"PRAGMA litestream_time = '{moment}'")
        local = litevfs.hydration_status(con)["local_reads"]
        rows(con, "PRAGMA cache_size=0")
        assert [rows(con, q) for q in QUERIES] == old
        assert litevfs.hydration_status(con)["local_reads"] > local  # unchanged pages
        con.execute("PRAGMA litestream_time = 'LATEST'")
        assert [rows(con, q) for q in QUERIES] == new
    finally:
        con.close()
