"""Hedged GETs: a page GET much slower than its peers is re-issued once, the first
answer wins, hedges are bounded and counted (unit tests of ``Hedger`` and through the
VFS on both twins with an injected slow backend)."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import litevfs.vfs.connect as api
from litevfs.engine.hedge import Hedger, size_class
from litevfs.ltx.format import FileInfo
from litevfs.session import open_replicas

from .vfs_support import FakeLitestream, unique_memory_url

INFO = FileInfo(0, 1, 1, 1 << 20, 0.0)


class Scripted:
    """A read function whose n-th call sleeps ``delays[n]`` (default ``fast``)."""

    def __init__(self, delays: dict[int, float], fast: float = 0.002,
                 fail: set[int] | None = None) -> None:
        self.delays, self.fast, self.fail = delays, fast, fail or set()
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self, info: FileInfo, offset: int, length: int) -> bytes:
        with self._lock:
            n = self.calls
            self.calls += 1
        time.sleep(self.delays.get(n, self.fast))
        if n in self.fail:
            raise OSError(f"injected failure of call {n}")
        return bytes([offset % 256]) * length


def _warm(h: Hedger, n: int = 8) -> None:
    for _ in range(n):
        h.read_range(INFO, 0, 4096)


def test_slow_get_is_hedged_and_hedge_wins() -> None:
    read = Scripted({8: 5.0})  # call 8 stalls; its hedge (call 9) is fast
    h = Hedger(lambda: read, floor=0.02)
    _warm(h)
    start = time.perf_counter()
    assert h.read_range(INFO, 7, 4096) == bytes([7]) * 4096
    assert time.perf_counter() - start < 1.0
    stats = h.stats()
    assert (stats["issued"], stats["won"], stats["capped"]) == (1, 1, 0)
    h.close()


def test_normal_latency_is_not_hedged() -> None:
    read = Scripted({}, fast=0.01)
    h = Hedger(lambda: read, floor=0.005)  # floor below p50: 3x p50 decides
    _warm(h, 20)
    assert h.stats()["issued"] == 0 and read.calls == 20
    h.close()


def test_base_latency_is_the_fastest_small_get() -> None:
    read = Scripted({0: 0.05}, fast=0.004)
    h = Hedger(lambda: read, floor=1.0)
    assert h.base_latency() is None  # nothing timed yet
    h.read_range(INFO, 0, 1 << 20)  # large: transfer time, not the round trip
    assert h.base_latency() is None
    _warm(h, 3)
    assert 0.004 <= h.base_latency() < 0.03
    h.close()


def test_hedges_are_capped_and_one_per_request() -> None:
    read = Scripted({8: 1.0, 9: 1.0, 10: 1.0, 11: 1.0})  # both copies of a request stall
    h = Hedger(lambda: read, floor=0.02, max_concurrent=1)
    _warm(h)
    results: list[bytes] = []
    threads = [threading.Thread(target=lambda: results.append(h.read_range(INFO, 1, 4096)))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [bytes([1]) * 4096] * 2
    stats = h.stats()
    assert stats["issued"] == 1 and stats["capped"] == 1
    assert read.calls == 8 + 3  # two requests, one hedge, never a second hedge
    h.close()


def test_failed_hedge_falls_back_to_primary() -> None:
    read = Scripted({8: 0.3}, fail={9})
    h = Hedger(lambda: read, floor=0.02)
    _warm(h)
    assert h.read_range(INFO, 3, 4096) == bytes([3]) * 4096
    assert h.stats()["issued"] == 1 and h.stats()["won"] == 0
    h.close()


def test_disabled_calls_directly() -> None:
    read = Scripted({})
    h = Hedger(lambda: read, floor=0.0)
    assert h.read_range(INFO, 0, 10) == bytes(10)
    assert h._pool is None
    assert size_class(4096) == 0 and size_class(4 << 20) == 5


@pytest.fixture
def replica_db(tmp_path: Path) -> FakeLitestream:
    path = tmp_path / "h.db"
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=DELETE")
    con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    con.execute("BEGIN")
    con.executemany("INSERT INTO t VALUES(?, ?)", ((i, f"{i:08d}" * 40) for i in range(20_000)))
    con.execute("COMMIT")
    con.close()
    ls = FakeLitestream(path, unique_memory_url("hedge"))
    ls.sync()
    return ls


def test_vfs_hedges_a_stalled_page_get(replica_db: FakeLitestream, core: ModuleType) -> None:
    url = replica_db.storage.url
    con = api.connect(url, impl=core, poll_interval=0, hedge_after="20ms", read_ahead=0,
                      verify_max_size=0, verify="strict")
    (replica,) = [r for r in open_replicas() if r.storage.url == url]
    original = replica.storage.read_range
    calls: list[int] = []

    def slow_once(info: FileInfo, offset: int = 0, length: Any = None) -> bytes:
        calls.append(offset)
        if len(calls) == 12:  # one page GET, after a few normal ones, stalls
            time.sleep(3.0)
        else:
            time.sleep(0.002)
        return original(info, offset, length)

    replica.storage.read_range = slow_once  # type: ignore[method-assign]
    start = time.perf_counter()
    for i in range(0, 20_000, 1000):
        assert con.execute("SELECT v FROM t WHERE id = ?", (i,)).fetchone() == (f"{i:08d}" * 40,)
    assert time.perf_counter() - start < 2.5
    hedges = api.stats(con)["hedged_gets"]
    assert hedges["issued"] >= 1 and hedges["won"] >= 1
    con.close()
