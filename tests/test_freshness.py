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
        assert intervals == [2.0, 4.0, 8.0, 8.0, 8.0]
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
