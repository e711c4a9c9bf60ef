"""Fault injection against the real SeaweedFS through our own proxy (tests/rig/faults.py).

500/503/SlowDown answers, resets, stalls past the read timeout and truncated bodies
during open, page reads, polling, sync and hydration, plus the server going away and
coming back. Every query either returns exactly the rows the primary holds or fails
with SQLITE_IOERR and a logged reason; never other rows. Faults are counted in the
session's reliability figures (tests/rig/report.py).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator
from types import ModuleType

import apsw
import pytest

import litevfs.vfs.connect as api
from litevfs.vfs import writeapi
from litevfs.config import Config
from litevfs.errors import StorageError
from litevfs.session import open_replica, release_replica
from litevfs.storage.retry import RetryPolicy
from litevfs.storage.s3.client import S3Storage
from tests.rig import report
from tests.rig.faults import FaultProxy, Rule
from tests.rig.seaweed import SeaweedServer, s3_replica_url

pytestmark = [pytest.mark.s3, pytest.mark.slow]

QUERIES = [
    "SELECT count(*), sum(balance) FROM accounts",
    "SELECT * FROM accounts WHERE id = 42",
    "SELECT id, k, v FROM kv WHERE id BETWEEN 20 AND 60 ORDER BY id",
    "SELECT grp, count(*), min(name), max(name) FROM items GROUP BY grp ORDER BY grp",
    "SELECT id, tag, length(data), hex(substr(data, -16)) FROM blobs ORDER BY id",
    "SELECT id, length(payload), hex(substr(payload, 1, 8)) FROM items ORDER BY id DESC",
]
FAST_RETRY = RetryPolicy(max_attempts=6, base_delay=0.01, max_delay=0.2, max_elapsed=8.0)


@pytest.fixture
def proxy() -> Iterator[FaultProxy]:
    p = FaultProxy(0, seed=7).start()
    yield p
    report.record("faults_injected", p.total_injected)
    p.stop()


def _storage(url: str, **kw: object) -> S3Storage:
    opts: dict[str, object] = {"read_timeout": 1.0, "connect_timeout": 1.0, "retry": FAST_RETRY}
    opts.update(kw)
    return S3Storage.from_url(url, **opts)


def _open(url: str, core: ModuleType, **options: object):  # type: ignore[no-untyped-def]
    """A replica on our own storage (short timeouts, fast retries) and a connection."""
    config = Config.resolve({"replica_url": url, "poll_interval": 0, "fetch_retries": 3,
                             "cache_size": 64 * 1024, "boot_set": "off", **options})
    replica = open_replica(config, core, storage=_storage(url))
    try:
        con = api.connect(url, impl=core, **{k: v for k, v in config.as_dict().items()
                                             if k != "replica_url"})
    except BaseException:
        release_replica(replica)
        raise
    return replica, con


def _expected(db_path: object) -> dict[str, list[tuple]]:
    ref = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return {q: [tuple(r) for r in ref.execute(q)] for q in QUERIES}
    finally:
        ref.close()


def _run_queries(con: apsw.Connection, expected: dict[str, list[tuple]]) -> tuple[int, int]:
    """(correct, failed with SQLITE_IOERR); any other answer fails the test."""
    ok = failed = 0
    for q, want in expected.items():
        try:
            got = [tuple(r) for r in con.execute(q)]
        except apsw.IOError:
            failed += 1
            continue
        assert got == want, f"wrong rows for {q!r}"
        ok += 1
    return ok, failed


def test_read_faults_never_wrong_rows(scenario_factory, proxy: FaultProxy, core: ModuleType,
                                      caplog: pytest.LogCaptureFixture) -> None:
    scn = scenario_factory()
    proxy.target_port = int(scn.url.split("endpoint=http://127.0.0.1:")[1].split("&")[0])
    url = s3_replica_url(scn.replica.bucket, "db", proxy.endpoint)
    expected = _expected(scn.db_path)
    for fault, p in (("503", 0.15), ("slowdown", 0.1), ("500", 0.05), ("reset", 0.1),
                     ("truncate", 0.1)):
        proxy.add(Rule(fault, method="GET", probability=p, count=12))
    ok = failed = opens = 0
    caplog.set_level(logging.WARNING, logger="litevfs")
    start = time.monotonic()
    for _round in range(3):  # fresh replicas: the open and every page read meet faults
        try:
            replica, con = _open(url, core)
        except StorageError as exc:  # a clear, named failure is allowed
            assert "failed after" in str(exc) or "HTTP" in str(exc)
            continue
        opens += 1
        try:
            o, f = _run_queries(con, expected)
            ok, failed = ok + o, failed + f
        finally:
            con.close()
            release_replica(replica)
    elapsed = time.monotonic() - start
    assert proxy.total_injected >= 10, proxy.injected
    assert opens >= 2 and ok >= len(QUERIES) * 2, (opens, ok, failed, proxy.injected)
    assert elapsed < 60
    if failed:  # every IOERR has a logged reason
        assert any("failed" in r.getMessage() for r in caplog.records)
    report.record("fault_queries_correct", ok)
    report.record("fault_queries_ioerr", failed)
    report.record("faults_survived", proxy.total_injected if not failed else 0)


def test_stall_past_read_timeout_is_retried(scenario_factory, proxy: FaultProxy,
                                            core: ModuleType) -> None:
    scn = scenario_factory()
    proxy.target_port = int(scn.url.split("endpoint=http://127.0.0.1:")[1].split("&")[0])
    url = s3_replica_url(scn.replica.bucket, "db", proxy.endpoint)
    expected = _expected(scn.db_path)
    replica, con = _open(url, core)
    try:
        # Stalls past the 1 s read timeout on the next two ranged reads.
        proxy.add(Rule("stall", method="GET", path=r"\.ltx", count=2, stall_s=3.0))
        replica.cache.clear()
        t0 = time.monotonic()
        ok, failed = _run_queries(con, expected)
        assert (ok, failed) == (len(QUERIES), 0)
        assert time.monotonic() - t0 < 15
        assert proxy.injected["stall"] == 2
        report.record("faults_survived", 2)
    finally:
        con.close()
        release_replica(replica)


def test_open_fails_clearly_when_listing_keeps_failing(scenario_factory, proxy: FaultProxy,
                                                       core: ModuleType) -> None:
    scn = scenario_factory()
    proxy.target_port = int(scn.url.split("endpoint=http://127.0.0.1:")[1].split("&")[0])
    url = s3_replica_url(scn.replica.bucket, "db", proxy.endpoint)
    proxy.add(Rule("503", method="GET", path=r"list-type", count=3))
    replica, con = _open(url, core)  # three failed LISTs are retried away
    con.close()
    release_replica(replica)
    report.record("faults_survived", proxy.injected["503"])
    proxy.clear()
    proxy.add(Rule("slowdown", method="GET", path=r"list-type"))
    t0 = time.monotonic()
    with pytest.raises(StorageError, match=r"(?i)failed after \d+ attempts.*slow ?down"):
        _open(url, core)
    assert time.monotonic() - t0 < FAST_RETRY.max_elapsed + 5


def _count(con: apsw.Connection) -> int:
    return con.execute("SELECT count(*) FROM t").fetchall()[0][0]


def _wait_count(con: apsw.Connection, n: int, timeout: float) -> float:
    t0 = time.monotonic()
    while True:
        try:
            if _count(con) == n:
                return time.monotonic() - t0
        except apsw.IOError:
            pass
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"reader did not reach {n} rows in {timeout}s")
        time.sleep(0.05)


def test_writer_keeps_buffer_and_poller_recovers(s3_url: str, seaweed: SeaweedServer,
                                                 proxy: FaultProxy, core: ModuleType,
                                                 tmp_path) -> None:
    """The writer's uploads and the reader's polls go through the proxy: failing PUTs
    keep the buffer (rows stay readable locally) until an upload succeeds; answers cut
    short after the upload landed are recognised; the poller resumes after an outage."""
    proxy.target_port = seaweed.port
    bucket = s3_url.split("//")[1].split("/")[0]
    url = s3_replica_url(bucket, "db", proxy.endpoint)
    cfg = Config.resolve({"replica_url": url, "write": True, "sync_interval": 0,
                          "buffer_path": str(tmp_path / "buf"), "boot_set": "off",
                          "compaction_levels": "off", "snapshot_interval": 0})
    wrep = open_replica(cfg, core, storage=_storage(url))
    w = api.connect(url, impl=core, write=True)
    try:
        w.execute("CREATE TABLE t(x); INSERT INTO t VALUES (1)")
        writeapi.sync(w)
        reader_url = s3_replica_url(bucket, "db", proxy.endpoint) + "&region=us-east-1"
        rreplica, reader = _open(reader_url, core, poll_interval=0.1)
        try:
            assert _count(reader) == 1
            # 1. every PUT fails for a while: sync raises, nothing is lost
            rule = proxy.add(Rule("503", method="PUT"))
            w.execute("INSERT INTO t VALUES (2)")
            with pytest.raises(StorageError):
                writeapi.sync(w, timeout=20)
            assert writeapi.write_status(w)["pending_transactions"], writeapi.write_status(w)
            assert _count(w) == 2
            proxy.clear()
            report.record("faults_survived", rule.injected)
            writeapi.sync(w)
            _wait_count(reader, 2, 10)
            # 2. the answer to a landed PUT is cut short / reset: detected, no duplicate
            proxy.add(Rule("truncate", method="PUT", path=r"\.ltx", count=1))
            proxy.add(Rule("reset", method="PUT", path=r"\.ltx", count=1, skip=1))
            for i in (3, 4):
                w.execute(f"INSERT INTO t VALUES ({i})")
                writeapi.sync(w, timeout=20)
            report.record("faults_survived", proxy.injected["truncate"] + proxy.injected["reset"])
            _wait_count(reader, 4, 10)
            # 3. outage: nothing reaches the server; polls and the upload fail
            proxy.down = True
            w.execute("INSERT INTO t VALUES (5)")
            with pytest.raises(StorageError):
                writeapi.sync(w, timeout=20)
            time.sleep(0.5)
            proxy.down = False
            writeapi.sync(w, timeout=20)
            _wait_count(reader, 5, 10)
        finally:
            reader.close()
            release_replica(rreplica)
    finally:
        w.close()
        release_replica(wrep)


def test_server_restart_mid_run(tmp_path, core: ModuleType) -> None:
    """The SeaweedFS process stops and starts again (new port, same data): the writer
    keeps its commits until the server is back, the reader's poller then catches up."""
    server = SeaweedServer(base_dir=tmp_path / "weed").start()
    proxy = FaultProxy(server.port).start()
    try:
        bucket = server.create_bucket()
        url = s3_replica_url(bucket, "db", proxy.endpoint)
        cfg = Config.resolve({"replica_url": url, "write": True, "sync_interval": 0,
                              "buffer_path": str(tmp_path / "buf"), "boot_set": "off",
                              "compaction_levels": "off", "snapshot_interval": 0})
        creds = {"access_key_id": server.access_key, "secret_access_key": server.secret_key}
        wrep = open_replica(cfg, core, storage=_storage(url, **creds))
        w = api.connect(url, impl=core, write=True)
        w.execute("CREATE TABLE t(x); INSERT INTO t VALUES (1)")
        writeapi.sync(w)
        reader_url = url + "&region=us-east-1"
        rcfg = Config.resolve({"replica_url": reader_url, "poll_interval": 0.1,
                               "boot_set": "off"})
        rrep = open_replica(rcfg, core, storage=_storage(reader_url, **creds))
        reader = api.connect(reader_url, impl=core, poll_interval=0.1)
        try:
            _wait_count(reader, 1, 10)
            server.stop()
            w.execute("INSERT INTO t VALUES (2)")
            with pytest.raises(StorageError):
                writeapi.sync(w, timeout=20)
            assert _count(w) == 2 and writeapi.write_status(w)["pending_transactions"]
            time.sleep(0.5)  # the reader polls a dead server meanwhile
            server.start()
            proxy.target_port = server.port
            writeapi.sync(w, timeout=20)
            waited = _wait_count(reader, 2, 20)
            assert waited < 20
            report.record("server_restarts_survived", 1)
        finally:
            reader.close()
            release_replica(rrep)
            w.close()
            release_replica(wrep)
    finally:
        proxy.stop()
        server.stop()


def test_hydration_survives_faults(scenario_factory, proxy: FaultProxy, core: ModuleType,
                                   tmp_path) -> None:
    """Faults on the hydrator's ranged GETs delay it, never corrupt the local copy."""
    scn = scenario_factory()
    proxy.target_port = int(scn.url.split("endpoint=http://127.0.0.1:")[1].split("&")[0])
    url = s3_replica_url(scn.replica.bucket, "db", proxy.endpoint)
    expected = _expected(scn.db_path)
    for fault in ("503", "reset", "truncate", "slowdown"):
        proxy.add(Rule(fault, method="GET", path=r"\.ltx", probability=0.2, count=6))
    replica, con = _open(url, core, hydration=True,
                         hydration_path=str(tmp_path / "h.db"))
    try:
        deadline = time.monotonic() + 60
        while api.hydration_status(con)["state"] != "complete":
            assert time.monotonic() < deadline, api.hydration_status(con)
            time.sleep(0.05)
        replica.cache.clear()
        assert _run_queries(con, expected) == (len(QUERIES), 0)
        report.record("faults_survived", proxy.total_injected)
    finally:
        con.close()
        release_replica(replica)
