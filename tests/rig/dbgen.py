"""SQLite test databases (stdlib ``sqlite3``, WAL mode) for tests and benchmarks.

Schema (every database made here has it)::

    kv(id INTEGER PRIMARY KEY, k TEXT UNIQUE, v TEXT)             -- text, unique index
    items(id INTEGER PRIMARY KEY, name TEXT, grp INTEGER, note TEXT, payload BLOB)
        + index items_grp_name(grp, name)
    blobs(id INTEGER PRIMARY KEY, tag TEXT, data BLOB)           -- 2-4 pages each: overflow chains
    accounts(id INTEGER PRIMARY KEY, balance INTEGER NOT NULL)    -- sum(balance) is invariant

Content is deterministic for a given seed and call sequence, so two databases built the
same way have the same :func:`digest`. All writers use one transaction per call.
"""

from __future__ import annotations

import hashlib
import os
import random
import sqlite3
from dataclasses import dataclass
from pathlib import Path

ACCOUNTS = 100
INITIAL_BALANCE = 1000
TOTAL_BALANCE = ACCOUNTS * INITIAL_BALANCE

_WORDS = (
    "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike "
    "november oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee "
    "zulu litestream sqlite page btree overflow index replica snapshot compaction"
).split()

SCHEMA = """
CREATE TABLE IF NOT EXISTS kv(id INTEGER PRIMARY KEY, k TEXT UNIQUE, v TEXT);
CREATE TABLE IF NOT EXISTS items(id INTEGER PRIMARY KEY, name TEXT, grp INTEGER,
                                 note TEXT, payload BLOB);
CREATE INDEX IF NOT EXISTS items_grp_name ON items(grp, name);
CREATE TABLE IF NOT EXISTS blobs(id INTEGER PRIMARY KEY, tag TEXT, data BLOB);
CREATE TABLE IF NOT EXISTS accounts(id INTEGER PRIMARY KEY, balance INTEGER NOT NULL);
"""


def connect(path: str | os.PathLike[str], *, timeout: float = 10.0) -> sqlite3.Connection:
    """A connection in autocommit mode (we issue BEGIN/COMMIT ourselves), WAL, busy timeout."""
    conn = sqlite3.connect(str(path), timeout=timeout, isolation_level=None)
    conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
    return conn


def _rng(seed: int, *salt: object) -> random.Random:
    # str seeds are hashed with SHA-512 by random.Random: stable across processes
    return random.Random(":".join(map(str, (seed, *salt))))


def _text(rng: random.Random, lo: int, hi: int) -> str:
    n = rng.randint(lo, hi)
    return " ".join(rng.choice(_WORDS) for _ in range(n))


def _next_id(conn: sqlite3.Connection, table: str) -> int:
    return (conn.execute(f"SELECT coalesce(max(id), 0) FROM {table}").fetchone()[0]) + 1


def create_db(
    path: str | os.PathLike[str],
    page_size: int = 4096,
    *,
    rows: int = 200,
    blobs: int = 4,
    seed: int = 0,
) -> Path:
    """Create a fresh WAL database with the schema above and some content.

    ``page_size`` is any SQLite page size (512..65536, power of two). Returns the path.
    """
    path = Path(path)
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    conn = connect(path)
    try:
        conn.execute(f"PRAGMA page_size = {int(page_size)}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        assert mode.lower() == "wal", mode
        conn.executescript(SCHEMA)
        got = conn.execute("PRAGMA page_size").fetchone()[0]
        if got != page_size:
            raise ValueError(f"page size {page_size} not accepted (got {got})")
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO accounts(id, balance) VALUES (?, ?)",
            [(i, INITIAL_BALANCE) for i in range(1, ACCOUNTS + 1)],
        )
        conn.execute("COMMIT")
    finally:
        conn.close()
    if rows or blobs:
        grow(path, rows, blobs=blobs, seed=seed)
    return path


def grow(
    db: str | os.PathLike[str] | sqlite3.Connection,
    n: int,
    *,
    blobs: int = 0,
    seed: int = 0,
) -> None:
    """Add ``n`` rows to kv and items and ``blobs`` overflow blobs, in one transaction."""
    conn, own = _conn(db)
    try:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        conn.execute("BEGIN IMMEDIATE")
        first = _next_id(conn, "items")
        rng = _rng(seed, "grow", first)
        kv_first = _next_id(conn, "kv")
        conn.executemany(
            "INSERT INTO kv(id, k, v) VALUES (?, ?, ?)",
            [(kv_first + i, f"key-{kv_first + i:08d}-{rng.randrange(1 << 30):x}",
              _text(rng, 2, 12)) for i in range(n)],
        )
        conn.executemany(
            "INSERT INTO items(id, name, grp, note, payload) VALUES (?, ?, ?, ?, ?)",
            [(first + i, _text(rng, 1, 3), rng.randrange(50), _text(rng, 5, 40),
              rng.randbytes(rng.randint(0, 200))) for i in range(n)],
        )
        if blobs:
            b_first = _next_id(conn, "blobs")
            conn.executemany(
                "INSERT INTO blobs(id, tag, data) VALUES (?, ?, ?)",
                [(b_first + i, f"blob-{b_first + i}",
                  rng.randbytes(rng.randint(2 * page_size, 4 * page_size)))
                 for i in range(blobs)],
            )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    finally:
        if own:
            conn.close()


def update(db: str | os.PathLike[str] | sqlite3.Connection, n: int = 20, *, seed: int = 0) -> None:
    """Rewrite ``n`` random existing items/kv rows (changes pages without growing much)."""
    conn, own = _conn(db)
    try:
        conn.execute("BEGIN IMMEDIATE")
        ids = [r[0] for r in conn.execute("SELECT id FROM items")]
        rng = _rng(seed, "update", len(ids), sum(ids[-5:]))
        for i in rng.sample(ids, min(n, len(ids))):
            conn.execute("UPDATE items SET note = ?, grp = ? WHERE id = ?",
                         (_text(rng, 5, 40), rng.randrange(50), i))
        conn.execute("UPDATE kv SET v = v || ' x' WHERE id % 7 = ?", (rng.randrange(7),))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    finally:
        if own:
            conn.close()


def transfer(db: str | os.PathLike[str] | sqlite3.Connection, n: int = 10, *, seed: int = 0) -> None:
    """``n`` random transfers between accounts in one transaction (sum stays constant)."""
    conn, own = _conn(db)
    try:
        conn.execute("BEGIN IMMEDIATE")
        rng = _rng(seed, "transfer",
                   conn.execute("SELECT sum(balance * id) FROM accounts").fetchone()[0])
        for _ in range(n):
            a, b = rng.sample(range(1, ACCOUNTS + 1), 2)
            amount = rng.randint(1, 50)
            conn.execute("UPDATE accounts SET balance = balance - ? WHERE id = ?", (amount, a))
            conn.execute("UPDATE accounts SET balance = balance + ? WHERE id = ?", (amount, b))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    finally:
        if own:
            conn.close()


def shrink(db: str | os.PathLike[str] | sqlite3.Connection, keep_fraction: float = 0.1,
           *, vacuum: bool = True) -> None:
    """DELETE most rows (and every overflow blob but one) and VACUUM: the file shrinks.

    Two commits (the DELETE, then the VACUUM); ``vacuum=False`` stops after the first
    (then call :func:`vacuum`)."""
    conn, own = _conn(db)
    try:
        conn.execute("BEGIN IMMEDIATE")
        modulus = max(1, round(1 / keep_fraction)) if keep_fraction > 0 else 0
        if modulus:
            conn.execute("DELETE FROM items WHERE id % ? != 0", (modulus,))
            conn.execute("DELETE FROM kv WHERE id % ? != 0", (modulus,))
        else:
            conn.execute("DELETE FROM items")
            conn.execute("DELETE FROM kv")
        conn.execute("DELETE FROM blobs WHERE id != (SELECT min(id) FROM blobs)")
        conn.execute("COMMIT")
        if vacuum:
            conn.execute("VACUUM")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    finally:
        if own:
            conn.close()


def vacuum(db: str | os.PathLike[str] | sqlite3.Connection) -> None:
    conn, own = _conn(db)
    try:
        conn.execute("VACUUM")
    finally:
        if own:
            conn.close()


def _conn(db: str | os.PathLike[str] | sqlite3.Connection) -> tuple[sqlite3.Connection, bool]:
    if isinstance(db, sqlite3.Connection):
        return db, False
    return connect(db), True


# -- inspection ----------------------------------------------------------------------


@dataclass(frozen=True)
class DbState:
    """What a database contains, cheap to compare: content digest plus a few counts."""

    digest: str
    page_count: int
    page_size: int
    counts: tuple[tuple[str, int], ...]
    balance_total: int

    @property
    def rows(self) -> dict[str, int]:
        return dict(self.counts)


def digest(conn_or_path: str | os.PathLike[str] | sqlite3.Connection) -> str:
    return state(conn_or_path).digest


def state(conn_or_path: str | os.PathLike[str] | sqlite3.Connection) -> DbState:
    """Logical content (every table's rows in rowid order, the schema) as a DbState.

    Works with any connection object offering ``execute().fetchall()`` semantics
    (sqlite3, apsw cursors) when given a connection; with a path it opens read-only.
    """
    if isinstance(conn_or_path, (str, os.PathLike)):
        conn = sqlite3.connect(f"file:{os.fspath(conn_or_path)}?mode=ro", uri=True)
        own = True
    else:
        conn, own = conn_or_path, False
    try:
        return state_from(lambda sql: list(conn.execute(sql)))
    finally:
        if own:
            conn.close()


def state_from(query) -> DbState:  # type: ignore[no-untyped-def]
    """:func:`state` for anything that can run a query: ``query(sql) -> list of rows``."""
    h = hashlib.sha256()
    tables = [r[0] for r in query(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
        "ORDER BY name")]
    for sql, in query("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name"):
        h.update(sql.encode())
    counts = []
    for t in tables:
        n = 0
        h.update(b"\x00table:" + t.encode())
        for row in query(f'SELECT * FROM "{t}" ORDER BY rowid'):
            h.update(repr(tuple(row)).encode())
            n += 1
        counts.append((t, n))
    total = query("SELECT coalesce(sum(balance), 0) FROM accounts")[0][0] \
        if "accounts" in tables else 0
    page_count = query("PRAGMA page_count")[0][0]
    page_size = query("PRAGMA page_size")[0][0]
    return DbState(h.hexdigest(), page_count, page_size, tuple(counts), total)


def integrity_ok(path: str | os.PathLike[str]) -> bool:
    conn = sqlite3.connect(f"file:{os.fspath(path)}?mode=ro", uri=True)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()


# -- big databases for benchmarks ----------------------------------------------------


def make_db(
    path: str | os.PathLike[str],
    page_size: int = 4096,
    approx_bytes: int = 64 << 20,
    *,
    seed: int = 0,
    blob_fraction: float = 0.1,
    batch: int = 5000,
) -> Path:
    """A WAL database of about ``approx_bytes`` (rows, indexes, overflow blobs).

    Built with journaling off and one big transaction (200 MB in a few seconds), then
    switched to WAL and checkpointed, so the result is a plain file plus an empty WAL.
    """
    path = Path(path)
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    conn = connect(path)
    try:
        conn.execute(f"PRAGMA page_size = {int(page_size)}")
        conn.execute("PRAGMA journal_mode = OFF")
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute("PRAGMA cache_size = -65536")
        conn.executescript(SCHEMA)
        rng = random.Random(seed)
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO accounts(id, balance) VALUES (?, ?)",
                         [(i, INITIAL_BALANCE) for i in range(1, ACCOUNTS + 1)])
        next_item = next_kv = next_blob = 1
        blob_bytes = 0
        while True:
            size = conn.execute("PRAGMA page_count").fetchone()[0] * page_size
            if size >= approx_bytes:
                break
            conn.executemany(
                "INSERT INTO kv(id, k, v) VALUES (?, ?, ?)",
                [(next_kv + i, f"key-{next_kv + i:09d}", _text(rng, 2, 12))
                 for i in range(batch // 5)])
            next_kv += batch // 5
            conn.executemany(
                "INSERT INTO items(id, name, grp, note, payload) VALUES (?, ?, ?, ?, ?)",
                [(next_item + i, _text(rng, 1, 3), rng.randrange(1000), _text(rng, 5, 30),
                  rng.randbytes(rng.randint(50, 400))) for i in range(batch)])
            next_item += batch
            # keep overflow blobs at about blob_fraction of the bytes written
            while blob_bytes < blob_fraction * size:
                data = rng.randbytes(rng.randint(2 * page_size, 8 * page_size))
                conn.execute("INSERT INTO blobs(id, tag, data) VALUES (?, ?, ?)",
                             (next_blob, f"blob-{next_blob}", data))
                next_blob += 1
                blob_bytes += len(data)
        conn.execute("COMMIT")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return path
