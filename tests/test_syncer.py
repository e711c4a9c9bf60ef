"""Syncer, recovery and compactor on the memory backend (no VFS, no threads)."""

from __future__ import annotations

import sqlite3

import pytest

from litevfs.write.compactor import CompactionPolicy, compact_once
from litevfs.config import Config
from litevfs.errors import ConflictError, TransientStorageError
from litevfs.ltx.decoder import decode_file
from litevfs.session import open_replica, release_replica
from litevfs.engine.restore import restore
from litevfs.storage.memory import MemoryStorage
from litevfs.write import syncer as syncer_mod
from litevfs.write.syncer import sync_once
from tests.vfs_support import unique_memory_url

PS = 4096


def make_config(url, tmp_path, name="w", **kw):
    opts = dict(replica_url=url, write=True, poll_interval=0, sync_interval=0,
                compaction_levels=(), snapshot_interval=0,
                buffer_path=str(tmp_path / f"{name}.wbuf"), open_timeout=0.2)
    opts.update(kw)
    return Config(**opts)


def db_pages(path) -> dict[int, bytes]:
    data = open(path, "rb").read()
    return {i // PS + 1: data[i:i + PS] for i in range(0, len(data), PS)}


@pytest.fixture
def sqlite_db(tmp_path):
    path = tmp_path / "src.db"
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA page_size=4096")
    con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    con.executemany("INSERT INTO t(v) VALUES (?)", [("x" * 300,) for _ in range(100)])
    con.close()
    return path


def restored(url, tmp_path, core, name="out.db"):
    out = tmp_path / name
    out.unlink(missing_ok=True)
    storage = MemoryStorage(url.removeprefix("memory://"))
    restore(storage, out, impl=core)
    return out


def test_new_database_first_sync_is_snapshot_then_incremental(tmp_path, core, sqlite_db):
    url = unique_memory_url("sync")
    replica = open_replica(make_config(url, tmp_path), core)
    try:
        w = replica.writer
        assert replica.current.txid == 0 and w.base_txid == 0
        pages = db_pages(sqlite_db)
        w.commit(dict(pages), len(pages))
        assert sync_once(w) == 1 and w.buffer.empty and w.local.empty
        assert replica.current.txid == 1 and replica.current.commit == len(pages)
        storage = MemoryStorage(url.removeprefix("memory://"))
        (f1,) = storage.list_level(0)
        dec = decode_file(storage.read_range(f1), impl=core)
        assert dec.header.min_txid == 1 and dec.header.commit == len(pages)
        assert len(dec.pages) == len(pages) and dec.header.timestamp > 0
        assert restored(url, tmp_path, core).read_bytes() == sqlite_db.read_bytes()
        # An update: only the changed pages go up, as TXID 2.
        con = sqlite3.connect(sqlite_db, isolation_level=None)
        con.execute("UPDATE t SET v='y' WHERE id=50")
        con.close()
        new = db_pages(sqlite_db)
        changed = {p: d for p, d in new.items() if pages.get(p) != d}
        w.commit(changed, len(new))
        assert sync_once(w) == 2
        f2 = storage.list_level(0)[-1]
        assert len(decode_file(storage.read_range(f2), impl=core).pages) == len(changed)
        assert restored(url, tmp_path, core).read_bytes() == sqlite_db.read_bytes()
        assert sync_once(w) == 2  # nothing dirty: no upload
        assert len(storage.list_level(0)) == 2
    finally:
        release_replica(replica)


def test_upload_failures_are_retried_and_buffer_kept(tmp_path, core, monkeypatch):
    monkeypatch.setattr(syncer_mod, "UPLOAD_ATTEMPTS", 2)
    monkeypatch.setattr(syncer_mod.time, "sleep", lambda s: None)
    url = unique_memory_url("fail")
    replica = open_replica(make_config(url, tmp_path), core)
    storage = MemoryStorage(url.removeprefix("memory://"))
    try:
        w = replica.writer
        w.commit({1: b"\1" * PS, 2: b"\2" * PS}, 2)
        storage.fail_next(1, ops=["write"])
        assert sync_once(w) == 1  # one failure, retried within the sync
        w.commit({2: b"\3" * PS}, 2)
        storage.fail_next(5, ops=["write"])
        with pytest.raises(TransientStorageError):
            sync_once(w)
        assert w.buffer.transactions == 1 and w.local.get(2) == b"\3" * PS
        w.commit({3: b"\4" * PS}, 3)  # commits continue while uploads fail
        storage.store.clear_failures()
        assert sync_once(w) == 2
        dec = decode_file(storage.read_range(storage.list_level(0)[-1]), impl=core)
        assert dec.pages == [(2, b"\3" * PS), (3, b"\4" * PS)] and dec.header.commit == 3
        assert w.buffer.empty
    finally:
        release_replica(replica)


def test_lost_response_of_a_landed_upload_is_not_a_conflict(tmp_path, core):
    url = unique_memory_url("lost")
    replica = open_replica(make_config(url, tmp_path), core)
    storage = replica.storage
    real = storage.write_ltx
    calls = []

    def flaky(*a, **kw):
        info = real(*a, **kw)
        if not calls:
            calls.append(1)
            raise TransientStorageError("response lost")
        return info

    storage.write_ltx = flaky
    try:
        replica.writer.commit({1: b"\1" * PS}, 1)
        assert sync_once(replica.writer) == 1
        assert replica.writer.conflict is None
    finally:
        storage.write_ltx = real
        release_replica(replica)


def test_conflict_keeps_buffer_then_discard(tmp_path, core):
    url = unique_memory_url("conflict")
    a = open_replica(make_config(url, tmp_path, "a"), core)
    try:
        a.writer.commit({1: b"\1" * PS}, 1)
        assert sync_once(a.writer) == 1
        other = MemoryStorage(url.removeprefix("memory://"))
        from litevfs.ltx.encoder import encode_file

        other.write_ltx(0, 2, 2, encode_file([(1, b"\x09" * PS)], page_size=PS, commit=1,
                                             min_txid=2, max_txid=2), if_absent=True)
        a.writer.commit({1: b"\2" * PS}, 1)
        with pytest.raises(ConflictError, match="another writer"):
            sync_once(a.writer)
        assert a.writer.buffer.transactions == 1
        with pytest.raises(ConflictError):
            a.writer.commit({1: b"\3" * PS}, 1)
        assert len(other.list_level(0)) == 2  # nothing overwritten
        assert decode_file(other.read_range(other.list_level(0)[-1])).pages[0][1] == b"\x09" * PS
        assert a.writer.discard_unsynced() == 1
        assert a.writer.base_txid == 2 and a.writer.conflict is None
        a.writer.commit({1: b"\4" * PS}, 1)
        assert sync_once(a.writer) == 3
    finally:
        release_replica(a)


def test_race_lost_at_conditional_create(tmp_path, core, monkeypatch):
    url = unique_memory_url("race")
    a = open_replica(make_config(url, tmp_path, "a"), core)
    try:
        from litevfs.ltx.encoder import encode_file

        a.storage.write_ltx(0, 1, 1, encode_file([(1, b"\x09" * PS)], page_size=PS, commit=1,
                                                 min_txid=1, max_txid=1))
        monkeypatch.setattr(syncer_mod, "remote_levels", lambda w: {})  # LIST raced
        a.writer.commit({1: b"\1" * PS}, 1)
        with pytest.raises(ConflictError, match="first"):
            sync_once(a.writer)
        assert a.writer.buffer.transactions == 1
        assert decode_file(a.storage.read_range(a.storage.list_level(0)[0])).pages[0][1] == b"\x09" * PS
        a.writer.discard_unsynced()
    finally:
        release_replica(a)


def test_recovery_after_crash_before_and_after_upload(tmp_path, core, monkeypatch):
    url = unique_memory_url("crash")
    cfg = make_config(url, tmp_path)
    r = open_replica(cfg, core)
    w = r.writer
    w.commit({1: b"\1" * PS}, 1)
    sync_once(w)
    w.commit({1: b"\2" * PS, 2: b"\2" * PS}, 2)
    # Crash right after the upload landed and was recorded, before its DONE record.
    monkeypatch.setattr(type(w.buffer), "append_done", lambda *a, **k: (_ for _ in ()).throw(
        RuntimeError("crash")))
    with pytest.raises(RuntimeError):
        sync_once(w)
    w.commit({3: b"\3" * PS}, 3)  # one more commit that never got uploaded
    monkeypatch.undo()
    w.syncer.stop()
    w.buffer.close()  # the "process" dies: no final sync
    r.writer = None
    r.close()
    from litevfs.session import _registry

    _registry.clear()
    r2 = open_replica(cfg, core)
    try:
        w2 = r2.writer
        assert w2.conflict is None and w2.base_txid == 2  # TXID 2 recognised as ours
        assert w2.buffer.transactions == 1 and w2.local.commit == 3
        assert sync_once(w2) == 3
        out = restored(url, tmp_path, core).read_bytes()
        assert out == b"\2" * PS * 2 + b"\3" * PS
    finally:
        release_replica(r2)


def test_recovered_buffer_conflicts_when_remote_moved(tmp_path, core):
    url = unique_memory_url("moved")
    cfg = make_config(url, tmp_path)
    r = open_replica(cfg, core)
    r.writer.commit({1: b"\1" * PS}, 1)
    r.writer.buffer.close()
    r.writer = None
    r.close()
    from litevfs.session import _registry
    from litevfs.ltx.encoder import encode_file

    _registry.clear()
    MemoryStorage(url.removeprefix("memory://")).write_ltx(
        0, 1, 1, encode_file([(1, b"\x09" * PS)], page_size=PS, commit=1, min_txid=1, max_txid=1))
    r2 = open_replica(cfg, core)
    try:
        assert r2.writer.conflict is not None and r2.writer.buffer.transactions == 1
        with pytest.raises(ConflictError):
            sync_once(r2.writer)
    finally:
        with pytest.raises(ConflictError):
            release_replica(r2)  # close never reports success while writes are unsynced


def test_shrink_and_zero_fill(tmp_path, core):
    url = unique_memory_url("shrink")
    r = open_replica(make_config(url, tmp_path), core)
    try:
        w = r.writer
        w.commit({p: bytes([p]) * PS for p in range(1, 6)}, 5)
        sync_once(w)
        w.commit({1: b"\7" * PS}, 2)  # truncate to 2 pages
        w.commit({4: b"\x08" * PS}, 4)  # grow again, page 3 never rewritten
        assert w.local.commit == 4 and w.local.floor == 2
        sync_once(w)
        out = restored(url, tmp_path, core).read_bytes()
        assert out == b"\7" * PS + b"\2" * PS + bytes(PS) + b"\x08" * PS
        assert r.current.commit == 4
    finally:
        release_replica(r)


def test_compaction_and_retention(tmp_path, core):
    url = unique_memory_url("compact")
    r = open_replica(make_config(url, tmp_path), core)
    storage = r.storage
    try:
        w = r.writer
        for i in range(1, 11):
            w.commit({1: bytes([i]) * PS, i + 1: bytes([i]) * PS}, i + 1)
            sync_once(w)
        policy = CompactionPolicy((10.0, 100.0), 1000.0, 30.0, 5000.0)
        now = max(f.created_at for f in storage.list_level(0)) + 1
        written = compact_once(storage, policy, now, core)
        assert [(f.level, f.min_txid, f.max_txid) for f in written] == [
            (1, 1, 10), (2, 1, 10), (9, 1, 10)]  # every level empty: all due
        assert len(storage.list_level(0)) == 10  # too recent to delete
        compact_once(storage, policy, now + 31, core)
        assert [f.max_txid for f in storage.list_level(0)] == [10]  # newest L0 always stays
        out = restored(url, tmp_path, core).read_bytes()
        expect = bytes([10]) * PS + b"".join(bytes([i]) * PS for i in range(1, 11))
        assert out == expect
        for i in range(11, 14):
            w.commit({1: bytes([i]) * PS}, 11)
            sync_once(w)
        written = compact_once(storage, policy, now + 45, core)
        assert (1, 11, 13) in [(f.level, f.min_txid, f.max_txid) for f in written]
        assert restored(url, tmp_path, core).read_bytes()[:PS] == bytes([13]) * PS
    finally:
        release_replica(r)


def test_lock_page_never_stored(tmp_path, core):
    url = unique_memory_url("lockpage")
    r = open_replica(make_config(url, tmp_path), core)
    try:
        w = r.writer
        w.commit({1: b"\1" * PS}, 1)
        sync_once(w)
        lock = w.lock_pgno
        w.commit({2: b"\2" * PS, lock: b"\3" * PS, lock + 1: b"\4" * PS}, lock + 1)
        assert w.local.get(lock) is None
        sync_once(w)
        storage = MemoryStorage(url.removeprefix("memory://"))
        dec = decode_file(storage.read_range(storage.list_level(0)[-1]), impl=core)
        assert [p for p, _ in dec.pages] == [2, lock + 1] and dec.header.commit == lock + 1
    finally:
        release_replica(r)
