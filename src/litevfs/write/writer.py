"""Write mode state, one per replica per process (shared by every connection); the
processes of a machine share the buffer log (``buffer.py``) through ``shared.py``.

* :class:`Local` is the committed-but-unsynced state as an immutable-by-convention
  snapshot: ``dirty`` (this process's index of the shared log: the newest unsynced
  version of each page) over ``frozen`` (pages already synced whose view is not
  published yet) over the published view. A reader pins one ``Local`` with its view at
  the start of a read transaction. ``dirty`` is only mutated in place by a commit,
  which needs the in-process EXCLUSIVE lock, i.e. no reader holds SHARED then; every
  other change (catching up with other processes, a sync) copies it first.
* The synced overlay: synced pages leave ``dirty`` only when the view that contains
  them is published first, and readers pin ``Local`` before the view, so a read never
  falls back to an older page (litestream 9.2 ``e491163``). When the view cannot be
  extended at once the pages wait in ``frozen``.
* FileSize comes from the newest local commit while anything is unsynced, so the
  writer's own upload (whose commit may be lower than later local growth) is never
  read as a shrink (``84d1d02``, ``8f328f2``).
* :class:`LockTable` gives SQLite's rollback-journal locking between connections of
  the process (readers block a committing writer, one RESERVED holder). Between
  processes the WRITER lock (``shared.WriterGate``) admits one writer at a time and
  a write transaction must start from the newest commit (``begin_write``): readers
  never block writers there, as in SQLite's WAL mode.
"""

from __future__ import annotations

import logging
import struct
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterator

from .._impl import cache_key
from ..engine.objstore import ObjectStore, store_dir
from ..errors import BufferInUseError, ConflictError, LiteVFSError, TxNotAvailableError
from ..ltx.format import Header as LTXHeader
from ..ltx.format import lock_pgno
from ..storage.fetch import FileIndex
from .buffer import Changes, Done, WriteBuffer
from .fence import HeadState
from .home import default_buffer_path, resolve_buffer_path  # noqa: F401 - default_buffer_path: old home
from .shared import DUTY, OFF_BOARD, POLL, STREAK_MAX, SYNC, WriterGate

if TYPE_CHECKING:
    from ..engine.hydrate.hydrator import Hydrator
    from ..engine.state import ReplicaState, View
    from ..engine.views import ViewBuilder
    from .compactor import Compactor
    from .shared import LockKeeper
    from .syncer import Syncer

log = logging.getLogger("litevfs.writer")
_STATE_WORD = struct.Struct("<Q")  # the log's committed end in P.shm (shared.py)

DEFAULT_PAGE_SIZE = 4096
NONE, SHARED, RESERVED, PENDING, EXCLUSIVE = 0, 1, 2, 3, 4
APPEND_TIMEOUT = 30.0  # a sync waits this long for another process's write transaction


class LockBusy(LiteVFSError):
    """Another connection holds a conflicting lock (SQLITE_BUSY). ``machine``: the
    machine's write lock is the reason (another process writes or just committed): the
    busy wait then waits for that lock; ``yield_first``: this process had a long streak
    while others waited, so it lets them go first."""

    def __init__(self, message: str, *, machine: bool = False,
                 yield_first: bool = False) -> None:
        super().__init__(message)
        self.machine = machine
        self.yield_first = yield_first


class SyncTimeout(LiteVFSError, TimeoutError):
    """The sync did not finish within the caller's timeout (nothing is lost)."""


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
    gen: int = 0  # bumped whenever the content may change (commits, here or elsewhere)

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

    def readers_besides(self, owner: int | None) -> bool:
        shared = self.shared
        return bool(shared) and (owner is None or shared != {owner})


class Writer:
    """Write state of one replica in this process: the shared log, the local layers,
    the conflict, the locks."""

    def __init__(self, state: ReplicaState, views: ViewBuilder, *,
                 buffer_path: str | None = None, follow: bool = False) -> None:
        config = state.config
        self.state = state
        self.views = views
        self.config = config
        self.hydrator: Hydrator | None = None  # set by the session when hydration is on
        self.lock = threading.RLock()  # this process's index, local layers, appends
        self.sync_lock = threading.Lock()  # one sync at a time in this process
        self.synced = threading.Condition(self.lock)  # a DONE was applied
        self.locks = LockTable()
        # A read-only member (``follow``): reads the machine's log, never appends, never
        # syncs (it may lack write credentials); ``attach.attach_writer`` promotes it.
        self.read_only = follow
        # A member following the poll board (readpoll.py): called at a read transaction's
        # start when the board's sequence number is not ``board_seen`` any more.
        self.before_read: Callable[[], None] | None = None
        self.board_seen = 0
        self.enabled = True
        self.conflict: ConflictError | None = None
        self.last_error: BaseException | None = None
        view = state.current
        page_size = view.page_size if view.txid else DEFAULT_PAGE_SIZE
        self.buffer_path = resolve_buffer_path(config.replica_url,
                                               buffer_path or config.buffer_path)
        self.buffer, self.recovered = WriteBuffer.open(
            self.buffer_path, url=config.replica_url, page_size=page_size,
            base_txid=view.txid, fsync=config.buffer_fsync, follow=follow)
        assert self.buffer.files is not None
        self.files = self.buffer.files
        # The machine's store of whole small objects (objstore.py): the uploader puts its
        # files there, every process reads new objects from there (one GET per machine).
        self.objects = ObjectStore(store_dir(self.buffer_path))
        views.verifier.store = self.objects
        self.gate = WriterGate(self.files)
        self.page_size = self.buffer.page_size
        self.lock_pgno = lock_pgno(self.page_size)
        self.my_seq = 0  # the last transaction this process committed
        self.frozen: dict[int, bytes] | None = None
        self.frozen_txid = 0
        self.frozen_commit: int | None = None
        self.frozen_floor: int | None = None
        self.local = self._make_local(0)
        # The commit point (fence.py): what this machine's writer last saw of the head.
        self.head_state = HeadState(self.buffer.writer_id)
        self.syncer: Syncer | None = None  # set by attach_writer (attach.py)
        self.compactor: Compactor | None = None
        self.keeper: LockKeeper | None = None
        self.inherited = False  # a fork() child's copy: never used
        if self.buffer.conflict is not None:
            self.conflict = ConflictError(self.buffer.conflict)
            self.local = Local(gen=1)
        elif self.buffer.base_txid > view.txid:  # the log knows newer syncs than the LIST
            self._ensure_view(self.buffer.base_txid)
        if self.recovered.transactions and self.files.alone and not follow:
            log.warning("%s: recovered %d unsynced transactions from %s (base TXID %016x)",
                        state.storage.url, self.recovered.transactions, self.buffer_path,
                        self.base_txid)

    # -- the index of the shared log -----------------------------------------------------
    @property
    def name(self) -> str:
        """The replica as logs and messages name it (no secrets: the storage's URL)."""
        return self.state.storage.url

    @property
    def base_txid(self) -> int:
        """The TXID every synced commit is in (the position the next upload builds on)."""
        return self.buffer.base_txid

    def _make_local(self, gen: int) -> Local:
        if self.conflict is not None:
            return Local(gen=gen)
        buf = self.buffer
        return Local(buf.pages, self.frozen, buf.commit, buf.floor, self.frozen_commit,
                     self.frozen_floor, gen)

    def refresh(self, owner: int | None = None) -> None:
        """Catch up with what other processes committed or synced (the start of a read
        transaction). ``owner``: the connection asking (its own pin does not count)."""
        if self.buffer.fresh():
            return
        with self.lock:
            changes = self.buffer.catch_up(cow=self._pinned(owner))
            if changes:
                self._absorb(changes)

    def catch_up_while_waiting(self) -> None:
        """Between looks at the machine's write lock: catch up with the commits of the
        process that holds it, off the critical path (the lock's next holder then reads
        only its last few commits before writing). Never blocks on this process's lock,
        never raises: the read transaction that follows catches up as usual."""
        if self.buffer.fresh() or not self.lock.acquire(blocking=False):
            return
        try:
            changes = self.buffer.catch_up(cow=self._pinned(None))
            if changes:
                self._absorb(changes)
        except Exception as exc:  # the next begin_read reports it
            log.debug("%s: catching up while waiting for the write lock: %s", self.name, exc)
        finally:
            self.lock.release()

    def begin_read(self, owner: int) -> Local:
        """SHARED for ``owner``: catch up, then the Local it pins."""
        with self.lock:
            self.locks.lock(owner, SHARED)
            if not self.buffer.fresh():
                changes = self.buffer.catch_up(cow=self._pinned(owner))
                if changes:
                    self._absorb(changes)
            return self.local

    def member_read(self) -> Local:
        """A read-only member's read transaction: catch up, then the Local it pins. No
        lock table (a member never writes): its catch-ups always copy the pinned pages."""
        buf = self.buffer
        mm = self.files.mm  # buf.fresh(), inlined: every read transaction of a reader
        if mm is None or _STATE_WORD.unpack_from(mm, 8)[0] != buf._seen:
            with self.lock:
                changes = buf.catch_up(cow=True)
                if changes:
                    self._absorb(changes)
        if self.before_read is not None and mm is not None and \
                _STATE_WORD.unpack_from(mm, OFF_BOARD)[0] != self.board_seen:
            self.before_read()
        local = self.local
        if local.dirty_commit is None and local.frozen is None:
            return local
        if self.state.current.txid > buf.base_txid:
            # The replica moved past what the log builds on (another machine wrote after
            # a writer here crashed): those commits no longer apply, and a writer that
            # opens records the conflict. Meanwhile a reader shows the replica.
            return Local(gen=local.gen)
        return local

    def promote(self) -> None:
        """A read-only member starts writing (``attach.attach_writer``). Its connections
        pinned the pages dict outside the lock table, and commits change that dict in
        place: they get a copy from now on, and readers join the lock table."""
        with self.lock:
            self.refresh()
            self.buffer.pages = dict(self.buffer.pages)
            self.local = self._make_local(self.local.gen)
            self.read_only = False
            if self.files.held(POLL):  # the syncer's DUTY polls for the machine now
                self.files.unlock(POLL)

    def _pinned(self, owner: int | None) -> bool:
        """May connections other than ``owner`` hold the current pages dict? (Then a
        catch-up copies it first.) Always, in a read-only member (no lock table)."""
        return self.read_only or self.locks.readers_besides(owner)

    def begin_write(self, owner: int, pinned: Local, have_gate: bool) -> None:
        """RESERVED for ``owner`` whose transaction read ``pinned``: one writer per
        process (LockTable), one per machine (the WRITER lock; ``have_gate``: taken
        already, while waiting), and only on top of the newest commit. Raises LockBusy
        (``machine`` when another process writes); the caller releases nothing."""
        self.locks.lock(owner, RESERVED)
        gate = self.gate
        if not have_gate and not gate.try_acquire():
            self.locks.unlock(owner, SHARED)
            raise LockBusy("another process is writing", machine=True,
                           yield_first=gate.streak >= STREAK_MAX)
        try:
            with self.lock:
                buf = self.buffer
                word, _claimed, rewriting = self.files.head3()
                if rewriting:
                    buf.repair()
                if rewriting or word != buf._seen:
                    changes = buf.catch_up(cow=True)
                    if changes:
                        self._absorb(changes)
                if self.local.gen != pinned.gen:
                    raise LockBusy("another process committed since this transaction "
                                   "began: retry it", machine=True)
                self.check_writable()
        except BaseException:
            gate.release()
            self.locks.unlock(owner, SHARED)
            raise

    def end_write(self) -> None:
        self.gate.release()

    def _absorb(self, changes: Changes) -> None:
        """Turn what a catch-up applied into views and a new Local (lock held)."""
        gen = self.local.gen
        for event in changes.events:
            kind = event[0]
            if kind == "tx":
                gen += 1
                if self.frozen is not None:
                    self._trim_frozen(event[1])
            elif kind == "done":
                self._synced(*event[1:])
        if changes.generation:
            buf = self.buffer
            if buf.page_size != self.page_size:
                self.page_size = buf.page_size
                self.lock_pgno = lock_pgno(self.page_size)
            if changes.jumped is not None:
                gen += 1
                self.frozen = None
                self._ensure_view(changes.jumped)
            if buf.conflict is None and self.conflict is not None:
                self.conflict = None  # discarded (in another process)
                gen += 1
        if changes.conflict is not None and self.conflict is None:
            self.conflict = ConflictError(changes.conflict)
            self.frozen = None
            gen += 1
        self.local = self._make_local(gen)
        self.synced.notify_all()

    def _trim_frozen(self, commit: int) -> None:
        frozen = self.frozen
        if frozen is not None and any(p > commit for p in frozen):
            self.frozen = {p: d for p, d in frozen.items() if p <= commit}

    def _ensure_view(self, txid: int) -> bool:
        """Make the published view reach ``txid`` (a re-plan from the bucket). False when
        it cannot now (the pages stay in the overlay)."""
        if self.state.current.txid >= txid and txid:
            return True
        try:
            view = self.views.replan()
        except TxNotAvailableError:
            return txid == 0
        except LiteVFSError as exc:
            log.warning("%s: cannot reach TXID %016x now: %s", self.name,
                        txid, exc)
            return False
        return view.txid >= txid

    def _synced(self, done: Done, dropped: dict[int, bytes], commit: int, floor: int,
                exact: dict[int, bytes] | None = None) -> None:
        """A sync's pages leave the unsynced index: publish the view that holds them
        first (from the file index the log carries: no request), seed the caches."""
        state = self.state
        current = state.current
        fi = None
        if done.info is not None and done.header and done.index:
            try:
                pgnos, offsets, sizes, _ = state.impl.decode_page_index(done.index, 0)
                fi = FileIndex(done.info, LTXHeader.unpack(done.header), pgnos, offsets, sizes)
            except LiteVFSError as exc:
                log.warning("%s: unusable file index in the log for TXID %016x: %s",
                            self.name, done.txid, exc)
        if done.head:
            self.head_state.adopt(done.head, done.etag or None)
        if fi is not None:  # what a stored copy of the new file must be (objstore.py)
            self.views.verifier.expect(fi.info, fi.header, done.checksum)
        if fi is not None and current.txid < done.txid:
            fid = state.file_id(done.info)
            seed = self._seed_pages(fi, dropped, exact)
            hydrator = self.hydrator
            if hydrator is not None and seed:  # before publishing: never downloaded
                hydrator.offer_pages(fid, done.txid, seed)
            if current.txid == done.txid - 1:
                state.publish(self.views.extend_view(current, [fi]))
            put = state.cache.put
            for pgno, page in seed:
                put(cache_key(fid, pgno), page)
        advanced = self._ensure_view(done.txid)
        if advanced and (self.frozen is None or self.frozen_txid <= state.current.txid):
            self.frozen = None
            self.frozen_commit = self.frozen_floor = None
        else:  # the pages wait over the older view until one with them is published
            frozen = dict(self.frozen or {})
            frozen.update(dropped)
            self.frozen = frozen
            self.frozen_txid = max(self.frozen_txid, done.txid)
            self.frozen_commit = commit
            self.frozen_floor = floor if self.frozen_floor is None else min(
                self.frozen_floor, floor)

    def _seed_pages(self, fi: FileIndex, dropped: dict[int, bytes],
                    exact: dict[int, bytes] | None) -> list[tuple[int, bytes]]:
        """The pages of the synced file as of its TXID, where this process knows them for
        sure: the uploader's exact pages (zeros where it zero-filled). Other processes
        seed nothing: the pages that just left their index were seen to differ from the
        file's after repeated kill -9 of the syncing process (a cache seeded with them
        served a torn snapshot, and a compaction that read them wrote it to the bucket),
        so they read the file's pages from the bucket instead."""
        if exact is None:
            return []
        zero = bytes(self.page_size)
        return [(p, exact.get(p) or zero) for p in fi.pgnos]

    # -- sizes and reads -----------------------------------------------------------------
    def size_pages(self, local: Local, view_commit: int) -> int:
        commit = local.commit
        return view_commit if commit is None else commit

    # -- commits -------------------------------------------------------------------------
    def check_writable(self) -> None:
        if self.read_only:
            raise WriteDisabledError("the replica was opened read-only (write=False)")
        if self.conflict is not None:
            raise self.conflict
        if not self.enabled:
            raise WriteDisabledError("write mode is disabled on this replica")

    def commit(self, pages: dict[int, bytes], commit: int) -> None:
        """Append one transaction to the shared log and make it visible (the caller holds
        the in-process EXCLUSIVE lock and the machine's WRITER lock)."""
        with self.lock:
            self.check_writable()
            pages.pop(self.lock_pgno, None)  # never stored (SQLite never writes it anyway)
            self.my_seq = self.buffer.append(pages, commit)
            self._trim_frozen(commit)
            self.local = self._make_local(self.local.gen + 1)

    @contextmanager
    def appending(self, timeout: float = APPEND_TIMEOUT) -> Iterator[None]:
        """The right to append to the log from a sync: WRITER (shared with a write
        transaction of this process) and the index caught up."""
        gate = self.gate
        if not gate.try_acquire(polite=False) and not gate.wait(timeout):
            raise BufferInUseError(
                f"write buffer {self.buffer_path}: a write transaction in another process "
                f"kept the write lock for {timeout:g}s; the sync is retried later")
        try:
            with self.lock:
                if self.buffer.repair():
                    pass
                changes = self.buffer.catch_up(cow=self._pinned(None))
                if changes:
                    self._absorb(changes)
                yield
        finally:
            gate.release()

    @contextmanager
    def sync_turn(self, timeout: float | None) -> Iterator[None]:
        """This process's turn to sync: the in-process sync lock, then the machine's
        SYNC lock (one upload at a time; released by the kernel if we die)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self.sync_lock.acquire(timeout=-1 if timeout is None else timeout):
            raise SyncTimeout(f"a sync of {self.name} is still running after "
                              f"{timeout:g}s (nothing is lost: it goes on in the background)")
        try:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not self.files.wait_lock(SYNC, left):
                raise SyncTimeout(
                    f"another process has been syncing {self.name} for over "
                    f"{timeout:g}s (nothing is lost: it goes on there)")
            try:
                yield
            finally:
                self.files.unlock(SYNC)
        finally:
            self.sync_lock.release()

    def record_done(self, done: Done, exact: dict[int, bytes] | None = None) -> None:
        """Append a sync's commit point to the log and apply it here."""
        with self.appending():
            applied = self.buffer.append_done(done)
            self._synced(*applied, exact=exact)
            self.local = self._make_local(self.local.gen)
            self.synced.notify_all()

    # -- conflict ------------------------------------------------------------------------
    def set_conflict(self, message: str) -> ConflictError:
        """Another writer advanced the replica: every process of the machine learns it
        from the log (the same message everywhere)."""
        with self.lock:
            if self.conflict is None:
                full = (f"{message}; {self.buffer.transactions} unsynced transactions are kept "
                        f"in {self.buffer_path} (export them with litevfs.export_unsynced(), "
                        "drop them with litevfs.discard_unsynced())")
                try:
                    with self.appending(5.0):
                        if self.buffer.conflict is None:
                            self.buffer.append_conflict(full)
                        full = self.buffer.conflict or full
                except (LiteVFSError, OSError) as exc:
                    log.warning("%s: the conflict could not be recorded in the log: %s",
                                self.name, exc)
                self.conflict = ConflictError(full)
                log.error("%s: %s", self.name, self.conflict)
                # Reads follow the remote from now on: our layers no longer apply to it.
                self.frozen = None
                self.local = Local(gen=self.local.gen + 1)
            return self.conflict

    def discard_unsynced(self) -> int:
        """Drop every unsynced transaction (of every process of the machine) and clear a
        conflict; returns how many."""
        with self.sync_turn(60.0), self.appending():
            n = self.buffer.transactions
            try:
                view = self.views.replan()
                txid = view.txid
            except TxNotAvailableError:  # still an empty replica
                view, txid = None, 0
            self.head_state.load(self.state.storage)  # rebase the commit point too
            page_size = view.page_size if view is not None and txid else None
            self.conflict = None
            self._absorb(self.buffer.clear(txid, page_size))
            self.conflict = None
            self.frozen = None
            self.local = self._make_local(self.local.gen + 1)
            return n

    def rebase(self, txid: int, page_size: int | None) -> None:
        """Move an empty log to the remote's position (another writer, or
        ``litestream replicate``, advanced it while nothing was buffered here)."""
        with self.appending():
            if self.buffer.empty:
                self._absorb(self.buffer.clear(txid, page_size))

    def rewrite_log(self) -> None:
        """Drop the synced prefix of the log (a new generation)."""
        with self.appending():
            self.buffer.rewrite()
            self._absorb(self.buffer.catch_up(cow=self._pinned(None)))

    # -- roles -----------------------------------------------------------------------------
    def follows_log(self) -> bool:
        """True while another process of the machine polls the bucket for everyone (this
        one learns new TXIDs from the log): no conflict, and the DUTY lock is taken."""
        if self.conflict is not None or self.inherited:
            return False
        files = self.files
        return not files.held(DUTY) and not files.probe_free(DUTY)

    def polls_for_readers(self) -> bool:
        """Is this read-only member the machine's elected poller (``readpoll.py``)?"""
        return self.read_only and self.files.held(POLL)

    # -- sync entry points -----------------------------------------------------------------
    def sync(self, timeout: float | None = None) -> int:
        """Upload everything committed so far; returns the TXID that holds it."""
        assert self.syncer is not None, "attach_writer wires the syncer"
        return self.syncer.sync(timeout)

    def close(self) -> None:
        """Final sync, then stop; raises (buffer kept) if unsynced writes remain. A
        read-only member just leaves (the last one out removes an empty log)."""
        if self.views.verifier.store is self.objects:
            self.views.verifier.store = None  # the last process out removes the store
        if self.read_only:
            with self.lock:
                self.buffer.close(remove=True)
            return
        error: BaseException | None = None
        for worker in (self.syncer, self.compactor, self.keeper):
            if worker is not None:
                worker.stop()
        try:
            self.refresh()
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

    def forget_after_fork(self) -> None:
        """In a forked child: this state belongs to the parent; never touch it."""
        self.inherited = True
        self.buffer.forget_after_fork()
        self.lock = threading.RLock()
        self.sync_lock = threading.Lock()
