"""Fencing (fence.py): a sync is acknowledged only when the head object records it.

Deterministic scenarios on the memory backend (both core twins): a writer paused
between its position check and its upload while another writer takes over, compacts
and lets retention delete the contested L0 key; a writer paused between its upload and
its commit point while another builds on it; a lost answer to the head's
compare-and-swap; recovery that recognises its own landed commit after retention
deleted the L0 object. ``test_fencing_s3.py`` repeats the worst case on SeaweedFS with
real processes and ``litestream restore``.
"""

from __future__ import annotations

import threading

import pytest

from litevfs import session as replica_mod
from litevfs.write.compactor import CompactionPolicy, compact_once
from litevfs.errors import ConflictError, TransientStorageError
from litevfs.write.fence import HeadState, commit_head
from litevfs.engine.head import HEAD_NAME, Head, decode_head
from litevfs.session import open_replica, release_replica
from litevfs.storage.memory import MemoryStorage
from litevfs.write.syncer import sync_once
from tests.test_syncer import PS, make_config, restored
from tests.vfs_support import unique_memory_url

AGGRESSIVE = CompactionPolicy((1.0,), 0.0, 0.0, 86400.0)  # L1 at once, L0 deleted at once


def open_writer(url, tmp_path, core, name):
    """A writer as a separate machine would open it (its own replica state)."""
    replica_mod._registry.clear()  # the other "machine" must not share our state
    return open_replica(make_config(url, tmp_path, name), core)


def close_quietly(replica):
    try:
        release_replica(replica)
    except ConflictError:
        pass


class Gate:
    """Holds the first call of ``storage.<method>`` (the network stalls) until released."""

    def __init__(self, storage, method: str, after: bool = False):
        self.held, self.release = threading.Event(), threading.Event()
        self.storage, self.method, self.after = storage, method, after
        self.real = getattr(storage, method)
        self.calls = 0
        setattr(storage, method, self)

    def __call__(self, *a, **kw):
        self.calls += 1
        if self.calls == 1 and not self.after:
            self.held.set()
            assert self.release.wait(30)
        out = self.real(*a, **kw)
        if self.calls == 1 and self.after:
            self.held.set()
            assert self.release.wait(30)
        return out

    def restore(self):
        setattr(self.storage, self.method, self.real)


def in_thread(fn):
    box = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc

    t = threading.Thread(target=run)
    t.start()
    return t, box


def test_paused_writer_is_fenced_after_retention_deleted_its_txid(tmp_path, core):
    url = unique_memory_url("pause")
    a = open_writer(url, tmp_path, core, "a")
    b = None
    try:
        a.writer.commit({1: b"\1" * PS}, 1)
        assert sync_once(a.writer) == 1
        a.writer.commit({1: b"\2" * PS, 2: b"\2" * PS}, 2)  # A's TXID 2, acknowledged? never
        gate = Gate(a.storage, "write_ltx")  # A checked the position; its PUT stalls
        t, box = in_thread(lambda: sync_once(a.writer))
        assert gate.held.wait(10)
        b = open_writer(url, tmp_path, core, "b")  # B takes over
        for i in (2, 3):
            b.writer.commit({1: bytes([0x10 + i]) * PS}, 1)
            assert sync_once(b.writer) == i
        storage = MemoryStorage(url.removeprefix("memory://"))
        now = max(f.created_at for f in storage.list_level(0)) + 10
        compact_once(storage, AGGRESSIVE, now, core)
        compact_once(storage, AGGRESSIVE, now + 10, core)  # retention: L0 2 is gone
        assert [f.max_txid for f in storage.list_level(0)] == [3]
        gate.release.set()  # A wakes up: its PUT of TXID 2 now succeeds...
        t.join(30)
        gate.restore()
        # ...but the head moved on: A is told, nothing is acknowledged, nothing dropped.
        assert isinstance(box.get("error"), ConflictError), box
        assert a.writer.buffer.transactions == 1 and a.writer.conflict is not None
        assert [f.max_txid for f in storage.list_level(0)] == [3]  # A's stray file removed
        out = restored(url, tmp_path, core).read_bytes()
        assert out == b"\x13" * PS  # B's history only
        with pytest.raises(ConflictError):
            a.writer.commit({1: b"\3" * PS}, 1)
    finally:
        close_quietly(a)
        if b is not None:
            release_replica(b)


def test_writer_paused_before_its_commit_point_is_helped_not_refused(tmp_path, core):
    url = unique_memory_url("help")
    a = open_writer(url, tmp_path, core, "a")
    b = None
    try:
        a.writer.commit({1: b"\1" * PS}, 1)
        assert sync_once(a.writer) == 1
        a.writer.commit({1: b"\2" * PS}, 1)
        storage = a.storage
        gate = Gate(storage, "put_object")  # A's upload landed; its head update stalls
        t, box = in_thread(lambda: sync_once(a.writer))
        assert gate.held.wait(10)
        b = open_writer(url, tmp_path, core, "b")  # B opens on A's TXID 2 and builds on it
        assert b.current.txid == 2
        b.writer.commit({2: b"\3" * PS}, 2)
        assert sync_once(b.writer) == 3
        head = decode_head(MemoryStorage(url.removeprefix("memory://")).get_object(HEAD_NAME))
        assert head.txid == 3 and head.run_of(2) is not None  # B recorded A's file for it
        gate.release.set()
        t.join(30)
        gate.restore()
        assert box.get("value") == 2, box  # A's TXID 2 is in the history: acknowledged
        assert a.writer.conflict is None and a.writer.buffer.empty
        assert restored(url, tmp_path, core).read_bytes() == b"\2" * PS + b"\3" * PS
    finally:
        close_quietly(a)
        if b is not None:
            release_replica(b)


def test_lost_answer_of_the_head_update_is_not_a_conflict(tmp_path, core):
    url = unique_memory_url("lostcas")
    a = open_writer(url, tmp_path, core, "a")
    storage = a.storage
    real = storage.put_object
    lost = []

    def flaky(name, data, **kw):
        etag = real(name, data, **kw)
        if name == HEAD_NAME and not lost:
            lost.append(1)
            raise TransientStorageError("answer lost")
        return etag

    storage.put_object = flaky
    try:
        a.writer.commit({1: b"\1" * PS}, 1)
        assert sync_once(a.writer) == 1
        a.writer.commit({1: b"\2" * PS}, 1)
        assert sync_once(a.writer) == 2 and lost
        assert a.writer.conflict is None
    finally:
        storage.put_object = real
        release_replica(a)


def test_compactor_never_merges_an_uncommitted_upload(tmp_path, core):
    url = unique_memory_url("uncommitted")
    a = open_writer(url, tmp_path, core, "a")
    try:
        for i in (1, 2):
            a.writer.commit({1: bytes([i]) * PS}, 1)
            assert sync_once(a.writer) == i
        storage = MemoryStorage(url.removeprefix("memory://"))
        from litevfs.ltx.encoder import encode_file

        # TXID 3 uploaded by some writer that never reached its commit point.
        storage.write_ltx(0, 3, 3, encode_file([(1, b"\x33" * PS)], page_size=PS, commit=1,
                                               min_txid=3, max_txid=3), if_absent=True)
        now = max(f.created_at for f in storage.list_level(0)) + 10
        written = compact_once(storage, AGGRESSIVE, now, core)
        assert [(f.level, f.min_txid, f.max_txid) for f in written] == [(1, 1, 2)]
    finally:
        release_replica(a)


def test_recovery_recognises_its_commit_after_retention_deleted_the_l0_object(
        tmp_path, core, monkeypatch):
    url = unique_memory_url("recover")
    cfg = make_config(url, tmp_path, "a")
    replica_mod._registry.clear()
    a = open_replica(cfg, core)
    w = a.writer
    w.commit({1: b"\1" * PS}, 1)
    sync_once(w)
    w.commit({1: b"\2" * PS}, 1)
    # Crash after TXID 2 landed and was recorded, before its DONE record.
    monkeypatch.setattr(type(w.buffer), "append_done", lambda *a, **k: (_ for _ in ()).throw(
        RuntimeError("crash")))
    with pytest.raises(RuntimeError):
        sync_once(w)
    monkeypatch.undo()
    w.syncer.stop()
    w.buffer.close()
    a.writer = None
    a.close()
    # Another writer continues, compacts; retention deletes L0 2 (A's landed upload).
    b = open_writer(url, tmp_path, core, "b")
    for i in (3, 4):
        b.writer.commit({2: bytes([i]) * PS}, 2)
        assert sync_once(b.writer) == i
    storage = MemoryStorage(url.removeprefix("memory://"))
    now = max(f.created_at for f in storage.list_level(0)) + 10
    compact_once(storage, AGGRESSIVE, now, core)
    compact_once(storage, AGGRESSIVE, now + 10, core)
    assert 2 not in [f.max_txid for f in storage.list_level(0)]
    release_replica(b)
    replica_mod._registry.clear()
    a2 = open_replica(cfg, core)
    try:
        # Recognised as landed (the head's history), not reported as a rival's commit.
        assert a2.writer.conflict is None and a2.writer.buffer.empty
        assert a2.writer.base_txid == 4
    finally:
        release_replica(a2)


def test_head_history_verdicts():
    h = Head(10, 0, ())
    h = h.advanced("w1", 11, 0xA1)
    h = h.advanced("w1", 12, 0xA2)
    h = h.advanced("w2", 13, 0xB3, helped=())
    assert [tuple(r)[:3] for r in h.runs] == [("w1", 11, 12), ("w2", 13, 13)]
    assert h.committed(12, 0xA2) is True and h.committed(12, 0xFF) is False
    assert h.committed(11, 0xA1) is None  # inside a run: only its writer knows
    assert h.committed(11, 0, writer="w1") is True
    assert h.committed(14, 0xA1) is False  # not committed yet
    assert h.committed(5, 1) is None  # older than the history
    h2 = Head(12, 0, ()).advanced("w3", 15, 0xC5, helped=((13, 0xD3), (14, 0xD4)))
    assert h2.committed(13, 0xD3) and h2.committed(14, 0xD4) and h2.committed(15, 0xC5)
    many = Head(0, 0, ())
    for i in range(1, 100):
        many = many.advanced(f"w{i}", i, i)
    assert len(many.runs) == 32 and many.committed(99, 99)


def test_commit_head_cas_refuses_a_stale_tag(tmp_path):
    storage = MemoryStorage(unique_memory_url("cas").removeprefix("memory://"))
    a, b = HeadState("a"), HeadState("b")
    a.load(storage)
    b.load(storage)
    commit_head(storage, a, 1, 0x11)
    with pytest.raises(ConflictError, match="first"):
        commit_head(storage, b, 1, 0x22)  # B's stale view: TXID 1 is A's
    commit_head(storage, b, 2, 0x22)  # B has re-read the head: it may go on from it
    assert decode_head(storage.get_object(HEAD_NAME)).txid == 2
