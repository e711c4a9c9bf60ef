"""The shared state of one replica in this process: the published view, the file table
and the page cache, with the storage client and the core module they are read with.

A :class:`View` is an immutable picture of the database at one TXID (page index,
commit, page size). New views are published here (by the poller, a writer's sync, a
re-plan); connections pin one for the length of a read transaction (``snapshot.py``),
so nothing ever changes under a reader. Pages are cached by (file, pgno)
(``_impl.cache_key``): LTX files are immutable, so cached pages never need
invalidating and every view shares one cache.

Every engine collaborator (reader, verifier, boot set, poller, hydrator, the writer's
syncer) is given this state, never the whole replica; ``session.py`` wires them.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from ..config import Config
from ..errors import LiteVFSError
from ..ltx.format import FileInfo
from ..storage.base import StorageClient

log = logging.getLogger("litevfs.replica")

IO_THREADS = 32  # page fetches, index reads and prefetches of one replica
URGENT_THREADS = 16  # prefetches on a statement's critical path (engine/keyahead.py)
INTERIOR_TYPES = (2, 5)  # b-tree interior pages (index, table): the upper levels


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


class FileTable:
    """Small integer ids for LTX objects (the page index and the cache key use them)."""

    def __init__(self) -> None:
        self._files: list[FileInfo] = []  # file_id -> FileInfo
        self._ids: dict[tuple[int, int, int], int] = {}
        self._lock = threading.Lock()

    def file_id(self, info: FileInfo) -> int:
        key = (info.level, info.min_txid, info.max_txid)
        with self._lock:
            fid = self._ids.get(key)
            if fid is None:
                fid = len(self._files)
                self._files.append(info)
                self._ids[key] = fid
            return fid

    def file_info(self, file_id: int) -> FileInfo:
        return self._files[file_id]


class ReplicaState:
    """What every collaborator of one replica shares (see the module docstring)."""

    def __init__(self, config: Config, storage: StorageClient, impl: ModuleType) -> None:
        self.config = config
        self.storage = storage
        self.impl = impl
        self.cache = impl.PageCache(config.cache_size)
        # The upper b-tree levels are what every query walks through: they get a tier of
        # their own (up to half of cache_size more), so a stream of leaf pages (random
        # point queries, scans) never evicts them and a point query costs one GET. The
        # same bytes objects sit in both caches: memory is counted once.
        self.interior = impl.PageCache(config.cache_size // 2)
        self.executor = ThreadPoolExecutor(max_workers=IO_THREADS,
                                           thread_name_prefix="litevfs-io")
        # Pages a running statement is about to wait for must not queue behind a bulk
        # prefetch (the fan-out below b-tree roots, a scan's window): their own pool.
        self.urgent_executor = ThreadPoolExecutor(max_workers=URGENT_THREADS,
                                                  thread_name_prefix="litevfs-urgent")
        self.files = FileTable()
        self.file_id = self.files.file_id
        self.file_info = self.files.file_info
        self._current: View | None = None
        self._lock = threading.Lock()
        self.last_poll_ok: float | None = None  # monotonic time of the last successful poll

    def put_page(self, key: int, page: bytes) -> None:
        """Cache ``page`` under ``key``; interior b-tree pages also in their own tier."""
        self.cache.put(key, page)
        if page[100 if key & 0xFFFFFFFF == 1 else 0] in INTERIOR_TYPES:
            self.interior.put(key, page)

    @property
    def current(self) -> View:
        view = self._current
        if view is None:
            raise LiteVFSError("replica is not open")
        return view

    @property
    def opened(self) -> bool:
        return self._current is not None

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

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.urgent_executor.shutdown(wait=False, cancel_futures=True)
