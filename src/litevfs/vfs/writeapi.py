"""Public write-mode helpers: ``sync``, ``write_status``, ``export_unsynced``,
``discard_unsynced``, and the ``litevfs unsynced`` CLI subcommands.

After a conflict (another writer advanced the replica) the unsynced transactions
stay in the buffer file. ``export_unsynced`` materialises them as a standalone
SQLite database: the replica at the TXID the buffer builds on, plus every buffered
transaction (for a manual merge); ``discard_unsynced`` drops them so the writer can
continue from the remote state.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from typing import Any

import apsw

from ..errors import LiteVFSError, TxNotAvailableError, WriteBufferError
from ..write.buffer import WriteBuffer, read_buffer


def prepare_connection(con: apsw.Connection) -> None:
    """Write-mode defaults for a connection: the buffer record is the atomic commit, so
    SQLite's rollback journal stays in memory (no journal file, no fsync); a 5 s busy
    timeout, since connections of the process lock each other as on a local file."""
    con.set_busy_timeout(5000)
    con.execute("PRAGMA journal_mode=MEMORY").fetchall()


def _writer(con: apsw.Connection):
    from .registry import file_of

    writer = file_of(con).replica.writer
    if writer is None:
        raise LiteVFSError("this connection's replica is not in write mode")
    return writer


def sync(con: apsw.Connection, timeout: float | None = None) -> int:
    """Upload every transaction committed so far (by any connection of this process to
    the replica) and return the TXID that holds them. Raises ConflictError if another
    writer advanced the replica, a StorageError if storage keeps failing (nothing is
    lost: the buffer keeps the transactions), SyncTimeout after ``timeout`` seconds.

    ``con`` is a write-mode connection (``litevfs.connect(url, write=True)``); others
    raise ``LiteVFSError``. Commits are durable in the bucket once this returns; the
    background syncer does the same every ``sync_interval`` without being asked."""
    return _writer(con).sync(timeout)


def write_status(con: apsw.Connection) -> dict[str, Any]:
    """Write-mode state of ``con``'s replica, as a dict: ``enabled``, ``txid`` (the
    position synced), ``pending_transactions`` (committed, not yet uploaded),
    ``buffer_path``, ``conflict`` (the message once another writer advanced the
    replica, else None) and ``last_error`` (the last failed upload, else None)."""
    w = _writer(con)
    return {"enabled": w.enabled, "txid": w.base_txid,
            "pending_transactions": w.buffer.transactions,
            "buffer_path": w.buffer_path,
            "conflict": None if w.conflict is None else str(w.conflict),
            "last_error": None if w.last_error is None else str(w.last_error)}


def discard_unsynced(con: apsw.Connection) -> int:
    """Drop the unsynced transactions (clearing a conflict); returns how many.

    After a ``ConflictError``, this lets the writer continue from the remote state;
    call ``export_unsynced`` first to keep a copy of what is dropped."""
    return _writer(con).discard_unsynced()


def _materialise(url: str, base_txid: int, page_size: int,
                 txns: list[tuple[dict[int, bytes], int]], out_path: str) -> str:
    from ..engine.restore import restore
    from ..storage import open_storage

    if os.path.exists(out_path):
        raise FileExistsError(f"output file already exists: {out_path}")
    directory = os.path.dirname(os.path.abspath(out_path))
    fd, tmp = tempfile.mkstemp(prefix=".litevfs-export-", dir=directory)
    os.close(fd)
    os.unlink(tmp)
    try:
        if base_txid:
            storage = open_storage(url)
            try:
                restore(storage, tmp, txid=base_txid)
            finally:
                storage.close()
        else:
            open(tmp, "wb").close()
        with open(tmp, "r+b") as out:
            commit = None
            for pages, commit in txns:
                for pgno, page in pages.items():
                    out.seek((pgno - 1) * page_size)
                    out.write(page)
            if commit is not None:
                out.truncate(commit * page_size)
        os.replace(tmp, out_path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return out_path


def export_unsynced(source: apsw.Connection | str, out_path: str) -> str:
    """Write the buffer's view of the database (replica at the buffer's base TXID plus
    every unsynced transaction) to ``out_path``. ``source`` is a write-mode connection
    or the path of a buffer file no process holds.

    Returns ``out_path``, a plain SQLite file (for a manual merge after a conflict);
    refuses to overwrite an existing file. The same as ``litevfs unsynced export``."""
    if isinstance(source, apsw.Connection):
        writer = _writer(source)
        with writer.lock:
            path = writer.buffer_path
            info, txns = read_buffer(path)
    else:
        info, txns = read_buffer(os.fspath(source))
    try:
        return _materialise(info["url"], info["base_txid"], info["page_size"], txns, out_path)
    except TxNotAvailableError as exc:
        raise LiteVFSError(
            f"TXID {info['base_txid']:016x} the buffer builds on is no longer in the replica "
            f"({exc}); the raw transactions can still be read with "
            "litevfs.write.buffer.read_buffer()") from exc


# -- CLI ------------------------------------------------------------------------------


def _cmd_export(args: argparse.Namespace) -> int:
    path = export_unsynced(args.buffer, args.output)
    info, txns = read_buffer(args.buffer)
    print(f"exported {len(txns)} unsynced transactions of {info['url']} (base TXID "
          f"{info['base_txid']:016x}) to {path}")
    return 0


def _cmd_discard(args: argparse.Namespace) -> int:
    info, txns = read_buffer(args.buffer)
    try:  # refuse while a live writer holds the buffer
        buf, _ = WriteBuffer.open(args.buffer, url=info["url"], page_size=info["page_size"],
                                  base_txid=info["base_txid"])
    except WriteBufferError as exc:
        raise LiteVFSError(str(exc)) from None
    buf.close(remove=True)
    print(f"discarded {len(txns)} unsynced transactions of {info['url']}")
    return 0


def add_cli(sub: Any) -> None:
    """Add ``litevfs unsynced export|discard`` to the CLI's subparsers."""
    p = sub.add_parser("unsynced", help="export or discard a write buffer's unsynced transactions")
    actions = p.add_subparsers(dest="action", required=True)
    e = actions.add_parser("export", help="write base state + unsynced transactions to a db")
    e.add_argument("buffer", help="write buffer file (buffer_path)")
    e.add_argument("-o", "--output", required=True, help="output database path (must not exist)")
    e.set_defaults(func=_cmd_export)
    d = actions.add_parser("discard", help="delete the buffer (refused while a writer holds it)")
    d.add_argument("buffer")
    d.set_defaults(func=_cmd_discard)
