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
from collections import OrderedDict, deque
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from .._worker import Worker, settle
from ..storage.fetch import fetch_file_index
from ..errors import LiteVFSError, LTXFormatError, StorageError
from ..ltx.decoder import decode_file
from ..ltx.format import CHECKSUM_FLAG, HEADER_SIZE, PAGE_FLAG_SIZE, PAGE_HEADER_SIZE, \
    SIZE_PREFIX, Header, Trailer
from .objstore import MAX_OBJECT, check_bytes
from .verified import SharedRecord

if TYPE_CHECKING:
    from ..ltx.format import FileInfo
    from .objstore import ObjectStore
    from .diskstore import ReplicaDiskCache
    from .state import ReplicaState

log = logging.getLogger("litevfs.verify")

STREAM_CHUNK = 4 * 1024 * 1024  # bytes of frames per ranged GET when streaming
# A verified object's pages evicted from memory are read again from the machine's store
# (no lock, no GET) when the object is at most this big: checking it whole again (CRC-64
# and decode) then costs less than an object-storage GET (measured: ~3.5 ms for 1 MiB
# compiled; the pure core ~12 ms for 32 KiB, ~50 ms for 128 KiB); bigger ones are read
# by ranges.
STORED_AGAIN_MAX = {"compiled": 1024 * 1024, "python": 32 * 1024}
EXPECTED_MAX = 2048  # identities (headers) remembered to check stored copies against: a
# view refers to far fewer objects (a snapshot, level-1 files, recent L0 files)
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


class StreamCheck:
    """A resumable CRC-64 check of one large LTX object, read in pieces in file order
    (no page index needed). Between pieces it holds only where the next page frame
    starts and the running CRC (``state``), so a check can stop at any piece and another
    process can go on from there (``verified.py`` shares the state).

    ``next_range(chunk)`` says what to read next; ``feed(data)`` takes those bytes and
    advances; ``done`` is set at the end, then ``error`` is None or why it failed."""

    def __init__(self, info: FileInfo, impl: Any, state: tuple[int, int, int, int] | None = None
                 ) -> None:
        self.info = info
        self.impl = impl
        self.pos, self.crc, self.page_size, self.commit = state or (0, 0, 0, 0)
        self.in_tail = False
        self.done = False
        self.error: str | None = None
        self.hashed = 0  # bytes of decoded pages hashed so far

    @property
    def state(self) -> tuple[int, int, int, int]:
        return (self.pos, self.crc, self.page_size, self.commit)

    def next_range(self, chunk: int) -> tuple[int, int]:
        size = self.info.size
        if self.in_tail:
            return self.pos, size - self.pos  # the page index and trailer, whole
        # at least one whole frame (before the header is read, of a 4 KiB page: with
        # bigger pages the first piece just ends after the header)
        end = min(size, self.pos + max(chunk, HEADER_SIZE + _max_frame(self.page_size or 4096)))
        return self.pos, end - self.pos

    def feed(self, data: bytes, max_hashed: int = 1 << 62) -> None:
        """Take the bytes of ``next_range()``; stops early (the rest is read again next
        time) once ``max_hashed`` bytes of pages were hashed: LZ4 pages expand up to
        ~100x, and one step of CRC work must stay short."""
        try:
            self._feed(data, max_hashed)
        except LTXFormatError as exc:
            self.done, self.error = True, str(exc)

    def _feed(self, data: bytes, max_hashed: int) -> None:
        base, p, size = self.pos, 0, self.info.size
        if self.in_tail:
            self._finish(data)
            return
        if base == 0:
            header = Header.unpack(data[:HEADER_SIZE])
            header.validate()
            if (header.min_txid, header.max_txid) != (self.info.min_txid, self.info.max_txid):
                raise LTXFormatError("header TXID range does not match the file name")
            self.page_size, self.commit = header.page_size, header.commit
            self.crc = self.impl.crc64(data[:HEADER_SIZE])
            p = HEADER_SIZE
        crc64, decode, page_size = self.impl.crc64, self.impl.decode_page_frame, self.page_size
        whole = base + len(data) == size
        max_frame = _max_frame(page_size)
        crc = self.crc
        view = memoryview(data)
        hashed = 0
        while len(data) - p >= PAGE_HEADER_SIZE and hashed < max_hashed:
            if data[p:p + PAGE_HEADER_SIZE] == _ZERO_PAGE_HEADER:  # end of the frames
                self.crc, self.pos = crc, base + p
                self.hashed += hashed
                if whole:
                    self._finish(data[p:])
                else:
                    self.in_tail = True
                return
            if len(data) - p < max_frame and not whole:
                break  # the next frame may be cut by this piece's end: read it next time
            pgno, flags, page, frame_len = decode(data, page_size, p, -1)
            if pgno > self.commit or pgno < 1:
                raise LTXFormatError(f"frame at {base + p} holds page {pgno}, beyond the "
                                     f"commit size {self.commit}")
            head = PAGE_HEADER_SIZE + (SIZE_PREFIX if flags & PAGE_FLAG_SIZE else 0)
            crc = crc64(page, crc64(view[p:p + head], crc))
            hashed += page_size
            p += frame_len
        self.hashed += hashed
        if whole and hashed < max_hashed:
            raise LTXFormatError(f"missing end-of-pages marker at offset {base + p}")
        self.crc, self.pos = crc, base + p

    def _finish(self, rest: bytes) -> None:
        """``rest``: from the end-of-pages marker to the end of the file."""
        if len(rest) != self.info.size - self.pos:
            raise LTXFormatError(f"short read of the page index: {len(rest)} bytes")
        crc = self.impl.crc64(memoryview(rest)[:len(rest) - 8], self.crc)
        trailer = Trailer.unpack(rest)
        self.done = True
        if CHECKSUM_FLAG | crc != trailer.file_checksum:
            self.error = (f"file checksum mismatch: stored {trailer.file_checksum:016x}, "
                          f"computed {CHECKSUM_FLAG | crc:016x}")


def _max_frame(page_size: int) -> int:
    """An upper bound of one page frame (LZ4's worst case plus headers)."""
    return 2 * page_size + 1024


def _object_key(info: FileInfo) -> tuple[int, int, int, int]:
    return (info.level, info.min_txid, info.max_txid, info.size)


def _verified_mark(info: FileInfo) -> str:
    """Disk-cache meta name recording that this very object passed its CRC-64 check (its
    upload time is part of the name: a re-uploaded object is checked again)."""
    return (f"verified|{info.level}|{info.min_txid:016x}|{info.max_txid:016x}|{info.size}|"
            f"{int(info.created_at)}")


START_DELAY = 0.5  # seconds after open before background verification reads anything
BUDGET_WAIT = 0.5  # seconds between looks at the byte budget while it is spent
SHARE_EVERY = 5.0  # seconds between saves of an unfinished check's progress to the record
BUSY_WAIT = 0.05  # seconds between looks while the queries' own fetches are in flight
MIN_PIECE = 64 * 1024  # smallest background read worth a request (the tail may be less)


def _progress_mark(info: FileInfo) -> str:
    """Disk-cache meta name of where a background check of this object stopped."""
    return "progress" + _verified_mark(info)[len("verified"):]


COMPILED_BANDWIDTH = 16 * 1024**2
PURE_BANDWIDTH = 2 * 1024**2  # the pure CRC-64 runs at ~15 MB/s: keep it to a small share


def _pure(impl: Any) -> bool:
    name = getattr(impl, "IMPLEMENTATION", None) or getattr(impl, "IMPLEMENTATION_NAME", "")
    return name == "python"


def default_bandwidth(impl: Any) -> int:
    """The background check's budget when the user set none, by core implementation."""
    return PURE_BANDWIDTH if _pure(impl) else COMPILED_BANDWIDTH


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
        # Background bytes per byte the process's queries read (0: no such bound; an
        # explicitly unbounded bandwidth means run to the end).
        self.share: float = cfg.verify_share if self.bandwidth else 0.0
        self.record = SharedRecord(state.storage, write=cfg.verify_record == "shared")
        self.hints: Any = None  # the views' HintBook: learned index lengths to publish
        self._check: StreamCheck | None = None  # the background check in progress
        self.bytes_read = 0  # bytes this verifier read (its own budget counts them)
        self.waiting_budget = False
        self.busy: Any = lambda: False  # the session wires the reader's: foreground first
        self.query_bytes: Any = lambda: 0  # page bytes the reader fetched (session wires it)
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
        # The machine's shared store of small objects (objstore.py), set when the process
        # joins the machine's shared state; what this process knows of each object's
        # identity (header, file checksum) to check a stored copy against.
        self.store: ObjectStore | None = None
        self._expected: OrderedDict[tuple[int, int, int, int],
                                    tuple[Header | None, int | None]] = OrderedDict()
        self.whole_fetches = 0  # small objects this process fetched from the bucket whole
        self.files_verified = 0
        self.bytes_verified = 0
        self.files_remembered = 0  # verified by an earlier process (the disk cache says)
        # The first queries of a cold open should not share the CPU and the connections
        # with a background CRC stream: it starts a little later.
        self._not_before = time.monotonic() + START_DELAY
        self._shared_at = 0.0  # when progress last went to the shared record

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

    def expect(self, info: FileInfo, header: Header | None, file_checksum: int | None = None
               ) -> None:
        """Remember what ``info`` is (its header from its index or a DONE record, its
        file checksum when the log says): a stored copy must match it."""
        key = _object_key(info)  # not the upload time: a DONE record and a LIST differ
        with self._lock:
            old = self._expected.pop(key, (None, None))
            self._expected[key] = (header or old[0], file_checksum or old[1])
            while len(self._expected) > EXPECTED_MAX:
                self._expected.popitem(last=False)

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
        pages = self.read_whole(info)
        with self._lock:
            self._verified_objects.add(_object_key(info))
        return pages

    def read_whole(self, info: FileInfo) -> dict[int, bytes]:
        """The pages of the small object ``info``, read whole and CRC-checked: from the
        machine's store when it holds the object, else with one GET (under the object's
        lock, so the machine's processes fetch it once) that then goes to the store.
        Raises LTXFormatError or StorageError for the bucket's bytes; a bad stored copy
        is removed and never served."""
        store = self.store
        if store is None or info.size > MAX_OBJECT:
            return self._get_whole(info)
        pages = self._stored(store, info)
        if pages is not None:
            return pages
        with store.fetching(info):
            pages = self._stored(store, info)  # fetched by the holder we waited for
            if pages is not None:
                return pages
            data = self._fetch_bytes(info)
            pages = dict(decode_file(data, verify=True, impl=self.state.impl).pages)
            store.put(info, data)  # checked: only the object's own bytes are stored
            return pages

    def stored_pages(self, file_id: int) -> dict[int, bytes] | None:
        """The pages of a small object from the machine's store, checked as at first
        (for pages of a verified object that left the memory cache), or None: read the
        ranges from the bucket."""
        store = self.store
        if store is None:
            return None
        info = self.state.file_info(file_id)
        if info.size > STORED_AGAIN_MAX["python" if _pure(self.state.impl) else "compiled"]:
            return None
        return self._stored(store, info)

    def _fetch_bytes(self, info: FileInfo) -> bytes:
        data = self.state.storage.read_range(info, 0, info.size)
        self.whole_fetches += 1
        if len(data) != info.size:
            raise StorageError(f"short read of {info.name}: {len(data)} bytes")
        return data

    def _get_whole(self, info: FileInfo) -> dict[int, bytes]:
        return dict(decode_file(self._fetch_bytes(info), verify=True,
                                impl=self.state.impl).pages)

    def _stored(self, store: ObjectStore, info: FileInfo) -> dict[int, bytes] | None:
        data = store.get(info)
        if data is None:
            return None
        header, checksum = self._expected.get(_object_key(info), (None, None))
        try:
            check_bytes(info, data, header, checksum)
            pages = dict(decode_file(data, verify=True, impl=self.state.impl).pages)
        except LTXFormatError as exc:
            store.reject(info, str(exc))
            return None
        store.hits += 1
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
                    pages = self.read_whole(info)
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

    def _chunk(self) -> int:
        """Bytes per streamed step: about an eighth of a second of the budget, so one
        step of CRC work (which holds the GIL with the pure core) never stalls queries
        for long; unbounded budgets use the full chunk."""
        if not self.bandwidth:
            return STREAM_CHUNK
        return max(64 * 1024, min(STREAM_CHUNK, self.bandwidth // 8))

    def _remember(self, info: FileInfo) -> None:
        """Record that ``info`` passed: in the persistent cache (this machine) and in the
        replica's shared record (every machine), so no later process downloads a large
        object again just to check it."""
        if info.size <= self.max_size:
            return
        disk = self.disk
        if disk is not None:
            disk.put_meta(_verified_mark(info), b"1")
        self.record.add_verified(info)
        self.record.save()

    def _remembered(self, info: FileInfo) -> bool:
        disk = self.disk
        return (self.record.is_verified(info)
                or (disk is not None and disk.get_meta(_verified_mark(info)) == b"1"))

    def _saved_progress(self, info: FileInfo) -> tuple[int, int, int, int] | None:
        """Where an earlier check of ``info`` stopped (the furthest known), or None."""
        best = self.record.progress(info)
        disk = self.disk
        raw = disk.get_meta(_progress_mark(info)) if disk is not None else None
        if raw is not None:
            try:
                local = tuple(int(x) for x in raw.split(b","))
                if len(local) == 4 and (best is None or local[0] > best[0]):
                    best = local  # type: ignore[assignment]
            except ValueError:
                pass
        return best

    def _save_progress(self, check: StreamCheck) -> None:
        if check.pos <= 0:
            return
        disk = self.disk
        if disk is not None:
            disk.put_meta(_progress_mark(check.info), ",".join(map(str, check.state)).encode())
        self.record.add_progress(check.info, check.state)

    def _share_progress(self) -> None:
        """Many processes exit without closing their connections (close() saves too):
        as the check advances (and when it waits for budget), its progress goes to the
        shared record now and then, so the next process goes on from there instead of
        checking those bytes again (a GET and a PUT of the small record, at most every
        SHARE_EVERY s)."""
        now = time.monotonic()
        if self.record.dirty and now - self._shared_at >= SHARE_EVERY:
            self._shared_at = now
            self.record.save()

    def budget(self) -> int:
        """Bytes the background check may read now: ``share`` of the page bytes the
        queries read so far (``query_bytes``), less what it read already."""
        if not self.share:
            return 1 << 62
        return int(self.share * self.query_bytes()) - self.bytes_read

    def start(self) -> None:
        self.first_wait = max(0.0, self._not_before - time.monotonic())
        super().start()

    def step(self) -> float | None:
        """One piece of background work: read the shared record (once), then check the
        next piece of the next queued file, within the byte budget and the bandwidth."""
        if not self.record.loaded:
            self.record.load()
            return 0.0
        hints = self.hints
        if hints is not None and hints.pending and self.record.write:
            hints.publish(self.state.storage)  # sized reads for the next processes
            return 0.0
        check = self._check
        if check is None:
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
            check = self._check = StreamCheck(info, self.state.impl, self._saved_progress(info))
            self._check_id = file_id
        file_id, info = self._check_id, check.info
        if self.busy():
            return BUSY_WAIT  # queries are fetching: they get the connections and the CPU
        budget = self.budget()
        offset, length = check.next_range(min(self._chunk(), budget))
        if length > budget or (length < budget and budget < MIN_PIECE and not check.in_tail
                               and offset + length < info.size):
            self._share_progress()
            self.waiting_budget = True
            return BUDGET_WAIT  # the queries have not read enough yet to pay for this
        self.waiting_budget = False
        started = time.monotonic()
        try:
            data = self.state.storage.read_range(info, offset, length)
        except Exception as exc:  # noqa: BLE001 - storage trouble: try again when used
            log.info("background verification of %s postponed: %s", info.name, exc)
            self._save_progress(check)
            self._check = None
            with self._lock:
                self._queued.discard(file_id)
            return 1.0
        self.bytes_read += len(data)
        hashed = check.hashed
        if len(data) != length:
            check.done, check.error = True, f"short read: {len(data)} of {length} bytes"
        else:
            check.feed(data, self._chunk())
        if not check.done:
            self._save_progress(check)
            self._share_progress()
            if not self.bandwidth:
                return 0.0
            # the rate bound counts the larger of the bytes read and the bytes hashed
            work = max(len(data), check.hashed - hashed)
            return max(0.0, work / self.bandwidth - (time.monotonic() - started))
        self._check = None
        if check.error is not None:
            if check.pos:  # resumed from saved state: look at the whole object once
                log.info("verification of %s resumed at %d failed (%s); checking it whole",
                         info.name, check.pos, check.error)
                self._check = StreamCheck(info, self.state.impl)
                return 0.0
            self.mark_failed(file_id, check.error)
            return 0.0
        self.bytes_verified += info.size
        self.mark_verified(file_id)
        self._remember(info)
        return 0.0

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """For tests: wait until the background queue is drained."""
        return self.wait_until(lambda: not (
            self._queue or self._check is not None or any(
                f not in self._verified and f not in self.failed for f in self._queued)),
            timeout, self._lock, tick=0.02)

    def close(self) -> None:
        self.stop()
        check = self._check
        if check is not None:
            self._save_progress(check)
        if self.record.dirty:  # an unfinished check goes on in the next process
            self.record.save()
        hints = self.hints
        if hints is not None and hints.pending and self.record.write:
            hints.publish(self.state.storage)

    def stats(self) -> dict[str, Any]:
        check = self._check
        return {"files_verified": self.files_verified, "bytes_verified": self.bytes_verified,
                "files_remembered": self.files_remembered, "files_failed": len(self.failed),
                "bytes_read": self.bytes_read, "share": self.share,
                "whole_fetches": self.whole_fetches,
                "object_store": None if self.store is None else self.store.stats(),
                "in_progress": None if check is None else {
                    "file": check.info.name, "offset": check.pos, "size": check.info.size,
                    "waiting_for_budget": self.waiting_budget},
                "shared_record": self.record.stats(),
                "index_hints": self.hints.stats() if self.hints is not None else None}
