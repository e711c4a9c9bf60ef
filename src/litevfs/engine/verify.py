"""The verification policy: no page of an LTX file is trusted beyond its frame checks
until the file's CRC-64 has been checked, and a file that fails is never read again.

LTX has no per-page checksum; the only integrity check of page content is the file
checksum over the whole file (reference section 1.7). So, per file:

* files of at most ``verify_max_size`` bytes (default 4 MiB: most L0/L1 files and small
  databases) are fetched whole and verified *before any of their pages is served*; the
  verified pages seed the page cache, so this usually costs no more than the ranged
  GETs it replaces;
* larger files are served at once (every frame is still decoded and checked: page
  number, flags, LZ4 length, page size) and verified once in the background, streamed
  with at most ``verify_bandwidth`` bytes per second; ``verify=strict`` verifies them
  before serving instead;
* a file that fails (checksum mismatch or malformed structure, seen twice so a damaged
  transfer does not condemn a good object) is recorded in ``failed``: every later read
  that maps to it fails with :class:`CorruptFileError` (SQLITE_IOERR) naming the file,
  whatever cache or local copy holds its pages; the failure is logged once at ERROR.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from .._worker import Worker, settle
from ..storage.fetch import fetch_file_index
from ..errors import LiteVFSError, LTXFormatError, StorageError
from ..ltx.decoder import decode_file
from ..ltx.format import CHECKSUM_FLAG, HEADER_SIZE, PAGE_FLAG_SIZE, PAGE_HEADER_SIZE, \
    SIZE_PREFIX, Header, Trailer

if TYPE_CHECKING:
    from ..ltx.format import FileInfo
    from .diskstore import ReplicaDiskCache
    from .state import ReplicaState

log = logging.getLogger("litevfs.verify")

STREAM_CHUNK = 4 * 1024 * 1024  # bytes of frames per ranged GET when streaming
_ZERO_PAGE_HEADER = b"\0" * PAGE_HEADER_SIZE


class CorruptFileError(LiteVFSError):
    """An LTX object failed verification; reads of its pages fail (SQLITE_IOERR)."""


def verify_streamed(storage: Any, info: FileInfo, impl: Any, *, chunk: int = STREAM_CHUNK,
                    throttle: Any = None) -> None:
    """Check the file checksum of a large file with bounded memory: the header, the
    page frames in chunks of about ``chunk`` bytes (each decoded, its page hashed), then
    the index and trailer. ``throttle(nbytes)`` is called after every chunk with the
    larger of the bytes read and the bytes hashed."""
    fi = fetch_file_index(storage, info, impl=impl)
    crc64, decode = impl.crc64, impl.decode_page_frame
    page_size = fi.header.page_size
    raw_header = storage.read_range(info, 0, HEADER_SIZE)
    Header.unpack(raw_header).validate()
    crc = crc64(raw_header)
    pos, n = HEADER_SIZE, len(fi.pgnos)
    i = 0
    while i < n:
        j, end = i, pos
        # A chunk is bounded in bytes read and in bytes hashed: highly compressible
        # pages would otherwise make one "small" read cost seconds of CRC work.
        while j < n and (j == i or (end + fi.sizes[j] - pos <= chunk
                                    and (j - i + 1) * page_size <= chunk)):
            if fi.offsets[j] != end:
                raise LTXFormatError(f"frame {j} is at {fi.offsets[j]}, expected {end}")
            end += fi.sizes[j]
            j += 1
        data = storage.read_range(info, pos, end - pos)
        for k in range(i, j):
            off = fi.offsets[k] - pos
            pgno, flags, page, _ = decode(data, page_size, off, fi.sizes[k])
            if pgno != fi.pgnos[k]:
                raise LTXFormatError(f"frame {k} holds page {pgno}, index says {fi.pgnos[k]}")
            head = PAGE_HEADER_SIZE + (SIZE_PREFIX if flags & PAGE_FLAG_SIZE else 0)
            crc = crc64(page, crc64(memoryview(data)[off:off + head], crc))
        if throttle is not None:
            throttle(max(len(data), (j - i) * page_size))
        i, pos = j, end
    rest = storage.read_range(info, pos, info.size - pos)
    if bytes(rest[:PAGE_HEADER_SIZE]) != _ZERO_PAGE_HEADER:
        raise LTXFormatError(f"missing end-of-pages marker at offset {pos}")
    crc = crc64(memoryview(rest)[:len(rest) - 8], crc)
    trailer = Trailer.unpack(rest)
    if CHECKSUM_FLAG | crc != trailer.file_checksum:
        raise LTXFormatError(f"file checksum mismatch: stored {trailer.file_checksum:016x}, "
                             f"computed {CHECKSUM_FLAG | crc:016x}")


def _object_key(info: FileInfo) -> tuple[int, int, int, int]:
    return (info.level, info.min_txid, info.max_txid, info.size)


def _verified_mark(info: FileInfo) -> str:
    """Disk-cache meta name recording that this very object passed its CRC-64 check (its
    upload time is part of the name: a re-uploaded object is checked again)."""
    return (f"verified|{info.level}|{info.min_txid:016x}|{info.max_txid:016x}|{info.size}|"
            f"{int(info.created_at)}")


START_DELAY = 0.5  # seconds after open before background verification reads anything


COMPILED_BANDWIDTH = 16 * 1024**2
PURE_BANDWIDTH = 2 * 1024**2  # the pure CRC-64 runs at ~15 MB/s: keep it to a small share


def default_bandwidth(impl: Any) -> int:
    """The background check's budget when the user set none, by core implementation."""
    name = getattr(impl, "IMPLEMENTATION", None) or getattr(impl, "IMPLEMENTATION_NAME", "")
    return PURE_BANDWIDTH if name == "python" else COMPILED_BANDWIDTH


class Verifier(Worker):
    """One per replica: which files are verified, failed, or being verified. Its worker
    streams queued large files in the background (started on the first one)."""

    stop_timeout = 5.0

    def __init__(self, state: ReplicaState, disk: ReplicaDiskCache | None = None) -> None:
        super().__init__("litevfs-verify")
        cfg = state.config
        self.state = state
        self.disk = disk
        self.max_size: int = cfg.verify_max_size
        self.strict = cfg.verify == "strict"
        self.bandwidth: int = (cfg.verify_bandwidth if cfg.verify_bandwidth is not None
                               else default_bandwidth(state.impl))
        # With hydration the whole database is downloaded anyway: a second, streamed read
        # of every large file would double the traffic (strict mode still verifies first).
        self.background = not cfg.hydration
        self.failed: dict[int, str] = {}  # file id -> reason (read without the lock)
        self._verified: set[int] = set()
        self._verified_objects: set[tuple[int, int, int, int]] = set()
        self._inflight: dict[int, Future[dict[int, bytes] | None]] = {}
        self._queued: set[int] = set()
        self._queue: deque[int] = deque()
        self._lock = threading.Lock()
        self.files_verified = 0
        self.bytes_verified = 0
        self.files_remembered = 0  # verified by an earlier process (the disk cache says)
        # The first queries of a cold open should not share the CPU and the connections
        # with a background CRC stream: it starts a little later.
        self._not_before = time.monotonic() + START_DELAY

    # -- state -----------------------------------------------------------------------
    def is_verified(self, file_id: int) -> bool:
        return file_id in self._verified

    def check(self, file_id: int) -> None:
        reason = self.failed.get(file_id)
        if reason is not None:
            info = self.state.file_info(file_id)
            raise CorruptFileError(f"{info.name} (level {info.level}) failed verification "
                                   f"earlier: {reason}; its pages are not served")

    def mark_verified(self, file_id: int) -> None:
        with self._lock:
            if file_id not in self._verified:
                self._verified.add(file_id)
                self.files_verified += 1

    def mark_failed(self, file_id: int, reason: str) -> None:
        with self._lock:
            if file_id in self.failed:
                return
            self.failed[file_id] = reason
        info = self.state.file_info(file_id)
        log.error("%s: LTX file %s (level %d) failed verification: %s; every read of its "
                  "pages now fails", self.state.storage.url, info.name, info.level, reason)

    def verified_first(self, file_id: int) -> bool:
        """True when the policy verifies this file before serving any of its pages."""
        return self.strict or self.state.file_info(file_id).size <= self.max_size

    # -- the read path ---------------------------------------------------------------
    def pages_for(self, file_id: int) -> dict[int, bytes] | None:
        """Called before a remote fetch of pages of ``file_id``: the file's verified
        pages when this call (or one it waited for) fetched a small file whole; None
        when ranged reads may proceed (verified already, or a large file in background
        mode, whose verification is then scheduled). Raises CorruptFileError."""
        self.check(file_id)
        if file_id in self._verified:
            return None
        if not self.verified_first(file_id):
            self.schedule(file_id)
            return None
        return self._ensure(file_id)

    def require(self, file_id: int) -> None:
        """For the hydrator: verified-first files are verified now (raises
        CorruptFileError for a failed file). Large files in background mode are not
        scheduled from here: the hydrator already downloads them, and a second streamed
        read would double its traffic; reads that miss the local copy schedule them."""
        self.check(file_id)
        if file_id not in self._verified and self.verified_first(file_id):
            self._ensure(file_id)

    # -- the boot set (pages fetched at open, before the view exists) ----------------
    def fetch_whole(self, info: FileInfo) -> bool:
        """Should a prefetch of this object read it whole and verify it?"""
        return info.size <= self.max_size

    def whole_file_pages(self, info: FileInfo) -> dict[int, bytes]:
        """Read ``info`` whole and verify it (raises on any problem; the normal read
        path, not this hint, decides whether the object is condemned)."""
        data = self.state.storage.read_range(info, 0, info.size)
        if len(data) != info.size:
            raise StorageError(f"short read of {info.name}: {len(data)} bytes")
        pages = dict(decode_file(data, verify=True, impl=self.state.impl).pages)
        with self._lock:
            self._verified_objects.add(_object_key(info))
        return pages

    def seen(self, file_id: int, info: FileInfo) -> None:
        """Pages of ``file_id`` enter the caches from a prefetch of ``info``: record a
        whole-file verification of that very object, or schedule a background one."""
        if file_id in self._verified:
            return
        if _object_key(info) in self._verified_objects and \
                _object_key(self.state.file_info(file_id)) == _object_key(info):
            self.mark_verified(file_id)
        elif not self.verified_first(file_id):
            self.schedule(file_id)

    def _ensure(self, file_id: int) -> dict[int, bytes] | None:
        with self._lock:
            if file_id in self._verified:
                return None
            pending = self._inflight.get(file_id)
            owner = pending is None
            if owner:
                pending = self._inflight[file_id] = Future()
        assert pending is not None
        if not owner:
            return pending.result()
        try:
            return settle(pending, lambda: self._verify_now(file_id))
        finally:
            with self._lock:
                self._inflight.pop(file_id, None)

    def _verify_now(self, file_id: int) -> dict[int, bytes] | None:
        info = self.state.file_info(file_id)
        storage, impl = self.state.storage, self.state.impl
        last: Exception | None = None
        for _attempt in range(2):  # a second look before condemning the object
            try:
                if info.size <= self.max_size:
                    data = storage.read_range(info, 0, info.size)
                    if len(data) != info.size:
                        raise StorageError(f"short read of {info.name}: {len(data)} bytes")
                    pages = dict(decode_file(data, verify=True, impl=impl).pages)
                else:
                    verify_streamed(storage, info, impl)
                    pages = None
            except LTXFormatError as exc:
                last = exc
                continue
            self.bytes_verified += info.size
            self.mark_verified(file_id)
            self._remember(info)
            return pages
        self.mark_failed(file_id, str(last))
        self.check(file_id)
        raise AssertionError("unreachable")  # pragma: no cover

    # -- background ------------------------------------------------------------------
    def schedule(self, file_id: int) -> None:
        if not self.background:
            return
        with self._lock:
            if file_id in self._queued or file_id in self._verified or self.stopped:
                return
            self._queued.add(file_id)
            self._queue.append(file_id)
            self.start()
        self.wake()

    def _throttle(self, nbytes: int, started: float, done: list[int]) -> None:
        done[0] += nbytes
        if self.bandwidth:
            ahead = done[0] / self.bandwidth - (time.monotonic() - started)
            if ahead > 0:
                self._stop.wait(ahead)
        if self._stop.is_set():
            raise _Stopped

    def _chunk(self) -> int:
        """Bytes per streamed step: about an eighth of a second of the budget, so one
        step of CRC work (which holds the GIL with the pure core) never stalls queries
        for long; unbounded budgets use the full chunk."""
        if not self.bandwidth:
            return STREAM_CHUNK
        return max(64 * 1024, min(STREAM_CHUNK, self.bandwidth // 8))

    def _remember(self, info: FileInfo) -> None:
        """Record in the persistent cache that ``info`` passed, so the next process on
        this machine does not stream a large object again just to check it."""
        disk = self.disk
        if disk is not None and info.size > self.max_size:
            disk.put_meta(_verified_mark(info), b"1")

    def _remembered(self, info: FileInfo) -> bool:
        disk = self.disk
        return disk is not None and disk.get_meta(_verified_mark(info)) == b"1"

    def start(self) -> None:
        self.first_wait = max(0.0, self._not_before - time.monotonic())
        super().start()

    def step(self) -> float | None:
        """Verify the next queued file (streamed, within the bandwidth budget)."""
        with self._lock:
            file_id = self._queue.popleft() if self._queue else None
        if file_id is None:
            return 1.0  # idle: schedule() wakes the worker
        if file_id in self._verified or file_id in self.failed:
            return 0.0
        info = self.state.file_info(file_id)
        if self._remembered(info):
            self.files_remembered += 1
            self.mark_verified(file_id)
            return 0.0
        started, done = time.monotonic(), [0]
        try:
            verify_streamed(self.state.storage, info, self.state.impl,
                            chunk=self._chunk(),
                            throttle=lambda n: self._throttle(n, started, done))
        except _Stopped:
            return None
        except LTXFormatError as exc:
            self.mark_failed(file_id, str(exc))
            return 0.0
        except Exception as exc:  # noqa: BLE001 - storage trouble: try again when used
            log.info("background verification of %s postponed: %s", info.name, exc)
            with self._lock:
                self._queued.discard(file_id)
            return 0.0
        self.bytes_verified += info.size
        self.mark_verified(file_id)
        self._remember(info)
        return 0.0

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """For tests: wait until the background queue is drained."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                busy = bool(self._queue) or any(
                    f not in self._verified and f not in self.failed for f in self._queued)
            if not busy:
                return True
            time.sleep(0.02)
        return False

    def close(self) -> None:
        self.stop()


class _Stopped(Exception):
    pass
