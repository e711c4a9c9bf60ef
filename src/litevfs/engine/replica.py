"""One shared state per replica per process: storage client, file table, page
cache, the published view and the poller.

A :class:`View` is an immutable picture of the database at one TXID (page index,
commit, page size). The poller publishes new views; connections pin one for the
length of a read transaction (see ``snapshot.py``), so nothing ever changes under
a reader. Pages are cached by (file, pgno): LTX files are immutable, so cached
pages never need invalidating and every view can share one cache.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from .. import _impl
from ..config import Config
from .diskcache import fetch_index_cached
from ..errors import (
    BucketNotFoundError, LiteVFSError, LTXFormatError, NotFoundError, TxNotAvailableError,
)
from ..ltx.decoder import decode_file
from ..ltx.format import FileInfo, is_valid_page_size, lock_pgno
from ..storage.fetch import FileIndex, fetch_file_index
from .openahead import HEAD_READ, OpenAhead, tail_size_for
from .plan import calc_restore_plan
from .._pending import Pending
from ..storage import start_listing
from ..storage.base import StorageClient

log = logging.getLogger("litevfs.replica")

PREFILL_MAX_FILE = 1024 * 1024  # whole files up to this size seed the cache at once
OPEN_RELISTS = 4  # LISTs an open tries when files of its plan keep vanishing


def cache_key(file_id: int, pgno: int) -> int:
    """One integer key per (file, page): LTX content is immutable."""
    return (file_id << 32) | pgno


def check_index_bounds(base_commit: int, indexes: Sequence[FileIndex]) -> None:
    """Refuse page numbers and commits no honest replica can have, before the dense page
    index (16 bytes per page up to the highest page number) is sized by them: every
    page above the base's size is written in one of the new files, so nothing can lie
    beyond the base size plus (twice, for slack) the new entries. The lock page's
    number is allowed on top (a database may grow across it), which caps the slack at
    16 bytes x lock page number (4 MiB at 4 KiB pages, 32 MiB at 512-byte pages)."""
    entries = sum(len(fi.pgnos) for fi in indexes)
    for fi in indexes:
        limit = base_commit + 2 * entries + 2 + lock_pgno(fi.header.page_size)
        top = max(fi.header.commit, fi.pgnos[-1] if len(fi.pgnos) else 0)
        if top > limit:
            raise LTXFormatError(
                f"{fi.info.name}: page/commit {top} is impossible for a replica whose files "
                f"hold {entries} page entries (corrupt or hostile file)")


@dataclass(frozen=True, slots=True)
class View:
    """The database as of one TXID. Never mutated once published."""

    index: Any  # impl.PageIndex
    page_size: int
    commit: int  # database size in pages
    txid: int
    timestamp_ms: int  # header timestamp of the newest file applied
    l1_max_txid: int  # newest level-1 file merged (so the poller knows which L1 files are new)
    target_time: str | None = None  # set on time-travel views (the text the user gave)

    @property
    def size(self) -> int:
        return self.commit * self.page_size


class Replica:
    """Shared by every connection of the process that opens the same replica URL."""

    def __init__(self, config: Config, storage: StorageClient, impl: ModuleType = _impl,
                 ahead: OpenAhead | None = None) -> None:
        self.config = config
        self._ahead = ahead  # index reads the LIST thread already sent (openahead.py)
        self.reads_adopted = 0  # files whose index reads came from ``ahead``
        self.storage = storage
        self.impl = impl
        self.cache = impl.PageCache(config.cache_size)
        self.executor = ThreadPoolExecutor(max_workers=32, thread_name_prefix="litevfs-io")
        self._files: list[FileInfo] = []  # file_id -> FileInfo
        self._file_ids: dict[tuple[int, int, int], int] = {}
        self._lock = threading.Lock()
        self._current: View | None = None
        self.last_poll_ok: float | None = None  # monotonic time of the last successful poll
        self.refcount = 0
        self.poller: Any = None  # set by open_replica (poller imports this module)
        self.hydrator: Any = None  # set by open_replica when hydration is on (hydrator.py)
        self.writer: Any = None  # write-mode state (writer.py), set by open_replica
        from .metrics import Metrics  # request/cache/cost counters (PRAGMA litevfs_stats)

        self.metrics = Metrics(self)
        from .diskcache import open_disk_cache  # persistent page cache, when configured

        self.disk = open_disk_cache(config, storage.url)
        self.boot: Any = None  # learned boot set (bootset.py), started by open()
        from .verify import Verifier  # the CRC-64 verification policy (verify.py)

        self.verifier = Verifier(self)
        from .reader import Reader  # late: reader imports cache_key from here

        self.reader = Reader(self)

    # -- files -----------------------------------------------------------------------
    def file_id(self, info: FileInfo) -> int:
        key = (info.level, info.min_txid, info.max_txid)
        with self._lock:
            fid = self._file_ids.get(key)
            if fid is None:
                fid = len(self._files)
                self._files.append(info)
                self._file_ids[key] = fid
            return fid

    def file_info(self, file_id: int) -> FileInfo:
        return self._files[file_id]

    # -- views -----------------------------------------------------------------------
    @property
    def current(self) -> View:
        view = self._current
        if view is None:
            raise LiteVFSError("replica is not open")
        return view

    def publish(self, view: View) -> bool:
        """Make ``view`` the latest unless a newer one is already published."""
        with self._lock:
            old = self._current
            if old is not None and view.txid < old.txid:
                return False
            self._current = view
        if old is None or view.txid != old.txid:
            log.debug("replica %s now at TXID %016x (%d pages)",
                      self.storage.url, view.txid, view.commit)
        return True

    def fetch_indexes(self, infos: Sequence[FileInfo]) -> list[FileIndex]:
        """Page indexes of ``infos``, fetched in parallel (one tail read each)."""
        ahead = self._ahead

        def fetch(info: FileInfo) -> FileIndex:
            started = ahead.take(info) if ahead is not None else None
            if started is not None:
                self.reads_adopted += 1
            return fetch_file_index(self.storage, info, tail_size=tail_size_for(info),
                                    executor=self.executor, impl=self.impl,
                                    head_size=HEAD_READ, started=started)

        def one(info: FileInfo) -> FileIndex:  # decoded indexes persist in the disk cache
            return fetch_index_cached(self.disk, info, fetch)
        if len(infos) == 1:
            return [one(infos[0])]
        return list(self.executor.map(one, infos))

    def extend_view(self, base: View | None, indexes: Iterable[FileIndex],
                    *, target_time: str | None = None) -> View:
        """A new view: ``base`` (or nothing) plus ``indexes`` in TXID order. Every page
        keeps its newest version (highest MaxTXID), so a lagging L1 file can never
        override a newer L0 page; the index is trimmed to the last file's commit."""
        indexes = sorted(indexes, key=lambda fi: (fi.info.max_txid, -fi.info.min_txid))
        if base is None and not indexes:
            raise TxNotAvailableError("no LTX files to build a view from")
        index = base.index.copy() if base is not None else self.impl.PageIndex()
        page_size = base.page_size if base is not None else indexes[0].header.page_size
        commit = base.commit if base is not None else 0
        txid = base.txid if base is not None else 0
        timestamp = base.timestamp_ms if base is not None else 0
        l1_max = base.l1_max_txid if base is not None else 0
        check_index_bounds(commit, indexes)
        for fi in indexes:
            header = fi.header
            if header.page_size != page_size or not is_valid_page_size(page_size):
                raise LTXFormatError(
                    f"{fi.info.name}: page size {header.page_size} differs from {page_size}")
            index.merge(self.file_id(fi.info), fi.info.max_txid, fi.pgnos, fi.offsets, fi.sizes)
            if fi.info.level == 1:
                l1_max = max(l1_max, fi.info.max_txid)
            if fi.info.max_txid >= txid:
                # The newest file defines the database size and position.
                txid, commit = fi.info.max_txid, header.commit
                timestamp = max(timestamp, header.timestamp)
        index.truncate(commit)
        view = View(index, page_size, commit, txid, timestamp, l1_max, target_time)
        self._prefill(view, indexes)
        return view

    def _prefill(self, view: View, indexes: Iterable[FileIndex]) -> None:
        """Small files came back whole from the index read: verify them and cache the
        pages they still provide (page 1 and hot pages usually live in the newest L0)."""
        for fi in indexes:
            if fi.head is not None:
                self._prefill_head(view, fi)
            if fi.data is None or len(fi.data) > PREFILL_MAX_FILE:
                continue
            fid = self.file_id(fi.info)
            try:
                decoded = decode_file(fi.data, verify=True, impl=self.impl)
            except LTXFormatError as exc:
                self.verifier.mark_failed(fid, str(exc))
                raise LTXFormatError(f"{fi.info.name}: {exc}") from None
            self.verifier.mark_verified(fid)
            frames, pages = [], {}
            for pgno, page in decoded.pages:
                entry = view.index.lookup(pgno)
                if entry is not None and entry[0] == fid:
                    self.cache.put(cache_key(fid, pgno), page)
                    frames.append((pgno, entry[1], entry[2]))
                    pages[pgno] = page
            self._persist(fi, frames, pages)

    def _prefill_head(self, view: View, fi: FileIndex) -> None:
        """Cache the whole frames inside a large file's head read (page 1 first). Files
        the policy verifies before serving (small ones, or verify=strict) are skipped."""
        fid = self.file_id(fi.info)
        if self.verifier.verified_first(fid):
            return
        head, decode = fi.head, self.impl.decode_page_frame
        assert head is not None
        frames, pages = [], {}
        for pgno, offset, size in zip(fi.pgnos, fi.offsets, fi.sizes):
            if offset + size > len(head):
                break  # frames are stored in page order, offsets ascending
            entry = view.index.lookup(pgno)
            if entry is None or entry[0] != fid:
                continue
            try:
                got, _flags, page, frame_len = decode(head, view.page_size, offset, size)
            except LTXFormatError:
                break  # the page read path reports it (and retries) if SQLite wants it
            if got != pgno or frame_len != size:
                break
            self.cache.put(cache_key(fid, pgno), page)
            self.verifier.seen(fid, fi.info)  # served unverified: verify in the background
            frames.append((pgno, offset, size))
            pages[pgno] = page
        self._persist(fi, frames, pages)

    def _persist(self, fi: FileIndex, frames: list[tuple[int, int, int]],
                 pages: dict[int, bytes]) -> None:
        """Pages that arrived with an index read go to the disk cache too: page 1 and
        its neighbours are what the next open's boot set asks for first, and a boot
        page missing on disk costs that open a round trip."""
        if self.disk is not None and frames:
            self.disk.put_frames(fi.info, frames, pages)

    def build_view(self, plan: Sequence[FileInfo], *, target_time: str | None = None) -> View:
        return self.extend_view(None, self.fetch_indexes(plan), target_time=target_time)

    def list_levels(self) -> dict[int, list[FileInfo]]:
        return self.storage.list_all()

    def latest_view(self, levels: Mapping[int, Sequence[FileInfo]] | None = None) -> View:
        """Build a fresh view from Litestream's latest restore plan."""
        levels = self.list_levels() if levels is None else levels
        return self.build_view(calc_restore_plan(levels))

    def replan(self) -> View:
        """Rebuild from the current listing (after a gap or a missing file) and publish."""
        view = self.latest_view()
        self.publish(view)
        return self.current

    def view_at_txid(self, txid: int) -> View:
        """A view of exactly ``txid`` from the files that exist now (not published)."""
        return self.build_view(calc_restore_plan(self.list_levels(), txid=txid))

    def open(self, listing: Pending | None = None) -> None:
        """Build the first view, waiting up to ``wait_for_replica`` for an empty replica.
        ``listing``: a LIST already started by this open (see ``open_replica``)."""
        deadline = time.monotonic() + self.config.wait_for_replica
        from .bootset import start_boot  # fetches the last open's first pages meanwhile

        self.boot = start_boot(self)
        from . import poller  # noqa: F401 - imported while the LIST is in flight, not after
        vanished = 0
        while True:
            try:
                levels, listing = (listing.result() if listing else None), None
                try:
                    view = self.latest_view(levels)
                except NotFoundError as exc:
                    # A file of the plan went between the LIST and its index read
                    # (compaction or retention deleted it): list again, a few times.
                    vanished += 1
                    if isinstance(exc, BucketNotFoundError) or vanished >= OPEN_RELISTS:
                        raise
                    log.info("%s: %s; listing the replica again", self.storage.url, exc)
                    continue
                self.publish(view)
                self.metrics.opened()
                if self.boot is not None:
                    self.boot.finish(self.current)  # waits for the boot loader
                if self.disk is not None:
                    self.disk.drop_preloaded()
                self._ahead = None  # reads the plan did not adopt are not wanted later
                return
            except TxNotAvailableError:
                if self.config.write:  # write mode creates the database: start empty
                    self.publish(View(self.impl.PageIndex(), 4096, 0, 0, 0, 0))
                    return
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    from ..errors import EmptyReplicaError
                    from ..storage import empty_replica_message

                    raise EmptyReplicaError(empty_replica_message(
                        self.storage, self.config.wait_for_replica)) from None
                time.sleep(min(self.config.poll_interval or 0.1, remaining, 1.0))

    def close(self) -> None:
        try:  # the final upload needs storage; a failure still closes the rest, then raises
            if self.writer is not None:
                self.writer.close()
        finally:
            self._close_rest()

    def _close_rest(self) -> None:
        self.verifier.close()
        if self.poller is not None:
            self.poller.stop()
        if self.hydrator is not None:  # before the storage client goes
            self.hydrator.close()
        if self.boot is not None:  # keep what this run's first queries needed
            self.boot.save()
        if self.disk is not None:
            self.disk.flush(2.0)
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.reader.hedger.close()
        self.storage.close()


# -- process registry ----------------------------------------------------------------
_registry: dict[tuple[str, str], Replica] = {}
_registry_lock = threading.Lock()
_open_locks: dict[tuple[str, str], threading.Lock] = {}


def open_replica(config: Config, impl: ModuleType = _impl,
                 storage: StorageClient | None = None,
                 listing: Pending | None = None,
                 ahead: OpenAhead | None = None) -> Replica:
    """The shared replica for ``config.replica_url`` (opened on first use); pair every
    call with :func:`release_replica`. Options of the first opener win. ``listing``: a
    LIST of ``storage`` this open already started (``litevfs.connect`` sends it before
    importing the rest); both are closed unused when the replica is already open.
    ``ahead``: the index reads that LIST's thread sends when it answers."""
    key = (config.replica_url, impl.__name__)

    def shared(replica: Replica) -> Replica:
        replica.refcount += 1
        if listing is not None and storage is not None:
            storage.close()
        return replica

    with _registry_lock:
        replica = _registry.get(key)
        if replica is not None:
            return shared(replica)
        open_lock = _open_locks.setdefault(key, threading.Lock())
    with open_lock:  # one open per URL at a time; others wait and share it
        with _registry_lock:
            replica = _registry.get(key)
            if replica is not None:
                return shared(replica)
        if storage is None:
            from ..storage import open_storage_for

            storage = open_storage_for(config)
            preconnect = getattr(storage, "preconnect", None)
            if preconnect is not None:  # handshakes overlap the LIST (see S3Storage)
                preconnect(2)
        # The open's LIST goes out now and overlaps the replica's set-up (disk cache,
        # verifier, ...): it is still issued after this open began, so it is as fresh.
        if listing is None:
            listing = start_listing(storage)
        replica = Replica(config, storage, impl, ahead)
        try:
            replica.open(listing)
            if config.write:
                from ..write.writer import attach_writer

                attach_writer(replica)
        except BaseException:
            replica.close()
            raise
        from .poller import Poller

        replica.poller = Poller(replica)
        replica.poller.start()
        if config.hydration:
            from .hydrate.hydrator import start_hydrator

            replica.hydrator = start_hydrator(replica)
        with _registry_lock:
            replica.refcount = 1
            _registry[key] = replica
        return replica


def release_replica(replica: Replica) -> None:
    with _registry_lock:
        replica.refcount -= 1
        if replica.refcount > 0:
            return
        for key, value in list(_registry.items()):
            if value is replica:
                del _registry[key]
    replica.close()


def open_replicas() -> list[Replica]:
    """Replicas currently open in this process (for tests and diagnostics)."""
    with _registry_lock:
        return list(_registry.values())
