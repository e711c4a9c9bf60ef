"""Hydration against real components: SeaweedFS and `litestream replicate`, a writer
committing while the hydrator downloads, compared with a real `litestream restore`
at the same TXID. Both twins."""

from __future__ import annotations

import shutil
import sqlite3
import threading
import time
from pathlib import Path
from types import ModuleType

import pytest

import litevfs
import litevfs.vfs.connect as api
import litevfs.engine.hydrate.hydrator as hydrator_mod
from litevfs.vfs.registry import file_of
from tests.rig import dbgen
from tests.rig.litestream import Litestream, S3Replica
from tests.rig.seaweed import SeaweedServer, s3_replica_url

pytestmark = [pytest.mark.s3, pytest.mark.litestream, pytest.mark.slow]

CORPUS = [
    "SELECT count(*), sum(balance) FROM accounts",
    "SELECT id, k, v FROM kv WHERE id BETWEEN 200 AND 260 ORDER BY id",
    "SELECT grp, count(*), min(name), max(name) FROM items GROUP BY grp ORDER BY grp LIMIT 50",
    "SELECT id, length(data), hex(substr(data, -16)) FROM blobs ORDER BY id",
    "SELECT count(*), sum(length(payload)) FROM items",
]


def rows(con: object, sql: str) -> list[tuple]:
    return [tuple(r) for r in con.execute(sql)]  # type: ignore[attr-defined]


def wait_complete(con: object, txid: int | None = None, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        st = litevfs.hydration_status(con)
        if st["state"] == "complete" and (txid is None or st["txid"] == txid):
            return st
        assert st["state"] != "failed", st
        assert time.monotonic() < deadline, st
        time.sleep(0.02)


def same_content(hydrated: str | Path, restored: Path) -> None:
    a, b = Path(hydrated).read_bytes(), restored.read_bytes()
    assert len(a) == len(b)
    if a != b:
        diff = [i // 4096 + 1 for i in range(0, len(a), 4096) if a[i:i + 4096] != b[i:i + 4096]]
        raise AssertionError(f"pages differ: {diff[:20]}")


def integrity(path: str | Path, tmp: Path) -> str:
    copy = tmp / f"check-{time.monotonic_ns()}.db"
    shutil.copyfile(path, copy)
    con = sqlite3.connect(copy)
    try:
        return con.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        con.close()


@pytest.fixture
def primary(tmp_path: Path, seaweed: SeaweedServer, s3_bucket: str,
            litestream_factory) -> tuple[Path, Litestream]:  # type: ignore[no-untyped-def]
    db = dbgen.make_db(tmp_path / "primary.db", 4096, 6 << 20, seed=3)
    ls = litestream_factory(db, S3Replica(seaweed, s3_bucket))
    ls.wait_for_txid(1, timeout=60)
    ls.wait_caught_up()
    return db, ls


def test_hydration_with_a_live_writer(primary, core: ModuleType, seaweed: SeaweedServer,  # type: ignore[no-untyped-def]
                                      s3_bucket: str, latency_proxy, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    db, ls = primary
    proxy = latency_proxy(seaweed.port, 0.005)
    url = s3_replica_url(s3_bucket, "db", proxy.endpoint, seaweed.region)
    monkeypatch.setattr(hydrator_mod, "RUN_BYTES", 128 * 1024)  # many small GETs: slow it down
    stop = threading.Event()
    commits = []

    def writer() -> None:
        conn = dbgen.connect(db)
        i = 0
        while not stop.is_set():
            dbgen.transfer(conn, 5, seed=i)
            if i % 5 == 0:
                dbgen.grow(conn, 20, seed=i)
            i += 1
            time.sleep(0.02)
        conn.close()
        commits.append(i)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        con = api.connect(url, impl=core, poll_interval=0.1, hydration=True,
                          hydration_concurrency=2)
        percents, txids = [], set()
        started = time.monotonic()
        while time.monotonic() - started < 1.5 or litevfs.hydration_status(con)["percent"] < 100:
            con.execute("BEGIN")
            total = rows(con, "SELECT count(*), sum(balance) FROM accounts")
            n1 = rows(con, "SELECT count(*) FROM items")
            time.sleep(0.01)
            n2 = rows(con, "SELECT count(*) FROM items")
            txids.add(rows(con, "PRAGMA litestream_txid")[0][0])
            con.execute("COMMIT")
            assert total == [(dbgen.ACCOUNTS, dbgen.TOTAL_BALANCE)] and n1 == n2
            percents.append(float(rows(con, "PRAGMA litestream_hydration_progress")[0][0]))
            assert time.monotonic() - started < 60
    finally:
        stop.set()
        thread.join()
    assert any(0 < p < 100 for p in percents), percents[:10]  # queried while hydrating
    assert len(txids) > 1  # and while the poller moved on
    txid = ls.wait_caught_up()
    st = wait_complete(con, txid)
    restored = ls.restore(tmp_path / "restored.db", txid=txid)
    same_content(st["path"], restored)
    assert integrity(st["path"], tmp_path) == "ok"
    ref = sqlite3.connect(restored)
    expected = [rows(ref, q) for q in CORPUS]
    ref.close()
    assert [rows(con, q) for q in CORPUS] == expected
    assert st["bytes_fetched"] <= 1.5 * restored.stat().st_size  # newest versions only
    path = st["path"]
    con.close()
    assert not Path(path).exists()

    # a fresh open: results while hydrating equal results after, and the restore's
    con = api.connect(url, impl=core, poll_interval=0.1, hydration=True,
                      hydration_concurrency=1)
    try:
        during = [rows(con, q) for q in CORPUS]
        assert litevfs.hydration_status(con)["percent"] < 100
        wait_complete(con)
        assert [rows(con, q) for q in CORPUS] == during == expected
    finally:
        con.close()


def test_restart_resumes_and_bad_sidecar_rebuilds(  # type: ignore[no-untyped-def]
        primary, core: ModuleType, seaweed: SeaweedServer, s3_bucket: str,
        tmp_path: Path) -> None:
    db, ls = primary
    url = s3_replica_url(s3_bucket, "db", seaweed.endpoint, seaweed.region)
    path = tmp_path / "local" / "replica.db"

    def open_and_hydrate(txid: int | None = None) -> tuple[dict, int]:
        con = api.connect(url, impl=core, poll_interval=0.1, hydration=True,
                          hydration_path=str(path))
        try:
            st = wait_complete(con, txid)
            return st, file_of(con).replica.storage.stats.snapshot()["bytes_read"]
        finally:
            con.close()

    first, read_first = open_and_hydrate()
    full = first["bytes_fetched"]
    assert first["resumed_pages"] == 0 and full > 0.3 * db.stat().st_size  # LZ4-compressed

    before = ls.local_txid()
    conn = dbgen.connect(db)
    for i in range(3):
        dbgen.transfer(conn, 5, seed=100 + i)
    conn.close()
    txid = ls.wait_caught_up(before)
    second, read_second = open_and_hydrate(txid)
    assert second["resumed_pages"] > 0.9 * second["pages_total"]
    assert second["bytes_fetched"] < full / 20
    assert read_second < read_first / 5  # everything the process read, index included
    restored = ls.restore(tmp_path / "restored.db", txid=txid)
    same_content(path, restored)

    sidecar = Path(str(path) + ".litevfs-hydration")
    raw = bytearray(sidecar.read_bytes())
    raw[-10] ^= 0x5A
    sidecar.write_bytes(bytes(raw))
    with open(path, "r+b") as f:  # poison a page: a trusted sidecar would serve it
        f.seek(4096 * 3)
        f.write(b"\xEE" * 4096)
    third, _ = open_and_hydrate(txid)
    assert third["resumed_pages"] == 0 and third["bytes_fetched"] > 0.9 * full
    same_content(path, restored)
    assert integrity(path, tmp_path) == "ok"


def test_unwritable_path_reads_from_storage(primary, core: ModuleType,  # type: ignore[no-untyped-def]
                                            seaweed: SeaweedServer, s3_bucket: str,
                                            tmp_path: Path) -> None:
    db, _ls = primary
    blocker = tmp_path / "plain-file"
    blocker.write_text("x")
    url = s3_replica_url(s3_bucket, "db", seaweed.endpoint, seaweed.region)
    con = api.connect(url, impl=core, poll_interval=0, hydration=True,
                      hydration_path=str(blocker / "sub" / "db"))
    try:
        st = litevfs.hydration_status(con)
        assert st["state"] == "failed" and "cannot create" in st["error"]
        ref = sqlite3.connect(db)
        expected = [rows(ref, q) for q in CORPUS]
        ref.close()
        assert [rows(con, q) for q in CORPUS] == expected
    finally:
        con.close()


def test_a_hydrated_file_overwritten_in_use_or_between_runs_is_healed_not_served(
        primary, core: ModuleType, seaweed: SeaweedServer, s3_bucket: str,
        tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Every local page is checked against the xxh3 checksum recorded when it was
    written (and kept in the sidecar): a damaged page is a miss that is fetched again."""
    db, _ls = primary
    url = s3_replica_url(s3_bucket, "db", seaweed.endpoint, seaweed.region)
    path = tmp_path / "hydrated.db"
    ref = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        expected = {sql: rows(ref, sql) for sql in CORPUS}
    finally:
        ref.close()

    def check(con: object) -> None:
        for sql in CORPUS:
            assert rows(con, sql) == expected[sql], sql

    con = litevfs.connect(url, impl=core, hydration=True, hydration_path=str(path),
                          poll_interval=0)
    try:
        wait_complete(con)
        size = path.stat().st_size
        path.write_bytes(b"\x5a" * size)  # another program overwrites the file in use
        file_of(con).replica.cache.clear()  # every read goes to the local copy
        check(con)  # all correct: damaged pages are misses, fetched from the bucket
        st = litevfs.hydration_status(con)
        assert st["damaged_pages"] > 0
        wait_complete(con)
        assert st["state"] in ("hydrating", "complete")
    finally:
        con.close()
    # Between runs (half the file): the sidecar vouches for the pages, their checksums
    # catch the damage at resume; the intact half is reused.
    data = path.read_bytes()
    half = len(data) // 2
    path.write_bytes(data[:half] + b"\xa5" * (len(data) - half))
    con = litevfs.connect(url, impl=core, hydration=True, hydration_path=str(path),
                          poll_interval=0)
    try:
        check(con)
        st = wait_complete(con)
        assert st["resumed_pages"] > 0 and st["damaged_pages"] > 0
        file_of(con).replica.cache.clear()
        check(con)
    finally:
        con.close()
    assert integrity(path, tmp_path) == "ok"


_OWNER = r"""
import sys, time, litevfs
con = litevfs.connect(sys.argv[1], hydration=True, hydration_path=sys.argv[2],
                      poll_interval=0.1)
while litevfs.hydration_status(con)["state"] != "complete":
    time.sleep(0.02)
print("ready", flush=True)
while True:
    time.sleep(0.05)
    st = litevfs.hydration_status(con)
    print(st["state"], st["txid"], flush=True)
"""


def test_processes_share_one_persistent_hydrated_file(  # type: ignore[no-untyped-def]
        primary, core: ModuleType, seaweed: SeaweedServer, s3_bucket: str,
        tmp_path: Path) -> None:
    """Another process hydrates the file: this one reads it through the published labels
    (no download), stays on its own snapshots while the owner follows new commits, and
    takes the download over when the owner is killed with -9."""
    import os
    import signal
    import subprocess
    import sys

    db, ls = primary
    url = s3_replica_url(s3_bucket, "db", seaweed.endpoint, seaweed.region)
    path = str(tmp_path / "shared" / "replica.db")
    env = seaweed.env()
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    if core.__name__.endswith("_py"):
        env["LITEVFS_NO_EXTENSIONS"] = "1"
    owner = subprocess.Popen([sys.executable, "-c", _OWNER, url, path], env=env,
                             stdout=subprocess.PIPE, text=True, cwd=tmp_path)
    con = None
    try:
        assert owner.stdout is not None
        assert owner.stdout.readline().strip() == "ready"
        con = api.connect(url, impl=core, poll_interval=0.1, hydration=True,
                          hydration_path=path)
        st = litevfs.hydration_status(con)
        assert st["state"] == "following", st
        ref = sqlite3.connect(db)
        assert [rows(con, q) for q in CORPUS] == [rows(ref, q) for q in CORPUS]
        st = litevfs.hydration_status(con)
        assert st["local_reads"] > 50 and st["bytes_fetched"] == 0, st
        read = file_of(con).replica.storage.stats.snapshot()["bytes_read"]
        assert read < db.stat().st_size / 5, read  # the index and a few pages, not the data

        # New commits: the owner downloads them; this process sees them on its own poll.
        before = ls.local_txid()
        conn = dbgen.connect(db)
        for i in range(3):
            dbgen.transfer(conn, 5, seed=200 + i)
        dbgen.grow(conn, 30, seed=7)
        conn.close()
        txid = ls.wait_caught_up(before)
        deadline = time.monotonic() + 30
        while rows(con, "PRAGMA litestream_txid")[0][0] != f"{txid:016x}":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert [rows(con, q) for q in CORPUS] == [rows(ref, q) for q in CORPUS]
        ref.close()

        os.kill(owner.pid, signal.SIGKILL)  # mid-life, no sidecar flush, no unlock
        owner.wait()
        st = wait_complete(con, txid, timeout=60)
        assert st["take_overs"] == 1 and st["state"] == "complete", st
        assert st["resumed_pages"] > 0.5 * st["pages_total"], st  # the owner's work, reused
        assert st["bytes_fetched"] < db.stat().st_size / 5, st
        restored = ls.restore(tmp_path / "restored.db", txid=txid)
        same_content(path, restored)
        assert integrity(path, tmp_path) == "ok"
    finally:
        if con is not None:
            con.close()
        if owner.poll() is None:
            owner.kill()
            owner.wait()
