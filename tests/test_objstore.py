"""The machine's store of whole small LTX objects (``engine/objstore.py``), in one process
on a local-directory replica: what the uploader stores, that a stored copy that is
truncated, damaged or of another object of the same name is never served (it is removed
and the object read from the bucket again), that a missing store falls back cleanly,
the bound, and that a process killed with -9 while holding an object's lock blocks
nobody. Several processes sharing it against SeaweedFS: test_multiprocess_s3.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import litevfs
from litevfs.engine.objstore import ObjectStore, object_name, store_dir
from litevfs.ltx.decoder import decode_file
from litevfs.ltx.encoder import encode_file
from litevfs.session import open_replicas
from litevfs.write.home import default_buffer_path

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def replica(tmp_path: Path, core):
    """A replica with a few L0 files, written from "another machine" (its own buffer);
    then a read-only connection of this process joined as a member (the store is on)."""
    url = f"file://{tmp_path / 'replica'}"
    w = litevfs.connect(url, write=True, impl=core, sync_interval=0,
                        buffer_path=str(tmp_path / "other.wbuf"))
    w.execute("CREATE TABLE t(x)")
    for i in range(3):
        w.execute("INSERT INTO t VALUES (?)", (f"row{i}",))
        litevfs.sync(w, timeout=30)
    w.close()
    con = litevfs.connect(url, impl=core)
    assert con.execute("SELECT count(*) FROM t").fetchall() == [(3,)]
    litevfs.write_status(con)  # the join is done: the verifier has the store
    rep = open_replicas()[0]
    yield url, con, rep
    con.close()


def _newest_l0(rep):
    return max(rep.storage.list_level(0), key=lambda f: f.max_txid)


def _bucket_pages(rep, info, core):
    return dict(decode_file(rep.storage.read_range(info, 0, info.size), impl=core).pages)


def test_a_fetched_object_is_stored_and_read_back(replica, core):
    url, con, rep = replica
    verifier = rep.verifier
    store = verifier.store
    assert store is not None and store.dir == store_dir(default_buffer_path(url))
    info = _newest_l0(rep)
    fetched = verifier.whole_fetches
    pages = verifier.read_whole(info)
    stored = os.path.join(store.dir, object_name(info))
    if verifier.whole_fetches == fetched:  # the query above had fetched it already
        assert store.hits >= 1
    assert open(stored, "rb").read() == rep.storage.read_range(info, 0, info.size)
    before = verifier.whole_fetches
    assert verifier.read_whole(info) == pages == _bucket_pages(rep, info, core)
    assert verifier.whole_fetches == before  # from the store: no GET


@pytest.mark.parametrize("damage", ["truncated", "flipped", "other-object", "empty",
                                    "missing-dir"])
def test_a_bad_stored_copy_is_never_served(replica, core, damage):
    url, con, rep = replica
    verifier, store = rep.verifier, rep.verifier.store
    info = _newest_l0(rep)
    good = rep.storage.read_range(info, 0, info.size)
    truth = _bucket_pages(rep, info, core)
    path = os.path.join(store.dir, object_name(info))
    verifier.read_whole(info)  # now stored
    if damage == "truncated":
        bad = good[:-9]
    elif damage == "flipped":
        bad = bytearray(good)
        bad[len(bad) // 2] ^= 0x40
        bad = bytes(bad)
    elif damage == "other-object":  # same name and size, valid, but not this object
        dec = decode_file(good, impl=core)
        h = dec.header
        bad = encode_file(dec.pages, page_size=h.page_size, commit=h.commit,
                          min_txid=h.min_txid, max_txid=h.max_txid,
                          timestamp_ms=h.timestamp + 1, checksums=not h.no_checksum,
                          pre_apply_checksum=h.pre_apply_checksum,
                          post_apply_checksum=dec.trailer.post_apply_checksum, impl=core)
        assert len(bad) == len(good) and bad != good
        decode_file(bad, impl=core)  # self-consistent: only its identity is wrong
    else:
        bad = b""
    if damage == "missing-dir":
        for name in os.listdir(store.dir):
            os.unlink(os.path.join(store.dir, name))
        os.rmdir(store.dir)
    else:
        with open(path, "wb") as f:
            f.write(bad)
    rejected, fetched = store.rejected, verifier.whole_fetches
    assert verifier.read_whole(info) == truth
    assert verifier.whole_fetches == fetched + 1  # read from the bucket instead
    if damage != "missing-dir":
        assert store.rejected == rejected + 1
    assert open(path, "rb").read() == good  # replaced by the object's own bytes
    # rows stay right through the SQL path too
    assert con.execute("SELECT x FROM t ORDER BY rowid").fetchall() == [
        ("row0",), ("row1",), ("row2",)]


def test_the_uploader_stores_what_it_uploaded(tmp_path, core):
    url = f"file://{tmp_path / 'replica'}"
    w = litevfs.connect(url, write=True, impl=core, sync_interval=0)
    w.execute("CREATE TABLE t(x)")
    w.execute("INSERT INTO t VALUES (1)")
    txid = litevfs.sync(w, timeout=30)
    rep = open_replicas()[0]
    info = next(f for f in rep.storage.list_level(0) if f.max_txid == txid)
    stored = os.path.join(store_dir(default_buffer_path(url)), object_name(info))
    assert open(stored, "rb").read() == rep.storage.read_range(info, 0, info.size)
    w.close()  # the last process out removes the store with the other shared files
    assert not os.path.exists(store_dir(default_buffer_path(url)))


def test_the_store_is_bounded(tmp_path, core):
    from litevfs.ltx.format import FileInfo

    store = ObjectStore(str(tmp_path / "objects"))
    blobs = []
    for txid in range(1, 11):
        data = encode_file([(1, bytes([txid]) * 4096)], page_size=4096, commit=1,
                           min_txid=txid, max_txid=txid, timestamp_ms=txid, impl=core)
        info = FileInfo(0, txid, txid, len(data))
        assert store.put(info, data)
        os.utime(store.path(info), (txid, txid))  # oldest first
        blobs.append(info)
    assert store.evict(max_bytes=10**9, max_files=4) == 6
    left = sorted(n for n in os.listdir(store.dir) if n.endswith(".ltx"))
    assert left == sorted(object_name(i) for i in blobs[6:])
    size = blobs[0].size
    assert store.evict(max_bytes=2 * size, max_files=100) == 2
    assert store.get(blobs[-1]) is not None and store.get(blobs[6]) is None


_HOLDER = """
import sys, time
from litevfs.engine.objstore import ObjectStore
from litevfs.ltx.format import FileInfo
store = ObjectStore(sys.argv[1])
with store.fetching(FileInfo(*map(int, sys.argv[2:6]))) as held:
    print("held" if held else "not held", flush=True)
    time.sleep(600)
"""


def test_a_killed_lock_holder_blocks_nobody(replica, core):
    url, con, rep = replica
    verifier, store = rep.verifier, rep.verifier.store
    info = _newest_l0(rep)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, store.dir, str(info.level), str(info.min_txid),
         str(info.max_txid), str(info.size)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with store.fetching(info, wait=0.2) as held:
            assert not held  # another process holds it
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        t0 = time.monotonic()
        with store.fetching(info, wait=5.0) as held:
            assert held
        assert time.monotonic() - t0 < 1.0  # the kernel released it with the process
        for name in os.listdir(store.dir):
            if name.endswith(".ltx"):
                os.unlink(os.path.join(store.dir, name))
        assert verifier.read_whole(info) == _bucket_pages(rep, info, core)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(10)


def test_pages_evicted_from_memory_are_read_again_from_the_store(replica, core):
    """A verified object's pages that left the memory cache come back from the machine's
    copy, not with a ranged GET."""
    url, con, rep = replica
    assert con.execute("SELECT x FROM t ORDER BY rowid").fetchall() == [
        ("row0",), ("row1",), ("row2",)]
    for info in rep.storage.list_level(0):
        rep.verifier.read_whole(info)  # every L0 object is in the store now
    rep.state.cache.clear()
    rep.state.interior.clear()
    gets, hits = rep.storage.stats.gets, rep.verifier.store.hits
    fresh = litevfs.connect(url, impl=core)  # same replica state, no SQLite page cache
    try:
        assert fresh.execute("SELECT x FROM t ORDER BY rowid").fetchall() == [
            ("row0",), ("row1",), ("row2",)]
    finally:
        fresh.close()
    assert rep.verifier.store.hits > hits
    assert rep.storage.stats.gets == gets  # nothing from the bucket
