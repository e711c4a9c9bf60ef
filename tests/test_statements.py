"""Plan-aware prefetch: what a statement's program says about the b-trees it opens, and
the exec tracer that hands their roots to the engine (and leaves cached queries alone)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from types import ModuleType

import apsw
import pytest

import litevfs.vfs.connect as api
from litevfs.vfs.registry import file_of
from litevfs.vfs.statements import QUIET_TRACES, plan_from_program

from .vfs_support import FakeLitestream, unique_memory_url


def _plan(sql: str, params=()):  # type: ignore[no-untyped-def]
    con = apsw.Connection(":memory:")
    con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v); CREATE INDEX tv ON t(v);"
                "CREATE TABLE u(id INTEGER PRIMARY KEY, w)")
    roots = dict(con.execute("SELECT name, rootpage FROM sqlite_schema"))
    return plan_from_program(con.execute("EXPLAIN " + sql, params).fetchall()), roots


def test_program_tells_roots_and_whole_scans() -> None:
    plan, roots = _plan("SELECT * FROM t JOIN u ON u.id = t.id WHERE t.id = ?", (1,))
    assert set(plan.roots) == {roots["t"], roots["u"]} and not plan.scans
    plan, roots = _plan("SELECT count(*), sum(length(v)) FROM t")
    assert plan.scans == {roots["t"]} or plan.scans == {roots["tv"]}
    plan, roots = _plan("SELECT v, count(*) FROM t GROUP BY v ORDER BY 2 DESC LIMIT 3")
    assert plan.scans == {roots["tv"]}  # an aggregate needs every row despite the LIMIT
    plan, roots = _plan("SELECT * FROM t LIMIT 5")
    assert not plan.scans  # the LIMIT may stop it after a few rows: no full-width walk
    plan, roots = _plan("SELECT * FROM t WHERE v > 'a' ORDER BY v LIMIT 3")
    assert not plan.scans  # a range: positioned by a seek


@pytest.fixture
def replica_url(tmp_path: Path) -> str:
    path = tmp_path / "p.db"
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA page_size=1024")
    con.execute("PRAGMA journal_mode=DELETE")
    con.execute("CREATE TABLE a(id INTEGER PRIMARY KEY, v TEXT)")
    con.execute("CREATE TABLE b(id INTEGER PRIMARY KEY, a_id INTEGER, w TEXT)")
    con.execute("BEGIN")
    con.executemany("INSERT INTO a VALUES (?, ?)", ((i, "a" * 100) for i in range(5000)))
    con.executemany("INSERT INTO b VALUES (?, ?, ?)", ((i, i % 5000, "b" * 100)
                                                       for i in range(5000)))
    con.execute("COMMIT")
    con.close()
    ls = FakeLitestream(path, unique_memory_url("plan"))
    ls.sync()
    return ls.storage.url


def test_the_tops_of_every_joined_tree_are_fetched_together(replica_url: str,
                                                            core: ModuleType) -> None:
    # (join_prefetch off: with it, only the trees probed by column values are fanned
    # out, the others are descended by key; tests/test_join_prefetch.py)
    con = api.connect(replica_url, impl=core, poll_interval=0, boot_set="off",
                      verify_max_size=0, join_prefetch=False)
    try:
        file = file_of(con)
        replica = file.replica
        replica.reader.hedger.base_latency = lambda: 0.020  # a 20 ms network
        sql = "SELECT a.v, b.w FROM b JOIN a ON a.id = b.a_id WHERE b.id = ?"
        assert con.execute(sql, (4321,)).fetchall()
        plan = file.planner.plans[sql]
        roots = dict(con.execute("SELECT name, rootpage FROM sqlite_schema").fetchall())
        assert set(plan.roots) == {roots["a"], roots["b"]}
        assert replica.tops.wait_idle()
        assert replica.tops.requests > 0 and replica.tops.pages > 0
        replica.reader.read_page(replica.current, 1)  # (waits for fetches still in flight)
        import time

        time.sleep(0.05)
        view = replica.current
        for root in plan.roots:  # each root's children (small fanout) are cached now
            from litevfs.engine.scan import btree_children

            page = replica.reader.read_page(view, root)
            for child in btree_children(page, root) or []:
                fid = view.index.lookup(child)[0]
                assert ((fid << 32) | child) in replica.cache
        learned = file.planner.learned
        con.execute(sql, (17,)).fetchall()
        assert file.planner.learned == learned  # learned once per statement text
    finally:
        con.close()


def test_on_a_fast_network_only_the_roots_are_fetched(replica_url: str,
                                                     core: ModuleType) -> None:
    """Below FAST_RTT_S a level SQLite descends itself costs less than the requests of the
    fan-out (at 0 ms RTT the fan-out made a 5-table join 1.5x slower): roots only."""
    from litevfs.engine.scan import btree_children

    con = api.connect(replica_url, impl=core, poll_interval=0, boot_set="off",
                      verify_max_size=0)
    try:
        replica = file_of(con).replica
        replica.reader.hedger.base_latency = lambda: 0.001
        sql = "SELECT a.v, b.w FROM b JOIN a ON a.id = b.a_id WHERE b.id = ?"
        assert con.execute(sql, (4321,)).fetchall()
        assert replica.tops.wait_idle()
        assert replica.tops.stats()["fast_network_skips"] == 1 and replica.tops.pages == 0
        view = replica.current
        children = [c for root in file_of(con).planner.plans[sql].roots
                    for c in btree_children(replica.reader.read_page(view, root), root) or []]
        cached = [c for c in children if ((view.index.lookup(c)[0] << 32) | c) in replica.cache]
        assert len(cached) < len(children)  # only what SQLite itself descended into
    finally:
        con.close()


def test_cached_queries_turn_the_tracer_off_and_a_fetch_turns_it_on(
        replica_url: str, core: ModuleType) -> None:
    con = api.connect(replica_url, impl=core, poll_interval=0, boot_set="off",
                      verify_max_size=0)
    try:
        planner = file_of(con).planner
        assert planner.armed and con.exec_trace is not None
        con.execute("SELECT count(*), sum(length(v)) FROM a").fetchall()  # all of a cached
        for _ in range(QUIET_TRACES + 2):
            con.execute("SELECT v FROM a WHERE id = 7").fetchall()
        assert not planner.armed and con.exec_trace is None  # nothing left to fetch
        con.execute("SELECT w FROM b WHERE id = 4999").fetchall()  # a miss: pages fetched
        con.execute("SELECT w FROM b WHERE id = 4998").fetchall()
        assert planner.armed and con.exec_trace is not None
    finally:
        con.close()


def test_explain_never_runs_litevfs_pragmas(replica_url: str, core: ModuleType) -> None:
    """EXPLAIN of a PRAGMA would run litevfs's pragma handler at prepare time: only
    statements that read tables are explained."""
    con = api.connect(replica_url, impl=core, poll_interval=0, boot_set="off")
    try:
        planner = file_of(con).planner
        learned = planner.learned
        con.execute("PRAGMA litevfs_stats").fetchall()
        con.execute("PRAGMA litestream_time").fetchall()
        assert planner.learned == learned
    finally:
        con.close()
