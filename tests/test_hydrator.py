"""The hydrator alone (no threads, no apsw): memory storage, both core twins."""

from __future__ import annotations

import errno
import logging
import os
import time
from pathlib import Path
from types import ModuleType

import pytest

from litevfs.config import Config
from litevfs.ltx.format import FileInfo
from litevfs.engine.hydrate.hydrator import Hydrator, plan_runs
from litevfs.engine.poller import poll_once
from litevfs.session import Replica
from litevfs.engine.hydrate.sidecar import Sidecar, read_sidecar, sidecar_path, write_sidecar
from litevfs.storage.memory import MemoryStorage

from .vfs_support import FakeLitestream, make_accounts_db, transfer, unique_memory_url


@pytest.fixture
def primary(tmp_path: Path) -> FakeLitestream:
    make_accounts_db(tmp_path / "primary.db", accounts=400, blob_rows=30).close()
    ls = FakeLitestream(tmp_path / "primary.db", unique_memory_url("hyd"))
    ls.sync()
    return ls


def open_replica(ls: FakeLitestream, core: ModuleType) -> Replica:
    config = Config.resolve({"replica_url": ls.storage.url, "poll_interval": 0})
    replica = Replica(config, MemoryStorage(ls.storage.url.removeprefix("memory://")), core)
    replica.open()
    return replica


def run(h: Hydrator, limit: int = 10_000) -> None:
    for _ in range(limit):
        if not h.hydrate_step():
            return
    raise AssertionError("hydration did not finish")


def local_bytes(h: Hydrator) -> bytes:
    assert h.path is not None
    return Path(h.path).read_bytes()


def test_plan_runs_coalesces_contiguous_frames() -> None:
    wanted = [(1, 100, 50, 3), (1, 150, 50, 4), (1, 200, 50, 5), (1, 1000, 50, 9),
              (2, 100, 50, 1)]
    runs = plan_runs(list(wanted), max_gap=0, run_bytes=1 << 20)
    assert [(r.file_id, r.start, r.length, len(r.frames)) for r in runs] == [
        (1, 100, 150, 3), (1, 1000, 50, 1), (2, 100, 50, 1)]
    runs = plan_runs(list(wanted), max_gap=1000, run_bytes=100)  # size cap splits
    assert [len(r.frames) for r in runs] == [2, 1, 1, 1]
    runs = plan_runs(list(wanted), max_gap=1000, run_bytes=1 << 20)  # gap read through
    assert [len(r.frames) for r in runs] == [4, 1]


def test_hydrates_byte_identical(primary: FakeLitestream, core: ModuleType) -> None:
    replica = open_replica(primary, core)
    h = Hydrator(replica.state, replica.views, replica.verifier, concurrency=4, run_bytes=64 * 1024)
    try:
        assert h.status()["state"] == "pending"
        run(h)
        assert h.state == "complete" and h.percent == 100.0
        assert local_bytes(h) == primary.db_path.read_bytes()
        st = h.status()
        assert st["pages_done"] == st["pages_total"] == replica.current.commit
        assert st["bytes_fetched"] <= 1.1 * primary.db_path.stat().st_size
        # reads of the current view are served locally
        view = replica.current
        fid = view.index.lookup(2)[0]
        assert h.read(2, fid) == primary.db_path.read_bytes()[4096:8192]
        assert h.read(2, fid + 1) is None  # another version: not ours
    finally:
        path = h.path
        h.close()
        replica.close()
    assert path is not None and not os.path.exists(path)  # temporary: removed on close


def test_only_newest_versions_downloaded(primary: FakeLitestream, core: ModuleType) -> None:
    con = primary.db()
    for i in range(20):  # rewrite the same pages many times: 20 more L0 files
        con.execute("UPDATE blobs SET data = randomblob(9000) WHERE id < 10")
        primary.sync()
    con.close()
    replica = open_replica(primary, core)
    h = Hydrator(replica.state, replica.views, replica.verifier, concurrency=8)
    try:
        run(h)
        assert local_bytes(h) == primary.db_path.read_bytes()
        files = primary.storage.list_level(0)
        assert sum(f.size for f in files) > 2 * h.bytes_fetched
        assert h.bytes_fetched <= 1.1 * primary.db_path.stat().st_size
    finally:
        h.close()
        replica.close()


def test_follows_new_views_and_keeps_old_views_isolated(
        primary: FakeLitestream, core: ModuleType) -> None:
    replica = open_replica(primary, core)
    h = Hydrator(replica.state, replica.views, replica.verifier, concurrency=2, run_bytes=16 * 1024)
    replica.hydrator = h
    try:
        assert h.hydrate_step()  # part of the way
        old = replica.current
        old_pages = {p: replica.reader.read_page(old, p) for p in range(1, old.commit + 1)}
        con = primary.db()
        transfer(con, 1, 2, 5)
        con.execute("UPDATE blobs SET data = randomblob(9000) WHERE id = 3")
        con.close()
        primary.sync()
        assert poll_once(replica.state, replica.views)
        run(h)
        new = replica.current
        assert h.status()["txid"] == new.txid
        assert local_bytes(h) == primary.db_path.read_bytes()
        # the pinned old view still reads its own bytes, whatever the local file holds
        changed = 0
        for p in range(1, old.commit + 1):
            fid = old.index.lookup(p)[0]
            if not h.has(p, fid):
                changed += 1
            assert replica.reader.read_page(old, p) == old_pages[p]
        assert changed > 0
    finally:
        h.close()
        replica.close()


def test_shrink_truncates(primary: FakeLitestream, core: ModuleType) -> None:
    replica = open_replica(primary, core)
    h = Hydrator(replica.state, replica.views, replica.verifier)
    try:
        run(h)
        before = len(local_bytes(h))
        con = primary.db()
        con.execute("DELETE FROM blobs")
        con.execute("VACUUM")
        con.close()
        primary.sync()
        assert poll_once(replica.state, replica.views)
        run(h)
        data = local_bytes(h)
        assert len(data) < before
        assert data == primary.db_path.read_bytes()
    finally:
        h.close()
        replica.close()


def test_persistent_resume_fetches_only_changes(
        primary: FakeLitestream, core: ModuleType, tmp_path: Path) -> None:
    path = str(tmp_path / "h" / "local.db")
    replica = open_replica(primary, core)
    h = Hydrator(replica.state, replica.views, replica.verifier, path)
    run(h)
    full = h.bytes_fetched
    h.close()
    replica.close()
    assert os.path.exists(path) and os.path.exists(sidecar_path(path))
    sc = read_sidecar(path)
    assert sc.txid == 1 and sc.page_size == 4096

    # restart, nothing changed: nothing fetched
    replica = open_replica(primary, core)
    h = Hydrator(replica.state, replica.views, replica.verifier, path)
    run(h)
    assert h.resumed_pages == replica.current.commit
    assert h.bytes_fetched == 0
    h.close()
    replica.close()

    # restart after a small change: only the changed pages
    con = primary.db()
    transfer(con, 3, 4, 7)
    con.close()
    primary.sync()
    replica = open_replica(primary, core)
    h = Hydrator(replica.state, replica.views, replica.verifier, path)
    run(h)
    assert 0 < h.bytes_fetched < full / 10
    assert Path(path).read_bytes() == primary.db_path.read_bytes()
    h.close()
    replica.close()


@pytest.mark.parametrize("damage", ["corrupt", "other-replica", "ahead", "checksum"])
def test_mismatched_sidecar_rebuilds(primary: FakeLitestream, core: ModuleType,
                                     tmp_path: Path, damage: str,
                                     caplog: pytest.LogCaptureFixture) -> None:
    path = str(tmp_path / "local.db")
    replica = open_replica(primary, core)
    h = Hydrator(replica.state, replica.views, replica.verifier, path)
    run(h)
    full = h.bytes_fetched
    h.close()
    replica.close()
    sc = read_sidecar(path)
    if damage == "corrupt":
        raw = bytearray(Path(sidecar_path(path)).read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        Path(sidecar_path(path)).write_bytes(bytes(raw))
    else:
        changes = {"other-replica": {"replica": "memory://someone-else"},
                   "ahead": {"txid": sc.txid + 100},
                   "checksum": {"post_apply_checksum": sc.post_apply_checksum ^ 1}}[damage]
        write_sidecar(path, Sidecar(**{**sc.__dict__, **changes}))
    # poison the data file: a trusted sidecar would serve these bytes
    with open(path, "r+b") as f:
        f.seek(8192)
        f.write(b"\xAA" * 4096)
    replica = open_replica(primary, core)
    h = Hydrator(replica.state, replica.views, replica.verifier, path)
    with caplog.at_level(logging.WARNING, logger="litevfs.hydrator"):
        run(h)
    assert "rebuilding" in caplog.text
    assert h.resumed_pages == 0 and h.bytes_fetched == full
    assert Path(path).read_bytes() == primary.db_path.read_bytes()
    h.close()
    replica.close()


def test_unwritable_path_fails_cleanly(primary: FakeLitestream, core: ModuleType,
                                       tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    replica = open_replica(primary, core)
    h = Hydrator(replica.state, replica.views, replica.verifier, str(blocker / "local.db"))
    with caplog.at_level(logging.ERROR, logger="litevfs.hydrator"):
        h.start()
        h.hydrate_step()
    assert h.state == "failed" and "cannot create" in (h.error or "")
    assert "reads continue from object storage" in caplog.text
    view = replica.current
    assert h.read(1, view.index.lookup(1)[0]) is None
    h.close()
    replica.close()


def test_disk_full_stops_hydration(primary: FakeLitestream, core: ModuleType,
                                   monkeypatch: pytest.MonkeyPatch,
                                   caplog: pytest.LogCaptureFixture) -> None:
    replica = open_replica(primary, core)
    h = Hydrator(replica.state, replica.views, replica.verifier, concurrency=1, run_bytes=32 * 1024)
    assert h.hydrate_step()
    calls = []

    def full(fd: int, data: object, pos: int) -> int:
        calls.append(pos)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "pwrite", full)
    with caplog.at_level(logging.ERROR, logger="litevfs.hydrator"):
        assert not h.hydrate_step()
    monkeypatch.undo()
    assert calls and h.state == "failed" and "No space left" in (h.error or "")
    assert not h.hydrate_step()
    # pages written before the failure are still served, the rest is not claimed
    view = replica.current
    local = [p for p in range(1, view.commit + 1) if h.has(p, view.index.lookup(p)[0])]
    assert 0 < len(local) < view.commit
    for p in local:
        assert h.read(p, view.index.lookup(p)[0]) == replica.reader.read_page(view, p)
    h.close()
    replica.close()


def test_second_process_follows_a_persistent_file(
        primary: FakeLitestream, core: ModuleType, tmp_path: Path) -> None:
    """A persistent file hydrated by another process (flock is per open file
    description, like another process): read through its published labels, no
    download; the follower takes over when the owner goes, resuming its work."""
    path = str(tmp_path / "local.db")
    replica = open_replica(primary, core)
    view = replica.current
    a = Hydrator(replica.state, replica.views, replica.verifier, path)
    run(a)
    b = Hydrator(replica.state, replica.views, replica.verifier, path)
    b.start()
    try:
        assert b.state == "following" and b.status()["state"] == "following"
        for p in range(1, view.commit + 1):
            e = view.index.lookup(p)
            if e is None:
                continue
            assert b.has(p, e[0])
            assert b.read(p, e[0]) == replica.reader.read_page(view, p)
        assert b.local_reads >= view.commit - 1 and b.bytes_fetched == 0
        assert b.store_pages(0, view.txid, [(1, bytes(view.page_size))]) == 0  # never writes

        # A page the owner rewrites with another version is withdrawn, then relabelled.
        e = view.index.lookup(2)
        page2 = replica.reader.read_page(view, 2)
        other = bytes([page2[0] ^ 0xFF]) + page2[1:]
        elsewhere = replica.state.file_id(FileInfo(0, 10**9, 10**9, 4242))
        a.store_pages(elsewhere, view.txid, [(2, other)])
        assert b.read(2, e[0]) is None and not b.has(2, e[0])
        a.store_pages(e[0], view.txid, [(2, page2)])
        assert b.read(2, e[0]) == page2

        # Bytes changed behind the labels (another program, a torn write) are never served.
        with open(path, "r+b") as f:
            f.seek((3 - 1) * view.page_size)
            f.write(b"\x5a" * 16)
        e3 = view.index.lookup(3)
        assert b.read(3, e3[0]) is None

        a.close()  # the owner goes: b takes over and finishes from a's sidecar
        deadline = time.monotonic() + 10
        while b.state not in ("complete",) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert b.state == "complete" and b.take_overs == 1 and b.follower is None
        assert b.resumed_pages > 0
        assert b.read(3, e3[0]) == replica.reader.read_page(view, 3)  # healed
    finally:
        b.close()
        a.close()
        replica.close()


def test_follower_without_an_owner_yet_reads_nothing(
        primary: FakeLitestream, core: ModuleType, tmp_path: Path) -> None:
    from litevfs.engine.hydrate.follower import SharedCopy
    from litevfs.engine.hydrate.labelmap import LabelMap, file_ident, labels_path

    path = str(tmp_path / "local.db")
    follower = SharedCopy(path, lambda fid: file_ident(0, fid, fid, 1))
    assert follower.read(1, 1) is None and not follower.has(1, 1)  # no file, no labels
    Path(path).write_bytes(bytes(8192))
    owner = LabelMap.own(path, 4096)
    try:
        follower._next_attach = 0.0
        assert follower.read(1, 1) is None  # no label published
        owner.publish(1, file_ident(0, 1, 1, 1), 12345)  # a wrong checksum: never served
        assert follower.read(1, 1) is None and follower.has(1, 1)
        owner.publish(70_000, file_ident(0, 2, 2, 1), 1)  # the map grows; followers remap
        assert follower.has(70_000, 2)
        assert Path(labels_path(path)).stat().st_size > 70_000 * 24
    finally:
        follower.close()
        owner.close()


def test_compaction_relabels_instead_of_downloading(
        primary: FakeLitestream, core: ModuleType) -> None:
    """An L1 file re-points every unchanged page to itself: same bytes, no download."""
    con = primary.db()
    transfer(con, 1, 2, 5)
    con.close()
    primary.sync()
    replica = open_replica(primary, core)
    h = Hydrator(replica.state, replica.views, replica.verifier)
    try:
        con = primary.db()
        transfer(con, 2, 3, 5)
        con.close()
        primary.sync()
        assert poll_once(replica.state, replica.views)
        run(h)  # hydrated at TXID 3
        fetched = h.bytes_fetched
        primary.compact(1, primary.storage.list_level(0))  # L1 [1..3]: the whole database
        con = primary.db()
        transfer(con, 3, 4, 5)
        con.close()
        primary.sync()  # L0 4 arrives in the same poll
        assert poll_once(replica.state, replica.views)
        view = replica.current
        l1 = replica.file_id(primary.storage.list_level(1)[0])
        relabelled = sum(view.index.lookup(p)[0] == l1 for p in range(1, view.commit + 1))
        assert relabelled > view.commit - 5
        run(h)
        assert h.bytes_fetched - fetched < 5 * 4096  # only the pages TXID 4 changed
        assert all(h.has(p, view.index.lookup(p)[0]) for p in range(1, view.commit + 1))
        assert local_bytes(h) == primary.db_path.read_bytes()
    finally:
        h.close()
        replica.close()


def test_l1_arriving_with_its_commits_relabels_unchanged_pages(
        primary: FakeLitestream, core: ModuleType) -> None:
    """An L1 file covering TXIDs the local copy has not seen yet (it arrives in the same
    poll as its L0 files): the L0 indexes tell which pages changed; only those download."""
    replica = open_replica(primary, core)
    h = Hydrator(replica.state, replica.views, replica.verifier)
    try:
        run(h)  # current at TXID 1
        fetched = h.bytes_fetched
        for i in range(3):
            con = primary.db()
            transfer(con, 10 + i, 20 + i, 5)
            con.close()
            primary.sync()
        primary.compact(1, primary.storage.list_level(0))  # L1 [1..4], the whole database
        assert poll_once(replica.state, replica.views)
        view = replica.current
        l1 = replica.file_id(primary.storage.list_level(1)[0])
        assert sum(view.index.lookup(p)[0] == l1 for p in range(1, view.commit + 1)) \
            == view.commit
        run(h)
        assert h.bytes_fetched - fetched < 8 * 4096  # the few pages the transfers changed
        assert local_bytes(h) == primary.db_path.read_bytes()
        # without the L0 history the same situation downloads everything again
        con = primary.db()
        transfer(con, 1, 2, 5)
        con.close()
        primary.sync()
        primary.compact(1, primary.storage.list_level(0))  # L1 [1..5]
        primary.storage.delete_ltx(primary.storage.list_level(0))
        before = h.bytes_fetched
        assert poll_once(replica.state, replica.views)
        run(h)
        assert h.bytes_fetched - before > 0.5 * fetched
        assert local_bytes(h) == primary.db_path.read_bytes()
    finally:
        h.close()
        replica.close()
