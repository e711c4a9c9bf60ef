"""Getting unsynced transactions out of a write buffer: after a conflict (another writer
advanced the replica) they stay in the buffer file. ``export_buffer`` materialises them
as a standalone SQLite database: the replica at the TXID the buffer builds on, plus
every buffered transaction, for a manual merge; ``discard_buffer`` deletes a buffer no
process holds."""

from __future__ import annotations

import os
import tempfile

from ..engine.restore import restore
from ..errors import BufferInUseError, LiteVFSError, TxNotAvailableError, WriteBufferError
from ..storage import open_storage
from .buffer import WriteBuffer, read_buffer


def _materialise(url: str, base_txid: int, page_size: int,
                 txns: list[tuple[dict[int, bytes], int]], out_path: str) -> str:
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


def export_buffer(path: str, out_path: str) -> tuple[dict, int]:
    """Write the view of the buffer file ``path`` (no process may hold it, or the caller
    holds its writer lock) to ``out_path``: (buffer header info, transactions)."""
    info, txns = read_buffer(path)
    try:
        _materialise(info["url"], info["base_txid"], info["page_size"], txns, out_path)
    except TxNotAvailableError as exc:
        raise LiteVFSError(
            f"TXID {info['base_txid']:016x} the buffer builds on is no longer in the replica "
            f"({exc}); the raw transactions can still be read with "
            "litevfs.write.buffer.read_buffer()") from exc
    return info, len(txns)


def discard_buffer(path: str) -> tuple[dict, int]:
    """Delete the buffer file ``path``; refused (WriteBufferError) while any process
    uses it. Returns (buffer header info, transactions dropped)."""
    info, txns = read_buffer(path)
    buf, _ = WriteBuffer.open(path, url=info["url"], page_size=info["page_size"],
                              base_txid=info["base_txid"])
    if buf.files is None or not buf.files.alone:
        buf.close()
        raise BufferInUseError(f"write buffer {path} is in use by another process "
                               "(close its writers first)")
    buf.close(remove=True, force=True)
    return info, len(txns)
