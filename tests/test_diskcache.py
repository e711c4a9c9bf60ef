"""Persistent page cache: verified entries, compression, eviction, sharing between
processes, restart reuse (pages and decoded indexes), damage is a miss."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from array import array
from pathlib import Path

import pytest

import litevfs
from litevfs.engine import diskcache as diskcache
from litevfs.engine import diskstore as diskstore
from litevfs.engine.diskstore import DiskStore, ReplicaDiskCache, pack_index, unpack_index
from litevfs.ltx.format import FileInfo, Header
from litevfs.session import open_replicas
from tests.vfs_support import FakeLitestream, make_accounts_db, unique_memory_url

INFO = FileInfo(0, 1, 1, 12345, 1700000000.5)


def _store(tmp_path: Path, **kw) -> DiskStore:
    return DiskStore(str(tmp_path / "cache"), kw.pop("max_bytes", 64 << 20), **kw)


def _frames(n: int, size: int = 4096) -> tuple[list[tuple[int, int, int]], dict[int, bytes]]:
    frames = [(p, 100 + (p - 1) * 500, 500) for p in range(1, n + 1)]
    pages = {p: bytes([p % 251]) * size for p in range(1, n + 1)}
    return frames, pages


@pytest.mark.parametrize("compress", [False, True])
def test_pages_round_trip(tmp_path: Path, compress: bool) -> None:
    store = _store(tmp_path, compress=compress)
    cache = ReplicaDiskCache(store, "memory://x")
    frames, pages = _frames(20)
    assert cache.get_frames(INFO, frames) == {}
    cache.put_frames(INFO, frames, pages)
    assert store.flush()
    assert cache.get_frames(INFO, frames) == pages
    assert cache.get_frames(INFO, frames[5:9]) == {p: pages[p] for p in range(6, 10)}
    # another object (same name, other size: a re-created file) shares nothing
    other = FileInfo(0, 1, 1, 999, INFO.created_at)
    assert cache.get_frames(other, frames) == {}
    # another replica shares nothing
    assert ReplicaDiskCache(store, "memory://y").get_frames(INFO, frames) == {}
    assert cache.hits == 24 and cache.misses == 20 + 20  # first lookup, other object
    if compress:  # compressible pages are stored small
        con = sqlite3.connect(store.path)
        assert con.execute("SELECT max(length(data)) FROM pages").fetchone()[0] < 200


def test_sparse_frames_read_only_the_wanted_rows(tmp_path: Path, monkeypatch) -> None:
    """A boot set spread over a big object must not pull every cached frame between its
    first and last offset into memory (a 650 MB cache made warm opens take seconds)."""
    store = _store(tmp_path)
    cache = ReplicaDiskCache(store, "memory://x")
    frames, pages = _frames(3000, size=512)
    cache.put_frames(INFO, frames, pages)
    assert store.flush()
    seen: list[int] = []
    check = store._check_rows
    monkeypatch.setattr(store, "_check_rows",
                        lambda oid, rows, *a: (seen.append(len(rows)), check(oid, rows, *a)))
    wanted = frames[0:1] + frames[1500:1501] + frames[2999:3000] + frames[700:1000]
    wanted.sort(key=lambda f: f[1])
    got = cache.get_frames(INFO, wanted)
    assert got == {f[0]: pages[f[0]] for f in wanted}
    assert sum(seen) == len(wanted) == 303  # rows read: exactly the wanted ones


def test_damaged_entry_is_a_miss_never_wrong_data(tmp_path: Path) -> None:
    store = _store(tmp_path)
    cache = ReplicaDiskCache(store, "r")
    frames, pages = _frames(3)
    cache.put_frames(INFO, frames, pages)
    store.flush()
    con = sqlite3.connect(store.path)
    con.execute("UPDATE pages SET data = zeroblob(4096) WHERE pgno = 2")
    con.commit()
    con.close()
    got = cache.get_frames(INFO, frames)
    assert got == {1: pages[1], 3: pages[3]}
    assert store.corrupt == 1
    store.flush()
    assert cache.get_frames(INFO, frames[1:2]) == {}  # the damaged entry was dropped


def test_unusable_cache_file_is_replaced(tmp_path: Path, caplog) -> None:
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / diskstore.DB_NAME).write_bytes(b"garbage" * 1000)
    store = _store(tmp_path)
    cache = ReplicaDiskCache(store, "r")
    frames, pages = _frames(2)
    cache.put_frames(INFO, frames, pages)
    store.flush()
    assert cache.get_frames(INFO, frames) == pages
    assert "unusable" in caplog.text


def test_damaged_cache_file_found_after_open_is_replaced(tmp_path: Path, caplog) -> None:
    """The structural check runs after the store opened (off the open's path): a file
    with a valid header but damaged pages is set aside and readers move to a new one."""
    store = _store(tmp_path)
    cache = ReplicaDiskCache(store, "r")
    for f in range(1, 6):
        frames, pages = _frames(64)
        cache.put_frames(FileInfo(0, f, f, 1 << 20, 1.0), frames, pages)
    assert store.flush()
    store.close()
    with open(store.path, "r+b") as f:  # keep page 1 (the header), damage the rest
        f.seek(4096)
        f.write(b"\xa5" * (os.path.getsize(store.path) - 4096))
    store = _store(tmp_path)
    cache = ReplicaDiskCache(store, "r")
    frames, pages = _frames(3)
    cache.put_frames(INFO, frames, pages)
    assert store.flush()
    assert "unusable" in caplog.text
    assert cache.get_frames(INFO, frames) == pages
    assert list((tmp_path / "cache").glob(f"{diskstore.DB_NAME}.corrupt-*"))


def test_a_locked_cache_file_is_waited_for_never_set_aside(tmp_path: Path, caplog,
                                                            monkeypatch) -> None:
    """Two processes creating one cache directory at once: the loser sees "database is
    locked" while the winner switches the file to WAL. That is busy, not damage: it
    tries again, and neither the set-up nor the structural check moves the file away
    (a CI run caught the set-up doing so)."""
    real_create = DiskStore._create
    failures = []

    def locked_twice(self) -> None:
        if len(failures) < 2:
            failures.append(1)
            raise sqlite3.OperationalError("database is locked")
        real_create(self)

    monkeypatch.setattr(DiskStore, "_create", locked_twice)
    store = _store(tmp_path)
    cache = ReplicaDiskCache(store, "r")
    frames, pages = _frames(3)
    cache.put_frames(INFO, frames, pages)
    assert store.flush() and len(failures) == 2
    assert cache.get_frames(INFO, frames) == pages
    real_connect = store._connect
    monkeypatch.setattr(store, "_connect", lambda: (_ for _ in ()).throw(
        sqlite3.OperationalError("database is locked")))
    store._check()  # busy during the structural check: not damage either
    monkeypatch.setattr(store, "_connect", real_connect)
    assert "unusable" not in caplog.text
    assert not list((tmp_path / "cache").glob("*.corrupt-*"))
    assert cache.get_frames(INFO, frames) == pages


def test_preloaded_index_serves_only_the_same_object(tmp_path: Path) -> None:
    header = Header(0, 4096, 7, 1, 1, timestamp=123)
    pgnos, offsets, sizes = array("I", [1, 2]), array("Q", [100, 200]), array("I", [10, 20])
    cache = ReplicaDiskCache(_store(tmp_path), "r")
    cache.put_index(INFO, header, pgnos, offsets, sizes)
    cache.flush()
    cache.preload_index(INFO)
    recreated = FileInfo(INFO.level, INFO.min_txid, INFO.max_txid, INFO.size + 1,
                         INFO.created_at)
    assert cache.get_index(recreated) is None  # same name, other object: not served
    assert cache.get_index(INFO) == (header, pgnos, offsets, sizes)
    cache.preload_index(INFO)
    cache.drop_preloaded()
    assert cache._preloaded == {}


def test_an_index_being_preloaded_is_waited_for_not_read_twice(tmp_path: Path) -> None:
    import threading

    header = Header(0, 4096, 7, 1, 1, timestamp=123)
    arrays = array("I", [1, 2]), array("Q", [100, 200]), array("I", [10, 20])
    store = _store(tmp_path)
    cache = ReplicaDiskCache(store, "r")
    cache.put_index(INFO, header, *arrays)
    cache.flush()
    reads: list[str] = []
    started, release = threading.Event(), threading.Event()
    real_get_index = store.get_index

    def slow_get_index(ident: str) -> bytes | None:  # the boot loader's read, held up
        reads.append(ident)
        started.set()
        release.wait(5)
        return real_get_index(ident)

    store.get_index = slow_get_index  # type: ignore[method-assign]
    loader = threading.Thread(target=cache.preload_index, args=(INFO,))
    loader.start()
    assert started.wait(5)
    threading.Timer(0.05, release.set).start()
    assert cache.get_index(INFO) == (header, *arrays)  # waited for the preload
    loader.join(5)
    assert len(reads) == 1 and cache.index_hits == 1
    cache.preload_index(INFO)  # served already: a second preload of it reads again
    assert len(reads) == 2


def test_size_is_bounded(tmp_path: Path) -> None:
    store = _store(tmp_path, max_bytes=2 << 20)
    cache = ReplicaDiskCache(store, "r")
    for f in range(1, 40):  # ~10 MB of pages in total
        info = FileInfo(0, f, f, 1 << 20, 1.0)
        frames = [(p, 100 + p * 5000, 5000) for p in range(1, 65)]
        cache.put_frames(info, frames, {p: os.urandom(4096) for p in range(1, 65)})
        store.flush()
    assert store.used_bytes() <= 2 << 20
    assert store.evictions > 0
    # the newest object survives eviction
    frames = [(p, 100 + p * 5000, 5000) for p in range(1, 65)]
    assert len(cache.get_frames(FileInfo(0, 39, 39, 1 << 20, 1.0), frames)) == 64


def test_eviction_takes_leaf_pages_before_interior_pages(tmp_path: Path) -> None:
    """The upper b-tree levels stay on disk while leaves come and go: a later process
    then needs one GET per point query, for its leaf."""
    store = _store(tmp_path, max_bytes=2 << 20)
    cache = ReplicaDiskCache(store, "r")
    interior = {p: bytes([5]) + os.urandom(4095) for p in range(2, 18)}  # table interior
    first = FileInfo(0, 1, 1, 1 << 20, 1.0)
    cache.put_frames(first, [(p, 100 + p * 5000, 5000) for p in interior], interior)
    store.flush()
    for f in range(2, 40):  # ~10 MB of leaf pages (type 13) written later
        info = FileInfo(0, f, f, 1 << 20, 1.0)
        frames = [(p, 100 + p * 5000, 5000) for p in range(1, 65)]
        cache.put_frames(info, frames, {p: bytes([13]) + os.urandom(4095) for p in range(1, 65)})
        store.flush()
    assert store.evictions > 0 and store.used_bytes() <= 2 << 20
    frames = [(p, 100 + p * 5000, 5000) for p in interior]
    assert cache.get_frames(first, frames) == interior  # the oldest entries, all kept


def test_index_round_trip(tmp_path: Path) -> None:
    header = Header(0, 4096, 7, 1, 1, timestamp=123)
    pgnos, offsets, sizes = array("I", [1, 2, 7]), array("Q", [100, 200, 1 << 40]), \
        array("I", [10, 20, 30])
    blob = pack_index(header.pack(), pgnos, offsets, sizes)
    assert unpack_index(blob) == (header, pgnos, offsets, sizes)
    assert unpack_index(blob[:-1]) is None
    cache = ReplicaDiskCache(_store(tmp_path), "r")
    assert cache.get_index(INFO) is None
    cache.put_index(INFO, header, pgnos, offsets, sizes)
    cache.flush()
    assert cache.get_index(INFO) == (header, pgnos, offsets, sizes)


def test_processes_share_the_directory(tmp_path: Path) -> None:
    """Two other processes write concurrently; this one reads everything back."""
    script = textwrap.dedent(f"""
        import sys
        from litevfs.engine.diskstore import DiskStore, ReplicaDiskCache
        from litevfs.ltx.format import FileInfo
        store = DiskStore({str(tmp_path / "cache")!r}, 64 << 20)
        cache = ReplicaDiskCache(store, "shared")
        me = int(sys.argv[1])
        for f in range(1, 30):
            info = FileInfo(0, f, f, 1000 + me, 1.0)
            frames = [(p, 100 + p * 10, 10) for p in range(1, 33)]
            cache.put_frames(info, frames, {{p: bytes([me, p]) * 2048 for p in range(1, 33)}})
        assert store.flush(30)
        assert store.write_errors == 0, store.write_errors
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, str(i)]) for i in (1, 2)]
    assert [p.wait(60) for p in procs] == [0, 0]
    cache = ReplicaDiskCache(_store(tmp_path), "shared")
    frames = [(p, 100 + p * 10, 10) for p in range(1, 33)]
    for me in (1, 2):
        for f in range(1, 30):
            got = cache.get_frames(FileInfo(0, f, f, 1000 + me, 1.0), frames)
            assert got == {p: bytes([me, p]) * 2048 for p in range(1, 33)}


def _fresh_process_state() -> None:
    """What a restart does: no replica open, no cache store in memory."""
    assert not open_replicas()
    for store in diskcache._stores.values():
        store.close()
    diskcache._stores.clear()


def test_restart_reuses_pages_and_indexes(tmp_path: Path, core) -> None:
    url = unique_memory_url("disk")
    make_accounts_db(tmp_path / "p.db", accounts=2000, blob_rows=40).close()
    ls = FakeLitestream(tmp_path / "p.db", url)
    ls.sync()
    cache_dir = str(tmp_path / "pc")
    queries = ["SELECT sum(balance) FROM accounts", "SELECT length(data) FROM blobs WHERE id=7",
               "SELECT count(*) FROM accounts WHERE name > 'name-01000'"]

    def run() -> tuple[list, dict]:
        con = litevfs.connect(url, impl=core, poll_interval=0, cache_dir=cache_dir,
                              boot_set="off")
        try:
            rows = [con.execute(q).fetchall() for q in queries]
            return rows, litevfs.stats(con)
        finally:
            con.close()
            _fresh_process_state()

    _fresh_process_state()
    first_rows, first = run()
    assert first["disk_cache"]["hits"] == 0 and first["disk_cache"]["misses"] > 0
    second_rows, second = run()
    assert second_rows == first_rows
    assert second["disk_cache"]["misses"] == 0 and second["disk_cache"]["hits"] > 0
    assert second["disk_cache"]["index_hits"] == 1
    # only the listing went to storage: no index read, no page read
    assert second["gets"] == 0 and first["gets"] > 0



def test_a_verified_large_file_is_not_streamed_again_after_a_restart(tmp_path: Path,
                                                                      core) -> None:
    """Files above verify_max_size are CRC-checked by streaming them in the background;
    the persistent cache remembers the check (per object, upload time included), so the
    next process does not download a big snapshot again just to verify it."""
    from litevfs.vfs.registry import file_of

    url = unique_memory_url("verified")
    make_accounts_db(tmp_path / "p.db", accounts=2000, blob_rows=40).close()
    FakeLitestream(tmp_path / "p.db", url).sync()
    cache_dir = str(tmp_path / "pc")

    def run(query: str) -> dict:
        con = litevfs.connect(url, impl=core, poll_interval=0, cache_dir=cache_dir,
                              boot_set="off", verify_max_size=0, verify_bandwidth=0)
        try:
            assert con.execute(query).fetchall()
            replica = file_of(con).replica
            assert replica.verifier.wait_idle(10)
            assert replica.disk.flush(5)
            return litevfs.stats(con)["verification"]
        finally:
            con.close()
            _fresh_process_state()

    _fresh_process_state()
    first = run("SELECT sum(balance) FROM accounts")
    assert first["files_verified"] == 1 and first["bytes_verified"] > 0
    assert first["files_remembered"] == 0
    second = run("SELECT sum(length(data)) FROM blobs")  # pages not on disk yet: remote reads
    counts = ("files_verified", "bytes_verified", "files_remembered", "files_failed")
    assert {k: second[k] for k in counts} == {"files_verified": 1, "bytes_verified": 0,
                                              "files_remembered": 1, "files_failed": 0}
