"""The persistent page cache's storage engine (see ``diskcache.py`` for how reads use it).

Persistent local page cache (opt-in: ``cache_dir`` / ``LITEVFS_CACHE_DIR``).

LTX objects are immutable, so a decoded page is cached under (replica, object,
frame offset) and never needs invalidating. The object's identity includes its size
and listing time, so an object re-created under the same name (a replica reset)
is a different object, never a stale hit.

Storage choice: one SQLite database per cache directory (``pages.sqlite3``, WAL
mode) rather than one file per page run. It gives atomic, crash-safe writes and
safe sharing between processes for free (readers never block, writers take
SQLite's lock for a few milliseconds with a busy timeout), and eviction is one
indexed DELETE. Every entry carries the xxhash64 of the decoded page, checked on
read: a mismatch (bit rot, a torn file, a foreign writer) is a miss and the entry is
dropped, never wrong data. Pages are optionally zstandard-compressed. The size is
bounded: when the file's used pages exceed ``cache_dir_size``, the least recently
used entries go (access times are refreshed at most once per ``TOUCH_AFTER`` s, so
hits cost no writes). All writes happen on one background thread per process, in
batches; a busy or failing disk only loses cache entries.

Decoded page indexes of LTX files are cached too (same identity), so a restart
does not refetch a big snapshot's index; boot sets (``bootset.py``) live in the
``meta`` table.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import sqlite3
import threading
import time
from array import array
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import xxhash

from .._worker import Worker
from ..ltx.format import FileInfo, Header
from ..storage.fetch import pack_index, unpack_index  # noqa: F401 - used by callers too

log = logging.getLogger("litevfs.diskcache")

DB_NAME = "pages.sqlite3"
TOUCH_AFTER = 600  # seconds: refresh an entry's access time at most this often
# Interior b-tree pages (the upper levels every query walks) are stored as if used this
# much later: least-recently-used eviction takes leaf pages first, so a big database's
# upper levels stay on disk and a point query needs one GET, for its leaf.
INTERIOR_BOOST = 30 * 86400
SETUP_ATTEMPTS = 8  # tries to create/open the cache file while another process holds it
SETUP_WAIT = 5.0  # seconds a read waits for the file to be opened (else a miss)
CODEC_RAW, CODEC_ZSTD = 0, 1
_IN_BATCH = 256  # offsets per primary-key lookup query (SQLite's bound-parameter limit)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects(id INTEGER PRIMARY KEY, ident TEXT UNIQUE NOT NULL);
CREATE TABLE IF NOT EXISTS pages(
    obj INTEGER NOT NULL, off INTEGER NOT NULL, pgno INTEGER NOT NULL,
    codec INTEGER NOT NULL, hash INTEGER NOT NULL, atime INTEGER NOT NULL,
    data BLOB NOT NULL, PRIMARY KEY(obj, off));
CREATE INDEX IF NOT EXISTS pages_atime ON pages(atime);
CREATE TABLE IF NOT EXISTS indexes(
    obj INTEGER PRIMARY KEY, hash INTEGER NOT NULL, atime INTEGER NOT NULL, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, hash INTEGER NOT NULL, data BLOB NOT NULL);
"""


def _zstandard() -> Any:
    import zstandard  # only when cache_compress is on: not on every cached open

    return zstandard


def _h64(data: bytes) -> int:
    """xxhash64 as a signed 64-bit integer (what SQLite stores)."""
    value = xxhash.xxh64_intdigest(data)
    return value - (1 << 64) if value >= 1 << 63 else value


def _interior(pgno: int, page: bytes) -> bool:
    return len(page) > 100 and page[100 if pgno == 1 else 0] in (2, 5)


def object_ident(replica_id: str, info: FileInfo) -> str:
    return (f"{replica_id}|{info.level:04x}/{info.min_txid:016x}-{info.max_txid:016x}"
            f"|{info.size}|{int(info.created_at)}")


class DiskStore(Worker):
    """The cache directory of one process (shared with other processes). Its worker
    opens the file (off the open's critical path), checks it, then applies the queued
    writes in batches."""

    def __init__(self, directory: str, max_bytes: int, compress: bool = False,
                 on_unusable: Callable[[str, str], None] | None = None) -> None:
        super().__init__("litevfs-diskcache")
        self._on_unusable = on_unusable  # (directory, reason), when the file cannot be used
        os.makedirs(directory, exist_ok=True)
        self.directory = directory
        self.path = os.path.join(directory, DB_NAME)
        self.max_bytes = max_bytes
        self.compress = compress
        self._local = threading.local()
        self._ids: dict[str, int] = {}
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=4096)
        self._zc: Any = None
        self._zd: Any = None
        self.writes = self.evictions = self.write_errors = self.corrupt = 0
        self._closed = False
        self._gen = 0  # bumped when a damaged file is replaced: readers reconnect
        self._ready = threading.Event()  # set once the file is usable (or found not to be)
        self._setup_error: BaseException | None = None
        self._con: sqlite3.Connection | None = None  # the worker's connection
        self._since_check = 0
        self._phase = "setup"  # then "write" (or "disabled" when the file is unusable)
        # The file is opened (and created, WAL mode, schema) on the worker, so a cold
        # open overlaps it with its LIST; readers wait for it (_reader).
        self.start()
        atexit.register(self.flush, 2.0)

    def step(self) -> float:
        if self._phase == "setup":
            try:
                self._setup()
            except BaseException as exc:  # noqa: BLE001 - the cache is off, never the replica
                if self._on_unusable is not None:
                    self._on_unusable(self.directory, f"cannot be used ({exc})")
                else:
                    log.warning("persistent page cache in %s disabled: %s", self.directory, exc)
                self._setup_error = exc
                self._ready.set()
                self._closed = True
                self._phase = "disabled"
                return 0.0
            self._ready.set()
            self._check()
            self._phase = "write"
            return 0.0
        try:
            items = [self._queue.get(timeout=1.0)]
        except queue.Empty:
            return 0.0
        if self._phase == "disabled":  # answer flushes, drop writes
            if items[0][0] == "flush":
                items[0][1].set()
            return 0.0
        while len(items) < 256:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        self._write_batch(items)
        return 0.0

    def _check(self) -> None:
        """Full structural check, after readers were let in (it reads the whole file:
        ~0.5 s for 1 GiB). A damaged file is set aside and replaced; readers reconnect.
        Damage never yields wrong data meanwhile: every entry is hash-checked."""
        try:
            con = self._connect()
            try:
                ok = con.execute("PRAGMA quick_check(1)").fetchone()[0] == "ok"
            finally:
                con.close()
            if ok:
                return
            reason = "quick_check failed"
        except sqlite3.OperationalError:
            return  # locked, busy, I/O: not evidence of damage (a subclass of the next)
        except sqlite3.DatabaseError as exc:
            reason = str(exc)
        except sqlite3.Error:
            return
        log.warning("page cache %s is unusable (%s); starting a new one", self.path, reason)
        try:
            self._replace()
        except (OSError, sqlite3.Error) as exc:
            log.warning("page cache %s could not be replaced: %s", self.path, exc)

    # -- connections -----------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=2.0, isolation_level=None,
                              check_same_thread=False)
        con.execute("PRAGMA busy_timeout=2000")
        con.execute("PRAGMA synchronous=NORMAL")
        return con

    def _setup(self) -> None:
        for attempt in range(1, SETUP_ATTEMPTS + 1):
            try:
                self._create()
                return
            except sqlite3.OperationalError as exc:
                # "database is locked": another process is creating the file or switching
                # it to WAL right now. Never a reason to set its file aside: try again.
                # Anything else (read-only, cannot open) will not change: give up now.
                busy = "locked" in str(exc) or "busy" in str(exc)
                if attempt == SETUP_ATTEMPTS or not busy:
                    raise
                time.sleep(0.05 * attempt)
            except sqlite3.DatabaseError as exc:  # not a database / torn: start over
                log.warning("page cache %s is unusable (%s); starting a new one",
                            self.path, exc)
                self._replace()
                return

    def _replace(self) -> None:
        for suffix in ("", "-wal", "-shm"):
            try:
                os.replace(self.path + suffix, f"{self.path}{suffix}.corrupt-{os.getpid()}")
            except FileNotFoundError:
                pass
        self._create()
        self._ids.clear()
        self._gen += 1

    def _create(self) -> None:
        con = self._connect()
        try:
            con.execute("PRAGMA auto_vacuum=INCREMENTAL")  # only effective on a new file
            con.execute("PRAGMA journal_mode=WAL")
            con.executescript(_SCHEMA)
        finally:
            con.close()

    def _reader(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is not None and self._local.gen == self._gen:
            return con
        if not self._ready.wait(SETUP_WAIT) or self._setup_error is not None:
            raise sqlite3.OperationalError("the page cache is not available")
        if con is not None:
            con.close()
        self._local.gen = self._gen
        con = self._local.con = self._connect()
        return con

    def _object_id(self, ident: str) -> int | None:
        oid = self._ids.get(ident)
        if oid is None:
            row = self._reader().execute(
                "SELECT id FROM objects WHERE ident=?", (ident,)).fetchone()
            if row is None:
                return None
            oid = self._ids[ident] = row[0]
        return oid

    # -- codec -----------------------------------------------------------------------
    def _encode(self, page: bytes) -> tuple[int, bytes]:
        if not self.compress:
            return CODEC_RAW, page
        if self._zc is None:
            self._zc = _zstandard().ZstdCompressor(level=3)
        packed = self._zc.compress(page)
        return (CODEC_ZSTD, packed) if len(packed) < len(page) else (CODEC_RAW, page)

    def _decode(self, codec: int, data: bytes) -> bytes:
        if codec == CODEC_RAW:
            return bytes(data)
        if codec == CODEC_ZSTD:
            dctx = getattr(self._local, "zd", None)
            if dctx is None:
                dctx = self._local.zd = _zstandard().ZstdDecompressor()
            return dctx.decompress(data)  # type: ignore[no-any-return]
        raise ValueError(f"unknown codec {codec}")

    # -- reads -----------------------------------------------------------------------
    def get_frames(self, ident: str, frames: Sequence[tuple[int, int, int]]
                   ) -> dict[int, bytes]:
        """Verified pages of ``frames`` ((pgno, offset, size), offset order) found in the
        cache, by pgno. Damaged entries are dropped and reported missing."""
        try:
            oid = self._object_id(ident)
            if oid is None:
                return {}
            con = self._reader()
        except sqlite3.Error as exc:
            log.debug("page cache read failed: %s", exc)
            return {}
        wanted = {off: pgno for pgno, off, _ in frames}
        found: dict[int, bytes] = {}
        now = int(time.time())
        stale: list[tuple[int, int]] = []  # (new access time, offset)
        # Exactly the wanted offsets (primary-key probes), a batch at a time: a sparse
        # set (a boot set spread over a big snapshot) must not read every cached frame
        # between its first and last offset into memory.
        offsets = list(wanted)
        for i in range(0, len(offsets), _IN_BATCH):
            batch = offsets[i:i + _IN_BATCH]
            try:
                rows = con.execute(
                    "SELECT off, pgno, codec, hash, atime, data FROM pages WHERE obj=? AND "
                    f"off IN ({','.join('?' * len(batch))})", (oid, *batch)).fetchall()
            except sqlite3.Error as exc:
                log.debug("page cache read failed: %s", exc)
                break
            self._check_rows(oid, rows, wanted, found, stale, now)
        if stale:
            self._submit(("touch", oid, stale))
        return found

    def _check_rows(self, oid: int, rows: list[Any], wanted: dict[int, int],
                    found: dict[int, bytes], stale: list[tuple[int, int]], now: int) -> None:
        """Hash-check ``rows`` of object ``oid`` into ``found`` (by pgno); damaged
        entries are dropped, entries not used for a while are noted in ``stale``."""
        for off, pgno, codec, digest, atime, data in rows:
            if wanted.get(off) != pgno:
                continue
            try:
                page = self._decode(codec, data)
            except Exception:  # noqa: BLE001 - damaged compressed data is a miss
                page = b""
            if _h64(page) != digest:
                self.corrupt += 1
                self._submit(("drop", oid, off))
                continue
            found[pgno] = page
            if now - atime > TOUCH_AFTER:
                stale.append((now + INTERIOR_BOOST if _interior(pgno, page) else now, off))

    def get_index(self, ident: str) -> bytes | None:
        try:
            oid = self._object_id(ident)
            if oid is None:
                return None
            row = self._reader().execute(
                "SELECT hash, atime, data FROM indexes WHERE obj=?", (oid,)).fetchone()
        except sqlite3.Error:
            return None
        if row is None:
            return None
        digest, atime, data = row
        data = bytes(data)
        if _h64(data) != digest:
            self.corrupt += 1
            return None
        now = int(time.time())
        if now - atime > TOUCH_AFTER:
            self._submit(("touch_index", oid, now))
        return data

    def get_meta(self, key: str) -> bytes | None:
        try:
            row = self._reader().execute(
                "SELECT hash, data FROM meta WHERE key=?", (key,)).fetchone()
        except sqlite3.Error:
            return None
        if row is None or _h64(bytes(row[1])) != row[0]:
            return None
        return bytes(row[1])

    # -- writes (background) ---------------------------------------------------------
    def _submit(self, item: Any) -> None:
        if self._closed:
            return
        try:
            self._queue.put_nowait(item)
        except queue.Full:  # the disk is slower than the network: skip, never block reads
            pass

    def put_pages(self, ident: str, pages: Iterable[tuple[int, int, bytes]]) -> None:
        """Queue (offset, pgno, page) entries of one object for writing."""
        self._submit(("pages", ident, list(pages)))

    def put_index(self, ident: str, blob: bytes) -> None:
        self._submit(("index", ident, blob))

    def put_meta(self, key: str, data: bytes) -> None:
        self._submit(("meta", key, data))

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until queued writes are on disk (True) or ``timeout`` passes."""
        if self._closed:  # nothing can be queued (closed, or disabled at setup)
            return self._setup_error is None
        done = threading.Event()
        self._submit(("flush", done))
        return done.wait(timeout)

    def close(self) -> None:
        self.flush(2.0)
        self._closed = True

    def _write_batch(self, items: list[Any]) -> None:
        flushes = [i[1] for i in items if i[0] == "flush"]
        con = self._con
        try:
            if con is None:
                con = self._con = self._connect()
            self._since_check += self._apply(con, [i for i in items if i[0] != "flush"])
            if self._since_check >= 64 * 1024 * 1024 or (flushes and self._since_check):
                self._since_check = 0
                self._evict(con)
        except sqlite3.Error as exc:
            self.write_errors += 1
            log.debug("page cache write failed: %s", exc)
            try:
                if con is not None:
                    con.execute("ROLLBACK")
            except sqlite3.Error:
                pass
        for event in flushes:
            event.set()

    def _oid(self, con: sqlite3.Connection, ident: str) -> int:
        oid = self._ids.get(ident)
        if oid is None:
            con.execute("INSERT OR IGNORE INTO objects(ident) VALUES (?)", (ident,))
            oid = con.execute("SELECT id FROM objects WHERE ident=?", (ident,)).fetchone()[0]
            self._ids[ident] = oid
        return oid

    def _apply(self, con: sqlite3.Connection, items: list[Any]) -> int:
        if not items:
            return 0
        written = 0
        now = int(time.time())
        con.execute("BEGIN IMMEDIATE")
        for item in items:
            kind = item[0]
            if kind == "pages":
                oid = self._oid(con, item[1])
                rows = []
                for off, pgno, page in item[2]:
                    codec, data = self._encode(page)
                    atime = now + INTERIOR_BOOST if _interior(pgno, page) else now
                    rows.append((oid, off, pgno, codec, _h64(page), atime, data))
                    written += len(data)
                con.executemany("INSERT OR REPLACE INTO pages VALUES (?,?,?,?,?,?,?)", rows)
                self.writes += len(rows)
            elif kind == "index":
                oid = self._oid(con, item[1])
                con.execute("INSERT OR REPLACE INTO indexes VALUES (?,?,?,?)",
                            (oid, _h64(item[2]), now, item[2]))
                written += len(item[2])
            elif kind == "meta":
                con.execute("INSERT OR REPLACE INTO meta VALUES (?,?,?)",
                            (item[1], _h64(item[2]), item[2]))
            elif kind == "touch":
                con.executemany("UPDATE pages SET atime=? WHERE obj=? AND off=?",
                                [(atime, item[1], off) for atime, off in item[2]])
            elif kind == "touch_index":
                con.execute("UPDATE indexes SET atime=? WHERE obj=?", (item[2], item[1]))
            elif kind == "drop":
                con.execute("DELETE FROM pages WHERE obj=? AND off=?", (item[1], item[2]))
        con.execute("COMMIT")
        return written

    def used_bytes(self, con: sqlite3.Connection | None = None) -> int:
        con = con or self._reader()
        pages = con.execute("PRAGMA page_count").fetchone()[0]
        free = con.execute("PRAGMA freelist_count").fetchone()[0]
        size = con.execute("PRAGMA page_size").fetchone()[0]
        return int((pages - free) * size)

    def _evict(self, con: sqlite3.Connection) -> None:
        """Drop least recently used pages (and indexes) until under 90 % of the bound."""
        target = int(self.max_bytes * 0.9)
        used = self.used_bytes(con)
        if used <= self.max_bytes:
            return
        while used > target:
            count = con.execute("SELECT count(*) FROM pages").fetchone()[0]
            if count == 0:
                con.execute("DELETE FROM indexes WHERE obj IN "
                            "(SELECT obj FROM indexes ORDER BY atime LIMIT 16)")
            else:
                share = max(1, int(count * (used - target) / max(used, 1)) + 1)
                con.execute("DELETE FROM pages WHERE rowid IN "
                            "(SELECT rowid FROM pages ORDER BY atime LIMIT ?)", (share,))
                self.evictions += share
            con.execute("PRAGMA incremental_vacuum")
            new_used = self.used_bytes(con)
            if new_used >= used:
                break
            used = new_used
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")


# -- per replica -------------------------------------------------------------------------

PRELOAD_WAIT_S = 2.0  # longest an open waits for a preload of the index it wants


class ReplicaDiskCache:
    """One replica's view of a shared :class:`DiskStore`, with its own counters."""

    def __init__(self, store: DiskStore, replica_id: str) -> None:
        self.store = store
        self.replica_id = replica_id
        self.hits = self.misses = self.index_hits = self.index_misses = 0
        self._preloaded: dict[str, tuple[Header, array, array, array]] = {}
        self._preloading: dict[str, threading.Event] = {}  # ident -> set when read
        self._preload_lock = threading.Lock()

    def ident(self, info: FileInfo) -> str:
        return object_ident(self.replica_id, info)

    def get_frames(self, info: FileInfo, frames: Sequence[tuple[int, int, int]]
                   ) -> dict[int, bytes]:
        found = self.store.get_frames(self.ident(info), frames)
        self.hits += len(found)
        self.misses += len(frames) - len(found)
        return found

    def put_frames(self, info: FileInfo, frames: Sequence[tuple[int, int, int]],
                   pages: dict[int, bytes]) -> None:
        self.store.put_pages(self.ident(info), [(off, pgno, pages[pgno])
                                                for pgno, off, _ in frames if pgno in pages])

    def preload_index(self, info: FileInfo) -> None:
        """Read ``info``'s cached index ahead (while the open's LIST is in flight), for
        one later ``get_index`` of the very same object (same identity string)."""
        ident = self.ident(info)
        done = threading.Event()
        with self._preload_lock:
            if ident in self._preloading or ident in self._preloaded:
                return
            self._preloading[ident] = done
        try:
            blob = self.store.get_index(ident)
            parsed = unpack_index(blob) if blob is not None else None
            if parsed is not None:
                self._preloaded[ident] = parsed
        finally:
            with self._preload_lock:
                del self._preloading[ident]
            done.set()

    def drop_preloaded(self) -> None:
        """Forget preloaded indexes the open did not use (objects compacted away)."""
        self._preloaded.clear()

    def get_index(self, info: FileInfo) -> tuple[Header, array, array, array] | None:
        ident = self.ident(info)
        with self._preload_lock:
            reading = self._preloading.get(ident)
        if reading is not None:  # the boot loader is reading this very index: wait for
            reading.wait(PRELOAD_WAIT_S)  # it rather than read (and check) 4 MiB twice
        parsed = self._preloaded.pop(ident, None)
        if parsed is not None:
            self.index_hits += 1
            return parsed
        blob = self.store.get_index(ident)
        parsed = unpack_index(blob) if blob is not None else None
        if parsed is None:
            self.index_misses += 1
        else:
            self.index_hits += 1
        return parsed

    def put_index(self, info: FileInfo, header: Header, pgnos: array, offsets: array,
                  sizes: array) -> None:
        self.store.put_index(self.ident(info), pack_index(header.pack(), pgnos, offsets, sizes))

    def get_meta(self, name: str) -> bytes | None:
        return self.store.get_meta(f"{self.replica_id}|{name}")

    def put_meta(self, name: str, data: bytes) -> None:
        self.store.put_meta(f"{self.replica_id}|{name}", data)

    def flush(self, timeout: float = 10.0) -> bool:
        return self.store.flush(timeout)

    def stats(self) -> dict[str, Any]:
        s = self.store
        error = s._setup_error
        return {"enabled": error is None and not s._closed, "dir": s.directory,
                "reason": None if error is None else str(error),
                "hits": self.hits, "misses": self.misses,
                "index_hits": self.index_hits, "index_misses": self.index_misses,
                "writes": s.writes, "evictions": s.evictions, "corrupt": s.corrupt,
                "write_errors": s.write_errors, "max_bytes": s.max_bytes,
                "compress": s.compress}
