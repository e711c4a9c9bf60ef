"""The page read path: cache, then one ranged GET over contiguous frames.

Lookup order (seams for later issues): dirty write buffer -> hydrated local file ->
page cache -> remote. Only the last two exist in read-only mode.

A miss fetches the wanted frame plus, when SQLite is reading sequentially, the
following frames of the same LTX file (frames are stored in pgno order, so
neighbouring pages are one byte range). Concurrent misses on pages already being
fetched wait for that fetch instead of issuing their own.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future
from typing import TYPE_CHECKING

from .._impl import cache_key
from .._worker import settle
from ..errors import LiteVFSError, LTXFormatError, NotFoundError, StorageError
from ..ltx.format import lock_pgno
from .diskcache import fetch_run_cached
from .hedge import Hedger
from .state import ReplicaState, View
from .verify import Verifier

if TYPE_CHECKING:
    from .bootset import BootSet
    from .diskstore import ReplicaDiskCache
    from .hydrate.hydrator import Hydrator

log = logging.getLogger("litevfs.reader")


class PageFetchError(LiteVFSError):
    """A page could not be read (the VFS turns it into SQLITE_IOERR_READ)."""


class FileMissingError(PageFetchError):
    """The LTX file the view points to is gone (compaction or retention deleted it)."""

    def __init__(self, message: str, file_id: int) -> None:
        super().__init__(message)
        self.file_id = file_id


class Reader:
    """Fetches pages of a replica's views; one per replica, shared by connections."""

    def __init__(self, state: ReplicaState, verifier: Verifier,
                 disk: ReplicaDiskCache | None = None) -> None:
        self.state = state
        self.cache = state.cache
        self.interior = state.interior  # the upper b-tree levels' own tier (state.py)
        self.verifier = verifier
        self.disk = disk
        # Set by the session once they exist (both optional).
        self.boot: BootSet | None = None  # records the pages a cold open needs
        self.hydrator: Hydrator | None = None  # the local copy
        self._inflight: dict[int, Future[dict[int, bytes]]] = {}
        self.fetches = 0  # runs fetched (from the disk cache or storage): "something missed"
        self.bytes_fetched = 0  # bytes of page frames read from storage for queries
        self._lock = threading.Lock()
        self._failed = verifier.failed  # file ids never to be served again
        cfg = state.config  # slow GETs get a duplicate; the first answer wins (hedge.py)
        self.hedger = Hedger(lambda: state.storage.read_range, floor=cfg.hedge_after,
                             max_concurrent=cfg.hedge_max)

    def busy(self) -> bool:
        """Are page fetches (reads or prefetches) in flight?"""
        return bool(self._inflight)

    def read_page(self, view: View, pgno: int, ahead_bytes: int = 0) -> bytes:
        """Page ``pgno`` of ``view``; fetch up to ``ahead_bytes`` more of the same file's
        following frames in the same request."""
        boot, hydrator = self.boot, self.hydrator
        probed = hydrator is None and not self._failed and (boot is None or not boot.recording)
        if probed:  # hot path: index + cache key + LRU in one call; counts the hit or miss
            page = self.cache.page_for(view.index, pgno)
            if page is not None:
                return page
        entry = view.index.lookup(pgno)
        if entry is None:
            if pgno == lock_pgno(view.page_size):
                return bytes(view.page_size)  # never stored; SQLite never uses its content
            raise PageFetchError(
                f"page {pgno} is not in the replica's index at TXID {view.txid:016x} "
                f"(database has {view.commit} pages)")
        file_id, offset, size = entry
        if self._failed and file_id in self._failed:  # failed verification (verify.py)
            self.verifier.check(file_id)
        if boot is not None and boot.recording:  # learned boot set (bootset.py)
            boot.note(pgno, entry)
        if hydrator is not None:  # the local copy, when it holds this very version
            page = hydrator.read(pgno, file_id)
            if page is not None:
                return page
        key = cache_key(file_id, pgno)
        page = None if probed else self.cache.get(key)  # a probed miss is counted once
        if page is not None:
            return page
        page = self.interior.get(key)  # evicted from the LRU, kept in the interior tier
        if page is not None:
            self.cache.put(key, page)
            return page
        with self._lock:
            pending = self._inflight.get(key)
            if pending is None:
                run = self._plan_run(view, pgno, file_id, offset, size, ahead_bytes)
                pending = Future()
                for p, _, _ in run:
                    self._inflight[cache_key(file_id, p)] = pending
                owner = True
            else:
                owner = False
        if not owner:
            pages = pending.result()  # raises the owner's error
            return pages[pgno]
        return self._complete(view, file_id, run, pending)[pgno]

    def _complete(self, view: View, file_id: int, run: list, pending: Future) -> dict[int, bytes]:
        self.fetches += 1
        try:
            return settle(pending, lambda: self._fetch_run(view, file_id, run, run[0][1]))
        finally:
            with self._lock:
                for p, _, _ in run:
                    self._inflight.pop(cache_key(file_id, p), None)

    def prefetch(self, view: View, pgnos: list[int], *, max_gap: int = 128 * 1024,
                 max_run: int = 4 * 1024 * 1024, urgent: bool = False) -> int:
        """Start fetching ``pgnos`` in the background: uncached frames of one file that
        lie close together become one ranged GET (gaps up to ``max_gap`` bytes are read
        and skipped), runs go out in parallel. Reads of these pages wait for them.
        ``urgent``: a statement waits for them next (their own thread pool, never
        queued behind bulk prefetches). Returns the number of requests started."""
        inflight = self._inflight
        hydrator = self.hydrator
        by_file: dict[int, list[tuple[int, int, int]]] = {}
        with self._lock:
            # one core call sorts out what is mapped, cached or already in flight
            found, fids, offsets, sizes = self.cache.uncached(view.index, pgnos, inflight)
            interior = self.interior
            for pgno, fid, offset, size in zip(found, fids, offsets, sizes):
                if hydrator is not None and hydrator.has(pgno, fid):
                    continue
                if len(interior):
                    page = interior.get(cache_key(fid, pgno))
                    if page is not None:
                        self.cache.put(cache_key(fid, pgno), page)
                        continue
                by_file.setdefault(fid, []).append((pgno, offset, size))
            runs: list[tuple[int, list, Future]] = []
            for file_id, frames in by_file.items():
                frames.sort(key=lambda f: f[1])
                run = [frames[0]]
                for frame in frames[1:]:
                    end = run[-1][1] + run[-1][2]
                    if frame[1] - end <= max_gap and frame[1] + frame[2] - run[0][1] <= max_run:
                        run.append(frame)
                    else:
                        runs.append((file_id, run, Future()))
                        run = [frame]
                runs.append((file_id, run, Future()))
            for file_id, run, pending in runs:
                for p, _, _ in run:
                    inflight[cache_key(file_id, p)] = pending
        executor = self.state.urgent_executor if urgent else self.state.executor
        for file_id, run, pending in runs:
            executor.submit(self._complete_quietly, view, file_id, run, pending)
        return len(runs)

    def in_flight(self, view: View, pgno: int) -> Future[dict[int, bytes]] | None:
        """The fetch under way that will bring page ``pgno`` of ``view``, if any."""
        entry = view.index.lookup(pgno)
        return None if entry is None else self._inflight.get(cache_key(entry[0], pgno))

    def _complete_quietly(self, view: View, file_id: int, run: list, pending: Future) -> None:
        try:
            self._complete(view, file_id, run, pending)
        except BaseException as exc:  # the reader that needs the page reports it
            log.debug("prefetch of pages %d.. failed: %s", run[0][0], exc)

    def _plan_run(self, view: View, pgno: int, file_id: int, offset: int, size: int,
                  ahead_bytes: int) -> list[tuple[int, int, int]]:
        """(pgno, offset, size) of the wanted frame and the contiguous uncached frames
        after it in the same file, within ``ahead_bytes``."""
        run = [(pgno, offset, size)]
        end = offset + size
        total = size
        lookup, cache, inflight = view.index.lookup, self.cache, self._inflight
        hydrator = self.hydrator
        nxt = pgno + 1
        while total < ahead_bytes and nxt <= view.commit:
            entry = lookup(nxt)
            if entry is None or entry[0] != file_id or entry[1] != end:
                break
            k = cache_key(file_id, nxt)
            if k in inflight or k in cache or (
                    hydrator is not None and hydrator.has(nxt, file_id)):
                break
            run.append((nxt, entry[1], entry[2]))
            end += entry[2]
            total += entry[2]
            nxt += 1
        return run  # type: ignore[return-value]

    def _fetch_run(self, view: View, file_id: int, run: list, start: int) -> dict[int, bytes]:
        if self.disk is not None:  # the persistent page cache first (diskcache.py)
            return fetch_run_cached(self.disk, self.state.file_info(file_id), file_id, run,
                                    self.state.put_page, lambda missing: self._fetch_remote(
                                        view, file_id, missing, missing[0][1]))
        return self._fetch_remote(view, file_id, run, start)

    def _fetch_remote(self, view: View, file_id: int, run: list, start: int
                      ) -> dict[int, bytes]:
        state = self.state
        info = state.file_info(file_id)
        length = run[-1][1] + run[-1][2] - start  # frames in offset order; gaps are skipped
        decode = state.impl.decode_page_frame
        page_size = view.page_size
        attempts = state.config.fetch_retries + 1
        last_error: Exception | None = None
        for attempt in range(attempts):
            if attempt:
                time.sleep(min(1.0, 0.05 * (2 ** (attempt - 1))))
            try:
                whole = self.verifier.pages_for(file_id)  # small files: whole + CRC
                if whole is None:  # verified already: the machine's copy beats a GET
                    whole = self.verifier.stored_pages(file_id)
                if whole is not None:
                    pages = self._from_whole(view, file_id, run, whole)
                    break
                data = self.hedger.read_range(info, start, length)
                self.bytes_fetched += len(data)
                if len(data) != length:
                    raise LTXFormatError(f"short read: {len(data)} of {length} bytes")
                pages = {}
                for pgno, offset, size in run:
                    got, _flags, page, frame_len = decode(data, page_size, offset - start, size)
                    if got != pgno or frame_len != size:
                        raise LTXFormatError(
                            f"frame at offset {offset} holds page {got} ({frame_len} bytes), "
                            f"index says page {pgno} ({size} bytes)")
                    pages[pgno] = page
                break
            except NotFoundError as exc:
                raise FileMissingError(f"{info.name} (level {info.level}) is gone: {exc}",
                                       file_id) from exc
            except (StorageError, LTXFormatError, OSError) as exc:
                last_error = exc
                log.warning("fetching pages %d-%d of %s failed (attempt %d of %d): %s",
                            run[0][0], run[-1][0], info.name, attempt + 1, attempts, exc)
        else:
            raise PageFetchError(
                f"cannot read page {run[0][0]} from {info.name} (level {info.level}) "
                f"after {attempts} attempts: {last_error}") from last_error
        put = self.state.put_page
        for pgno, page in pages.items():
            put(cache_key(file_id, pgno), page)
        return pages

    def _from_whole(self, view: View, file_id: int, run: list, whole: dict[int, bytes]
                    ) -> dict[int, bytes]:
        """The run's pages from a verified whole file; the file's other pages the view
        still maps to it seed the cache (they were paid for already)."""
        lookup, put = view.index.lookup, self.state.put_page
        frames = []
        for pgno, page in whole.items():
            entry = lookup(pgno)
            if entry is not None and entry[0] == file_id:
                put(cache_key(file_id, pgno), page)
                frames.append((pgno, entry[1], entry[2]))
        disk = self.disk
        if disk is not None and frames:  # the persistent cache gets them too
            disk.put_frames(self.state.file_info(file_id), frames, whole)
        try:
            return {pgno: whole[pgno] for pgno, _, _ in run}
        except KeyError as exc:
            raise LTXFormatError(f"page {exc} is not in the file its index names") from None
