"""The read-replica VFS over memory storage, on both core twins."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from types import ModuleType

import apsw
import pytest

import litevfs
import litevfs.vfs.connect as api
from litevfs.errors import ConfigError, EmptyReplicaError, NotFoundError, TxNotAvailableError
from litevfs.engine.poller import poll_once
from litevfs.session import open_replicas
from litevfs.storage.memory import memory_store

from .vfs_support import FakeLitestream, make_accounts_db, transfer, unique_memory_url

QUERIES = [
    "SELECT count(*), sum(balance) FROM accounts",
    "SELECT * FROM accounts WHERE id = 17",
    "SELECT id, name FROM accounts WHERE name BETWEEN 'name-00050' AND 'name-00070' ORDER BY name",
    "SELECT id, length(data), hex(substr(data, 5000, 8)) FROM blobs ORDER BY id",
    "SELECT a.id, b.id FROM accounts a JOIN accounts b ON b.id = a.id + 1 WHERE a.id < 30",
]


@pytest.fixture
def primary(tmp_path: Path) -> FakeLitestream:
    make_accounts_db(tmp_path / "primary.db").close()
    ls = FakeLitestream(tmp_path / "primary.db", unique_memory_url())
    ls.sync()
    return ls


def connect(ls: FakeLitestream, core: ModuleType, **options: object) -> apsw.Connection:
    options.setdefault("poll_interval", 0)  # tests drive poll_once themselves
    return api.connect(ls.storage.url, impl=core, **options)


def replica_of(con: apsw.Connection):  # type: ignore[no-untyped-def]
    (replica,) = [r for r in open_replicas() if r.storage.url in con.filename or True][:1]
    return replica


def expected(ls: FakeLitestream, sql: str) -> list[tuple]:
    con = sqlite3.connect(ls.db_path)
    try:
        return [tuple(r) for r in con.execute(sql)]
    finally:
        con.close()


def rows(con: apsw.Connection, sql: str) -> list[tuple]:
    return [tuple(r) for r in con.execute(sql)]


def test_queries_match_the_primary(primary: FakeLitestream, core: ModuleType) -> None:
    con = connect(primary, core)
    for sql in QUERIES:
        assert rows(con, sql) == expected(primary, sql), sql
    assert rows(con, "PRAGMA integrity_check") == [("ok",)]
    con.close()


def test_sees_new_commits_between_transactions(primary: FakeLitestream, core: ModuleType) -> None:
    con = connect(primary, core)
    from litevfs.session import open_replicas

    replica = next(r for r in open_replicas() if r.storage.url == primary.storage.url)
    before = rows(con, QUERIES[0])
    db = primary.db()
    transfer(db, 1, 2, 5)
    db.execute("INSERT INTO accounts VALUES(100000, 'new', 0)")
    primary.sync()
    # Inside an open read transaction the old view stays.
    con.execute("BEGIN")
    assert rows(con, QUERIES[0]) == before
    assert poll_once(replica.state, replica.views)
    assert rows(con, QUERIES[0]) == before
    assert rows(con, "SELECT litestream_txid()") == [("0000000000000001",)]
    con.execute("COMMIT")
    assert rows(con, QUERIES[0]) == expected(primary, QUERIES[0])
    assert rows(con, "PRAGMA litestream_txid") == [("0000000000000002",)]
    con.close()


def test_l1_compaction_then_l0_deletion(primary: FakeLitestream, core: ModuleType) -> None:
    con = connect(primary, core)
    replica = next(r for r in open_replicas() if r.storage.url == primary.storage.url)
    db = primary.db()
    l0 = [primary.sync()]
    for i in range(4):
        transfer(db, i, i + 10, 7)
        l0.append(primary.sync())
    poll_once(replica.state, replica.views)
    assert rows(con, QUERIES[0]) == expected(primary, QUERIES[0])
    # Compact 2..5 into L1, then delete those L0 files: the reader must follow.
    primary.compact(1, l0[1:])
    poll_once(replica.state, replica.views)
    primary.storage.delete_ltx(l0)
    replica.cache.clear()
    for sql in QUERIES:
        assert rows(con, sql) == expected(primary, sql), sql
    con.close()


def test_lagging_l1_never_regresses_newer_l0_pages(primary: FakeLitestream, core: ModuleType) -> None:
    con = connect(primary, core)
    replica = next(r for r in open_replicas() if r.storage.url == primary.storage.url)
    db = primary.db()
    files = []
    for i in range(3):
        transfer(db, 1, 2, 1)
        files.append(primary.sync())
    poll_once(replica.state, replica.views)  # at TXID 4
    primary.compact(1, files[:2])  # L1 [2..3] arrives late, older than the L0 at 4
    poll_once(replica.state, replica.views)
    replica.cache.clear()
    assert rows(con, "SELECT balance FROM accounts WHERE id IN (1, 2) ORDER BY id") == [(997,), (1003,)]
    con.close()


def test_missing_file_replans(primary: FakeLitestream, core: ModuleType) -> None:
    db = primary.db()
    files = [primary.sync()]
    for i in range(3):
        transfer(db, i, i + 1, 3)
        files.append(primary.sync())
    con = connect(primary, core)
    # Compaction and deletion happen with no poll in between (a stalled follower).
    primary.compact(1, files)
    primary.storage.delete_ltx(files)
    replica = next(r for r in open_replicas() if r.storage.url == primary.storage.url)
    replica.cache.clear()
    for sql in QUERIES:
        assert rows(con, sql) == expected(primary, sql), sql
    con.close()


def test_open_lists_again_when_a_planned_file_vanishes(primary: FakeLitestream,
                                                         core: ModuleType,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Compaction can delete an L0 file between an open's LIST and its index read: the
    open lists again instead of failing (a gone bucket still fails at once)."""
    from litevfs.ltx.format import FileInfo
    from litevfs.storage.memory import MemoryStorage

    db = primary.db()
    primary.sync()
    transfer(db, 1, 2, 3)
    last = primary.sync()
    real = MemoryStorage.list_all
    calls = []

    def stale_list_all(self: MemoryStorage) -> dict:
        levels = real(self)
        calls.append(1)
        if len(calls) <= 2:  # the first two LISTs still show a file that is gone
            ghost = FileInfo(0, last.max_txid + 1, last.max_txid + 1, 500, last.created_at)
            levels = {**levels, 0: [*levels.get(0, []), ghost]}
        return levels

    monkeypatch.setattr(MemoryStorage, "list_all", stale_list_all)
    con = litevfs.connect(primary.storage.url, impl=core, poll_interval=0)
    try:
        assert len(calls) == 3
        for sql in QUERIES:
            assert rows(con, sql) == expected(primary, sql), sql
    finally:
        con.close()
    calls.clear()
    monkeypatch.setattr(MemoryStorage, "list_all",
                        lambda self: {0: [FileInfo(0, 1, 999, 500, 0.0)]})
    with pytest.raises(NotFoundError):  # vanishing on every LIST: the open gives up
        litevfs.connect(primary.storage.url, impl=core, poll_interval=0)


def test_shrink_trims_the_index(primary: FakeLitestream, core: ModuleType) -> None:
    con = connect(primary, core)
    replica = next(r for r in open_replicas() if r.storage.url == primary.storage.url)
    db = primary.db()
    db.execute("DELETE FROM blobs")
    db.execute("VACUUM")
    primary.sync()
    poll_once(replica.state, replica.views)
    view = replica.current
    assert view.index.max_pgno <= view.commit
    assert con.execute("PRAGMA page_count").fetchall()[0][0] == view.commit
    assert rows(con, "PRAGMA integrity_check") == [("ok",)]
    for sql in QUERIES:
        assert rows(con, sql) == expected(primary, sql), sql
    con.close()


@pytest.mark.parametrize("page_size", [1024, 65536])
def test_page_sizes_and_block_encoding(tmp_path: Path, core: ModuleType, page_size: int) -> None:
    make_accounts_db(tmp_path / "p.db", page_size=page_size).close()
    ls = FakeLitestream(tmp_path / "p.db", unique_memory_url(), encoding="block")
    ls.sync()
    con = connect(ls, core)
    for sql in QUERIES:
        assert rows(con, sql) == expected(ls, sql), sql
    con.close()


def test_writes_are_refused(primary: FakeLitestream, core: ModuleType) -> None:
    con = connect(primary, core)
    with pytest.raises(apsw.ReadOnlyError):
        con.execute("INSERT INTO accounts VALUES(999999, 'x', 0)")
    con.close()


def test_uri_open_shares_state_and_counts_refs(primary: FakeLitestream, core: ModuleType) -> None:
    name = f"litevfs-{core.__name__.rsplit('.', 1)[-1]}"
    api.register(name, core)
    from urllib.parse import quote

    uri = (f"file:any.db?vfs={name}&replica_url={quote(primary.storage.url, safe='')}"
           "&poll_interval=0")
    a = apsw.Connection(uri, flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI)
    b = apsw.Connection(uri, flags=apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_URI)
    mine = [r for r in open_replicas() if r.storage.url == primary.storage.url]
    assert len(mine) == 1 and mine[0].refcount == 2
    assert rows(a, QUERIES[0]) == rows(b, QUERIES[0]) == expected(primary, QUERIES[0])
    assert rows(b, "SELECT litestream_txid()") == [("0000000000000001",)]
    with pytest.raises(apsw.ReadOnlyError):
        b.execute("DELETE FROM accounts")
    a.close()
    b.close()
    assert not [r for r in open_replicas() if r.storage.url == primary.storage.url]


def test_bad_uri_option_is_named(primary: FakeLitestream, core: ModuleType) -> None:
    with pytest.raises(ConfigError, match="pol_interval"):
        connect(primary, core, pol_interval="1s")
    name = f"litevfs-cfg-{core.__name__}"
    api.register(name, core)
    with pytest.raises(ConfigError, match="cache_size"):
        apsw.Connection(f"file:x.db?vfs={name}&replica_url={primary.storage.url}"
                        "&cache_size=lots", flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI)


def test_empty_replica_times_out(core: ModuleType) -> None:
    with pytest.raises(TxNotAvailableError, match="no LTX files"):
        api.connect(unique_memory_url(), impl=core, open_timeout="300ms", poll_interval="50ms")


def test_unfetchable_page_is_an_ioerror(primary: FakeLitestream, core: ModuleType) -> None:
    con = connect(primary, core, fetch_retries=1, verify_max_size=0)  # ranged reads
    store = memory_store(primary.storage.url.removeprefix("memory://"))
    store.fail_next(1000, ops=["read"])
    with pytest.raises(apsw.IOError, match="cannot read page"):
        rows(con, "SELECT sum(length(data)) FROM blobs")
    store.clear_failures()
    assert rows(con, QUERIES[3]) == expected(primary, QUERIES[3])
    con.close()


def test_concurrent_readers_share_fetches(primary: FakeLitestream, core: ModuleType) -> None:
    cons = [connect(primary, core) for _ in range(4)]
    want = expected(primary, QUERIES[3])
    errors: list[BaseException] = []

    def run(c: apsw.Connection) -> None:
        try:
            for _ in range(5):
                assert rows(c, QUERIES[3]) == want
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(c,)) for c in cons]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for c in cons:
        c.close()


def test_time_travel_pragma_and_functions(primary: FakeLitestream, core: ModuleType) -> None:
    from litevfs.engine.timetravel import format_ms

    db = primary.db()
    stamps = [primary.timestamp_ms]
    for i in range(3):
        transfer(db, 1, 2, 10)
        primary.sync()
        stamps.append(primary.timestamp_ms)
    con = connect(primary, core)
    assert rows(con, "SELECT litestream_txid()") == [("0000000000000004",)]
    assert rows(con, "SELECT litestream_time()") == [(format_ms(stamps[-1]),)]
    # Just after the second file's timestamp: the state as of TXID 2.
    moment = format_ms(stamps[1] + 500)
    con.execute(f"PRAGMA litestream_time = '{moment}'")
    assert rows(con, "PRAGMA litestream_txid") == [("0000000000000002",)]
    assert rows(con, "SELECT litestream_time()") == [(moment,)]
    assert rows(con, "SELECT balance FROM accounts WHERE id = 1") == [(990,)]
    # Set inside a transaction: applied when it ends.
    con.execute("BEGIN")
    assert rows(con, "SELECT balance FROM accounts WHERE id = 1") == [(990,)]
    con.execute("SELECT litestream_set_time('LATEST')")
    assert rows(con, "SELECT balance FROM accounts WHERE id = 1") == [(990,)]
    con.execute("COMMIT")
    assert rows(con, "SELECT balance FROM accounts WHERE id = 1") == [(970,)]
    assert rows(con, "SELECT litestream_txid()") == [("0000000000000004",)]
    with pytest.raises(apsw.SQLError, match="invalid timestamp"):
        con.execute("PRAGMA litestream_time = 'the day after tomorrow'")
    with pytest.raises(apsw.SQLError, match="no backup files"):
        con.execute("PRAGMA litestream_time = '1999-01-01T00:00:00Z'")
    with pytest.raises(apsw.SQLError, match="read-only"):
        con.execute("PRAGMA litestream_txid = '1'")
    assert rows(con, "SELECT litestream_lag()") == [(-1,)]  # never polled (poll_interval 0)
    con.close()


def test_time_parsing() -> None:
    from datetime import datetime, timedelta, timezone

    from litevfs.engine.timetravel import TimeTravelError, format_time, parse_time

    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    assert parse_time("5 minutes ago", now) == now - timedelta(minutes=5)
    assert parse_time("2 hours ago", now) == now - timedelta(hours=2)
    assert parse_time("yesterday", now) == now - timedelta(days=1)
    assert parse_time("2026-01-02T03:04:05.123456789Z") == datetime(
        2026, 1, 2, 3, 4, 5, 123456, tzinfo=timezone.utc)
    assert format_time(datetime(2026, 1, 2, 3, 4, 5, 123000, tzinfo=timezone.utc)) == \
        "2026-01-02T03:04:05.123Z"
    assert format_time(parse_time("2026-01-02T03:04:05+02:00")) == "2026-01-02T03:04:05+02:00"
    with pytest.raises(TimeTravelError, match="RFC3339"):
        parse_time("soon")


# -- an empty replica: fail at once unless asked to wait --------------------------------


def test_empty_replica_fails_at_once_by_default(core: ModuleType) -> None:
    started = time.monotonic()
    with pytest.raises(EmptyReplicaError, match="no LTX files.*wait_for_replica"):
        api.connect(unique_memory_url(), impl=core)
    assert time.monotonic() - started < 0.5


def test_wait_for_replica_waits_for_the_first_file(tmp_path: Path, core: ModuleType) -> None:
    url = unique_memory_url()
    ls = FakeLitestream(tmp_path / "late.db", url)
    db = ls.db()
    db.execute("CREATE TABLE t(x)")
    db.execute("INSERT INTO t VALUES (42)")
    db.close()
    timer = threading.Timer(0.3, ls.sync)
    timer.start()
    started = time.monotonic()
    con = api.connect(url, impl=core, wait_for_replica="forever", poll_interval="50ms")
    try:
        assert time.monotonic() - started >= 0.25
        assert con.execute("SELECT x FROM t").fetchall() == [(42,)]
    finally:
        con.close()
        timer.join()


def test_wait_for_replica_bound_and_the_old_option_name(core: ModuleType) -> None:
    for options in ({"wait_for_replica": "300ms"}, {"open_timeout": "300ms"}):
        started = time.monotonic()
        with pytest.raises(EmptyReplicaError, match="waited 0.3s"):
            api.connect(unique_memory_url(), impl=core, poll_interval="50ms", **options)
        assert time.monotonic() - started >= 0.3
    from litevfs.config import Config

    def wait(**kw: object) -> float:
        return Config.resolve({"replica_url": "memory://x", **kw}).wait_for_replica

    assert wait() == 0 and wait(wait_for_replica=True) == float("inf")
    assert wait(wait_for_replica="off") == 0 and wait(open_timeout="2s") == 2
    assert wait(open_timeout="2s", wait_for_replica="1s") == 1


def test_write_mode_on_an_empty_replica_starts_a_database(tmp_path: Path,
                                                          core: ModuleType) -> None:
    con = api.connect(unique_memory_url(), impl=core, write=True,
                      buffer_path=str(tmp_path / "w.wbuf"))
    try:
        con.execute("CREATE TABLE t(x)")
    finally:
        con.close()
