"""Write mode state, one per replica per process (shared by every connection).

* :class:`Local` is the committed-but-unsynced state as an immutable-by-convention
  snapshot: ``dirty`` (committed since the last cut) over ``frozen`` (the pages an
  upload in flight carries) over the published view. A reader pins one ``Local``
  with its view at the start of a read transaction. ``dirty`` is only mutated in
  place by a commit, which needs the in-process EXCLUSIVE lock, i.e. no reader holds
  SHARED then; every other change publishes a new ``Local``.
* The synced overlay: ``frozen`` stays visible until the view that contains the
  upload is published, and readers pin ``Local`` before the view, so a read never
  falls back to an older page (litestream 9.2 ``e491163``).
* FileSize comes from the newest local commit while anything is unsynced, so the
  writer's own upload (whose commit may be lower than later local growth) is never
  read as a shrink (``84d1d02``, ``8f328f2``).
* :class:`LockTable` gives SQLite's rollback-journal locking between connections of
  the process (readers block a committing writer, one RESERVED holder).
"""

from __future__ import annotations

import logging
import secrets
import threading
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from ..errors import ConflictError, LiteVFSError, TxNotAvailableError
from .fence import HeadState
from ..ltx.format import lock_pgno
from .buffer import WriteBuffer
from .home import default_buffer_path, resolve_buffer_path  # noqa: F401 - default_buffer_path: old home

if TYPE_CHECKING:
    from ..engine.hydrate.hydrator import Hydrator
    from ..engine.state import ReplicaState
    from ..engine.views import ViewBuilder
    from .compactor import Compactor
    from .syncer import Syncer

log = logging.getLogger("litevfs.writer")

DEFAULT_PAGE_SIZE = 4096
NONE, SHARED, RESERVED, PENDING, EXCLUSIVE = 0, 1, 2, 3, 4


class LockBusy(LiteVFSError):
    """Another connection of this process holds a conflicting lock (SQLITE_BUSY)."""


class WriteDisabledError(LiteVFSError):
    """Writes are disabled on this replica (read-only open or PRAGMA)."""


@dataclass(frozen=True, slots=True)
class Local:
    dirty: dict[int, bytes] = field(default_factory=dict)
    frozen: dict[int, bytes] | None = None
    dirty_commit: int | None = None  # db size after the newest dirty transaction
    dirty_floor: int | None = None  # smallest db size among dirty transactions
    frozen_commit: int | None = None
    frozen_floor: int | None = None
    gen: int = 0  # bumped by every local commit

    @property
    def commit(self) -> int | None:
        return self.dirty_commit if self.dirty_commit is not None else self.frozen_commit

    @property
    def floor(self) -> int | None:
        floors = [f for f in (self.dirty_floor, self.frozen_floor) if f is not None]
        return min(floors) if floors else None

    @property
    def empty(self) -> bool:
        return self.dirty_commit is None and self.frozen is None

    def get(self, pgno: int) -> bytes | None:
        page = self.dirty.get(pgno)
        if page is None and self.frozen is not None:
            page = self.frozen.get(pgno)
        return page


class LockTable:
    """SQLite file locks between the connections (files) of one process."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self.shared: set[int] = set()
        self.reserved: int | None = None
        self.pending: int | None = None
        self.exclusive: int | None = None

    def lock(self, owner: int, level: int) -> None:
        with self._mutex:
            if level == SHARED:
                if self.pending not in (None, owner):
                    raise LockBusy("a writer is committing")
                self.shared.add(owner)
            elif level == RESERVED:
                if self.reserved not in (None, owner):
                    raise LockBusy("another connection of this process is writing")
                self.reserved = owner
            elif level >= PENDING:
                if self.pending not in (None, owner):
                    raise LockBusy("another connection is committing")
                self.pending = owner  # keeps new readers out while we wait for old ones
                if self.shared - {owner}:
                    raise LockBusy("readers are active")
                if level == EXCLUSIVE:
                    self.exclusive = owner

    def unlock(self, owner: int, level: int) -> None:
        with self._mutex:
            if level < RESERVED:
                for name in ("reserved", "pending", "exclusive"):
                    if getattr(self, name) == owner:
                        setattr(self, name, None)
            if level < SHARED:
                self.shared.discard(owner)

    def reserved_by_anyone(self) -> bool:
        return self.reserved is not None or self.pending is not None


class Writer:
    """Write state of one replica: buffer, local layers, position, conflict, locks."""

    def __init__(self, state: ReplicaState, views: ViewBuilder, *,
                 buffer_path: str | None = None) -> None:
        config = state.config
        self.state = state
        self.views = views
        self.config = config
        self.hydrator: Hydrator | None = None  # set by the session when hydration is on
        self.lock = threading.RLock()  # commits vs sync cut/reset
        self.sync_lock = threading.Lock()  # one upload at a time
        self.locks = LockTable()
        self.enabled = True
        self.conflict: ConflictError | None = None
        self.last_error: BaseException | None = None
        view = state.current
        page_size = view.page_size if view.txid else DEFAULT_PAGE_SIZE
        self.buffer_path = resolve_buffer_path(config.replica_url,
                                               buffer_path or config.buffer_path)
        self.buffer, self.recovered = WriteBuffer.open(
            self.buffer_path, url=config.replica_url, page_size=page_size,
            base_txid=view.txid, fsync=config.buffer_fsync)
        self.page_size = self.buffer.page_size
        self.lock_pgno = lock_pgno(self.page_size)
        self.base_txid = self.buffer.base_txid
        self.local = self._local_from_buffer(0)
        # The commit point (fence.py): what this writer last saw of the head object.
        self.head_state = HeadState(secrets.token_hex(8))
        self.syncer: Syncer | None = None  # set by attach_writer (attach.py)
        self.compactor: Compactor | None = None
        if self.recovered.transactions:
            log.warning("%s: recovered %d unsynced transactions from %s (base TXID %016x)",
                        config.replica_url, self.recovered.transactions, self.buffer_path,
                        self.base_txid)

    def _local_from_buffer(self, gen: int) -> Local:
        buf = self.buffer
        if buf.empty:
            return Local(gen=gen)
        return Local(dict(buf.pages), None, buf.commit, buf.floor, None, None, gen)

    # -- sizes and reads -----------------------------------------------------------------
    def size_pages(self, local: Local, view_commit: int) -> int:
        commit = local.commit
        return view_commit if commit is None else commit

    # -- commits -------------------------------------------------------------------------
    def check_writable(self) -> None:
        if self.conflict is not None:
            raise self.conflict
        if not self.enabled:
            raise WriteDisabledError("write mode is disabled on this replica")

    def commit(self, pages: dict[int, bytes], commit: int) -> None:
        """Append one transaction to the buffer and make it visible (caller holds the
        in-process EXCLUSIVE lock)."""
        with self.lock:
            self.check_writable()
            pages.pop(self.lock_pgno, None)  # never stored (SQLite never writes it anyway)
            self.buffer.append(pages, commit)
            local = self.local
            dirty, frozen = local.dirty, local.frozen
            size = self.size_pages(local, self.state.current.commit)
            if commit < size:  # a shrink: pages past the end are gone
                for p in [p for p in dirty if p > commit]:
                    del dirty[p]
                if frozen is not None and any(p > commit for p in frozen):
                    frozen = {p: d for p, d in frozen.items() if p <= commit}
            dirty.update(pages)
            floor = commit if local.dirty_floor is None else min(local.dirty_floor, commit)
            self.local = replace(local, frozen=frozen, dirty_commit=commit, dirty_floor=floor,
                                 gen=local.gen + 1)

    # -- conflict ------------------------------------------------------------------------
    def set_conflict(self, message: str) -> ConflictError:
        with self.lock:
            if self.conflict is None:
                self.conflict = ConflictError(
                    f"{message}; {self.buffer.transactions} unsynced transactions are kept in "
                    f"{self.buffer_path} (export them with litevfs.export_unsynced(), drop "
                    "them with litevfs.discard_unsynced())")
                log.error("%s: %s", self.config.replica_url, self.conflict)
                # Reads follow the remote from now on: our layers no longer apply to it.
                self.local = Local(gen=self.local.gen + 1)
            return self.conflict

    def discard_unsynced(self) -> int:
        """Drop every unsynced transaction and clear a conflict; returns how many."""
        with self.sync_lock, self.lock:
            n = self.buffer.transactions
            try:
                txid = self.views.replan().txid
            except TxNotAvailableError:  # still an empty replica
                txid = 0
            self.buffer.clear(txid)
            self.base_txid = txid
            self.head_state.load(self.state.storage)  # rebase the commit point too
            if txid and self.state.current.page_size != self.page_size:
                self.page_size = self.state.current.page_size
            self.local = Local(gen=self.local.gen + 1)
            self.conflict = None
            return n

    # -- sync entry points -----------------------------------------------------------------
    def sync(self, timeout: float | None = None) -> int:
        """Upload everything committed so far; returns the TXID that holds it."""
        assert self.syncer is not None, "attach_writer wires the syncer"
        return self.syncer.sync(timeout)

    def close(self) -> None:
        """Final sync, then stop; raises (buffer kept) if unsynced writes remain."""
        error: BaseException | None = None
        for worker in (self.syncer, self.compactor):
            if worker is not None:
                worker.stop()
        try:
            if self.conflict is not None and not self.buffer.empty:
                raise self.conflict
            if not self.buffer.empty or not self.local.empty:
                self.sync(timeout=30.0)
        except BaseException as exc:
            error = exc
        with self.lock:
            clean = self.buffer.empty and error is None
            self.buffer.close(remove=clean)
        if error is not None:
            raise error
