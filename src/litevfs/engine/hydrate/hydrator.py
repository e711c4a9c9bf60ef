"""Background hydration: download the replica into a local file while reads are
served from object storage, and serve each page locally once it is there.

Versioned pages, not a "complete" switch (``localcopy.py``): a page's local bytes are
used only when they are the version the reader's pinned view names. Each page also
records the TXID ``t`` as of which its local copy is the newest version. When a new
view maps the page to another file F whose MaxTXID is <= t (typically an L1
compaction or snapshot re-pointing pages that did not change), the bytes are
provably the same: the page is re-labelled with F, not downloaded.

``hydrate_step()`` does one batch of work (no threads needed in tests); the worker
around it re-plans whenever a new view is published, so only the newest version of
each page is downloaded, with parallel ranged GETs over contiguous frames of one file
(``plan.py``). Persistence and resume: ``checkpoint.py`` and ``sidecar.py``.

A persistent file is hydrated by one process of the machine at a time (the holder of
its ``flock``); a hydrator that finds it taken follows (state ``following``): it reads
the file through the labels the owner publishes (``follower.py``) and takes over the
download when the owner goes.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import TYPE_CHECKING, Any

from ..._worker import Worker
from ...errors import LTXFormatError, NotFoundError, StorageError
from .checkpoint import Checkpoint
from .follower import SharedCopy
from .labelmap import file_ident
from .localcopy import HydrationDiskError, HydrationInUseError, LocalCopy
from .plan import MAX_GAP, RUN_BYTES, Run, plan_runs

if TYPE_CHECKING:
    from ..state import ReplicaState, View
    from ..verify import Verifier
    from ..views import ViewBuilder

log = logging.getLogger("litevfs.hydrator")

CHECKPOINT_INTERVAL = 2.0  # seconds between sidecar writes while downloading
IDLE_WAIT = 0.1  # how often an idle hydrator looks for a newer view
TAKE_OVER_S = 0.5  # how often a follower tries to become the file's owner


class Hydrator(Worker):
    """Downloads one replica into its local copy. States: pending, hydrating, complete,
    following (another process hydrates the persistent file), failed, closed."""

    stop_timeout = 60.0

    def __init__(self, state: ReplicaState, views: ViewBuilder, verifier: Verifier,
                 path: str | None = None, *, concurrency: int = 16,
                 run_bytes: int = RUN_BYTES, max_gap: int = MAX_GAP,
                 checkpoint_interval: float = CHECKPOINT_INTERVAL) -> None:
        super().__init__(f"litevfs-hydrate {state.storage.url}")
        self.shared = state  # the replica's (``self.state`` is the hydration state)
        self.views = views
        self.verifier = verifier
        self.storage = state.storage
        self.copy = LocalCopy(path)
        self.checkpoints = Checkpoint(self.copy, state)
        self.persistent = self.copy.persistent
        self.concurrency = max(1, concurrency)
        self.run_bytes, self.max_gap = run_bytes, max_gap
        self.checkpoint_interval = checkpoint_interval
        self.state = "pending"
        self.error: str | None = None
        self._lock = self.copy.lock
        self._target: View | None = None
        self._queue: list[Run] = []  # reversed: pop() gives the next run
        self._total = 0
        self._remaining = 0
        self.bytes_fetched = 0
        self.requests = 0
        self.resumed_pages = 0
        self.started_at = time.monotonic()
        self.completed_at: float | None = None
        self._cache_purged = False
        self._backoff = 0.1
        self._damaged_seen = 0
        self._pool: ThreadPoolExecutor | None = None
        self.follower: SharedCopy | None = None
        self._idents: dict[int, int] = {}
        self._next_take_over = 0.0
        self.take_overs = 0
        if self.persistent:
            self.copy.ident_of = self._ident_of

    # -- read side (hot path, on the local copy) -------------------------------------------
    @property
    def path(self) -> str | None:
        return self.copy.path

    @property
    def page_size(self) -> int:
        return self.copy.page_size

    @property
    def bytes_written(self) -> int:
        return self.copy.bytes_written

    @property
    def local_reads(self) -> int:
        follower = self.follower
        return self.copy.local_reads + (follower.local_reads if follower is not None else 0)

    def read(self, pgno: int, file_id: int) -> bytes | None:
        """The local copy of ``pgno`` if it is the version in ``file_id``, else None."""
        follower = self.follower
        if follower is not None:
            return follower.read(pgno, file_id)
        return self.copy.read(pgno, file_id)

    def has(self, pgno: int, file_id: int) -> bool:
        follower = self.follower
        if follower is not None:
            return follower.has(pgno, file_id)
        return self.copy.has(pgno, file_id)

    def _ident_of(self, file_id: int) -> int:
        """The identity of an LTX object that every process computes alike."""
        ident = self._idents.get(file_id)
        if ident is None:
            info = self.shared.file_info(file_id)
            ident = self._idents[file_id] = file_ident(info.level, info.min_txid,
                                                       info.max_txid, info.size)
        return ident

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> Hydrator:  # type: ignore[override]
        """Open the local file now (cheap) and download in a background thread."""
        try:
            self.copy.open()
        except HydrationInUseError:
            self._follow()
        except HydrationDiskError as exc:
            self._fail(exc)
            return self
        else:
            self._start_pool()
        super().start()
        return self

    def _start_pool(self) -> None:
        self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="litevfs-hydrate")

    def _follow(self) -> None:
        assert self.copy.path is not None
        self.state = "following"
        self.follower = SharedCopy(self.copy.path, self._ident_of)
        self._next_take_over = time.monotonic() + TAKE_OVER_S
        log.info("hydration file %s is hydrated by another process: reading it from there",
                 self.copy.path)

    def _take_over(self) -> bool:
        """A follower: become the owner when the file's lock is free (its owner closed
        or died). The download resumes from the owner's last sidecar."""
        now = time.monotonic()
        if now < self._next_take_over:
            return False
        self._next_take_over = now + TAKE_OVER_S
        try:
            self.copy.open()
        except HydrationInUseError:
            return False
        follower, self.follower = self.follower, None
        if follower is not None:
            follower.close()
        self.state = "pending"
        self.take_overs += 1
        if self._thread is not None:  # started as a worker: download in parallel like an owner
            self._start_pool()
        log.info("hydration file %s: its owner is gone, this process hydrates it now",
                 self.copy.path)
        return True

    def close(self) -> None:
        """Stop; persistent: fsync + sidecar; temporary: delete the file."""
        if self.state == "closed":
            return
        self.stop()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        if self.follower is not None:
            self.follower.close()
            self.follower = None
        if self.persistent and self.state != "failed" and self.copy.fd >= 0:
            try:
                self.checkpoints.save(self._target)
            except Exception as exc:  # noqa: BLE001 - closing must not fail
                log.warning("hydration of %s: final sidecar not written: %s",
                            self.storage.url, exc)
        self.state = "closed"
        self.copy.close()

    def checkpoint(self) -> bool:
        """Write the sidecar for the current target view now (persistent files)."""
        return self.checkpoints.save(self._target)

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
        if self.state == "following" and not self._take_over():
            return False
        try:
            if self.state == "pending":
                self.copy.open()
                self.resumed_pages = self.checkpoints.resume(self.shared.current)
                with self._lock:
                    self.copy.label_present()  # the machine's other processes read them
                self.state = "hydrating"
            view = self.shared.current
            if self.copy.damaged != self._damaged_seen:  # pages to heal: plan again
                self._damaged_seen = self.copy.damaged
                self._target = None
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
            if self.persistent and time.monotonic() - self.checkpoints.last_at \
                    >= self.checkpoint_interval:
                self.checkpoint()
            return True
        except HydrationDiskError as exc:
            self._fail(exc)
            return False
        except BaseException:
            self._target = None  # re-plan: some runs of the batch may be lost
            raise

    def step(self) -> float | None:
        more = self.hydrate_step()
        self._backoff = 0.1
        if self.state in ("failed", "closed"):
            return None
        return 0.0 if more else IDLE_WAIT

    def on_error(self, exc: Exception) -> float:
        wait = self._backoff
        self._backoff = min(5.0, self._backoff * 2)
        if isinstance(exc, NotFoundError):  # compaction deleted a file the view used
            log.info("hydration of %s: %s; re-planning", self.storage.url, exc)
            try:
                self.views.replan()
                return 0.0
            except Exception as exc2:  # noqa: BLE001 - retried after the backoff
                log.warning("hydration of %s: re-plan failed: %s", self.storage.url, exc2)
                return wait
        log.warning("hydration of %s: %s (retrying in %.1fs)", self.storage.url, exc, wait)
        return wait

    def _retarget(self, view: View) -> None:
        """Plan the download of ``view``: every page whose local copy is not the
        view's version. A shrink drops (and truncates away) pages past the end."""
        copy = self.copy
        if copy.page_size == 0:
            copy.page_size = view.page_size
        elif view.page_size != copy.page_size:
            raise HydrationDiskError(
                f"page size changed from {copy.page_size} to {view.page_size}")
        ps, commit = copy.page_size, view.commit
        with self._lock:
            copy.grow(commit)
            copy.drop_beyond(commit)
        copy.resize(commit * ps)
        lookup, have, txids, v = view.index.lookup, copy.have, copy.txids, view.txid
        max_of: dict[int, int] = {}
        wanted: list[tuple[int, int, int, int]] = []
        straddling: list[tuple[int, int, int, int]] = []
        seen_t: dict[int, int] = {}
        total = 0
        with self._lock:  # store must not interleave with the re-labelling
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
                        copy.label(p, fid)
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
        txids, have = self.copy.txids, self.copy.have
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
                    self.copy.label(p, frame[0])
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
                self.shared.interior.clear()
        if self.persistent and view is not None and \
                self.checkpoints.saved != (view.txid, self._total):
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
                if attempt + 1 == attempts or self.stopped:
                    raise
                log.debug("hydration read of %s failed (%s), retrying", info.name, exc)
                time.sleep(min(1.0, 0.05 * 2 ** attempt))
        raise AssertionError("unreachable")

    def _fetch(self, run: Run) -> bytes:
        self.verifier.require(run.file_id)  # CRC policy before a local copy (verify.py)
        return self._read_range(self.shared.file_info(run.file_id), run.start, run.length)

    def _store_run(self, run: Run, data: bytes, txid: int) -> None:
        info = self.shared.file_info(run.file_id)
        decode, ps = self.shared.impl.decode_page_frame, self.copy.page_size
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
        if self.state in ("failed", "closed", "following"):
            return 0
        return self.copy.store(file_id, txid, pages)

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
            "damaged_pages": self.copy.damaged, "take_overs": self.take_overs,
            "seconds": round(end - self.started_at, 3),
        }


def start_hydrator(state: ReplicaState, views: ViewBuilder, verifier: Verifier) -> Hydrator:
    """The hydrator the replica's configuration asks for, started."""
    config = state.config
    return Hydrator(state, views, verifier, config.hydration_path,
                    concurrency=config.hydration_concurrency,
                    run_bytes=RUN_BYTES).start()  # read at call time: tests shrink it
