"""LiteFile: the apsw io methods of a replica's main database file.

Reads go through the connection's pinned view (snapshot.py) to the shared
reader; writes are refused. Page 1 is served patched so SQLite uses rollback-
journal semantics (bytes 18/19 = 1) and takes the size from xFileSize (bytes
24..27 never equal the version-valid-for field at 92..95). Bytes 24..27 hold a
value derived from the view's TXID: while the view is unchanged SQLite keeps its
own page cache between transactions; a new view changes them and SQLite drops it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import apsw

from ..errors import LiteVFSError, RestoreError
from .pragmas import handle_pragma
from ..engine.reader import FileMissingError, PageFetchError
from ..engine.scan import ScanTracker
from ..engine.snapshot import Snapshot

if TYPE_CHECKING:
    from ..engine.state import View
    from ..session import Replica

log = logging.getLogger("litevfs.vfs")

_SHARED, _RESERVED = apsw.SQLITE_LOCK_SHARED, apsw.SQLITE_LOCK_RESERVED
# Before the read-only member joined: how often a read transaction looks for a log a
# writer of the machine created meanwhile (a stat costs as much as a warm query).
JOIN_CHECK_S = 0.01
_SALT = int.from_bytes(os.urandom(4), "big")
READONLY_MESSAGE = ("attempt to write a readonly database: litevfs opened this Litestream "
                    "replica read-only (the primary writes through litestream)")


# A connection refused the machine's write lock (another process writes) leaves a wait
# request here; SQLite's busy handler then calls xSleep on the same thread, which waits
# for that lock (and takes it for the retry) instead of sleeping blindly.
_waits = threading.local()


def request_gate_wait(gate: Any, file: Any, yield_first: bool) -> None:
    _waits.request = (gate, file, yield_first)


def take_gate_wait() -> tuple[Any, Any, bool] | None:
    request = getattr(_waits, "request", None)
    if request is not None:
        _waits.request = None
    return request


def change_counter(view: View, version_valid_for: bytes) -> bytes:
    value = ((view.txid * 2654435761) ^ _SALT) & 0xFFFFFFFF
    raw = value.to_bytes(4, "big")
    if raw == version_valid_for:  # must differ, or SQLite trusts the in-header size
        raw = (value ^ 1).to_bytes(4, "big")
    return raw


def patch_page1(page: bytes, view: View) -> bytes:
    patched = bytearray(page)
    patched[18] = patched[19] = 1
    patched[24:28] = change_counter(view, bytes(patched[92:96]))
    return bytes(patched)


def inherited_error(replica: Replica) -> apsw.Error:
    """A connection used in a fork() child of the process that opened it."""
    return io_error(f"litevfs: this connection was opened in process {replica.pid} before "
                    "fork(); connections do not cross fork(): open a new one in this process "
                    "(e.g. in gunicorn's post_fork, or lazily per worker)")


def io_error(message: str, code: int = apsw.SQLITE_IOERR_READ,
             cause: BaseException | None = None) -> apsw.Error:
    exc = apsw.exception_for(code)
    exc.args = (message,)
    if cause is not None:
        exc.__cause__ = cause
    return exc


class LiteFile:
    """One open of a replica's main database by one SQLite connection."""

    # Slots, shared by the subclasses (they add none): a connection opened before the
    # machine's member joined becomes a MemberLiteFile by a class switch, and with one
    # slot layout its attribute access stays as fast as a fresh object's (a switched
    # object with a __dict__ loses CPython's specialised attribute loads for good).
    __slots__ = ("replica", "reader", "snapshot", "filename", "lock_level", "_on_close",
                 "_patched_page1", "scans", "planner", "_closed", "_joining",
                 "_become_member",
                 # write mode (writable.py) and the read-only member (member.py)
                 "writer", "owner", "_local", "tx_pages", "tx_commit", "tx_failed", "w_held",
                 "_plain", "_in_table", "__weakref__")

    def __init__(self, replica: Replica, filename: str, on_close=None) -> None:
        self.replica = replica
        self.reader = replica.reader
        self.snapshot = Snapshot(replica.state)
        self.filename = filename
        self.lock_level = apsw.SQLITE_LOCK_NONE
        self._on_close = on_close
        self._patched_page1: tuple[View, bytes] | None = None
        self.scans = ScanTracker(replica.reader, replica.config.read_ahead)
        self.planner: Any = None  # vfs/statements.py, set once the connection exists
        self._closed = False
        # The replica's read-only member, when it was still joining at this open
        # (session.Replica.join_machine), and how this connection becomes the member's
        # once it is there (``registry.py``).
        self._joining: Any = None
        self._become_member: Any = None

    # -- reads -----------------------------------------------------------------------
    def xRead(self, amount: int, offset: int) -> bytes:
        if self.replica.inherited:
            raise inherited_error(self.replica)
        view = self.snapshot.view
        if offset < 100:  # the header (SQLite re-reads bytes 24..39 every transaction)
            cached = self._patched_page1
            if cached is not None and cached[0] is view and offset + amount <= view.page_size:
                return cached[1][offset:offset + amount]
        page_size = view.page_size
        if offset >= view.commit * page_size:
            return b""
        pgno = offset // page_size + 1
        in_page = offset - (pgno - 1) * page_size
        if in_page == 0 and amount == page_size and pgno != 1:
            return self._page(view, pgno)
        out = bytearray()
        while len(out) < amount and pgno <= view.commit:
            if pgno == 1:
                page = self._page1(view)
            else:
                page = self._page(view, pgno)
            out += page[in_page:in_page + amount - len(out)]
            pgno, in_page = pgno + 1, 0
        return bytes(out)

    def _page1(self, view: View) -> bytes:
        # SQLite re-reads bytes 24..39 at every transaction start: keep the patched copy.
        cached = self._patched_page1
        if cached is not None and cached[0] is view:
            return cached[1]
        page = patch_page1(self._page(view, 1), view)
        self._patched_page1 = (view, page)
        return page

    def _page(self, view: View, pgno: int) -> bytes:
        ahead = self.scans.before_read(view, pgno)
        try:
            try:
                page = self.reader.read_page(view, pgno, ahead)
            except FileMissingError as exc:
                view = self._recover(view, exc)
                page = self.reader.read_page(view, pgno, ahead)
        except PageFetchError as exc:
            log.error("%s: %s", self.replica.storage.url, exc)
            raise io_error(f"litevfs: {exc}", cause=exc) from exc
        except LiteVFSError as exc:
            log.error("%s: reading page %d failed: %s", self.replica.storage.url, pgno, exc)
            raise io_error(f"litevfs: reading page {pgno} failed: {exc}", cause=exc) from exc
        self.scans.after_read(view, pgno, page)
        return page

    def _recover(self, view: View, missing: FileMissingError) -> View:
        """A file the view uses was deleted: re-plan, and keep serving the same TXID
        from the files that exist now (compaction keeps the content reachable)."""
        log.info("%s; re-planning from the current listing", missing)
        latest = self.replica.replan()
        if latest.txid == view.txid:
            new = latest
        elif not self.snapshot.in_transaction and view.target_time is None:
            return latest
        else:
            try:
                new = self.replica.view_at_txid(view.txid)
            except RestoreError as exc:
                raise PageFetchError(
                    f"the state at TXID {view.txid:016x} this transaction reads is no longer "
                    f"in the replica ({missing}); retry the transaction") from exc
        if view.target_time is not None:
            new = replace(new, target_time=view.target_time)
        self.snapshot.repin(new)
        return new

    def schema_cookie(self) -> bytes:
        """Bytes 40..43 of the database header (the schema cookie) as last served."""
        cached = self._patched_page1
        return cached[1][40:44] if cached is not None else b""

    def xFileSize(self) -> int:
        view = self.snapshot.view
        return view.commit * view.page_size

    # -- locks -----------------------------------------------------------------------
    def xLock(self, level: int) -> None:
        if self._joining is not None and level == _SHARED and self.lock_level < _SHARED:
            if self._join_member():
                self.xLock(level)  # now MemberLiteFile's
                return
        if self.replica.inherited:
            raise inherited_error(self.replica)
        if level >= _RESERVED:
            raise apsw.ReadOnlyError(READONLY_MESSAGE)
        if level == _SHARED and self.lock_level < _SHARED:
            self.snapshot.begin()
            self.scans.begin_transaction()
            planner = self.planner  # pages were fetched since it went quiet: trace again
            if planner is not None and not planner.armed and \
                    self.reader.fetches != planner.fetches_seen:
                planner.arm()
        self.lock_level = level

    def _join_member(self) -> bool:
        """Before a read transaction while the member is still to join: go on reading
        alone unless a writer created the machine's log meanwhile (its commits may be
        unsynced: join now). True when this connection became the member's."""
        joining = self._joining
        if not joining.done.is_set():
            now = time.monotonic()
            if now < joining.next_check:
                return False
            joining.next_check = now + JOIN_CHECK_S
            if not os.path.exists(joining.log_path):
                return False  # no writer on the machine yet: the bucket is the newest
            joining.run()
        self._joining = None
        if self.replica.writer is None:  # the join failed: this process reads alone
            return False
        self._become_member(self)
        return True

    def xUnlock(self, level: int) -> None:
        if level < _SHARED and self.lock_level >= _SHARED:
            self.snapshot.end()
            self.scans.end_transaction()  # its cursors are gone: stop fetching ahead
            if self.planner is not None:
                self.planner.statement_ended()
        self.lock_level = level

    def xCheckReservedLock(self) -> bool:
        return False

    # -- writes (refused) ------------------------------------------------------------
    def xWrite(self, data: bytes, offset: int) -> None:
        raise apsw.ReadOnlyError(READONLY_MESSAGE)

    def xTruncate(self, newsize: int) -> None:
        raise apsw.ReadOnlyError(READONLY_MESSAGE)

    def xSync(self, flags: int) -> None:
        return None

    # -- misc ------------------------------------------------------------------------
    def xFileControl(self, op: int, ptr: int) -> bool:
        if op == apsw.SQLITE_FCNTL_PRAGMA:
            return handle_pragma(self, apsw.VFSFcntlPragma(ptr))
        return False

    def xSectorSize(self) -> int:
        return 0

    def xDeviceCharacteristics(self) -> int:
        return 0

    def xClose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.replica.inherited:  # the parent's replica: a fork() child leaves it alone
            return
        self.scans.stop_walks()
        if self._on_close is not None:
            self._on_close(self)
