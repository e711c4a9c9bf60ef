"""B-tree scan prefetch fires for scans, not for point queries that happen to land on
neighbouring children in separate read transactions (that cascaded into reading most
of a large database in the background)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from types import ModuleType

import pytest

import litevfs.vfs.connect as api
from litevfs.session import open_replicas

from .vfs_support import FakeLitestream, unique_memory_url


@pytest.fixture
def wide(tmp_path: Path) -> FakeLitestream:
    path = tmp_path / "wide.db"
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA page_size=1024")
    con.execute("PRAGMA journal_mode=DELETE")
    con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    con.execute("BEGIN")
    con.executemany("INSERT INTO t VALUES(?, ?)", ((i, "x" * 150) for i in range(20_000)))
    con.execute("COMMIT")
    con.close()
    ls = FakeLitestream(path, unique_memory_url("prefetch"))
    ls.sync()
    return ls


def _count_prefetches(monkeypatch: pytest.MonkeyPatch, url: str) -> list[int]:
    (replica,) = [r for r in open_replicas() if r.storage.url == url]
    calls: list[int] = []
    original = replica.reader.prefetch

    def counting(view, pgnos, **kw):  # type: ignore[no-untyped-def]
        calls.append(len(pgnos))
        return original(view, pgnos, **kw)

    monkeypatch.setattr(replica.reader, "prefetch", counting)
    return calls


def test_point_queries_do_not_prefetch(wide: FakeLitestream, core: ModuleType,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    con = api.connect(wide.storage.url, impl=core, poll_interval=0)
    calls = _count_prefetches(monkeypatch, wide.storage.url)
    # ~6 rows per 1 KiB leaf: stepping by 6 walks neighbouring leaves, one query each.
    for key in range(0, 3000, 6):
        assert con.execute("SELECT v FROM t WHERE id = ?", (key,)).fetchall() == [("x" * 150,)]
    # only the plan-aware fetch of the tree's top level and right edge, once (tops.py)
    from litevfs.engine.tops import FANOUT

    # (the right edge's first level goes out first on its own: a statement waits for it)
    assert sum(calls) <= 1 + FANOUT + 1 and len(calls) <= 4, calls  # + the right edge
    # A scan inside one statement still prefetches.
    assert con.execute("SELECT count(*), sum(length(v)) FROM t").fetchall() == [(20_000, 3_000_000)]
    assert sum(calls) > 0
    con.close()


def _counting_reads(monkeypatch: pytest.MonkeyPatch, url: str) -> list[int]:
    (replica,) = [r for r in open_replicas() if r.storage.url == url]
    sizes: list[int] = []
    original = replica.storage.read_range

    def counting(info, offset=0, length=None):  # type: ignore[no-untyped-def]
        data = original(info, offset, length)
        sizes.append(len(data))
        return data

    monkeypatch.setattr(replica.storage, "read_range", counting)
    return sizes


def test_a_scan_walks_the_tree_in_few_large_reads(wide: FakeLitestream, core: ModuleType,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """~3,500 leaves: the walk fetches them in coalesced batches ahead of the cursor,
    not one request per leaf (nor per interior page's children)."""
    con = api.connect(wide.storage.url, impl=core, poll_interval=0, boot_set="off",
                      verify_max_size=0)
    reads = _counting_reads(monkeypatch, wide.storage.url)
    assert con.execute("SELECT count(*), sum(length(v)) FROM t").fetchall() == [(20_000, 3_000_000)]
    assert len(reads) < 3300 // 20, len(reads)  # ~3,300 leaves
    con.close()


def test_a_stopped_cursor_stops_the_walk(wide: FakeLitestream, core: ModuleType,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A scan that ends early (LIMIT) fetches little beyond what it read: the window
    starts small, and the walk ends with the transaction."""
    from litevfs.engine import scan
    from litevfs.vfs.registry import file_of

    walks: list[scan.TreeWalk] = []
    init = scan.TreeWalk.__init__

    def recording(self, *a, **kw):  # type: ignore[no-untyped-def]
        init(self, *a, **kw)
        walks.append(self)

    monkeypatch.setattr(scan.TreeWalk, "__init__", recording)
    con = api.connect(wide.storage.url, impl=core, poll_interval=0, boot_set="off",
                      verify_max_size=0)
    assert len(con.execute("SELECT v FROM t LIMIT 200").fetchall()) == 200  # ~35 leaves
    assert file_of(con).scans.walks == []  # the transaction ended: no walk goes on
    assert walks and all(w.stopped for w in walks)
    for walk in walks:  # fetched ahead: at most twice what the cursor read, plus the start
        assert walk.issued <= 3 * max(walk.consumed, 0) + scan.WALK_FIRST_PAGES
    con.close()


def test_overflow_chains_match_sqlite(tmp_path: Path) -> None:
    """overflow_chains() finds each spilled cell's first overflow page and chain length,
    as SQLite's file format defines them (table and index leaves)."""
    from litevfs.engine.scan import overflow_chains

    path = tmp_path / "o.db"
    con = sqlite3.connect(path)
    con.execute("PRAGMA page_size=1024")
    con.execute("CREATE TABLE b(id INTEGER PRIMARY KEY, data BLOB)")
    con.execute("CREATE TABLE k(t TEXT)")
    con.execute("CREATE INDEX k_t ON k(t)")
    sizes = [10, 900, 1000, 3000, 5000, 20000]
    con.executemany("INSERT INTO b VALUES (?, ?)", [(i, b"x" * n) for i, n in enumerate(sizes)])
    con.executemany("INSERT INTO k VALUES (?)", [("y" * n,) for n in (50, 400, 2000)])
    con.commit()
    con.close()
    data = path.read_bytes()
    pages = {i // 1024 + 1: data[i:i + 1024] for i in range(0, len(data), 1024)}

    def chain(first: int) -> int:
        n, p = 0, first
        while p:
            n += 1
            p = int.from_bytes(pages[p][:4], "big")
        return n

    found = {}
    for pgno, page in pages.items():
        for first, count in overflow_chains(page, pgno, 1024):
            found[first] = count
    assert found and all(chain(first) == count for first, count in found.items())
    # table cells over 989 bytes spill (4 rows of b, 1 of k); index cells over 230 (2)
    assert len(found) == 4 + 1 + 2


def test_schema_rows_read_without_sqlite(tmp_path: Path) -> None:
    from litevfs.engine.schema import schema_rows

    path = tmp_path / "s.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE a(x INTEGER PRIMARY KEY, y)")
    con.execute("CREATE INDEX a_y ON a(y)")
    con.executemany("INSERT INTO a VALUES (?, ?)", [(i, i % 7) for i in range(100)])
    con.execute("ANALYZE")
    con.commit()
    expected = con.execute("SELECT type, name, rootpage FROM sqlite_schema").fetchall()
    con.close()
    page1 = path.read_bytes()[:4096]
    assert sorted(schema_rows(page1, 1)) == sorted(expected)


def test_the_open_fetches_the_statistics_tables(tmp_path: Path, core: ModuleType) -> None:
    """An ANALYZEd database: SQLite reads sqlite_stat1 before planning the first query;
    the open fetches it in the background, so that query does not wait a round trip."""
    path = tmp_path / "a.db"
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=DELETE")
    con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    con.execute("CREATE INDEX t_v ON t(v)")
    con.executemany("INSERT INTO t VALUES (?, ?)", ((i, "x" * 100) for i in range(5000)))
    con.execute("ANALYZE")
    stat_root = con.execute("SELECT rootpage FROM sqlite_schema WHERE name='sqlite_stat1'"
                            ).fetchone()[0]
    con.close()
    ls = FakeLitestream(path, unique_memory_url("stat"))
    ls.sync()
    c = api.connect(ls.storage.url, impl=core, poll_interval=0, boot_set="off",
                    verify_max_size=0)
    from litevfs.vfs.registry import file_of

    try:
        replica = file_of(c).replica
        assert replica.tops.wait_idle()
        view = replica.current
        key = (view.index.lookup(stat_root)[0] << 32) | stat_root
        assert key in replica.cache or key in replica.reader._inflight  # fetched, or on its way
        assert replica.tops.pages >= 1
    finally:
        c.close()
