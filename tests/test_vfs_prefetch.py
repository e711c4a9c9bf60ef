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

    def counting(view, pgnos):  # type: ignore[no-untyped-def]
        calls.append(len(pgnos))
        return original(view, pgnos)

    monkeypatch.setattr(replica.reader, "prefetch", counting)
    return calls


def test_point_queries_do_not_prefetch(wide: FakeLitestream, core: ModuleType,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    con = api.connect(wide.storage.url, impl=core, poll_interval=0)
    calls = _count_prefetches(monkeypatch, wide.storage.url)
    # ~6 rows per 1 KiB leaf: stepping by 6 walks neighbouring leaves, one query each.
    for key in range(0, 3000, 6):
        assert con.execute("SELECT v FROM t WHERE id = ?", (key,)).fetchall() == [("x" * 150,)]
    assert calls == []
    # A scan inside one statement still prefetches.
    assert con.execute("SELECT count(*), sum(length(v)) FROM t").fetchall() == [(20_000, 3_000_000)]
    assert sum(calls) > 0
    con.close()
