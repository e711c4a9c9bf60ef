"""Public write-mode helpers on a connection: ``sync``, ``write_status``,
``export_unsynced`` (``write/export.py``) and ``discard_unsynced`` (drops them so the
writer continues from the remote state)."""

from __future__ import annotations

import os
from typing import Any

import apsw

from ..errors import LiteVFSError
from ..write.export import export_buffer
from .registry import file_of


def prepare_connection(con: apsw.Connection) -> None:
    """Write-mode defaults for a connection: the buffer record is the atomic commit, so
    SQLite's rollback journal stays in memory (no journal file, no fsync); a 5 s busy
    timeout, since connections of the process lock each other as on a local file."""
    con.set_busy_timeout(5000)
    con.execute("PRAGMA journal_mode=MEMORY").fetchall()


def _writer(con: apsw.Connection, *, reading: bool = False):
    """The write state of ``con``'s replica; ``reading``: a read-only member will do."""
    replica = file_of(con).replica
    replica.wait_joined()
    writer = replica.writer
    if writer is None or (writer.read_only and not reading):
        raise LiteVFSError("this connection's replica is not in write mode")
    return writer


def sync(con: apsw.Connection, timeout: float | None = None) -> int:
    """Upload every transaction committed so far (by any connection of any process of
    this machine to the replica: they share one buffer) and return the TXID that holds
    them; if another process is uploading, wait for it first. Raises ConflictError if another
    writer advanced the replica, a StorageError if storage keeps failing (nothing is
    lost: the buffer keeps the transactions), SyncTimeout after ``timeout`` seconds.

    ``con`` is a write-mode connection (``litevfs.connect(url, write=True)``); others
    raise ``LiteVFSError``. Commits are durable in the bucket once this returns; the
    background syncer does the same every ``sync_interval`` without being asked."""
    return _writer(con).sync(timeout)


def write_status(con: apsw.Connection) -> dict[str, Any]:
    """Write-mode state of ``con``'s replica, as a dict: ``enabled``, ``txid`` (the
    position synced), ``pending_transactions`` (committed on this machine, by any
    process, not yet uploaded), ``buffer_path``, ``syncing`` (this process is the one
    elected to sync the machine's commits), ``conflict`` (the message once another
    writer advanced the replica, else None) and ``last_error`` (the last failed
    upload, else None). A read-only connection gets the same view of the machine's
    shared state (``read_only`` True, ``enabled`` False) when it joined it."""
    w = _writer(con, reading=True)
    w.refresh()
    return {"enabled": w.enabled and not w.read_only, "read_only": w.read_only,
            "txid": w.base_txid,
            "pending_transactions": w.buffer.transactions,
            "buffer_path": w.buffer_path,
            "syncing": bool(w.syncer is not None and w.syncer.duty),
            "polling": w.polls_for_readers(),
            "conflict": None if w.conflict is None else str(w.conflict),
            "last_error": None if w.last_error is None else str(w.last_error)}


def discard_unsynced(con: apsw.Connection) -> int:
    """Drop the unsynced transactions (clearing a conflict); returns how many.

    After a ``ConflictError``, this lets the writer continue from the remote state;
    call ``export_unsynced`` first to keep a copy of what is dropped."""
    return _writer(con).discard_unsynced()


def export_unsynced(source: apsw.Connection | str, out_path: str) -> str:
    """Write the buffer's view of the database (replica at the buffer's base TXID plus
    every unsynced transaction) to ``out_path``. ``source`` is a write-mode connection
    or the path of a buffer file no process holds.

    Returns ``out_path``, a plain SQLite file (for a manual merge after a conflict);
    refuses to overwrite an existing file. The same as ``litevfs unsynced export``."""
    if isinstance(source, apsw.Connection):
        writer = _writer(source)
        with writer.lock:
            export_buffer(writer.buffer_path, out_path)
    else:
        export_buffer(os.fspath(source), out_path)
    return out_path
