"""Key-driven prefetch of joins: the graph a statement's program gives
(``engine/joingraph.py``), b-tree pages read without SQLite (``engine/records.py``), the
execution ahead of SQLite (``engine/keyahead.py``) on real pages, and end to end against
SeaweedFS and a replica written by the real litestream: fewer fetches from SQLite's own
thread, the same rows."""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from pathlib import Path
from types import ModuleType

import apsw
import pytest

import litevfs.vfs.connect as api
from litevfs.engine import keyahead as keyahead_mod
from litevfs.engine.joingraph import JoinGraph, graph_from_program
from litevfs.engine.records import (
    edge_children,
    index_child,
    index_leaf_keys,
    index_leaf_matches,
    table_child,
    table_leaf_row,
    table_leaf_rows,
)
from litevfs.engine.scan import btree_children
from litevfs.session import open_replicas
from litevfs.vfs.registry import file_of

JOIN5 = ("SELECT p.id, p.title, u.name, t.name, c.id, substr(c.body, 1, 30) FROM posts p "
         "JOIN users u ON u.id = p.user_id JOIN post_tags pt ON pt.post_id = p.id "
         "JOIN tags t ON t.id = pt.tag_id JOIN comments c ON c.post_id = p.id "
         "ORDER BY p.created_at DESC LIMIT 20")
JOIN5_60 = JOIN5.replace("LIMIT 20", "LIMIT 60")  # more rows: more lookups to wait for
POINT_JOIN = ("SELECT p.id, p.title, u.name FROM posts p JOIN users u ON u.id = p.user_id "
              "WHERE p.id = ?")
PAGE = 1024


def make_social_db(path: Path, users: int = 3000, posts: int = 6000) -> Path:
    """A small social database with three-level b-trees (1 KiB pages): users, posts,
    comments, tags and post_tags (WITHOUT ROWID), indexed as a feed would be."""
    rnd = random.Random(14)
    con = sqlite3.connect(path, isolation_level=None)
    con.execute(f"PRAGMA page_size={PAGE}")
    con.execute("PRAGMA journal_mode=WAL")
    con.executescript("""
        CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL);
        CREATE TABLE tags(id INTEGER PRIMARY KEY, name TEXT NOT NULL);
        CREATE TABLE posts(id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL,
                           title TEXT NOT NULL, created_at INTEGER NOT NULL);
        CREATE TABLE comments(id INTEGER PRIMARY KEY, post_id INTEGER NOT NULL,
                              body TEXT NOT NULL);
        CREATE TABLE post_tags(post_id INTEGER NOT NULL, tag_id INTEGER NOT NULL,
                               PRIMARY KEY(post_id, tag_id)) WITHOUT ROWID;
        CREATE UNIQUE INDEX users_email ON users(email);
        CREATE INDEX posts_created ON posts(created_at);
        CREATE INDEX posts_title ON posts(title);
        CREATE INDEX comments_post ON comments(post_id);
    """)
    con.execute("BEGIN")
    con.executemany("INSERT INTO users VALUES (?, ?, ?)",
                    ((i, f"user {i}", f"u{rnd.random():.12f}@example.com")
                     for i in range(1, users + 1)))
    con.executemany("INSERT INTO tags VALUES (?, ?)", ((i, f"tag{i}") for i in range(1, 41)))
    con.executemany("INSERT INTO posts VALUES (?, ?, ?, ?)",
                    ((i, rnd.randint(1, users), f"title {i} " + "x" * 40,
                      1_000_000 + i * 10 + rnd.randint(0, 30)) for i in range(1, posts + 1)))
    comment = 0
    for post in range(1, posts + 1):
        for tag in rnd.sample(range(1, 41), rnd.randint(1, 3)):
            con.execute("INSERT INTO post_tags VALUES (?, ?)", (post, tag))
        for _ in range(rnd.randint(0, 3)):
            comment += 1
            con.execute("INSERT INTO comments VALUES (?, ?, ?)",
                        (comment, post, f"comment {comment} " + "y" * 30))
    con.execute("COMMIT")
    con.execute("ANALYZE")  # as a real database: the planner reads posts in created_at order
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.execute("PRAGMA journal_mode=DELETE")
    con.close()
    return path


@pytest.fixture(scope="module")
def social(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_social_db(tmp_path_factory.mktemp("join") / "social.db")


def _roots(path: Path) -> dict[str, int]:
    con = sqlite3.connect(path)
    try:
        return dict(con.execute("SELECT name, rootpage FROM sqlite_schema"))
    finally:
        con.close()


def _graph(path: Path, sql: str, params: tuple = ()) -> JoinGraph | None:
    con = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return graph_from_program(con.execute("EXPLAIN " + sql, params).fetchall())
    finally:
        con.close()


class _Pages:
    def __init__(self, path: Path) -> None:
        self.data = path.read_bytes()

    def __call__(self, pgno: int) -> bytes:
        return self.data[(pgno - 1) * PAGE:pgno * PAGE]


# -- the graph ------------------------------------------------------------------------


def test_the_program_gives_the_joins_graph(social: Path) -> None:
    roots = _roots(social)
    graph = _graph(social, JOIN5)
    assert graph is not None
    assert (graph.driver_root, graph.driver_index, graph.reverse) == \
        (roots["posts_created"], True, True)  # ORDER BY created_at DESC: the index, backwards
    assert graph.limit is not None and graph.limit.arg == 20
    by_root = {p.root: p for p in graph.probes}
    assert set(by_root) == {roots[n] for n in ("posts", "users", "post_tags", "tags",
                                               "comments_post", "comments")}
    posts, users = by_root[roots["posts"]], by_root[roots["users"]]
    assert posts.key == ("rowid", graph.driver, None) and not posts.is_index
    assert users.key == ("column", posts.cursor, 1)  # posts.user_id
    post_tags = by_root[roots["post_tags"]]
    assert post_tags.is_index and post_tags.many
    assert post_tags.key == ("rowid", graph.driver, None)
    assert by_root[roots["tags"]].key == ("column", post_tags.cursor, 1)  # post_tags.tag_id
    comments_post = by_root[roots["comments_post"]]
    assert by_root[roots["comments"]].key == ("rowid", comments_post.cursor, None)
    assert graph.scattered == {roots["users"], roots["tags"]}


def test_a_point_join_is_keyed_by_its_parameter(social: Path) -> None:
    roots = _roots(social)
    graph = _graph(social, POINT_JOIN, (77,))
    assert graph is not None and graph.driver == -1
    by_root = {p.root: p for p in graph.probes}
    assert by_root[roots["posts"]].key == ("param", -1, 1)
    assert by_root[roots["users"]].key.kind == "column"


def test_nothing_to_execute_ahead(social: Path) -> None:
    assert _graph(social, "SELECT * FROM posts WHERE id = ?", (5,)) is None  # one lookup
    assert _graph(social, "SELECT user_id, count(*) FROM posts GROUP BY user_id "
                          "ORDER BY 2 DESC LIMIT 5") is None  # every row feeds an aggregate
    graph = _graph(social, "SELECT p.title, u.name FROM posts p JOIN users u "
                           "ON u.id = p.user_id")  # no LIMIT: the scan is a walk's job
    assert graph is None


# -- pages without SQLite -------------------------------------------------------------


def _leaves(page_of: _Pages, root: int) -> list[int]:
    kids = edge_children(page_of(root), root)
    return [leaf for kid in kids for leaf in _leaves(page_of, kid)] if kids else [root]


def test_leaf_records_match_sqlite(social: Path) -> None:
    page_of, roots = _Pages(social), _roots(social)
    con = sqlite3.connect(social)
    want = {r[0]: list(r) for r in con.execute("SELECT id, NULL, user_id, title, created_at "
                                               "FROM posts")}
    got = {}
    for leaf in _leaves(page_of, roots["posts"]):
        for rowid, values in table_leaf_rows(page_of(leaf), leaf):
            got[rowid] = [rowid, *values]
    assert {k: v[:1] + v[2:] for k, v in got.items()} == \
        {k: v[:1] + v[2:] for k, v in want.items()}  # (the rowid alias is stored as NULL)
    entries = [tuple(v) for leaf in _leaves(page_of, roots["post_tags"])
               for v in index_leaf_keys(page_of(leaf), leaf)]
    interior = len(con.execute("SELECT * FROM post_tags").fetchall()) - len(entries)
    assert interior >= 0 and set(entries) <= set(con.execute("SELECT * FROM post_tags"))
    con.close()


def _descend(page_of: _Pages, root: int, key: object, index: bool) -> int:
    pgno = root
    while True:
        page = page_of(pgno)
        child = index_child(page, pgno, key) if index else table_child(page, pgno, key)
        if child is None:
            return pgno
        pgno = child


def test_keys_descend_to_their_rows(social: Path) -> None:
    page_of, roots = _Pages(social), _roots(social)
    assert len(btree_children(page_of(roots["posts"]), roots["posts"]) or []) > 1
    assert btree_children(page_of(btree_children(page_of(roots["posts"]), roots["posts"])[0]),
                          0) is not None  # three levels: the descent is really tested
    con = sqlite3.connect(social)
    for rowid, user_id, title in con.execute("SELECT id, user_id, title FROM posts "
                                             "WHERE id % 7 = 0"):
        leaf = _descend(page_of, roots["posts"], rowid, False)
        values = table_leaf_row(page_of(leaf), leaf, rowid)
        assert values is not None and values[1:3] == [user_id, title]
    assert table_leaf_row(page_of(leaf), leaf, 10**9) is None
    found = total = 0
    for post_id, ids in con.execute("SELECT post_id, group_concat(id) FROM comments "
                                    "GROUP BY post_id"):
        leaf = _descend(page_of, roots["comments_post"], post_id, True)
        matches = index_leaf_matches(page_of(leaf), leaf, post_id, 32)
        assert {m[0] for m in matches} <= {post_id}
        assert {m[-1] for m in matches} <= {int(i) for i in ids.split(",")}
        total += 1
        found += bool(matches)
    assert found >= 0.8 * total  # (an entry in an interior page is not followed)
    hits = 0
    emails = con.execute("SELECT email, id FROM users WHERE id % 11 = 0").fetchall()
    for email, rowid in emails:  # text keys (BINARY order)
        leaf = _descend(page_of, roots["users_email"], email, True)
        hits += index_leaf_matches(page_of(leaf), leaf, email, 4) == [[email, rowid]]
    assert hits >= 0.8 * len(emails)
    con.close()


# -- execution ahead, on real pages ----------------------------------------------------


class _FileReader:
    """A reader over the local file: prefetch records what was asked, reads are local."""

    class _Index:
        def lookup(self, pgno: int) -> tuple[int, int, int] | None:
            return (1, pgno * PAGE, PAGE) if pgno > 0 else None

    class _View:
        txid = 1
        page_size = PAGE

    class _Hedger:
        @staticmethod
        def base_latency() -> float:
            return 0.020

    def __init__(self, path: Path) -> None:
        self.page_of = _Pages(path)
        self.cache: set[int] = set()
        self.interior: set[int] = set()
        self.hydrator = None
        self.fetches = 0
        self.hedger = self._Hedger()
        self.batches: list[list[int]] = []
        self.view = self._View()
        self.view.index = self._Index()  # type: ignore[attr-defined]

    def prefetch(self, view: object, pgnos: list[int], **kw: object) -> int:
        self.batches.append(list(pgnos))
        self.cache.update((1 << 32) | p for p in pgnos)
        return 1

    def in_flight(self, view: object, pgno: int) -> None:
        return None

    def read_page(self, view: object, pgno: int) -> bytes:
        return self.page_of(pgno)


def _pages_sqlite_reads(path: Path, sql: str, params: tuple = ()) -> tuple[set[int], list]:
    pages: set[int] = set()

    class File(apsw.VFSFile):
        def xRead(self, amount: int, offset: int) -> bytes:
            if amount >= PAGE:
                pages.add(offset // PAGE + 1)
            return super().xRead(amount, offset)

    class Tracing(apsw.VFS):
        def __init__(self) -> None:
            super().__init__("join-tracing", base="")

        def xOpen(self, name, flags):  # type: ignore[no-untyped-def]
            return File("", name, flags)

    vfs = Tracing()
    con = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY, vfs="join-tracing")
    try:
        con.execute("SELECT count(*) FROM sqlite_schema").fetchall()
        pages.clear()
        rows = con.execute(sql, params).fetchall()
    finally:
        con.close()
        vfs.unregister()
    return pages, rows


@pytest.mark.parametrize("sql,params", [(JOIN5, ()), (POINT_JOIN, (4321,))])
def test_execution_ahead_fetches_what_sqlite_reads(social: Path, sql: str, params: tuple) -> None:
    graph = _graph(social, sql, params)
    assert graph is not None
    reader = _FileReader(social)
    owner = keyahead_mod.KeyAhead(reader)  # type: ignore[arg-type]
    owner._gen = 1
    keyahead_mod._Execution(owner, reader.view, graph, params, 1).run()  # type: ignore[arg-type]
    fetched = {p for batch in reader.batches for p in batch}
    needed, rows = _pages_sqlite_reads(social, sql, params)
    assert rows
    missed = needed - fetched - {1}
    assert len(missed) <= max(1, len(needed) // 10), (sorted(missed), len(needed))
    # one batch per level of the deepest chain of lookups, not one per row per table
    assert len(reader.batches) <= 12, [len(b) for b in reader.batches]
    assert len(fetched) <= 3 * len(needed) + 16  # bounded: the LIMIT's rows, not more


def test_the_driver_reads_rows_in_the_statements_order_across_leaves(social: Path) -> None:
    """Across leaf boundaries, the entries an index keeps in its interior cells included."""
    sql = ("SELECT p.title, u.name FROM posts p JOIN users u ON u.id = p.user_id "
           "ORDER BY p.title DESC LIMIT 64")  # wide keys: ~17 entries a leaf
    graph = _graph(social, sql)
    assert graph is not None and graph.driver_root == _roots(social)["posts_title"]
    emitted: list[int] = []
    leaves: set[int] = set()

    class Recording(keyahead_mod._Execution):
        def _emit(self, drv, row):  # type: ignore[no-untyped-def]
            drv.emitted += 1
            self.counts.append({})
            emitted.append(row[0])
            leaves.add(drv.pgno)

    reader = _FileReader(social)
    owner = keyahead_mod.KeyAhead(reader)  # type: ignore[arg-type]
    owner._gen = 1
    Recording(owner, reader.view, graph, (), 1).run()  # type: ignore[arg-type]
    con = sqlite3.connect(social)
    want = [r[0] for r in con.execute("SELECT id FROM posts INDEXED BY posts_title "
                                      "ORDER BY title DESC, id DESC LIMIT 64")]
    con.close()
    assert emitted == want
    assert len(leaves) >= 2  # a leaf boundary was crossed


def test_a_finished_statement_cancels_the_work(social: Path) -> None:
    graph = _graph(social, JOIN5)
    reader = _FileReader(social)
    owner = keyahead_mod.KeyAhead(reader)  # type: ignore[arg-type]
    owner._gen = 2  # a newer statement (or the end of this one) moved the generation on
    keyahead_mod._Execution(owner, reader.view, graph, (), 1).run()  # type: ignore[arg-type]
    assert owner.cancelled == 1 and len(reader.batches) == 0


def test_a_statement_whose_pages_are_all_cached_is_skipped_next_time(social: Path) -> None:
    graph = _graph(social, JOIN5)
    assert graph is not None
    reader = _FileReader(social)
    owner = keyahead_mod.KeyAhead(reader)  # type: ignore[arg-type]
    for gen in (1, 2):  # the first run fetches, the second finds everything cached
        owner._gen = gen
        owner._job = (reader.view, graph, (), gen)  # type: ignore[assignment]
        owner.step()
    assert owner.jobs == 2 and owner.pages > 0 and len(reader.batches) == owner.batches
    assert not owner.want(reader.view, graph, ())  # type: ignore[arg-type]
    assert owner.cached_skips == 1
    reader.fetches += 1  # something was fetched since (the cache may have changed)
    owner.start = lambda: None  # type: ignore[method-assign]  # (no thread needed here)
    assert owner.want(reader.view, graph, ())  # type: ignore[arg-type]


def test_an_offset_counts_as_driver_rows(social: Path) -> None:
    graph = _graph(social, JOIN5.replace("LIMIT 20", "LIMIT 5 OFFSET 10"))
    assert graph is not None and graph.limit is not None and graph.offset is not None
    assert (graph.limit.arg, graph.offset.arg) == (5, 10)
    reader = _FileReader(social)
    owner = keyahead_mod.KeyAhead(reader)  # type: ignore[arg-type]
    owner._gen = 1
    run = keyahead_mod._Execution(owner, reader.view, graph, (), 1)  # type: ignore[arg-type]
    run.run()
    assert run.limit == 15


def test_a_fast_network_skips_it(social: Path) -> None:
    reader = _FileReader(social)
    reader.hedger.base_latency = lambda: 0.001  # type: ignore[method-assign]
    owner = keyahead_mod.KeyAhead(reader)  # type: ignore[arg-type]
    assert not owner.want(reader.view, _graph(social, JOIN5), ())  # type: ignore[arg-type]
    assert owner.fast_skips == 1


# -- end to end: real litestream, SeaweedFS, a slow network ---------------------------


@pytest.fixture
def social_replica(tmp_path: Path, seaweed, s3_bucket: str, litestream_factory,  # type: ignore[no-untyped-def]
                   latency_proxy) -> str:
    from tests.rig.litestream import S3Replica
    from tests.rig.seaweed import s3_replica_url

    db = make_social_db(tmp_path / "primary.db")
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode=WAL")  # what litestream replicates
    con.close()
    ls = litestream_factory(db, S3Replica(seaweed, s3_bucket))
    ls.wait_for_txid(1, timeout=60)
    ls.wait_caught_up()
    proxy = latency_proxy(seaweed.port, 0.010)  # 20 ms a round trip
    return s3_replica_url(s3_bucket, "db", proxy.endpoint, seaweed.region)


def _run_cold(url: str, core: ModuleType, join_prefetch: bool) -> tuple[list, int, dict]:
    """(rows, storage fetches made from SQLite's own thread, key-ahead stats) of a cold
    run of JOIN5_60 (the schema and its roots are read first, as after any open)."""
    assert not open_replicas()  # every run starts cold
    con = api.connect(url, impl=core, poll_interval=0, boot_set="off", verify_max_size=0,
                      join_prefetch=join_prefetch)  # (small files are not fetched whole)
    try:
        replica = file_of(con).replica
        replica.reader.hedger.base_latency = lambda: 0.020  # (few samples yet)
        con.execute("SELECT count(*) FROM sqlite_schema").fetchall()
        replica.tops.wait_idle()
        ours = threading.current_thread()
        calls = []
        original = replica.reader._fetch_run

        def counting(*args):  # type: ignore[no-untyped-def]
            if threading.current_thread() is ours:
                calls.append(args[2][0][0])
            return original(*args)

        replica.reader._fetch_run = counting
        rows = con.execute(JOIN5_60).fetchall()
        replica.key_ahead().wait_idle()
        return rows, len(calls), replica.key_ahead().stats()
    finally:
        con.close()
        deadline = time.monotonic() + 10
        while open_replicas() and time.monotonic() < deadline:
            time.sleep(0.01)


def test_a_join_waits_for_fewer_fetches_with_the_same_rows(social_replica: str,
                                                           core: ModuleType) -> None:
    rows_off, fetches_off, stats_off = _run_cold(social_replica, core, False)
    rows_on, fetches_on, stats_on = _run_cold(social_replica, core, True)
    assert rows_on == rows_off and len(rows_on) == 60
    assert stats_off["jobs"] == 0 and stats_on["jobs"] == 1 and stats_on["batches"] > 0
    # without it SQLite fetches each row's leaves itself, one after another
    assert fetches_off >= 6, fetches_off  # (11-13 measured)
    assert fetches_on <= fetches_off // 2, (fetches_on, fetches_off)


def test_the_tracer_hands_the_graph_over_and_only_scattered_trees_fan_out(
        tmp_path: Path, core: ModuleType) -> None:
    from tests.vfs_support import FakeLitestream, unique_memory_url

    path = tmp_path / "p.db"
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA page_size=1024")
    con.execute("CREATE TABLE a(id INTEGER PRIMARY KEY, v TEXT)")
    con.execute("CREATE TABLE b(id INTEGER PRIMARY KEY, a_id INTEGER, w TEXT)")
    con.execute("BEGIN")
    con.executemany("INSERT INTO a VALUES (?, ?)", ((i, "a" * 100) for i in range(5000)))
    con.executemany("INSERT INTO b VALUES (?, ?, ?)", ((i, (i * 7919) % 5000, "b" * 100)
                                                       for i in range(5000)))
    con.execute("COMMIT")
    con.close()
    ls = FakeLitestream(path, unique_memory_url("join"))
    ls.sync()
    con = api.connect(ls.storage.url, impl=core, poll_interval=0, boot_set="off",
                      verify_max_size=0)
    try:
        file = file_of(con)
        replica = file.replica
        replica.reader.hedger.base_latency = lambda: 0.020
        sql = "SELECT a.v, b.w FROM b JOIN a ON a.id = b.a_id ORDER BY b.id DESC LIMIT 5"
        assert len(con.execute(sql).fetchall()) == 5
        graph = file.planner.plans[sql].graph
        roots = dict(con.execute("SELECT name, rootpage FROM sqlite_schema").fetchall())
        assert graph is not None and graph.scattered == {roots["a"]}
        assert replica.key_ahead().wait_idle() and replica.tops.wait_idle()
        assert replica.key_ahead().stats()["jobs"] == 1
        replica.reader.read_page(replica.current, 1)
        time.sleep(0.05)
        view = replica.current

        def cached_children(root: int) -> tuple[int, int]:
            kids = btree_children(replica.reader.read_page(view, root), root) or []
            return sum(((view.index.lookup(c)[0] << 32) | c) in replica.cache
                       for c in kids), len(kids)

        hit, total = cached_children(roots["a"])
        assert total > 2 and hit == total  # a: keyed by b's column values, fanned out
        hit, total = cached_children(roots["b"])
        assert total > 2 and hit <= 2  # b: the driver, read from its edge
        point = "SELECT a.v, b.w FROM b JOIN a ON a.id = b.a_id WHERE b.id = ?"
        assert con.execute(point, (4321,)).fetchall() == [("a" * 100, "b" * 100)]
        assert file.planner.plans[point].graph is None  # no driver: SQLite is as early
    finally:
        con.close()
