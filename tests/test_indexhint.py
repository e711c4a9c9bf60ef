"""Index hints (engine/indexhint.py): the page-index length of a big object, recorded by
one process as a side object the next open's LIST returns, sizes that open's index read
exactly; a missing, garbled or wrong hint only costs the guess or a second read."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from types import ModuleType

import pytest

import litevfs
import litevfs.vfs.connect as api
from litevfs.engine import indexhint
from litevfs.engine.indexhint import HintBook, hint_name, parse_hint, parse_hints
from litevfs.ltx.format import FileInfo
from litevfs.storage.memory import MemoryStorage, memory_store
from litevfs.storage.readsize import INDEX_FOOTER, tail_size_for
from tests.vfs_support import FakeLitestream, make_accounts_db, unique_memory_url

QUERY = "SELECT count(*), sum(balance), max(name) FROM accounts"
BIG = FileInfo(9, 1, 0x2A, 916_000_000, 1_733_000_000.7)


def test_hint_names_round_trip() -> None:
    name = hint_name(BIG, 2_500_123)
    assert name.startswith("litevfs/hint/")
    assert parse_hint(name) == ((9, 1, 0x2A, 916_000_000, 1_733_000_000), 2_500_123)
    assert parse_hints(["litevfs/verified", name, "litevfs/head"]) == {
        (9, 1, 0x2A, 916_000_000, 1_733_000_000): 2_500_123}
    assert tail_size_for(BIG, 2_500_123) == 2_500_123 + INDEX_FOOTER
    assert tail_size_for(BIG) == tail_size_for(BIG, None) == 4 * 1024 * 1024


@pytest.mark.parametrize("name", [
    "litevfs/hint/", "litevfs/hint/garbage", "litevfs/hint/9-zz-2a-916000000-1-25",
    "litevfs/hint/9-1-2a-916000000-1", "litevfs/hint/12-1-2a-916000000-1-25",
    "litevfs/hint/9-1-2a-100-1-100",  # an index as long as the object
    "litevfs/hint/9-1-2a-916000000-1-0", "litevfs/hint/9-1-2a-916000000-1--5",
    "litevfs/other/9-1-2a-916000000-1-25",
])
def test_garbled_hints_are_ignored(name: str) -> None:
    assert parse_hint(name) is None
    assert parse_hints([name]) == {}


class _Disk:
    def __init__(self) -> None:
        self.meta: dict[str, bytes] = {}

    def get_meta(self, name: str) -> bytes | None:
        return self.meta.get(name)

    def put_meta(self, name: str, data: bytes) -> None:
        self.meta[name] = data


def test_the_cache_dir_keeps_hints_for_local_processes() -> None:
    disk = _Disk()
    HintBook(disk).learn(BIG, 2_500_000)
    later = HintBook(disk)
    assert later.index_len(BIG) == 2_500_000
    other = BIG._replace(created_at=BIG.created_at + 5)  # re-created: another object
    assert later.index_len(other) is None
    disk.meta[indexhint.disk_meta_name(BIG)] = b"garbage"
    assert HintBook(disk).index_len(BIG) is None


def test_small_savings_are_not_hinted() -> None:
    book = HintBook()
    small = FileInfo(0, 5, 5, 200_000, 1.0)  # guessed read 32 KiB: nothing to save
    book.learn(small, 1000)
    assert not book.pending


# -- through the open ------------------------------------------------------------------


def _replica(tmp_path: Path) -> tuple[str, FileInfo]:
    """A replica of one snapshot file (~700 KB)."""
    url = unique_memory_url("hint")
    make_accounts_db(tmp_path / "p.db", accounts=3000, blob_rows=60, blob_size=6000).close()
    FakeLitestream(tmp_path / "p.db", url).sync(level=9, full=True)
    store = memory_store(url.removeprefix("memory://"))
    (lo, hi), (data, created) = next(iter(store.ltx[9].items()))
    return url, FileInfo(9, lo, hi, len(data), created)


def _index_len(url: str, info: FileInfo) -> int:
    data = memory_store(url.removeprefix("memory://")).ltx[9][(info.min_txid, info.max_txid)][0]
    return int.from_bytes(data[-INDEX_FOOTER:-INDEX_FOOTER + 8], "big")


@pytest.fixture
def tails(monkeypatch: pytest.MonkeyPatch) -> list[tuple[FileInfo, int]]:
    """Every tail read's (object, length); hints are worth any saving here (small files)."""
    monkeypatch.setattr(indexhint, "MIN_SAVING", 1)
    seen: list[tuple[FileInfo, int]] = []
    real = MemoryStorage.read_tail

    def read_tail(self, info, length):  # type: ignore[no-untyped-def]
        seen.append((info, length))
        return real(self, info, length)

    monkeypatch.setattr(MemoryStorage, "read_tail", read_tail)
    return seen


def _hints_in(url: str) -> list[str]:
    return sorted(n for n in memory_store(url.removeprefix("memory://")).objects
                  if n.startswith("litevfs/hint/"))


@pytest.mark.parametrize("ahead", [True, False], ids=["list-thread", "regular"])
def test_the_next_process_reads_exactly_the_index(tmp_path: Path, core: ModuleType,
                                                  tails: list, ahead: bool) -> None:
    url, info = _replica(tmp_path)
    connect = litevfs.connect if ahead else api.connect
    want = sqlite3.connect(tmp_path / "p.db").execute(QUERY).fetchall()
    con = connect(url, impl=core, poll_interval=0)
    assert con.execute(QUERY).fetchall() == want
    con.close()  # publishes what it learned
    exact = _index_len(url, info) + INDEX_FOOTER
    assert tails == [(info, tail_size_for(info))] and tail_size_for(info) != exact
    assert _hints_in(url) == [hint_name(info, exact - INDEX_FOOTER)]
    tails.clear()
    con = connect(url, impl=core, poll_interval=0)
    try:
        assert tails == [(info, exact)]  # one read, exactly the index and what follows
        assert con.execute(QUERY).fetchall() == want
    finally:
        con.close()


@pytest.mark.parametrize("wrong", ["short", "long", "garbled", "other-object"])
def test_a_wrong_hint_still_gives_the_right_rows(tmp_path: Path, core: ModuleType,
                                                 tails: list, wrong: str) -> None:
    url, info = _replica(tmp_path)
    exact = _index_len(url, info)
    store = memory_store(url.removeprefix("memory://"))
    name = {"short": hint_name(info, 10), "long": hint_name(info, exact + 5000),
            "garbled": "litevfs/hint/9-1-zz", "other-object":
            hint_name(info._replace(created_at=info.created_at + 9), 10)}[wrong]
    store.objects[name] = b""
    want = sqlite3.connect(tmp_path / "p.db").execute(QUERY).fetchall()
    con = litevfs.connect(url, impl=core, poll_interval=0)
    try:
        assert con.execute(QUERY).fetchall() == want
        sizes = [n for i, n in tails if i == info]
        if wrong == "short":  # too short: the index is read again, exactly
            assert sizes == [10 + INDEX_FOOTER]
        elif wrong == "long":
            assert sizes == [exact + 5000 + INDEX_FOOTER]
        else:  # not this object's: the guess
            assert sizes == [tail_size_for(info)]
    finally:
        con.close()
    # the closing process left the right hint, and no wrong one
    assert _hints_in(url) == [hint_name(info, exact)]


def test_no_hints_written_with_a_local_record(tmp_path: Path, core: ModuleType,
                                              tails: list) -> None:
    url, info = _replica(tmp_path)
    con = litevfs.connect(url, impl=core, poll_interval=0, verify_record="local")
    con.execute(QUERY).fetchall()
    con.close()
    assert _hints_in(url) == []


@pytest.mark.s3
@pytest.mark.litestream
def test_against_a_real_litestream_replica(seaweed, s3_bucket, litestream_factory,
                                           tmp_path: Path, core: ModuleType,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from litevfs.storage.s3.client import S3Storage
    from tests.rig import dbgen
    from tests.rig.litestream import S3Replica

    monkeypatch.setattr(indexhint, "MIN_SAVING", 1)
    seen: list[tuple[FileInfo, int]] = []
    real = S3Storage.read_tail

    def read_tail(self, info, length):  # type: ignore[no-untyped-def]
        seen.append((info, length))
        return real(self, info, length)

    monkeypatch.setattr(S3Storage, "read_tail", read_tail)
    db = tmp_path / "a.db"
    dbgen.create_db(db, 4096, rows=3000, blobs=20, seed=3)
    replica = S3Replica(seaweed, s3_bucket, "db")
    ls = litestream_factory(db, replica)
    ls.wait_for_txid(1)
    ls.stop()
    want = dbgen.state(db)
    sql = "SELECT count(*), sum(length(name)) FROM sqlite_master"
    expected = sqlite3.connect(db).execute(sql).fetchall()

    def run() -> list[tuple[FileInfo, int]]:
        seen.clear()
        con = litevfs.connect(replica.url, impl=core, poll_interval=0)
        try:
            assert con.execute(sql).fetchall() == expected
            from litevfs.vfs.registry import file_of

            view = file_of(con).replica.current
            assert view.commit == want.page_count
            return list(seen)
        finally:
            con.close()

    first = run()
    big = max(first, key=lambda r: r[0].size)[0]
    assert big.size > 100_000
    keys = seaweed.list_keys(s3_bucket, "db/litevfs/hint/")
    assert len(keys) == 1 and keys[0].startswith("db/" + hint_name(big, 1).rpartition("-")[0])
    index_len = int(keys[0].rpartition("-")[2])
    second = run()
    assert [n for i, n in second if i == big] == [index_len + INDEX_FOOTER]
    # a wrong hint for this very object (as if it were re-created with another index
    # length in the same second): the short read is followed by the index's own
    from litevfs.storage import open_storage

    storage = open_storage(replica.url)
    storage.delete_object(keys[0][len("db/"):])
    storage.put_object(hint_name(big, 10), b"")
    storage.close()
    third = run()
    assert [n for i, n in third if i == big] == [10 + INDEX_FOOTER]
    keys = seaweed.list_keys(s3_bucket, "db/litevfs/hint/")
    assert [k.rpartition("-")[2] for k in keys] == [str(index_len)]  # repaired
