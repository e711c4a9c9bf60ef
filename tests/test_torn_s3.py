"""Interrupted uploads (issue: "one interrupted upload makes the replica unusable").

SeaweedFS keeps a 0-byte object when a client dies after sending a PUT's head without
a body checksum. litevfs sends ``Content-MD5`` with every upload, so a cut body stores
nothing; an empty or headerless object found at the writer's next TXID is provably not
a commit and is replaced; readers and restores ignore one at the tip (logged), while
one inside the history is a named error. Against SeaweedFS (through the rig's fault
proxy, which cuts requests) and the real ``litestream restore``.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

import litevfs
from litevfs.engine.plan import MIN_LTX_SIZE
from litevfs.errors import LTXFormatError
from litevfs.ltx.encoder import encode_file
from litevfs.storage import open_storage
from tests.rig.faults import FaultProxy, Rule
from tests.rig.seaweed import s3_replica_url
from tests.test_write_s3 import child_env, litestream_rows

pytestmark = [pytest.mark.s3, pytest.mark.litestream]
PS = 4096


@pytest.fixture
def proxy(seaweed):
    p = FaultProxy(seaweed.port, seed=3).start()
    yield p
    p.stop()


def _torn_put(seaweed, bucket: str, key: str, proxy: FaultProxy, keep: int = 0) -> None:
    """A client without Content-MD5 dies after sending the head of its PUT (and ``keep``
    body bytes): what a writer killed mid-upload, or a cut network path, leaves."""
    rule = proxy.add(Rule("cut_request", method="PUT", count=10, keep_bytes=keep))
    client = seaweed.client(endpoint=proxy.endpoint)
    try:
        client.put_object(Bucket=bucket, Key=key, Body=b"x" * 50_000)
    except Exception:  # noqa: BLE001 - the connection is cut on purpose (every retry too)
        pass
    rule.count = rule.injected  # no more cuts


def test_seaweedfs_keeps_an_empty_object_without_md5_and_nothing_with_it(
        seaweed, s3_bucket, proxy):
    _torn_put(seaweed, s3_bucket, "plain", proxy)
    client = seaweed.client()
    assert client.head_object(Bucket=s3_bucket, Key="plain")["ContentLength"] == 0
    # Ours: every PUT carries Content-MD5, so the same cut stores nothing.
    url = s3_replica_url(s3_bucket, "db", proxy.endpoint, seaweed.region)
    storage = open_storage(url)
    rule = proxy.add(Rule("cut_request", method="PUT", count=100))
    try:
        with pytest.raises(Exception):  # noqa: B017 - a reset connection, however named
            storage.put_object("litevfs/probe", b"y" * 50_000)
    finally:
        rule.count = rule.injected
        storage.close()
    assert rule.injected >= 1
    with pytest.raises(Exception):  # noqa: B017 - botocore's 404
        client.head_object(Bucket=s3_bucket, Key="db/litevfs/probe")


def test_a_cut_upload_is_retried_and_never_stored_torn(seaweed, s3_bucket, proxy, tmp_path,
                                                      core):
    url = s3_replica_url(s3_bucket, "db", proxy.endpoint, seaweed.region)
    con = litevfs.connect(url, write=True, impl=core, sync_interval=0,
                          buffer_path=str(tmp_path / "w.wbuf"))
    try:
        con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
        assert litevfs.sync(con, timeout=60) == 1
        for keep in (0, 1000):
            con.execute("INSERT INTO t(v) VALUES (?)", ("x" * 3000,))
            proxy.add(Rule("cut_request", method="PUT", path=r"\.ltx", count=1,
                           keep_bytes=keep))
            litevfs.sync(con, timeout=60)  # the cut attempt is retried
        storage = open_storage(s3_replica_url(s3_bucket, "db", seaweed.endpoint, seaweed.region))
        try:
            sizes = [f.size for f in storage.list_level(0)]
        finally:
            storage.close()
        assert len(sizes) == 3 and min(sizes) >= MIN_LTX_SIZE, sizes
        assert proxy.injected["cut_request"] == 2
    finally:
        con.close()
    plain = s3_replica_url(s3_bucket, "db", seaweed.endpoint, seaweed.region)
    assert litestream_rows(plain, seaweed, tmp_path) == [(1,), (2,)]


def test_an_empty_object_at_the_next_txid_is_ignored_by_readers_and_replaced_by_the_writer(
        seaweed, s3_bucket, s3_url, proxy, tmp_path, core):
    con = litevfs.connect(s3_url, write=True, impl=core, sync_interval=0,
                          buffer_path=str(tmp_path / "w.wbuf"))
    try:
        con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
        con.execute("INSERT INTO t(v) VALUES ('one')")
        assert litevfs.sync(con, timeout=60) == 1
        # Another writer died while uploading TXID 2: the server kept an empty object.
        _torn_put(seaweed, s3_bucket, "db/0000/0000000000000002-0000000000000002.ltx", proxy)
        assert seaweed.client().head_object(
            Bucket=s3_bucket,
            Key="db/0000/0000000000000002-0000000000000002.ltx")["ContentLength"] == 0
        # A reader in another process: the torn tip is not a commit, the replica reads.
        out = subprocess.run([sys.executable, "-m", "litevfs", "query", s3_url,
                              "SELECT count(*) FROM t"], env=child_env(seaweed, core),
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip().splitlines()[-1] == "1"
        assert "upload cut short" in out.stderr  # said, not hidden
        # The writer's next TXID is that key: it is replaced, not taken for a rival.
        con.execute("INSERT INTO t(v) VALUES ('two')")
        assert litevfs.sync(con, timeout=60) == 2
        assert litevfs.write_status(con)["conflict"] is None
    finally:
        con.close()
    assert litestream_rows(s3_url, seaweed, tmp_path, sql="SELECT v FROM t ORDER BY id") == [
        ("one",), ("two",)]


def test_a_torn_object_inside_the_history_is_a_named_error(seaweed, s3_bucket, s3_url, proxy,
                                                          tmp_path, core):
    storage = open_storage(s3_url)
    try:
        for txid in (1, 3):
            page = bytes([txid]) * PS
            storage.write_ltx(0, txid, txid, encode_file(
                [(1, page)], page_size=PS, commit=1, min_txid=txid, max_txid=txid))
    finally:
        storage.close()
    _torn_put(seaweed, s3_bucket, "db/0000/0000000000000002-0000000000000002.ltx", proxy)
    with pytest.raises(LTXFormatError, match="0000000000000002.*torn"):
        litevfs.connect(s3_url, impl=core)
    out = subprocess.run([sys.executable, "-m", "litevfs", "restore", s3_url, "-o",
                          str(tmp_path / "r.db")], env=child_env(seaweed, core),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "0000000000000002" in out.stderr and "torn" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
