"""``Reader.read_page`` on both core twins: the fused fast path (``PageCache.page_for``)
and the full path count each read as exactly one memory-cache hit or one miss."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest

from litevfs.vfs import connect as api
from litevfs.engine.reader import PageFetchError
from litevfs._impl import cache_key
from litevfs.session import open_replicas

from .vfs_support import FakeLitestream, make_accounts_db, unique_memory_url


@pytest.fixture
def primary(tmp_path: Path) -> FakeLitestream:
    make_accounts_db(tmp_path / "primary.db").close()
    ls = FakeLitestream(tmp_path / "primary.db", unique_memory_url("reader-counts"))
    ls.sync()
    return ls


@pytest.fixture
def opened(primary: FakeLitestream, core: ModuleType):  # type: ignore[no-untyped-def]
    con = api.connect(primary.storage.url, impl=core, poll_interval=0, boot_set="off")
    con.execute("SELECT count(*) FROM accounts").fetchall()
    (replica,) = [r for r in open_replicas() if r.storage.url == primary.storage.url]
    assert replica.tops.wait_idle()  # plan-aware prefetch done: nothing reads behind us
    replica.cache.clear()
    yield replica
    con.close()


class Counting:
    """Counts the replica's storage reads (a fetch shows up here)."""

    def __init__(self, replica) -> None:  # type: ignore[no-untyped-def]
        self.calls = 0
        self.replica = replica
        self._read = replica.storage.read_range

        def read_range(*args, **kwargs):  # type: ignore[no-untyped-def]
            self.calls += 1
            return self._read(*args, **kwargs)

        replica.storage.read_range = read_range


def delta(replica, before):  # type: ignore[no-untyped-def]
    c = replica.cache
    return c.hits - before[0], c.misses - before[1]


def test_fast_path_counts_one_miss_then_one_hit(opened) -> None:  # type: ignore[no-untyped-def]
    replica = opened
    reader, view, cache = replica.reader, replica.current, replica.cache
    assert replica.hydrator is None and not reader._failed
    before = (cache.hits, cache.misses)
    page = reader.read_page(view, 2)
    assert delta(replica, before) == (0, 1)  # the probe's miss, not a second one
    assert cache_key(view.index.lookup(2)[0], 2) in cache
    assert reader.read_page(view, 2) is page
    assert delta(replica, before) == (1, 1)
    with pytest.raises(PageFetchError, match="not in the replica's index"):
        reader.read_page(view, view.commit + 1)
    assert delta(replica, before) == (1, 1)  # absent pages count nothing


def test_read_ahead_pages_are_hits(opened) -> None:  # type: ignore[no-untyped-def]
    replica = opened
    reader, view, cache = replica.reader, replica.current, replica.cache
    before = (cache.hits, cache.misses)
    n = min(view.commit, 6)
    reader.read_page(view, 1, ahead_bytes=view.page_size * n)
    for p in range(2, n + 1):
        if view.index.lookup(p) is not None:
            reader.read_page(view, p)
    hits, misses = delta(replica, before)
    assert misses == 1 and hits == sum(view.index.lookup(p) is not None for p in range(2, n + 1))


class NoLocalCopy:
    """A hydrator that holds nothing: reads take the full path."""

    def read(self, pgno: int, file_id: int) -> None:
        return None

    def has(self, pgno: int, file_id: int) -> bool:
        return False


def test_full_path_counts_once_too(opened) -> None:  # type: ignore[no-untyped-def]
    replica = opened
    reader, view, cache = replica.reader, replica.current, replica.cache
    replica.hydrator = NoLocalCopy()
    try:
        before = (cache.hits, cache.misses)
        page = reader.read_page(view, 3)
        assert delta(replica, before) == (0, 1)
        assert reader.read_page(view, 3) is page
        assert delta(replica, before) == (1, 1)
    finally:
        replica.hydrator = None
    assert reader.read_page(view, 3) is page  # and the fast path finds the same entry
    assert delta(replica, before) == (2, 1)


def test_a_miss_fetches_once(opened) -> None:  # type: ignore[no-untyped-def]
    replica = opened
    reader, view = replica.reader, replica.current
    reads = Counting(replica)
    try:
        first = reader.read_page(view, 2)
        assert reads.calls <= 1  # small files come whole from the verifier
        calls = reads.calls
        assert reader.read_page(view, 2) == first
        assert reads.calls == calls
    finally:
        del replica.storage.read_range


def test_connection_reads_add_up(opened, primary: FakeLitestream,
                                 core: ModuleType) -> None:  # type: ignore[no-untyped-def]
    """Through SQLite: every page read is one hit or one miss."""
    replica = opened
    calls = 0
    real = replica.reader.read_page

    def read_page(*args, **kwargs):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        return real(*args, **kwargs)

    replica.reader.read_page = read_page
    try:
        before = (replica.cache.hits, replica.cache.misses)
        for _ in range(2):  # cold, then warm (a new connection has a cold SQLite cache)
            con = api.connect(primary.storage.url, impl=core, poll_interval=0, boot_set="off")
            con.execute("SELECT count(*), sum(balance) FROM accounts").fetchall()
            con.execute("SELECT id, length(data), hex(substr(data, 5000, 8)) FROM blobs").fetchall()
            con.close()
    finally:
        del replica.reader.read_page
    hits, misses = delta(replica, before)
    assert calls > 4 and hits + misses == calls and hits >= calls // 2 and misses > 0


def test_interior_pages_outlive_leaf_churn(tmp_path, core) -> None:
    """A cache far smaller than the leaves a workload reads still keeps the upper b-tree
    levels (their own tier): once they were read, a point query costs one fetch."""
    import random

    import litevfs
    from litevfs.vfs.registry import file_of
    from tests.vfs_support import FakeLitestream, make_accounts_db, unique_memory_url

    url = unique_memory_url("interior")
    make_accounts_db(tmp_path / "p.db", page_size=1024, accounts=100000, blob_rows=0).close()
    FakeLitestream(tmp_path / "p.db", url).sync()
    # 48 pages of LRU (24 in the interior tier), ~2000 leaves
    con = litevfs.connect(url, impl=core, poll_interval=0, boot_set="off", cache_size=49152,
                          verify_max_size=0, read_ahead=0)
    try:
        con.execute("PRAGMA cache_size=1")  # SQLite's own page cache would hide ours
        replica = file_of(con).replica
        assert con.execute("SELECT count(*), sum(balance) FROM accounts").fetchone()[0] == 100000
        rng = random.Random(3)
        per_query = []
        for _ in range(200):
            before = replica.storage.stats.gets
            i = rng.randrange(100000)
            assert con.execute("SELECT balance FROM accounts WHERE id = ?", (i,)).fetchone()
            per_query.append(replica.storage.stats.gets - before)
        assert max(per_query) <= 1, per_query  # the leaf only (without the tier: up to 3)
        assert len(replica.state.interior) > 10  # the table's upper levels
        assert replica.state.cache.nbytes <= 49152
    finally:
        con.close()
