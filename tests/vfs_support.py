"""Helpers for the VFS tests: a tiny in-process "litestream" writing LTX files of a
real SQLite database into memory storage, one file per sync, plus compaction."""

from __future__ import annotations

import itertools
import random
import sqlite3
import time
from pathlib import Path

from litevfs.ltx.encoder import encode_file
from litevfs.ltx.format import FileInfo, lock_pgno
from litevfs.storage.memory import MemoryStorage

_names = itertools.count(1)


def unique_memory_url(prefix: str = "vfs") -> str:
    return f"memory://{prefix}-{next(_names)}-{time.monotonic_ns()}"


class FakeLitestream:
    """Diff a rollback-journal SQLite file against the last sync and upload the changed
    pages as the next L0 file (TXID + 1), as litestream does with WAL frames."""

    def __init__(self, db_path: Path, url: str, encoding: str = "frame") -> None:
        self.db_path = db_path
        self.storage = MemoryStorage(url.removeprefix("memory://"))
        self.encoding = encoding
        self.txid = 0
        self.pages: dict[int, bytes] = {}
        self.page_size = 0
        self.timestamp_ms = int(time.time() * 1000) - 3_600_000

    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.db_path, isolation_level=None)

    def _read_pages(self) -> tuple[int, dict[int, bytes]]:
        data = self.db_path.read_bytes()
        page_size = int.from_bytes(data[16:18], "big")
        page_size = 65536 if page_size == 1 else page_size
        pages = {i // page_size + 1: data[i:i + page_size] for i in range(0, len(data), page_size)}
        pages.pop(lock_pgno(page_size), None)
        return page_size, pages

    def sync(self, level: int = 0, *, full: bool = False) -> FileInfo:
        page_size, pages = self._read_pages()
        self.page_size = page_size
        commit = max(pages) if pages else 0
        changed = sorted(
            (p, d) for p, d in pages.items() if full or self.txid == 0 or self.pages.get(p) != d)
        self.txid += 1
        self.timestamp_ms += 1000
        data = encode_file(changed, page_size=page_size, commit=commit, min_txid=self.txid,
                           max_txid=self.txid, timestamp_ms=self.timestamp_ms,
                           encoding=self.encoding)
        self.pages = pages
        return self.storage.write_ltx(level, self.txid, self.txid, data)

    def compact(self, level: int, files: list[FileInfo]) -> FileInfo:
        """Merge ``files`` (ascending, contiguous) into one file of ``level``."""
        from litevfs.ltx.decoder import decode_file

        merged: dict[int, bytes] = {}
        commit = 0
        for info in files:
            decoded = decode_file(self.storage.read_range(info))
            merged.update(decoded.pages)
            commit = decoded.header.commit
            timestamp = decoded.header.timestamp
        merged = {p: d for p, d in merged.items() if p <= commit}
        lo, hi = files[0].min_txid, files[-1].max_txid
        data = encode_file(sorted(merged.items()), page_size=self.page_size, commit=commit,
                           min_txid=lo, max_txid=hi, timestamp_ms=timestamp,
                           encoding=self.encoding)
        return self.storage.write_ltx(level, lo, hi, data)

    def snapshot(self) -> FileInfo:
        """A level-9 snapshot [1..txid] of the current file."""
        page_size, pages = self._read_pages()
        data = encode_file(sorted(pages.items()), page_size=page_size, commit=max(pages),
                           min_txid=1, max_txid=self.txid, timestamp_ms=self.timestamp_ms,
                           encoding=self.encoding)
        return self.storage.write_ltx(9, 1, self.txid, data)


def make_accounts_db(path: Path, *, page_size: int = 4096, accounts: int = 200,
                     blob_rows: int = 20, blob_size: int = 9000) -> sqlite3.Connection:
    con = sqlite3.connect(path, isolation_level=None)
    con.execute(f"PRAGMA page_size={page_size}")
    con.execute("PRAGMA journal_mode=DELETE")
    con.execute("CREATE TABLE accounts(id INTEGER PRIMARY KEY, name TEXT, balance INTEGER)")
    con.execute("CREATE TABLE blobs(id INTEGER PRIMARY KEY, data BLOB)")
    con.execute("CREATE INDEX accounts_name ON accounts(name)")
    con.execute("BEGIN")
    for i in range(accounts):
        con.execute("INSERT INTO accounts VALUES(?,?,?)", (i, f"name-{i:05d}", 1000))
    for i in range(blob_rows):
        # incompressible, so files are bigger than one index read
        con.execute("INSERT INTO blobs VALUES(?,?)", (i, random.Random(i).randbytes(blob_size)))
    con.execute("COMMIT")
    return con


def transfer(con: sqlite3.Connection, a: int, b: int, amount: int) -> None:
    con.execute("BEGIN")
    con.execute("UPDATE accounts SET balance = balance - ? WHERE id = ?", (amount, a))
    con.execute("UPDATE accounts SET balance = balance + ? WHERE id = ?", (amount, b))
    con.execute("COMMIT")
