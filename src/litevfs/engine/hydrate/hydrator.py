"""Background hydration: download the replica into a local file while reads are
served from object storage, and serve each page locally once it is there.

Versioned pages, not a "complete" switch: for every page the hydrator records
which LTX file (file id) its local copy came from. A read uses the local copy
only when that file id equals the one the reader's pinned view maps the page to,
so a transaction sees exactly the bytes its view names whether they come from
the local file, the cache or the bucket: snapshot isolation holds during the
switch, while the poller publishes new views, and under time travel. File ids
are immutable content (LTX files never change), which is why this is sound.
Each page also records the TXID ``t`` as of which its local copy is the newest
version. When a new view maps the page to another file F whose MaxTXID is <= t
(typically an L1 compaction or snapshot re-pointing pages that did not change),
the bytes are provably the same: the page is re-labelled with F, not downloaded.

Writers never overwrite a page a reader may be copying: a per-page generation
counter is odd while the page is rewritten (a seqlock); a reader checks it
before and after its ``pread`` and falls back to the normal path on a change.

``hydrate_step()`` does one batch of work (no threads needed in tests); the
thread around it re-plans whenever a new view is published, so only the newest
version of each page is downloaded, with parallel ranged GETs over contiguous
frames of one file. Persistence and resume: ``hydration_persist.py`` and
``sidecar.py``.
"""

from __future__ import annotations

import atexit
import fcntl
import logging
import os
import shutil
import tempfile
import threading
import time
from array import array
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..._worker import Worker
from ...errors import LTXFormatError, NotFoundError, StorageError
from .checkpoint import HydrationDiskError, HydrationPersistence

if TYPE_CHECKING:
    from ..state import ReplicaState, View
    from ..verify import Verifier
    from ..views import ViewBuilder

log = logging.getLogger("litevfs.hydrator")

MAX_GAP = 16 * 1024  # superseded frames up to this size are read through, not split around
RUN_BYTES = 4 * 1024 * 1024  # largest ranged GET
CHECKPOINT_INTERVAL = 2.0  # seconds between sidecar writes while downloading
IDLE_WAIT = 0.1  # how often an idle hydrator looks for a newer view


@dataclass(frozen=True, slots=True)
class Run:
    """One ranged GET: frames ``(pgno, offset, size)`` of one file, offset order."""

    file_id: int
    start: int
    length: int
    frames: tuple[tuple[int, int, int], ...]


def plan_runs(wanted: list[tuple[int, int, int, int]], *, max_gap: int = MAX_GAP,
              run_bytes: int = RUN_BYTES) -> list[Run]:
    """Coalesce wanted frames ``(file_id, offset, size, pgno)`` into ranged reads:
    frames of one file closer than ``max_gap`` bytes share a read of at most
    ``run_bytes`` (a single larger frame still gets its own read)."""
    wanted.sort()
    runs: list[Run] = []
    frames: list[tuple[int, int, int]] = []
    fid = start = end = -1
    for f, off, size, pgno in wanted:
        if frames and f == fid and off - end <= max_gap and off + size - start <= run_bytes:
            frames.append((pgno, off, size))
            end = off + size
            continue
        if frames:
            runs.append(Run(fid, start, end - start, tuple(frames)))
        fid, start, end, frames = f, off, off + size, [(pgno, off, size)]
    if frames:
        runs.append(Run(fid, start, end - start, tuple(frames)))
    return runs


def _spans(pages: list[tuple[int, bytes]]) -> list[tuple[int, list[bytes]]]:
    """Group pgno-sorted pages into runs of consecutive page numbers (one pwrite each)."""
    out: list[tuple[int, list[bytes]]] = []
    last = -2
    for pgno, page in pages:
        if pgno == last + 1:
            out[-1][1].append(page)
        else:
            out.append((pgno, [page]))
        last = pgno
    return out


class Hydrator(HydrationPersistence, Worker):
    """Owns one replica's local copy. States: pending, hydrating, complete, failed, closed."""

    def __init__(self, state: ReplicaState, views: ViewBuilder, verifier: Verifier,
                 path: str | None = None, *, concurrency: int = 16,
                 run_bytes: int = RUN_BYTES, max_gap: int = MAX_GAP,
                 checkpoint_interval: float = CHECKPOINT_INTERVAL) -> None:
        Worker.__init__(self)
        self.shared = state  # the replica's (``self.state`` is the hydration state)
        self.views = views
        self.verifier = verifier
        self.storage = state.storage
        self.persistent = path is not None
        self.path: str | None = os.path.abspath(path) if path else None
        self.concurrency = max(1, concurrency)
        self.run_bytes, self.max_gap = run_bytes, max_gap
        self.checkpoint_interval = checkpoint_interval
        self.state = "pending"
        self.error: str | None = None
        self.page_size = 0
        self._tmpdir: str | None = None
        self._fd = -1
        self._have = array("I")  # per pgno: file id + 1 of the local copy, 0 = none/unknown
        self._txid = array("Q")  # per pgno: local copy is the newest as of this TXID, 0 = none
        self._gen = array("I")  # per pgno: odd while the page is being rewritten
        self._lock = threading.Lock()
        self._target: View | None = None
        self._queue: list[Run] = []  # reversed: pop() gives the next run
        self._total = 0
        self._remaining = 0
        self._commit = 0
        self.bytes_fetched = 0
        self.bytes_written = 0
        self.requests = 0
        self.local_reads = 0
        self.resumed_pages = 0
        self.started_at = time.monotonic()
        self.completed_at: float | None = None
        self._cache_purged = False
        self._last_checkpoint = time.monotonic()
        self._checkpointed: tuple[int, int] | None = None
        self._checksums: dict[int, int | None] = {}  # TXID -> post-apply checksum
        self._pool: ThreadPoolExecutor | None = None

    # -- read side (hot path) ------------------------------------------------------------
    def read(self, pgno: int, file_id: int) -> bytes | None:
        """The local copy of ``pgno`` if it is the version in ``file_id``, else None."""
        have, gen = self._have, self._gen
        if pgno >= len(have):
            return None
        g = gen[pgno]
        if g & 1 or have[pgno] != file_id + 1:
            return None
        size = self.page_size
        try:
            page = os.pread(self._fd, size, (pgno - 1) * size)
        except OSError:
            return None
        if len(page) != size or gen[pgno] != g:  # short (truncated) or rewritten meanwhile
            return None
        self.local_reads += 1
        return page

    def has(self, pgno: int, file_id: int) -> bool:
        have = self._have
        return pgno < len(have) and have[pgno] == file_id + 1

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> Hydrator:
        """Open the local file now (cheap) and download in a background thread."""
        try:
            self._open_file()
        except HydrationDiskError as exc:
            self._fail(exc)
            return self
        self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="litevfs-hydrate")
        self._start_thread(f"litevfs-hydrate {self.storage.url}")
        return self

    def close(self) -> None:
        """Stop; persistent: fsync + sidecar; temporary: delete the file."""
        if self.state == "closed":
            return
        self._stop_thread(timeout=60)
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        if self.persistent and self.state != "failed" and self._fd >= 0:
            try:
                self.checkpoint()
            except Exception as exc:  # noqa: BLE001 - closing must not fail
                log.warning("hydration of %s: final sidecar not written: %s",
                            self.storage.url, exc)
        self.state = "closed"
        fd, self._fd = self._fd, -1
        self._have, self._txid, self._gen = array("I"), array("Q"), array("I")
        if fd >= 0:
            os.close(fd)  # also releases the flock
        if not self.persistent:
            self._remove_temp()
            atexit.unregister(self._remove_temp)

    def _open_file(self) -> None:
        if self._fd >= 0:
            return
        try:
            if self.path is None:
                self._tmpdir = tempfile.mkdtemp(prefix="litevfs-hydration-")
                self.path = os.path.join(self._tmpdir, "hydration.db")
                atexit.register(self._remove_temp)
            else:
                os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise HydrationDiskError(f"cannot create hydration file {self.path}: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            raise HydrationDiskError(
                f"hydration file {self.path} is in use by another process: {exc}") from exc
        self._fd = fd

    def _remove_temp(self) -> None:
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def _fail(self, exc: BaseException) -> None:
        self.state = "failed"
        self.error = str(exc)
        log.error("hydration of %s stopped: %s; reads continue from object storage",
                  self.storage.url, exc)

    # -- the work ------------------------------------------------------------------------
    def hydrate_step(self) -> bool:
        """One batch (up to ``concurrency`` parallel ranged GETs). True while work remains.
        Storage errors propagate (the next step re-plans); local disk errors stop
        hydration for good (state "failed")."""
        if self.state in ("failed", "closed"):
            return False
        try:
            if self.state == "pending":
                self._open_file()
                self._resume(self.shared.current)
                self.state = "hydrating"
            view = self.shared.current
            if view is not self._target:
                self._retarget(view)
            if not self._queue:
                self._round_done()
                return False
            self.state = "hydrating"
            batch = [self._queue.pop() for _ in range(min(self.concurrency, len(self._queue)))]
            if self._pool is None or len(batch) == 1:
                for run in batch:
                    self._store_run(run, self._fetch(run), view.txid)
            else:
                # Only the GETs run in the pool; decoding and writing stay on this one
                # thread, so fewer threads compete with queries for the GIL.
                futures = {self._pool.submit(self._fetch, run): run for run in batch}
                for future in as_completed(futures):
                    self._store_run(futures[future], future.result(), view.txid)
            if self.persistent and time.monotonic() - self._last_checkpoint \
                    >= self.checkpoint_interval:
                self.checkpoint()
            return True
        except HydrationDiskError as exc:
            self._fail(exc)
            return False
        except BaseException:
            self._target = None  # re-plan: some runs of the batch may be lost
            raise

    def _run(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            try:
                more = self.hydrate_step()
                backoff = 0.1
            except NotFoundError as exc:  # compaction deleted a file the view used
                log.info("hydration of %s: %s; re-planning", self.storage.url, exc)
                try:
                    self.views.replan()
                except Exception as exc2:  # noqa: BLE001 - retried below
                    log.warning("hydration of %s: re-plan failed: %s", self.storage.url, exc2)
                    self._stop.wait(backoff)
                    backoff = min(5.0, backoff * 2)
                continue
            except Exception as exc:  # noqa: BLE001 - keep trying, reads are unaffected
                if self._stop.is_set():
                    return
                log.warning("hydration of %s: %s (retrying in %.1fs)",
                            self.storage.url, exc, backoff)
                self._stop.wait(backoff)
                backoff = min(5.0, backoff * 2)
                continue
            if self.state in ("failed", "closed"):
                return
            if not more:
                self._wake.wait(IDLE_WAIT)
                self._wake.clear()

    def _grow(self, n: int) -> None:
        """Make the per-page arrays hold page numbers up to ``n`` (caller holds the lock)."""
        extra = n + 1 - len(self._have)
        if extra > 0:
            self._have.frombytes(bytes(4 * extra))
            self._txid.frombytes(bytes(8 * extra))
            self._gen.frombytes(bytes(4 * extra))

    def _retarget(self, view: View) -> None:
        """Plan the download of ``view``: every page whose local copy is not the
        view's version. A shrink drops (and truncates away) pages past the end."""
        if self.page_size == 0:
            self.page_size = view.page_size
        elif view.page_size != self.page_size:
            raise HydrationDiskError(
                f"page size changed from {self.page_size} to {view.page_size}")
        ps, commit = self.page_size, view.commit
        with self._lock:
            self._grow(commit)
            have, txids, gen = self._have, self._txid, self._gen
            for p in range(commit + 1, len(have)):
                if have[p] or txids[p]:
                    gen[p] += 1
                    have[p] = 0
                    txids[p] = 0
                    gen[p] += 1
        try:
            if os.fstat(self._fd).st_size != commit * ps:
                os.ftruncate(self._fd, commit * ps)
        except OSError as exc:
            raise HydrationDiskError(f"cannot resize {self.path}: {exc}") from exc
        self._commit = commit
        lookup, have, txids, v = view.index.lookup, self._have, self._txid, view.txid
        max_of: dict[int, int] = {}
        wanted: list[tuple[int, int, int, int]] = []
        straddling: list[tuple[int, int, int, int]] = []
        seen_t: dict[int, int] = {}
        total = 0
        with self._lock:  # store_pages must not interleave with the re-labelling
            for p in range(1, commit + 1):
                e = lookup(p)
                if e is None:
                    continue  # the lock page (never stored)
                total += 1
                fid = e[0]
                if have[p] == fid + 1:
                    txids[p] = v  # still the newest version
                    continue
                t = txids[p]
                if t:
                    m = max_of.get(fid)
                    if m is None:
                        m = max_of[fid] = self.shared.file_info(fid).max_txid
                    if m <= t <= v:  # unchanged since t: same bytes, new label
                        have[p] = fid + 1
                        txids[p] = v
                        continue
                    if t < m <= v:
                        straddling.append((fid, e[1], e[2], p))
                        seen_t[p] = t
                        continue
                wanted.append((fid, e[1], e[2], p))
        if straddling:
            wanted += self._relabel_straddling(straddling, seen_t, max_of, v)
        runs = plan_runs(wanted, max_gap=self.max_gap, run_bytes=self.run_bytes)
        runs.reverse()
        with self._lock:
            self._queue = runs
            self._total, self._remaining = total, len(wanted)
            self._target = view

    def _relabel_straddling(self, frames: list[tuple[int, int, int, int]], seen_t: dict[int, int],
                            max_of: dict[int, int], v: int) -> list[tuple[int, int, int, int]]:
        """Pages now mapped to a file ending after the TXID ``t`` their local copy is
        current at (an L1 file that arrived together with the commits it covers). The
        retained L0 files covering (t, MaxTXID] say which pages really changed; the
        others keep their bytes under the new label. Returns the frames to download."""
        txids, have = self._txid, self._have
        lo = min(seen_t.values())
        hi = max(max_of[f] for f, _, _, _ in frames)
        try:
            l0 = sorted(self.storage.list_level(0), key=lambda f: (f.min_txid, f.max_txid))
            chain, reached = [], lo
            for f in l0:
                if f.max_txid > reached and f.min_txid <= reached + 1:
                    chain.append(f)
                    reached = f.max_txid
                if reached >= hi:
                    break
            if reached < hi:
                return frames  # the L0 history is gone (retention): download
            changed: set[int] = set()
            for fi in self.views.fetch_indexes(chain):
                changed.update(fi.pgnos)
        except (StorageError, LTXFormatError) as exc:
            log.debug("cannot tell which straddled pages changed (%s): downloading", exc)
            return frames
        keep = []
        with self._lock:
            for frame in frames:
                p = frame[3]
                if p in changed or txids[p] != seen_t[p]:  # changed, or rewritten meanwhile
                    keep.append(frame)
                else:  # unchanged over (t, MaxTXID]: same bytes
                    have[p] = frame[0] + 1
                    txids[p] = v
        return keep

    def _round_done(self) -> None:
        view = self._target
        if self.state != "complete":
            self.state = "complete"
            if self.completed_at is None:
                self.completed_at = time.monotonic()
                log.info("hydrated %s into %s: %d pages at TXID %016x, %d bytes fetched in "
                         "%.2fs", self.storage.url, self.path, self._total,
                         view.txid if view else 0, self.bytes_fetched,
                         self.completed_at - self.started_at)
            if not self._cache_purged:  # every read is local now: free the memory
                self._cache_purged = True
                self.shared.cache.clear()
        if self.persistent and view is not None and self._checkpointed != (view.txid, self._total):
            self.checkpoint()

    def _read_range(self, info: Any, start: int, length: int) -> bytes:
        attempts = self.shared.config.fetch_retries + 1
        for attempt in range(attempts):
            try:
                data = self.storage.read_range(info, start, length)
                if len(data) != length:
                    raise LTXFormatError(f"short read: {len(data)} of {length} bytes")
                return data
            except NotFoundError:
                raise
            except (StorageError, LTXFormatError, OSError) as exc:
                if attempt + 1 == attempts or self._stop.is_set():
                    raise
                log.debug("hydration read of %s failed (%s), retrying", info.name, exc)
                time.sleep(min(1.0, 0.05 * 2 ** attempt))
        raise AssertionError("unreachable")

    def _fetch(self, run: Run) -> bytes:
        self.verifier.require(run.file_id)  # CRC policy before a local copy (verify.py)
        return self._read_range(self.shared.file_info(run.file_id), run.start, run.length)

    def _store_run(self, run: Run, data: bytes, txid: int) -> None:
        info = self.shared.file_info(run.file_id)
        decode, ps = self.shared.impl.decode_page_frame, self.page_size
        pages = []
        for pgno, offset, size in run.frames:
            got, _flags, page, frame_len = decode(data, ps, offset - run.start, size)
            if got != pgno or frame_len != size:
                raise LTXFormatError(f"{info.name}: frame at {offset} holds page {got}, "
                                     f"index says page {pgno}")
            pages.append((pgno, page))
        pages.sort()
        self.store_pages(run.file_id, txid, pages)
        with self._lock:
            self.bytes_fetched += len(data)
            self.requests += 1
            self._remaining -= len(run.frames)

    def store_pages(self, file_id: int, txid: int, pages: list[tuple[int, bytes]]) -> int:
        """Write ``pages`` (pgno-sorted): the versions held by ``file_id``, each the newest
        as of ``txid``. Also the hook for write mode: synced pages enter the local copy
        with their new file's id and TXID. Returns the number of pages written."""
        if self._fd < 0 or self.state in ("failed", "closed"):
            return 0
        ps = self.page_size
        mine: list[tuple[int, bytes]] = []
        with self._lock:
            if pages:
                self._grow(pages[-1][0])
            have, gen = self._have, self._gen
            for pgno, page in pages:
                if gen[pgno] & 1 or len(page) != ps:
                    continue  # another writer has it; the next plan fixes it up
                gen[pgno] += 1
                have[pgno] = 0
                self._txid[pgno] = 0
                mine.append((pgno, page))
        written = 0
        try:
            for first, chunk in _spans(mine):
                buf = b"".join(chunk) if len(chunk) > 1 else chunk[0]
                pos, view = (first - 1) * ps, memoryview(buf)
                while view:
                    n = os.pwrite(self._fd, view, pos)
                    if n <= 0:
                        raise OSError(28, "no space left on device (short write)")
                    view, pos = view[n:], pos + n
                written += len(buf)
        except OSError as exc:
            with self._lock:
                for pgno, _ in mine:
                    self._gen[pgno] += 1
            raise HydrationDiskError(f"writing {self.path} failed: {exc}") from exc
        with self._lock:
            have, txids, gen = self._have, self._txid, self._gen
            for pgno, _ in mine:
                have[pgno] = file_id + 1
                txids[pgno] = txid
                gen[pgno] += 1
            self.bytes_written += written
        return len(mine)

    def offer_pages(self, file_id: int, txid: int, pages: list[tuple[int, bytes]]) -> int:
        """:meth:`store_pages` for other threads (write mode's syncer): a local disk error
        stops hydration instead of propagating into the caller."""
        try:
            return self.store_pages(file_id, txid, pages)
        except HydrationDiskError as exc:
            self._fail(exc)
            return 0

    # -- read-outs -----------------------------------------------------------------------
    @property
    def percent(self) -> float:
        if self.state == "complete":
            return 100.0
        total = self._total
        return 0.0 if total == 0 else 100.0 * (total - self._remaining) / total

    def status(self) -> dict[str, Any]:
        with self._lock:
            total, remaining = self._total, self._remaining
        target = self._target
        end = self.completed_at or time.monotonic()
        return {
            "state": self.state, "pages_done": total - remaining, "pages_total": total,
            "percent": round(self.percent, 1), "bytes_fetched": self.bytes_fetched,
            "bytes_written": self.bytes_written, "requests": self.requests,
            "txid": target.txid if target else 0, "path": self.path,
            "persistent": self.persistent, "resumed_pages": self.resumed_pages,
            "local_reads": self.local_reads, "error": self.error,
            "seconds": round(end - self.started_at, 3),
        }


def start_hydrator(state: ReplicaState, views: ViewBuilder, verifier: Verifier) -> Hydrator:
    """The hydrator the replica's configuration asks for, started."""
    config = state.config
    return Hydrator(state, views, verifier, config.hydration_path,
                    concurrency=config.hydration_concurrency,
                    run_bytes=RUN_BYTES).start()  # read at call time: tests shrink it


def progress_text(hydrator: Hydrator | None) -> str:
    """``PRAGMA litestream_hydration_progress``: "0" when off, else one decimal."""
    if hydrator is None:
        return "0"
    return f"{hydrator.percent:.1f}"
