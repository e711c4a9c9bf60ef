"""Write mode through apsw on the memory backend: both twins."""

from __future__ import annotations

import sqlite3
import threading

import apsw
import pytest

import litevfs
from litevfs.ltx.encoder import encode_file
from litevfs.session import open_replicas
from litevfs.engine.restore import restore
from litevfs.storage.memory import MemoryStorage
from litevfs.vfs.registry import file_of
from tests.vfs_support import unique_memory_url

PS = 4096


@pytest.fixture
def url():
    return unique_memory_url("wvfs")


def wconnect(url, tmp_path, core, name="w", **kw):
    kw.setdefault("sync_interval", 0)
    kw.setdefault("poll_interval", 0)
    kw.setdefault("compaction_levels", "off")
    kw.setdefault("snapshot_interval", 0)
    kw.setdefault("buffer_path", str(tmp_path / f"{name}.wbuf"))
    return litevfs.connect(url, write=True, impl=core, **kw)


def restored_rows(url, tmp_path, sql="SELECT * FROM t ORDER BY id", name="out.db"):
    out = tmp_path / name
    out.unlink(missing_ok=True)
    restore(MemoryStorage(url.removeprefix("memory://")), out)
    con = sqlite3.connect(out)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_read_your_writes_sync_and_restore(url, tmp_path, core):
    con = wconnect(url, tmp_path, core)
    con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    con.execute("INSERT INTO t(v) VALUES ('a'), ('b')")
    assert con.execute("SELECT v FROM t ORDER BY id").fetchall() == [("a",), ("b",)]
    assert con.execute("PRAGMA litestream_write_enabled").fetchone() == ("1",)
    assert con.execute("PRAGMA litevfs_sync").fetchone() == ("0000000000000001",)
    with con:
        con.executemany("INSERT INTO t(v) VALUES (?)", [("x" * 500,) for _ in range(300)])
    assert litevfs.sync(con, timeout=5) == 2
    assert litevfs.write_status(con)["pending_transactions"] == 0
    con.execute("DELETE FROM t WHERE id > 100")
    con.execute("VACUUM")  # shrinks the file: xTruncate
    size = file_of(con).xFileSize()
    assert litevfs.sync(con) == 3 and file_of(con).xFileSize() == size
    assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    rows = con.execute("SELECT * FROM t ORDER BY id").fetchall()
    con.close()
    assert restored_rows(url, tmp_path) == rows and len(rows) == 100


def test_rollback_and_large_transaction_with_cache_spill(url, tmp_path, core):
    con = wconnect(url, tmp_path, core)
    con.execute("PRAGMA cache_size=10")  # forces spills of dirty pages mid-transaction
    con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
    con.execute("INSERT INTO t(v) VALUES (zeroblob(100))")
    con.execute("BEGIN")
    con.executemany("INSERT INTO t(v) VALUES (randomblob(3000))", [()] * 200)
    con.execute("ROLLBACK")
    assert con.execute("SELECT count(*) FROM t").fetchone() == (1,)
    with con:
        con.executemany("INSERT INTO t(v) VALUES (randomblob(3000))", [()] * 200)
    assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    litevfs.sync(con)
    digest = con.execute("SELECT count(*), sum(length(v)) FROM t").fetchone()
    con.close()
    assert restored_rows(url, tmp_path, "SELECT count(*), sum(length(v)) FROM t") == [digest]


def test_connections_share_state_and_locks(url, tmp_path, core):
    a = wconnect(url, tmp_path, core)
    a.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    b = litevfs.connect(url, write=True, impl=core)  # shares the replica (first opener's options)
    a.set_busy_timeout(0)
    b.set_busy_timeout(0)
    b.execute("INSERT INTO t(v) VALUES ('from b')")
    assert a.execute("SELECT v FROM t").fetchall() == [("from b",)]  # no sync needed
    a.execute("BEGIN IMMEDIATE")
    with pytest.raises(apsw.BusyError):
        b.execute("INSERT INTO t(v) VALUES ('blocked')")  # one writer in the process
    a.execute("INSERT INTO t(v) VALUES ('from a')")
    assert b.execute("SELECT count(*) FROM t").fetchone() == (1,)  # not committed yet
    a.execute("COMMIT")
    assert b.execute("SELECT count(*) FROM t").fetchone() == (2,)
    b.execute("BEGIN")
    assert b.execute("SELECT count(*) FROM t").fetchone() == (2,)
    with pytest.raises(apsw.BusyError):  # a reader holds SHARED: the commit must wait
        a.execute("INSERT INTO t(v) VALUES ('later')")
    b.execute("COMMIT")
    a.execute("INSERT INTO t(v) VALUES ('later')")
    assert b.execute("SELECT count(*) FROM t").fetchone() == (3,)
    b.close()
    a.close()
    assert len(restored_rows(url, tmp_path)) == 3  # close synced


def test_reader_keeps_snapshot_while_sync_installs(url, tmp_path, core):
    con = wconnect(url, tmp_path, core)
    con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
    with con:
        con.executemany("INSERT INTO t(v) VALUES (randomblob(1000))", [()] * 500)
    reader = litevfs.connect(url, impl=core, write=True)
    reader.execute("BEGIN")
    before = reader.execute("SELECT count(*), sum(length(v)) FROM t").fetchone()
    replica = open_replicas()[-1]
    replica.cache.clear()
    litevfs.sync(con)  # installs the view and drops the frozen layer under the reader
    replica.cache.clear()
    assert reader.execute("SELECT count(*), sum(length(v)) FROM t").fetchone() == before
    reader.execute("COMMIT")
    reader.close()
    con.close()


def test_filesize_not_regressed_by_own_upload(url, tmp_path, core):
    from litevfs.write import syncer as syncer
    from litevfs.write.fence import file_checksum

    con = wconnect(url, tmp_path, core)
    con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
    writer = file_of(con).writer
    buf = writer.buffer
    upto = buf.last_seq  # a sync starts: it cuts here...
    pages, commit, floor = buf.unsynced_merged(upto)
    con.executemany("INSERT INTO t(v) VALUES (randomblob(3000))", [()] * 50)  # ...db grows
    grown = file_of(con).xFileSize()
    data = syncer.encode_upload(writer, pages, commit, floor, 1)
    info = writer.state.storage.write_ltx(0, 1, 1, data, if_absent=True)
    done = syncer._done_for(writer, 1, upto, file_checksum(data), info, data)
    writer.record_done(done, exact=pages)  # the view has commit 2 pages, local more
    assert writer.state.current.txid == 1 and writer.base_txid == 1
    assert writer.state.current.commit < grown // PS
    assert file_of(con).xFileSize() == grown
    assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert con.execute("SELECT count(*) FROM t").fetchone() == (50,)
    con.close()
    assert restored_rows(url, tmp_path, "SELECT count(*) FROM t") == [(50,)]


def test_conflict_error_export_and_discard(url, tmp_path, core):
    con = wconnect(url, tmp_path, core)
    con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    con.execute("INSERT INTO t(v) VALUES ('synced')")
    litevfs.sync(con)
    # Another writer (another machine) takes TXID 2.
    src = tmp_path / "other.db"
    other = sqlite3.connect(src)
    other.execute("PRAGMA journal_mode=DELETE")
    other.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    other.execute("INSERT INTO t(v) VALUES ('theirs')")
    other.commit()
    other.close()
    data = src.read_bytes()
    pages = [(i // PS + 1, data[i:i + PS]) for i in range(0, len(data), PS)]
    MemoryStorage(url.removeprefix("memory://")).write_ltx(
        0, 2, 2, encode_file(pages, page_size=PS, commit=len(pages), min_txid=2, max_txid=2),
        if_absent=True)
    con.execute("INSERT INTO t(v) VALUES ('mine')")
    with pytest.raises(litevfs.ConflictError):
        litevfs.sync(con)
    with pytest.raises(apsw.ReadOnlyError):  # SQLite keeps only the code; the message is here:
        con.execute("INSERT INTO t(v) VALUES ('refused')")
    assert "another writer" in litevfs.write_status(con)["conflict"]
    assert con.execute("PRAGMA litestream_write_enabled").fetchone() == ("0",)
    out = tmp_path / "export.db"
    litevfs.export_unsynced(con, str(out))
    exp = sqlite3.connect(out)
    assert exp.execute("SELECT v FROM t ORDER BY id").fetchall() == [("synced",), ("mine",)]
    exp.close()
    assert litevfs.discard_unsynced(con) == 1
    assert con.execute("SELECT v FROM t").fetchall() == [("theirs",)]
    con.execute("INSERT INTO t(v) VALUES ('after')")
    assert litevfs.sync(con) == 3
    con.close()
    assert [r[1] for r in restored_rows(url, tmp_path)] == ["theirs", "after"]


def test_close_with_unsynced_conflict_raises(url, tmp_path, core):
    con = wconnect(url, tmp_path, core)
    con.execute("CREATE TABLE t(x)")
    MemoryStorage(url.removeprefix("memory://")).write_ltx(
        0, 1, 1, encode_file([(1, bytes(PS))], page_size=PS, commit=1, min_txid=1, max_txid=1),
        if_absent=True)
    with pytest.raises(apsw.Error):
        con.close()
    assert (tmp_path / "w.wbuf").exists()  # kept for export


def test_write_enabled_pragma_toggle(url, tmp_path, core):
    con = wconnect(url, tmp_path, core)
    con.execute("CREATE TABLE t(x)")
    assert con.execute("PRAGMA litestream_write_enabled=0").fetchone() == ("0",)
    assert litevfs.write_status(con)["txid"] == 1  # disabling synced first
    with pytest.raises(apsw.ReadOnlyError):
        con.execute("INSERT INTO t VALUES (1)")
    assert con.execute("SELECT count(*) FROM t").fetchone() == (0,)
    con.execute("PRAGMA litestream_write_enabled=1")
    con.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(apsw.SQLError):
        con.execute("PRAGMA litestream_write_enabled=maybe")
    con.close()


def test_uri_open_and_env(url, tmp_path, core, monkeypatch):
    monkeypatch.setenv("LITESTREAM_WRITE_ENABLED", "true")
    monkeypatch.setenv("LITESTREAM_SYNC_INTERVAL", "50ms")
    monkeypatch.setenv("LITESTREAM_BUFFER_PATH", str(tmp_path / "env.wbuf"))
    vfs = litevfs.register("litevfs-wtest-" + core.__name__.rsplit(".", 1)[-1], core)
    con = apsw.Connection(f"file:x.db?vfs={vfs.vfs_name}&replica_url={url}&poll_interval=0",
                          flags=apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_URI)
    con.execute("PRAGMA journal_mode=MEMORY")
    con.execute("CREATE TABLE t(x)")
    con.execute("INSERT INTO t VALUES (42)")
    storage = MemoryStorage(url.removeprefix("memory://"))
    for _ in range(100):
        if storage.list_level(0):
            break
        threading.Event().wait(0.05)
    assert storage.list_level(0)  # the 50 ms sync thread uploaded it
    assert (tmp_path / "env.wbuf").exists()
    con.close()
    assert restored_rows(url, tmp_path, "SELECT x FROM t") == [(42,)]


def test_non_default_page_size_refused_on_new_database(url, tmp_path, core):
    con = wconnect(url, tmp_path, core)
    con.execute("PRAGMA page_size=8192")
    with pytest.raises(apsw.Error):
        con.execute("CREATE TABLE t(x)")
    con.close()


def test_threads_write_read_and_sync_concurrently(url, tmp_path, core):
    con = wconnect(url, tmp_path, core, sync_interval="20ms")
    con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
    errors: list[BaseException] = []
    done = threading.Event()

    def write() -> None:
        try:
            w = litevfs.connect(url, write=True, impl=core)
            w.set_busy_timeout(5000)
            for i in range(300):
                w.execute("INSERT INTO t(v) VALUES (randomblob(?))", (100 + (i % 7) * 900,))
            w.close()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            done.set()

    def read() -> None:
        try:
            r = litevfs.connect(url, write=True, impl=core)
            r.set_busy_timeout(5000)
            last = 0
            while not done.is_set():
                with r:
                    n, = r.execute("SELECT count(*) FROM t").fetchone()
                    assert r.execute("SELECT count(*) FROM t WHERE length(v) >= 100"
                                     ).fetchone() == (n,)
                assert n >= last
                last = n
            r.close()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=write)] + [threading.Thread(target=read) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    import traceback
    assert not errors, ["".join(traceback.format_exception(e)) for e in errors]
    assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    con.close()
    assert restored_rows(url, tmp_path, "SELECT count(*) FROM t") == [(300,)]
