"""Cheap freshness: head object written by a litevfs writer, conditional GET polling
with adaptive interval, LIST fallback for replicas written by litestream."""

from __future__ import annotations

from pathlib import Path

import pytest

import litevfs
from litevfs.engine.freshness import Freshness, conditional_get
from litevfs.engine.head import HEAD_NAME, head_txid as decode_head, read_head, write_head
from litevfs.session import open_replicas
from litevfs.storage import open_storage
from litevfs.storage.file import FileStorage
from tests.vfs_support import FakeLitestream, make_accounts_db, unique_memory_url


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_head_round_trip_file_backend(tmp_path: Path) -> None:
    st = FileStorage(str(tmp_path / "r"))
    assert read_head(st) is None
    assert conditional_get(st, HEAD_NAME, None) == (None, None, True)
    write_head(st, 0x1234)
    assert read_head(st) == 0x1234
    data, etag, changed = conditional_get(st, HEAD_NAME, None)
    assert changed and decode_head(data) == 0x1234
    assert conditional_get(st, HEAD_NAME, etag) == (None, etag, False)
    write_head(st, 0x1235)
    data, etag2, changed = conditional_get(st, HEAD_NAME, etag)
    assert changed and etag2 != etag and decode_head(data) == 0x1235


@pytest.mark.s3
@pytest.mark.parametrize("fast", [True, False], ids=["fast", "botocore"])
def test_conditional_get_s3(s3_url: str, fast: bool) -> None:
    st = open_storage(s3_url, fast_reads=fast)
    try:
        assert conditional_get(st, HEAD_NAME, None) == (None, None, True)
        write_head(st, 7)
        data, etag, changed = conditional_get(st, HEAD_NAME, None)
        assert changed and decode_head(data) == 7 and etag
        gets = st.stats.gets
        assert conditional_get(st, HEAD_NAME, etag) == (None, etag, False)  # 304
        assert st.stats.gets == gets + 1
        write_head(st, 8)
        data, _, changed = conditional_get(st, HEAD_NAME, etag)
        assert changed and decode_head(data) == 8
    finally:
        st.close()


def _open(tmp_path: Path, core):
    url = unique_memory_url("fresh")
    make_accounts_db(tmp_path / "p.db").close()
    ls = FakeLitestream(tmp_path / "p.db", url)
    ls.sync()
    con = litevfs.connect(url, impl=core, poll_interval=0, poll_max_interval=8)
    (replica,) = [r for r in open_replicas() if r.storage.url.endswith(url[9:])]
    return con, replica, ls


def test_head_mode_backs_off_and_speeds_up(tmp_path: Path, core) -> None:
    con, replica, ls = _open(tmp_path, core)
    try:
        replica.state.config = replica.config._replace(poll_interval=1.0)
        clock = Clock()
        fresh = Freshness(replica.state, replica.views, clock)
        write_head(ls.storage, ls.txid)
        fresh.poll()  # first poll: head found (and one safety LIST)
        assert fresh.mode == "head"
        lists = replica.storage.stats.lists
        intervals = []
        for _ in range(5):
            clock.t += 1
            assert fresh.poll() is False
            intervals.append(fresh.interval)
        # no schedule announced: every poll_interval while recently active, then the
        # interval doubles per idle poll (idle: nothing changed for 3 s)
        assert intervals == [1.0, 1.0, 2.0, 4.0, 8.0]
        assert replica.storage.stats.lists == lists  # idle: no LIST at all
        db = ls.db()
        db.execute("UPDATE accounts SET balance = 5 WHERE id = 3")
        db.close()
        ls.sync()
        write_head(ls.storage, ls.txid)
        clock.t += 1
        assert fresh.poll() is True
        assert fresh.interval == 1.0 and replica.current.txid == ls.txid
        assert con.execute("SELECT balance FROM accounts WHERE id = 3").fetchone()[0] == 5
    finally:
        con.close()


def _announce(ls, sync_ms: int, at: float) -> None:
    from litevfs.engine.head import Head, encode_head

    ls.storage.put_object(HEAD_NAME, encode_head(Head(ls.txid, int(at * 1000), (), sync_ms)))


def test_head_announced_schedule_polls_just_after_each_sync(tmp_path: Path, core) -> None:
    """A writer syncing every second says so in the head: the reader polls just after
    each sync is due (and looks again shortly when it is late), never backing off while
    the writer is active; only a quiet writer lets the interval grow."""
    con, replica, ls = _open(tmp_path, core)
    try:
        replica.state.config = replica.config._replace(poll_interval=1.0)
        clock, wall = Clock(), Clock()
        wall.t = 1_700_000_000.0
        fresh = Freshness(replica.state, replica.views, clock, lambda: wall.t)
        _announce(ls, 1000, wall.t)  # a sync recorded just now
        clock.t += 0.05
        wall.t += 0.05
        fresh.poll()
        assert fresh.mode == "head" and fresh.announced and fresh.period == 1.0
        assert fresh.interval == pytest.approx(1.10)  # at + 1 s + 0.15 s margin
        for step in range(3):  # the writer syncs every second; each sync is seen at once
            db = ls.db()
            db.execute("UPDATE accounts SET balance = ? WHERE id = 1", (100 + step,))
            db.close()
            ls.sync()
            clock.t += fresh.interval
            wall.t += fresh.interval
            _announce(ls, 1000, wall.t - 0.1)  # its head landed 0.1 s before our poll
            assert fresh.poll() is True
            assert replica.current.txid == ls.txid
            assert fresh.interval == pytest.approx(1.05)
        # the next sync is late: look again twice, 0.15 s apart, then keep the schedule
        late = []
        for _ in range(3):
            clock.t += fresh.interval
            wall.t += fresh.interval
            assert fresh.poll() is False
            late.append(round(fresh.interval, 3))
        assert late == [0.15, 0.15, 0.7]
        # idle writer: after 3 s without a change the interval doubles up to the max
        waits = []
        for _ in range(6):
            clock.t += fresh.interval
            wall.t += fresh.interval
            fresh.poll()
            waits.append(fresh.interval)
        assert waits[-1] == 8.0 and waits[-3:] == sorted(waits[-3:])
        # a change brings the schedule back at once
        db = ls.db()
        db.execute("UPDATE accounts SET balance = 7 WHERE id = 2")
        db.close()
        ls.sync()
        clock.t += fresh.interval
        wall.t += fresh.interval
        _announce(ls, 1000, wall.t - 0.02)
        assert fresh.poll() is True
        assert fresh.interval == pytest.approx(1.13)
    finally:
        con.close()


def test_head_sync_field_is_optional_and_round_trips() -> None:
    from litevfs.engine.head import Head, decode_head as full, encode_head

    head = Head(5, 1234, (), 1000)
    assert full(encode_head(head)) == head
    assert b'"sync"' not in encode_head(Head(5, 1234))  # not announced: not written
    assert full(b'{"txid": "0000000000000005"}') == Head(5, 0, (), 0)  # older heads
    assert full(b'{"txid": "0000000000000005", "sync": "x", "new": 1}').sync_ms == 0


def test_writer_announces_its_sync_interval(tmp_path: Path) -> None:
    from litevfs.engine.head import HEAD_NAME as NAME, decode_head as full

    url = unique_memory_url("announce")
    con = litevfs.connect(url, write=True, sync_interval="250ms")
    try:
        con.execute("CREATE TABLE t(x)")
        litevfs.sync(con)
        (replica,) = [r for r in open_replicas() if r.storage.url.endswith(url[9:])]
        assert full(replica.storage.get_object(NAME)).sync_ms == 250
    finally:
        con.close()


def test_litestream_replica_polls_by_list(tmp_path: Path, core) -> None:
    con, replica, ls = _open(tmp_path, core)
    try:
        replica.state.config = replica.config._replace(poll_interval=1.0)
        clock = Clock()
        fresh = Freshness(replica.state, replica.views, clock)
        fresh.poll()
        assert fresh.mode == "list" and fresh.interval == 1.0
        gets = replica.storage.stats.gets
        db = ls.db()
        db.execute("UPDATE accounts SET balance = 6 WHERE id = 4")
        db.close()
        ls.sync()
        clock.t += 1
        assert fresh.poll() is True  # found by LIST, no head GET in between
        assert replica.storage.stats.gets - gets >= 1  # the new file's index
        assert fresh.head_gets == 1
        clock.t += 61  # the head is looked for again now and then
        fresh.poll()
        assert fresh.head_gets == 2
    finally:
        con.close()
