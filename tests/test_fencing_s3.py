"""Fencing against the real components: a paused litevfs writer on SeaweedFS, another
writer process taking over with aggressive compaction and retention, and
``litestream restore`` as the judge of what the replica's history is."""

from __future__ import annotations

import subprocess
import sys

import apsw
import pytest

import litevfs
from litevfs.write.compactor import CompactionPolicy, compact_once
from litevfs.session import open_replicas
from litevfs.storage import open_storage
from litevfs.write.buffer import read_buffer
from tests.test_fencing import Gate, in_thread
from tests.test_write_s3 import child_env, finish, litestream_rows, spawn

pytestmark = [pytest.mark.litestream, pytest.mark.s3]


def test_writer_paused_past_compaction_and_retention_gets_conflict_not_ack(
        seaweed, s3_url, tmp_path, core):
    env = child_env(seaweed, core)
    init = spawn(["writer", s3_url, str(tmp_path / "init.wbuf"), "1", "3", "--sync"], env)
    assert "closed" in finish(init)
    a = litevfs.connect(s3_url, write=True, impl=core, sync_interval=0,
                        buffer_path=str(tmp_path / "a.wbuf"))
    storage = None
    try:
        for i in range(100, 104):  # four commits, acknowledged locally only
            a.execute("INSERT INTO t(id, v) VALUES (?, 'a')", (i,))
        replica = next(r for r in open_replicas() if r.writer is not None)
        gate = Gate(replica.storage, "write_ltx")  # A's PUT stalls in the network
        t, box = in_thread(lambda: litevfs.sync(a, timeout=60))
        assert gate.held.wait(20)
        # B takes over in another process and commits; its history is compacted and
        # retention deletes the L0 key A is about to create.
        for first in (200, 205):  # two sessions: two TXIDs, the first one compactable
            b = spawn(["writer", s3_url, str(tmp_path / "b.wbuf"), str(first), "5", "--sync"],
                      env)
            assert "closed" in finish(b)
        storage = open_storage(s3_url)
        policy = CompactionPolicy((1.0,), 0.0, 0.0, 86400.0)
        now = max(f.created_at for f in storage.list_level(0)) + 10
        compact_once(storage, policy, now, core)
        compact_once(storage, policy, now + 10, core)
        assert [f.max_txid for f in storage.list_level(0)] == [3]  # L0 2 is gone
        gate.release.set()
        t.join(60)
        gate.restore()
        assert isinstance(box.get("error"), litevfs.ConflictError), box
        assert "first" in str(box["error"])
        # A's PUT of TXID 2 succeeded, but it is not in the history: removed again.
        assert [f.max_txid for f in storage.list_level(0)] == [3]
    finally:
        with pytest.raises(apsw.Error, match="conflict"):
            a.close()  # a clean close never acknowledges what is not in the history
        if storage is not None:
            storage.close()
    ids = [r[0] for r in litestream_rows(s3_url, seaweed, tmp_path)]
    assert ids == [1, 2, 3] + list(range(200, 210))
    # A's four transactions are kept, not dropped. Its base state (TXID 1) was compacted
    # away with the L0 key, so an export says so and names the raw reader.
    res = subprocess.run([sys.executable, "-m", "litevfs", "unsynced", "export",
                          str(tmp_path / "a.wbuf"), "-o", str(tmp_path / "a.db")],
                         env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and "read_buffer" in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    info, txns = read_buffer(str(tmp_path / "a.wbuf"))
    assert info["base_txid"] == 1 and len(txns) == 4


def test_recovery_recognises_its_landed_commit_after_retention_deleted_it(
        seaweed, s3_url, tmp_path, core, monkeypatch):
    """A writer killed after its upload reached S3 (and its commit point), before it
    reset its buffer; another writer continues, compaction and retention delete the L0
    key. The first writer comes back on the same buffer: its 4 transactions are
    recognised as landed (the head's history), not reported as a rival's, and not
    applied twice."""
    from litevfs import session
    from litevfs.write.buffer import WriteBuffer

    env = child_env(seaweed, core)
    init = spawn(["writer", s3_url, str(tmp_path / "init.wbuf"), "1", "3", "--sync"], env)
    assert "closed" in finish(init)
    buffer = str(tmp_path / "a.wbuf")
    a = litevfs.connect(s3_url, write=True, impl=core, sync_interval=0, buffer_path=buffer)
    for i in range(100, 104):
        a.execute("INSERT INTO t(id, v) VALUES (?, 'a')", (i,))
    replica = next(r for r in open_replicas() if r.writer is not None)
    monkeypatch.setattr(WriteBuffer, "append_done", lambda *a, **k: (_ for _ in ()).throw(
        RuntimeError("killed")))
    with pytest.raises(Exception, match="killed"):
        litevfs.sync(a, timeout=60)  # landed and recorded; the "process" dies here
    monkeypatch.undo()
    writer = replica.writer
    writer.syncer.stop()
    writer.compactor.stop()
    writer.buffer.close()  # no final sync: the process is gone
    replica.writer = None
    session._registry.clear()  # the next open is a new process's
    try:
        for first in (200, 205):  # B continues from A's TXID
            b = spawn(["writer", s3_url, str(tmp_path / "b.wbuf"), str(first), "5", "--sync"],
                      env)
            assert "closed" in finish(b)
        storage = open_storage(s3_url)
        try:
            policy = CompactionPolicy((1.0,), 0.0, 0.0, 86400.0)
            now = max(f.created_at for f in storage.list_level(0)) + 10
            compact_once(storage, policy, now, core)
            compact_once(storage, policy, now + 10, core)
            assert 2 not in [f.max_txid for f in storage.list_level(0)]  # A's L0 is gone
        finally:
            storage.close()
        a2 = litevfs.connect(s3_url, write=True, impl=core, sync_interval=0,
                             buffer_path=buffer)
        try:
            status = litevfs.write_status(a2)
            assert status["conflict"] is None and status["pending_transactions"] == 0
            a2.execute("INSERT INTO t(id, v) VALUES (300, 'a2')")
            litevfs.sync(a2, timeout=60)
        finally:
            a2.close()
    finally:
        try:
            a.close()
        except Exception:  # noqa: BLE001 - its replica was taken apart above
            pass
    ids = [r[0] for r in litestream_rows(s3_url, seaweed, tmp_path)]
    assert ids == [1, 2, 3, 100, 101, 102, 103] + list(range(200, 210)) + [300]


def test_lost_answers_of_the_commit_point_and_of_deletes_are_never_a_self_conflict(
        seaweed, s3_bucket, tmp_path, core):
    """The server did it, the answer never came back: the head's compare-and-swap (a
    retry finds its own history entry), a conditional create, and DeleteObjects of
    retention and of a stray upload. None of them may turn into a conflict."""
    from tests.rig.seaweed import s3_replica_url
    from tests.test_storage_s3 import FaultProxy

    proxy = FaultProxy(seaweed.endpoint)
    try:
        url = s3_replica_url(s3_bucket, "db", proxy.endpoint, seaweed.region)
        con = litevfs.connect(url, write=True, impl=core, sync_interval=0,
                              compaction_levels="1s", l0_retention="0s",
                              snapshot_interval="0", buffer_path=str(tmp_path / "w.wbuf"))
        try:
            con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY)")
            assert litevfs.sync(con, timeout=60) == 1
            replica = next(r for r in open_replicas() if r.writer is not None)
            # Compaction runs only where the test calls it: the background compactor's own
            # tick (1 s) could delete an L0 file between the explicit run's LIST and its
            # read (a NotFoundError in the test, a race no single writer has).
            replica.writer.compactor.stop()
            for i, (method, marker) in enumerate(
                    [("PUT", "litevfs/head"), ("PUT", ".ltx"), ("POST", "delete")], start=2):
                proxy.add("lose_response", 1, method=method,
                          when=lambda m, p, h, marker=marker: marker in p)
                con.execute("INSERT INTO t VALUES (?)", (i,))
                if method == "POST":  # retention's DeleteObjects runs in the compactor
                    compact_once(replica.storage, replica.writer.compactor.policy,
                                 impl=core)
                assert litevfs.sync(con, timeout=60) == i
                assert litevfs.write_status(con)["conflict"] is None
            assert all(rule.remaining == 0 for rule in proxy.rules)  # every answer was lost
        finally:
            con.close()
    finally:
        proxy.close()
    plain = s3_replica_url(s3_bucket, "db", seaweed.endpoint, seaweed.region)
    assert [r[0] for r in litestream_rows(plain, seaweed, tmp_path)] == [2, 3, 4]
