"""WritableLiteFile: the main-database io methods in write mode.

A connection's own transaction lives in ``tx_pages`` until SQLite commits (xSync, or
the unlock below RESERVED as a fallback); then the whole transaction becomes one
record of the machine's shared log (writer.commit). Reads look in: this transaction's
pages -> the replica's local layers pinned at SHARED (the unsynced pages of every
process of the machine, then synced pages whose view is not published yet) -> the
pinned view. Locks follow SQLite's rollback-journal rules between the connections of
the process (writer.LockTable); between the processes of the machine one writes at a
time (the WRITER lock) on top of the newest commit, readers never wait (WAL-like);
across machines the conditional create of each TXID and the head decide (syncer.py).

A write lock that another process holds is SQLITE_BUSY with a wait request: SQLite's
busy handler then sleeps in the VFS's xSleep, which waits for the lock itself
(``registry.py``) instead of sleeping blindly.

Page 1 written locally is served exactly as SQLite wrote it (its change counter
then tells other connections to drop their caches, and the writer keeps its own);
page 1 from the replica keeps the read path's patch.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import apsw

from ..errors import ConflictError, LiteVFSError
from .file import LiteFile, inherited_error, request_gate_wait
from ..write.writer import EXCLUSIVE, RESERVED, SHARED, LockBusy, WriteDisabledError

if TYPE_CHECKING:
    from ..engine.state import View
    from ..session import Replica
    from ..write.writer import Local

log = logging.getLogger("litevfs.vfs")

# SQLite reports a VFS error by its code only: the message is in
# litevfs.write_status(con)["conflict"], the log, and the ConflictError of litevfs.sync().
# READONLY, not BUSY: the busy handler would retry a conflict until its timeout.
CONFLICT_CODE = apsw.SQLITE_READONLY


def conflict_error(exc: BaseException) -> apsw.Error:
    err = apsw.exception_for(CONFLICT_CODE)
    err.args = (f"litevfs write conflict: {exc}",)
    err.__cause__ = exc
    return err


def readonly_error(message: str) -> apsw.Error:
    return apsw.ReadOnlyError(f"attempt to write a readonly database: {message}")


def _translate(exc: BaseException) -> apsw.Error:
    if isinstance(exc, ConflictError):
        return conflict_error(exc)
    if isinstance(exc, WriteDisabledError):
        return readonly_error(str(exc))
    err = apsw.exception_for(apsw.SQLITE_IOERR_WRITE)
    err.args = (f"litevfs: {exc}",)
    err.__cause__ = exc
    return err


class WritableLiteFile(LiteFile):
    __slots__ = ()

    def __init__(self, replica: Replica, filename: str, on_close=None) -> None:
        super().__init__(replica, filename, on_close=on_close)
        self._write_state()

    def _write_state(self) -> None:
        """This connection's part of the replica's write state (vfs/member.py too)."""
        self.writer = self.replica.writer
        self.owner = id(self)
        self._local: Local | None = None
        self.tx_pages: dict[int, bytes] = {}
        self.tx_commit: int | None = None
        self.tx_failed = False
        self.w_held = False  # this connection holds the machine's WRITER lock

    # -- state ---------------------------------------------------------------------------
    def _current(self) -> tuple[View, Local]:
        local = self._local if self._local is not None else self.writer.local
        return self.snapshot.view, local

    def _size_pages(self, view: View, local: Local) -> int:
        if self.tx_commit is not None:
            return self.tx_commit
        commit = local.commit
        return view.commit if commit is None else commit

    # -- reads -----------------------------------------------------------------------------
    def xRead(self, amount: int, offset: int) -> bytes:
        if self.replica.inherited:
            raise inherited_error(self.replica)
        view, local = self._current()
        ps = self.writer.page_size
        size = self._size_pages(view, local)
        if offset >= size * ps:
            return b""
        pgno = offset // ps + 1
        in_page = offset - (pgno - 1) * ps
        if in_page == 0 and amount == ps:
            return self._wpage(view, local, pgno)
        out = bytearray()
        while len(out) < amount and pgno <= size:
            out += self._wpage(view, local, pgno)[in_page:in_page + amount - len(out)]
            pgno, in_page = pgno + 1, 0
        return bytes(out)

    def _wpage(self, view: View, local: Local, pgno: int) -> bytes:
        page = self.tx_pages.get(pgno)
        if page is not None:
            return page
        page = local.get(pgno)
        if page is not None:
            return page
        floor = local.floor
        if (floor is not None and pgno > floor) or view.index.lookup(pgno) is None:
            return bytes(self.writer.page_size)  # new (or truncated-then-regrown) page
        if pgno == 1:
            return self._page1(view)
        return self._page(view, pgno)

    def xFileSize(self) -> int:
        view, local = self._current()
        return self._size_pages(view, local) * self.writer.page_size

    # -- writes ----------------------------------------------------------------------------
    def xWrite(self, data: bytes, offset: int) -> None:
        writer = self.writer
        ps = writer.page_size
        if self.lock_level < RESERVED:
            raise readonly_error("write without a RESERVED lock")
        pgno = offset // ps + 1
        in_page = offset - (pgno - 1) * ps
        if self.tx_commit is None:
            view, local = self._current()
            self.tx_commit = self._size_pages(view, local)
        if in_page == 0 and len(data) == ps:
            pages = [(pgno, bytes(data))]
        else:
            if in_page + len(data) > ps:
                raise _translate(LiteVFSError(
                    f"write of {len(data)} bytes at offset {offset} crosses a page boundary: "
                    f"litevfs write mode uses {ps}-byte pages (PRAGMA page_size is not "
                    "supported)"))
            view, local = self._current()
            old = bytearray(self._wpage(view, local, pgno)) if pgno <= self.tx_commit \
                else bytearray(ps)
            old[in_page:in_page + len(data)] = data
            pages = [(pgno, bytes(old))]
        for p, page in pages:
            if p == writer.lock_pgno:
                continue  # never stored; SQLite never puts data there
            self.tx_pages[p] = page
            if p > self.tx_commit:
                self.tx_commit = p

    def xTruncate(self, newsize: int) -> None:
        if self.lock_level < RESERVED:
            raise readonly_error("truncate without a RESERVED lock")
        ps = self.writer.page_size
        commit = -(-newsize // ps)
        self.tx_commit = commit
        for p in [p for p in self.tx_pages if p > commit]:
            del self.tx_pages[p]

    def xSync(self, flags: int) -> None:
        if self.lock_level >= RESERVED:
            self._flush()

    def _flush(self) -> None:
        """Commit this connection's transaction into the shared buffer."""
        pages, commit = self.tx_pages, self.tx_commit
        if commit is None and not pages:
            return
        view, local = self._current()
        if commit is None:
            commit = self._size_pages(view, local)
        self.tx_pages, self.tx_commit = {}, None
        if not pages and commit == self._size_pages(view, local):
            return  # nothing changed (BEGIN IMMEDIATE; COMMIT)
        try:
            self.writer.commit(pages, commit)
        except LiteVFSError as exc:
            self.tx_failed = True
            raise _translate(exc) from exc
        except OSError as exc:
            self.tx_failed = True
            raise _translate(exc) from exc
        # This connection keeps reading what it just wrote (it is the newest state).
        self._local = self.writer.local if self._local is not None else None

    # -- locks -----------------------------------------------------------------------------
    def xLock(self, level: int) -> None:
        writer = self.writer
        if self.replica.inherited:
            raise inherited_error(self.replica)
        try:
            if level == SHARED and self.lock_level < SHARED:
                try:
                    self._local = writer.begin_read(self.owner)  # before the view: writer.py
                except LockBusy:
                    self._drop_gate()
                    raise
                self.snapshot.begin()
                self.scans.begin_transaction()
            elif level >= RESERVED:
                if self.lock_level < RESERVED:
                    writer.check_writable()
                    have, self.w_held = self.w_held, False
                    assert self._local is not None
                    writer.begin_write(self.owner, self._local, have)
                    self.w_held = True
                writer.locks.lock(self.owner, min(level, EXCLUSIVE))
        except LockBusy as exc:
            if exc.machine:
                request_gate_wait(writer.gate, self, exc.yield_first)
            raise apsw.BusyError(f"database is locked ({exc})") from None
        except (ConflictError, WriteDisabledError) as exc:
            raise _translate(exc) from exc
        self.lock_level = level

    def _drop_gate(self) -> None:
        if self.w_held:
            self.w_held = False
            self.writer.end_write()

    def xUnlock(self, level: int) -> None:
        if level < RESERVED <= self.lock_level:
            if self.tx_failed:
                self.tx_pages, self.tx_commit, self.tx_failed = {}, None, False
            else:
                try:
                    self._flush()
                except apsw.Error as exc:  # xSync reported it already when it was called
                    log.error("%s: commit at unlock failed: %s",
                              self.writer.name, exc)
        if level < RESERVED:
            self._drop_gate()
        self.writer.locks.unlock(self.owner, level)
        if level < SHARED <= self.lock_level:
            self._local = None
            self.snapshot.end()
            self.scans.end_transaction()
        self.lock_level = level

    def xCheckReservedLock(self) -> bool:
        writer = self.writer
        return writer.locks.reserved_by_anyone() or not writer.gate.free_elsewhere()

    # -- PRAGMAs ---------------------------------------------------------------------------
    def xFileControl(self, op: int, ptr: int) -> bool:
        if op == apsw.SQLITE_FCNTL_PRAGMA:
            pragma = apsw.VFSFcntlPragma(ptr)
            name = pragma.name.lower()
            if name == "litestream_write_enabled":
                self._pragma_write_enabled(pragma)
                return True
            if name == "litevfs_sync":
                try:
                    pragma.result = f"{self.writer.sync(timeout=60.0):016x}"
                except LiteVFSError as exc:
                    raise _translate(exc) from exc
                return True
        return super().xFileControl(op, ptr)

    def _pragma_write_enabled(self, pragma: apsw.VFSFcntlPragma) -> None:
        writer = self.writer
        value = pragma.value
        if value is None:
            pragma.result = "1" if writer.enabled and writer.conflict is None else "0"
            return
        text = value.strip().lower()
        if text in ("1", "true", "on", "yes"):
            writer.enabled = True
        elif text in ("0", "false", "off", "no"):
            if self.lock_level >= RESERVED:
                raise apsw.SQLError("cannot disable writes inside a write transaction")
            try:  # Litestream: disabling syncs first; on failure writes stay enabled
                writer.sync(timeout=60.0)
            except LiteVFSError as exc:
                raise _translate(exc) from exc
            writer.enabled = False
        else:
            raise apsw.SQLError(f"litestream_write_enabled: invalid value {value!r}")
        pragma.result = "1" if writer.enabled else "0"

    def xClose(self) -> None:
        if self._closed:
            return
        if self.replica.inherited:  # the parent's: never touched from a fork() child
            self._closed = True
            return
        if self.lock_level > 0:
            self.xUnlock(0)
        self._drop_gate()
        try:
            super().xClose()
        except LiteVFSError as exc:
            raise _translate(exc) from exc
