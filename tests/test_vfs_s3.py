"""The read-replica VFS against real components: SeaweedFS and `litestream replicate`.

* query results equal a `litestream restore` of the same replica (page sizes 1024,
  4096, 65536; L0/L1/snapshot files, overflow blobs, a shrink by VACUUM), both twins;
* bad input gives a clear error at open or SQLITE_IOERR, never a hang or wrong rows.
The live writer/reader test is in ``test_vfs_live.py``.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from types import ModuleType

import apsw
import pytest

import litevfs.vfs.connect as api
from litevfs.vfs.registry import file_of
from litevfs.errors import (
    AccessDeniedError, BucketNotFoundError, EndpointUnreachableError, StorageError,
    TxNotAvailableError,
)
from tests.rig import dbgen
from tests.rig.litestream import restore
from tests.rig.scenarios import Scenario, build_scenario
from tests.rig.seaweed import SeaweedServer, free_port, s3_replica_url, unique_bucket_name

pytestmark = [pytest.mark.s3, pytest.mark.litestream, pytest.mark.slow]

CORPUS = [
    "SELECT count(*), sum(balance) FROM accounts",
    "SELECT * FROM accounts WHERE id = 42",
    "SELECT id, k, v FROM kv WHERE id BETWEEN 20 AND 60 ORDER BY id",
    "SELECT k FROM kv WHERE k > 'm' ORDER BY k LIMIT 25",
    "SELECT grp, count(*), min(name), max(name) FROM items GROUP BY grp ORDER BY grp",
    "SELECT i.id, k.v FROM items i JOIN kv k ON k.id = i.id WHERE i.grp < 3 ORDER BY i.id",
    "SELECT id, tag, length(data), hex(substr(data, 1, 16)), hex(substr(data, -16)) "
    "FROM blobs ORDER BY id",
    "SELECT id, length(payload), hex(substr(payload, 1, 8)) FROM items ORDER BY id DESC LIMIT 40",
    "SELECT count(*) FROM items WHERE note LIKE '%page%'",
    "PRAGMA integrity_check",
]


def rows(con: object, sql: str) -> list[tuple]:
    return [tuple(r) for r in con.execute(sql)]  # type: ignore[attr-defined]


@pytest.fixture(scope="module", params=[1024, 4096, 65536], ids=lambda p: f"ps{p}")
def scenario(request: pytest.FixtureRequest, seaweed: SeaweedServer,
             tmp_path_factory: pytest.TempPathFactory) -> tuple[Scenario, Path]:
    work = tmp_path_factory.mktemp(f"scenario{request.param}")
    scn = build_scenario(seaweed, request.param, work)
    restored = restore(scn.url, work / "restored.db", env=scn.env)
    return scn, restored


def test_queries_equal_litestream_restore(scenario: tuple[Scenario, Path], core: ModuleType) -> None:
    scn, restored = scenario
    con = api.connect(scn.url, impl=core, poll_interval=0)
    try:
        assert rows(con, "PRAGMA litestream_txid") == [(f"{scn.final_txid:016x}",)]
        ref = sqlite3.connect(f"file:{restored}?mode=ro", uri=True)
        for sql in CORPUS:
            assert rows(con, sql) == [tuple(r) for r in ref.execute(sql)], sql
        ref.close()
        assert dbgen.state_from(lambda sql: rows(con, sql)) == scn.final_state
        assert con.execute("PRAGMA page_size").fetchall()[0][0] == scn.page_size
    finally:
        con.close()


def test_past_txids_equal_restore(scenario: tuple[Scenario, Path], core: ModuleType,
                                  tmp_path: Path) -> None:
    """Views of earlier TXIDs (as after a re-plan) match `litestream restore -txid`."""
    from litevfs.session import open_replicas

    scn, _ = scenario
    con = api.connect(scn.url, impl=core, poll_interval=0)
    try:
        (replica,) = [r for r in open_replicas() if r.config.replica_url == scn.url
                      and r.impl is core]
        file = file_of(con)
        for mark in ("l1", "deleted", "vacuumed"):
            txid = scn.marks[mark]
            file.snapshot.set_travel(replica.view_at_txid(txid))
            got = dbgen.state_from(lambda sql: rows(con, sql))
            assert got == scn.state_at(txid), mark
            out = restore(scn.url, tmp_path / f"{mark}.db", env=scn.env, txid=txid)
            assert dbgen.state(out) == got
    finally:
        con.close()


# -- bad input -----------------------------------------------------------------------


def _timed_connect(url: str, core: ModuleType, **options: object) -> float:
    start = time.monotonic()
    api.connect(url, impl=core, poll_interval=0, **options).close()
    return time.monotonic() - start


def test_wrong_bucket(seaweed: SeaweedServer, core: ModuleType) -> None:
    url = s3_replica_url(unique_bucket_name("missing"), "db", seaweed.endpoint, seaweed.region)
    with pytest.raises(BucketNotFoundError, match="(?i)bucket"):
        _timed_connect(url, core, open_timeout="1s")


def test_wrong_credentials(seaweed: SeaweedServer, s3_url: str, core: ModuleType,
                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "not-the-key")
    with pytest.raises(AccessDeniedError):
        _timed_connect(s3_url, core)


def test_unreachable_endpoint(core: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    url = s3_replica_url("bucket", "db", f"http://127.0.0.1:{free_port()}", "us-east-1")
    start = time.monotonic()
    with pytest.raises((EndpointUnreachableError, StorageError)):
        _timed_connect(url, core)
    assert time.monotonic() - start < 60


def test_empty_prefix(s3_url: str, core: ModuleType) -> None:
    start = time.monotonic()
    with pytest.raises(TxNotAvailableError, match="no LTX files"):
        _timed_connect(s3_url, core, open_timeout="1s")
    assert time.monotonic() - start < 10


def test_corrupted_ltx_objects(seaweed: SeaweedServer, tmp_path: Path, core: ModuleType) -> None:
    """A frame whose page number is damaged is an SQLITE_IOERR; a damaged page index
    fails the open; neither ever returns rows."""
    from tests.rig.litestream import Litestream, S3Replica

    bucket = seaweed.create_bucket(unique_bucket_name("corrupt"))
    target = S3Replica(seaweed, bucket, "db")
    db = dbgen.create_db(tmp_path / "c.db", 4096, rows=400, blobs=6)
    with Litestream(db, target, workdir=tmp_path / "ls", snapshot_interval=None,
                    l1_interval=None) as ls:
        ls.wait_for_txid(1)
    (first,) = [f for f in target.list_level(0) if f.min_txid == 1]
    key = f"{target.level_prefix(0)}{first.name}"
    client = seaweed.client()
    original = client.get_object(Bucket=bucket, Key=key)["Body"].read()

    # 1. damage the page number of the frame holding page 2 (right after page 1)
    from litevfs.ltx.decoder import decode_file

    assert len(decode_file(original).pages) > 10
    from litevfs._impl import decode_page_index
    from litevfs.ltx.decoder import locate_index

    loc = locate_index(original, len(original))
    pgnos, offsets, sizes, _ = decode_page_index(original, loc.start)
    victim = list(pgnos).index(max(pgnos))  # a data page SQLite reads late
    bad = bytearray(original)
    bad[offsets[victim] + 3] ^= 0x5A
    client.put_object(Bucket=bucket, Key=key, Body=bytes(bad))
    # The whole small file is CRC-checked before any page is served (verify.py), so the
    # first page read (possibly inside connect) already fails.
    with pytest.raises(apsw.IOError, match="page"):
        con = api.connect(target.url, impl=core, poll_interval=0, fetch_retries=1)
        try:
            rows(con, "SELECT * FROM blobs ORDER BY id")
            rows(con, "SELECT * FROM items ORDER BY id")
            rows(con, "PRAGMA integrity_check")
        finally:
            con.close()

    # 2. damage the page index length: the open fails with a named format error
    bad = bytearray(original)
    bad[-20] ^= 0x77
    client.put_object(Bucket=bucket, Key=key, Body=bytes(bad))
    with pytest.raises(Exception, match="(?i)index|ltx|invalid"):
        _timed_connect(target.url, core)
