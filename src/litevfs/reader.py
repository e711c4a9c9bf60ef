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

from .errors import LiteVFSError, LTXFormatError, NotFoundError, StorageError
from .ltx.format import lock_pgno
from .replica import cache_key

if TYPE_CHECKING:
    from .replica import Replica, View

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

    def __init__(self, replica: Replica) -> None:
        self.replica = replica
        self.cache = replica.cache
        self._inflight: dict[int, Future[dict[int, bytes]]] = {}
        self._lock = threading.Lock()

    def read_page(self, view: View, pgno: int, ahead_bytes: int = 0) -> bytes:
        """Page ``pgno`` of ``view``; fetch up to ``ahead_bytes`` more of the same file's
        following frames in the same request."""
        entry = view.index.lookup(pgno)
        if entry is None:
            if pgno == lock_pgno(view.page_size):
                return bytes(view.page_size)  # never stored; SQLite never uses its content
            raise PageFetchError(
                f"page {pgno} is not in the replica's index at TXID {view.txid:016x} "
                f"(database has {view.commit} pages)")
        file_id, offset, size = entry
        key = cache_key(file_id, pgno)
        page = self.cache.get(key)
        if page is not None:
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
        try:
            pages = self._fetch_run(view, file_id, run, offset)
            pending.set_result(pages)
        except BaseException as exc:
            pending.set_exception(exc)
            raise
        finally:
            with self._lock:
                for p, _, _ in run:
                    self._inflight.pop(cache_key(file_id, p), None)
        return pages[pgno]

    def _plan_run(self, view: View, pgno: int, file_id: int, offset: int, size: int,
                  ahead_bytes: int) -> list[tuple[int, int, int]]:
        """(pgno, offset, size) of the wanted frame and the contiguous uncached frames
        after it in the same file, within ``ahead_bytes``."""
        run = [(pgno, offset, size)]
        end = offset + size
        total = size
        lookup, cache, inflight = view.index.lookup, self.cache, self._inflight
        nxt = pgno + 1
        while total < ahead_bytes and nxt <= view.commit:
            entry = lookup(nxt)
            if entry is None or entry[0] != file_id or entry[1] != end:
                break
            k = cache_key(file_id, nxt)
            if k in inflight or cache.get(k) is not None:
                break
            run.append((nxt, entry[1], entry[2]))
            end += entry[2]
            total += entry[2]
            nxt += 1
        return run  # type: ignore[return-value]

    def _fetch_run(self, view: View, file_id: int, run: list, start: int) -> dict[int, bytes]:
        replica = self.replica
        info = replica.file_info(file_id)
        length = sum(size for _, _, size in run)
        decode = replica.impl.decode_page_frame
        page_size = view.page_size
        attempts = replica.config.fetch_retries + 1
        last_error: Exception | None = None
        for attempt in range(attempts):
            if attempt:
                time.sleep(min(1.0, 0.05 * (2 ** (attempt - 1))))
            try:
                data = replica.storage.read_range(info, start, length)
                if len(data) != length:
                    raise LTXFormatError(f"short read: {len(data)} of {length} bytes")
                pages: dict[int, bytes] = {}
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
        put = self.cache.put
        for pgno, page in pages.items():
            put(cache_key(file_id, pgno), page)
        return pages
