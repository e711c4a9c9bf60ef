"""WriteBuffer: append/recover, torn and corrupt tails, sync marks and DONE records,
rewrites, the old format, locking."""

from __future__ import annotations

import os

import pytest

from litevfs.errors import BufferInUseError, WriteBufferError
from litevfs.write.buffer import Done, WriteBuffer, read_buffer

URL = "memory://wb"
PS = 512


def page(b: int) -> bytes:
    return bytes([b]) * PS


def open_buf(path, **kw):
    kw.setdefault("url", URL)
    kw.setdefault("page_size", PS)
    kw.setdefault("base_txid", 7)
    return WriteBuffer.open(str(path), **kw)


def test_append_and_recover(tmp_path):
    path = tmp_path / "b.wbuf"
    buf, rec = open_buf(path)
    assert rec.transactions == 0 and buf.empty
    buf.append({1: page(1), 2: page(2)}, 2)
    buf.append({2: page(3), 3: page(4)}, 3)
    buf.close()
    buf, rec = open_buf(path, base_txid=99, page_size=4096)
    assert rec.transactions == 2 and rec.dropped_bytes == 0
    assert buf.base_txid == 7 and buf.page_size == PS  # the file's own values win
    assert buf.pages == {1: page(1), 2: page(3), 3: page(4)} and buf.commit == 3
    buf.close()


@pytest.mark.parametrize("cut", [1, 7, 100, PS + 30])
def test_torn_tail_dropped(tmp_path, cut):
    path = tmp_path / "b.wbuf"
    buf, _ = open_buf(path)
    buf.append({1: page(1)}, 1)
    good = buf.size
    buf.append({1: page(2), 2: page(2)}, 2)
    full = buf.size
    buf.close()
    with open(path, "r+b") as f:
        f.truncate(full - cut)
    buf, rec = open_buf(path)
    assert rec.transactions == 1 and rec.dropped_bytes == full - cut - good
    assert buf.pages == {1: page(1)} and buf.commit == 1
    assert os.path.getsize(path) == good
    buf.append({3: page(3)}, 3)  # appends continue after the cut
    buf.close()
    buf, rec = open_buf(path)
    assert rec.transactions == 2 and buf.pages[3] == page(3)
    buf.close()


def test_corrupt_record_dropped_with_everything_after(tmp_path):
    path = tmp_path / "b.wbuf"
    buf, _ = open_buf(path)
    buf.append({1: page(1)}, 1)
    first = buf.size
    buf.append({1: page(2)}, 1)
    buf.append({1: page(3)}, 1)
    buf.close()
    with open(path, "r+b") as f:
        f.seek(first + 40)
        f.write(b"\xff")
    buf, rec = open_buf(path)
    assert rec.transactions == 1 and buf.pages == {1: page(1)}
    buf.close()


def test_shrink_drops_pages_and_tracks_floor(tmp_path):
    buf, _ = open_buf(tmp_path / "b.wbuf")
    buf.append({1: page(1), 5: page(5)}, 5)
    buf.append({1: page(2)}, 3)
    assert buf.pages == {1: page(2)} and buf.commit == 3 and buf.floor == 3
    buf.close()


def test_marks_done_rewrite_and_clear(tmp_path):
    path = tmp_path / "b.wbuf"
    buf, _ = open_buf(path)
    s1 = buf.append({1: page(1)}, 1)
    buf.mark_sync(8, s1, 0xABC)
    s2 = buf.append({2: page(2)}, 2)  # committed while the upload was in flight
    assert s2 == s1 + 1
    buf.close()
    buf, rec = open_buf(path)
    assert [(m.txid, m.covered, m.checksum) for m in rec.marks] == [(8, s1, 0xABC)]
    _done, dropped, commit, floor = buf.append_done(Done(8, s1, 0xABC, None))
    assert dropped == {1: page(1)} and (commit, floor) == (1, 1)
    assert buf.base_txid == 8 and buf.pages == {2: page(2)} and buf.transactions == 1
    assert buf.marks == []
    buf.close()
    buf, rec = open_buf(path)
    assert buf.base_txid == 8 and rec.transactions == 1 and rec.marks == []
    assert buf.pages == {2: page(2)} and buf.commit == 2
    assert read_buffer(str(path)) == ({"page_size": PS, "base_txid": 8, "url": URL},
                                      [({2: page(2)}, 2)])
    before = os.path.getsize(path)
    buf.rewrite()  # a new generation: the synced prefix goes, the DONE record stays
    buf.catch_up()
    assert os.path.getsize(path) < before and buf.gen == 2
    assert buf.pages == {2: page(2)} and buf.base_txid == 8 and len(buf.dones) == 1
    assert buf.append({3: page(3)}, 3) == s2 + 1  # sequence numbers go on
    buf.clear(9)
    assert buf.empty and buf.base_txid == 9 and buf.pages == {}
    buf.close()
    info, txns = read_buffer(str(path))
    assert info["base_txid"] == 9 and txns == []


def test_old_format_is_converted(tmp_path):
    """A buffer left by the single-process version (marks cover byte offsets)."""
    import struct

    import xxhash

    path = tmp_path / "old.wbuf"
    url = URL.encode()
    head = struct.pack(">8sIQH", b"LVWBUF01", PS, 7, len(url)) + url
    data = head + struct.pack(">Q", xxhash.xxh64_intdigest(head))
    for i, (pages, commit) in enumerate([({1: page(1)}, 1), ({2: page(2)}, 2)]):
        body = struct.pack(">4sIIQ", b"TX01", len(pages), commit, i + 1)
        body += struct.pack(f">{len(pages)}I", *pages) + b"".join(pages.values())
        data += body + struct.pack(">Q", xxhash.xxh64_intdigest(body))
        if i == 0:
            covered = len(data)
            mark = struct.pack(">4sIIQ", b"SY01", 0, 0, 8) + struct.pack(">QQ", covered, 5)
            data += mark + struct.pack(">Q", xxhash.xxh64_intdigest(mark))
    path.write_bytes(data)
    assert read_buffer(str(path))[1] == [({1: page(1)}, 1), ({2: page(2)}, 2)]
    buf, rec = open_buf(path)
    assert rec.transactions == 2 and [(m.txid, m.covered) for m in rec.marks] == [(8, 1)]
    assert buf.pages == {1: page(1), 2: page(2)} and buf.base_txid == 7
    buf.close()
    assert path.read_bytes()[:8] == b"LVWBUF02"


def test_second_opener_refused_and_other_replica_refused(tmp_path):
    path = tmp_path / "b.wbuf"
    buf, _ = open_buf(path)
    with pytest.raises(BufferInUseError, match="in use"):
        open_buf(path)
    buf.close()
    with pytest.raises(WriteBufferError, match="belongs to replica"):
        open_buf(path, url="memory://other")


def test_fsync_option_and_bad_page(tmp_path):
    buf, _ = open_buf(tmp_path / "b.wbuf", fsync=True)
    buf.append({1: page(1)}, 1)
    with pytest.raises(ValueError):
        buf.append({2: b"x"}, 2)
    assert buf.transactions == 1
    buf.close()
    info, txns = read_buffer(str(tmp_path / "b.wbuf"))
    assert txns == [({1: page(1)}, 1)] and info["url"] == URL


@pytest.mark.parametrize("platform", ["linux", "macos", "macos-nfs", "no-fdatasync"])
def test_buffer_fsync_on_every_posix(tmp_path, monkeypatch, platform):
    """fsync=True makes every COMMIT durable where os.fdatasync exists (Linux), with
    F_FULLFSYNC on macOS (its fsync stops at the drive cache), falling back to fsync where
    F_FULLFSYNC is refused or neither exists. Simulated: the real calls are recorded."""
    import fcntl as real_fcntl

    from litevfs import _fsync

    calls = []
    full = 51  # macOS's F_FULLFSYNC value; any marker works here

    def fake_fcntl(fd, op, *args):
        calls.append("fullfsync")
        if platform == "macos-nfs":
            raise OSError(45, "Operation not supported")
        return 0

    monkeypatch.setattr(real_fcntl, "fcntl", fake_fcntl)
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append("fsync"))
    if platform == "linux":
        monkeypatch.setattr(_fsync, "_FULLFSYNC", None)
        monkeypatch.setattr(_fsync, "_FDATASYNC", lambda fd: calls.append("fdatasync"))
    elif platform.startswith("macos"):
        monkeypatch.setattr(_fsync, "_FULLFSYNC", full)
        monkeypatch.setattr(_fsync, "_FDATASYNC", None)
    else:
        monkeypatch.setattr(_fsync, "_FULLFSYNC", None)
        monkeypatch.setattr(_fsync, "_FDATASYNC", None)
    buf, _ = open_buf(tmp_path / "b.wbuf", fsync=True)
    calls.clear()  # opening locks the file with fcntl too
    buf.append({1: page(1)}, 1)
    want = {"linux": ["fdatasync"], "macos": ["fullfsync"],
            "macos-nfs": ["fullfsync", "fsync"], "no-fdatasync": ["fsync"]}[platform]
    assert calls == want
    monkeypatch.undo()
    buf.close()
    assert read_buffer(str(tmp_path / "b.wbuf"))[1] == [({1: page(1)}, 1)]


def test_fsync_module_uses_what_this_platform_has():
    import sys

    from litevfs import _fsync

    if sys.platform == "darwin":
        assert _fsync._FULLFSYNC is not None
    else:
        assert _fsync._FULLFSYNC is None and _fsync._FDATASYNC is os.fdatasync


def test_garbage_file_refused(tmp_path):
    path = tmp_path / "b.wbuf"
    path.write_bytes(b"not a buffer at all, definitely not" * 3)
    with pytest.raises(WriteBufferError, match="bad header"):
        open_buf(path)


def two_processes(path, monkeypatch, chunk: int):
    """Two handles on one log, as two processes have (the per-process registry is
    bypassed), reading in chunks of ``chunk`` bytes."""
    from litevfs.write import buffer, shared

    monkeypatch.setattr(buffer, "_REUSE_MAX", chunk)
    a, _ = open_buf(path)
    shared._registry.clear()  # "another process"
    b, _ = open_buf(path)
    return a, b


@pytest.mark.parametrize("chunk", [8 << 20, 3 * (PS + 64), 1])
def test_a_second_process_index_follows_appends_rewrites_and_discards(tmp_path, monkeypatch, chunk):
    """Two handles on one log, as two processes have (the per-process registry is
    bypassed): B's index catches up incrementally, across a rewrite (a new generation
    that keeps the unsynced transaction and the DONE record), and a discard."""
    a, b = two_processes(tmp_path / "b.wbuf", monkeypatch, chunk)
    try:
        assert b.catch_up().events == []
        s1 = a.append({1: page(1)}, 1)
        a.append({2: page(2)}, 2)
        changes = b.catch_up()
        assert [e[0] for e in changes.events] == ["tx", "tx"] and b.last_seq == s1 + 1
        assert {p: bytes(d) for p, d in b.pages.items()} == {1: page(1), 2: page(2)}
        assert b.fresh() and not b.catch_up()
        a.catch_up()
        a.append_done(Done(8, s1, 0xABC, None))
        changes = b.catch_up(cow=True)
        (_, done, dropped, commit, _floor), = [e for e in changes.events if e[0] == "done"]
        assert done.txid == 8 and set(dropped) == {1} and commit == 1
        assert b.base_txid == 8 and set(b.pages) == {2} and b.transactions == 1
        a.rewrite()
        a.catch_up()
        a.append({3: page(3)}, 3)
        changes = b.catch_up()
        assert changes.generation and b.gen == a.gen == 2
        assert set(b.pages) == {2, 3} and b.base_txid == 8 and b.transactions == 2
        assert [t.seq for t in b.txs] == [t.seq for t in a.txs]  # offsets in the new file
        assert b.unsynced(b.last_seq) == a.unsynced(a.last_seq)
        a.clear(11)  # a discard: every process drops what it had
        changes = b.catch_up()
        assert changes.jumped == 11 and b.empty and b.pages == {} and b.base_txid == 11
    finally:
        b.close()
        a.close()


@pytest.mark.parametrize("chunk", [8 << 20, 3 * (PS + 64), 1])
def test_catch_up_applies_a_run_of_transactions_as_if_one_by_one(tmp_path, monkeypatch, chunk):
    """Another process's run of transactions is applied at once (only the newest version
    of each page is copied out of the read): the result is the one-by-one result,
    shrinks inside the run included, a DONE record in the middle of a run sees the pages
    before it, and pages read earlier stay intact when the next catch-up reuses the read
    buffer."""
    a, b = two_processes(tmp_path / "b.wbuf", monkeypatch, chunk)
    try:
        s1 = a.append({1: page(1), 4: page(4), 6: page(6)}, 6)
        a.append({1: page(11), 2: page(2)}, 6)
        a.append({1: page(21)}, 3)  # shrink: 4 and 6 go
        s4 = a.append({1: page(31), 5: page(5)}, 5)  # grows again: 5 comes, 4 stays gone
        changes = b.catch_up()
        assert [e for e in changes.events] == [("tx", 6), ("tx", 6), ("tx", 3), ("tx", 5)]
        assert b.pages == a.pages == {1: page(31), 2: page(2), 5: page(5)}
        assert b.page_seq == a.page_seq == {1: s4, 2: s1 + 1, 5: s4}
        assert (b.commit, b.floor, b.last_seq) == (5, 3, s4)
        assert all(type(d) is bytes for d in b.pages.values())  # copies, not views
        kept = dict(b.pages)
        a.append({3: page(3)}, 5)
        a.catch_up()
        a.append_done(Done(9, s1 + 1, 0xABC, None))  # covers the first two
        a.append({7: page(7)}, 7)
        changes = b.catch_up(cow=True)
        assert [e[0] for e in changes.events] == ["tx", "done", "tx"]
        (_, done, dropped, commit, _floor), = [e for e in changes.events if e[0] == "done"]
        assert set(dropped) == {2} and commit == 6 and b.base_txid == 9
        assert b.pages == a.pages == {1: page(31), 3: page(3), 5: page(5), 7: page(7)}
        assert kept == {1: page(31), 2: page(2), 5: page(5)}  # the earlier read's pages
        assert [t.seq for t in b.txs] == [t.seq for t in a.txs]
        assert b.unsynced(b.last_seq) == a.unsynced(a.last_seq)
    finally:
        b.close()
        a.close()


def _merge_one_by_one(txns):
    pages, commit, floor = {}, 0, 0
    for i, (tx_pages, c) in enumerate(txns):
        if i and c < commit:
            pages = {p: d for p, d in pages.items() if p <= c}
        pages.update((p, d) for p, d in tx_pages.items() if p <= c)
        floor = c if i == 0 else min(floor, c)
        commit = c
    return pages, commit, floor


@pytest.mark.parametrize("chunk", [64 << 20, 3 * (PS + 64), 1])
def test_unsynced_merged_is_the_transactions_applied_in_order(tmp_path, monkeypatch, chunk):
    """What a sync uploads, read back in chunks of any size (one record bigger than a
    chunk included): the newest version of each page, shrinks applied, the last commit
    and the smallest one; a damaged record inside is an error, never a wrong page."""
    from litevfs.write import buffer

    monkeypatch.setattr(buffer, "_REUSE_MAX", chunk)
    buf, _ = open_buf(tmp_path / "b.wbuf")
    try:
        buf.append({1: page(1), 2: page(2), 3: page(3)}, 3)
        for i in range(10):
            buf.append({1: page(10 + i), 2 + i % 2: page(40 + i)}, 3)
        buf.append({1: page(60)}, 1)  # shrink to one page
        buf.append({1: page(61), 4: page(64)}, 4)
        buf.append({p: page(70 + p) for p in range(1, 9)}, 8)  # bigger than a small chunk
        upto = buf.last_seq
        buf.append({1: page(99)}, 8)  # after the cut: not in this sync
        assert buf.unsynced_merged(upto) == _merge_one_by_one(buf.unsynced(upto))
        pages, commit, floor = buf.unsynced_merged(upto)
        assert (commit, floor) == (8, 1) and pages[1] == page(71) and pages[2] == page(72)
        assert buf.unsynced_merged(buf.last_seq)[0][1] == page(99)
        assert all(type(d) is bytes for d in pages.values())
        victim = buf.txs[5]
        with open(tmp_path / "b.wbuf", "r+b") as f:  # a flipped byte in one page
            f.seek(victim.end - 100)
            byte = f.read(1)
            f.seek(victim.end - 100)
            f.write(bytes([byte[0] ^ 0xFF]))
        with pytest.raises(WriteBufferError, match="unreadable transaction"):
            buf.unsynced_merged(upto)
    finally:
        buf.close()


@pytest.mark.parametrize("copy", ["kernel", "missing", "refused"])
def test_rewrite_copies_the_unsynced_records_whatever_the_copy_path(tmp_path, monkeypatch,
                                                                    copy):
    """A rewrite copies the unsynced records into the new generation in the kernel
    (copy_file_range) or, where that is missing or refused, through a buffer."""
    import errno as errno_

    from litevfs.write import buffer

    if copy == "missing":
        monkeypatch.setattr(buffer, "_copy_file_range", None)
    elif copy == "refused":
        def refuse(*_a):
            raise OSError(errno_.EXDEV, "cross-device")
        monkeypatch.setattr(buffer, "_copy_file_range", refuse)
    monkeypatch.setattr(buffer, "_REUSE_MAX", 1000)  # the buffered path in several chunks
    buf, _ = open_buf(tmp_path / "b.wbuf")
    try:
        s1 = buf.append({1: page(1)}, 1)
        buf.append({2: page(2)}, 2)
        buf.append_done(Done(8, s1, 0xABC, None))
        buf.append({1: page(3), 3: page(4)}, 3)
        before = buf.unsynced(buf.last_seq)
        buf.rewrite()
        buf.catch_up()
        assert buf.gen == 2 and buf.unsynced(buf.last_seq) == before
        assert buf.pages == {1: page(3), 2: page(2), 3: page(4)}
        assert os.path.getsize(tmp_path / "b.wbuf") == buf.pos
    finally:
        buf.close()
    _header, txns = read_buffer(str(tmp_path / "b.wbuf"))
    assert [c for _p, c in txns] == [2, 3]


def test_a_read_inside_a_read_never_overwrites_the_outer_view(tmp_path):
    """The kept read buffer belongs to one read at a time: a read that starts while another
    one's view is in use gets its own buffer, and the kept one comes back afterwards."""
    buf, _ = open_buf(tmp_path / "b.wbuf")
    try:
        first = buf.append({1: page(1)}, 1)
        buf.append({2: page(2)}, 2)
        one, two = buf.txs[-2], buf.txs[-1]
        assert one.seq == first
        with buf._reading(buf._fd, one.start, one.end) as outer:
            before = bytes(outer)
            with buf._reading(buf._fd, two.start, two.end) as inner:
                assert bytes(inner) != before
            assert bytes(outer) == before
        kept = buf._rbuf
        with buf._reading(buf._fd, two.start, two.end):
            assert buf._rbuf is None  # taken while in use
        assert buf._rbuf is kept
    finally:
        buf.close()
