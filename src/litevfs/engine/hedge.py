"""Hedged ranged GETs: a request much slower than its peers is sent a second time and
whichever copy answers first wins.

Object stores have long latency tails (a stalled connection, an overloaded front end):
the p99 GET can be 10x the p50. A duplicate request costs one more GET (a few
hundred-thousandths of a cent) and usually lands on a healthy path. Bounded: at most
one hedge per request and at most ``max_concurrent`` hedges in flight; the threshold
is ``max(floor, multiplier x p50)`` of recent GETs of similar size, so large transfers
are not duplicated for being large. LTX files are immutable, so both answers are the
same bytes and taking either is safe.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from ..ltx.format import FileInfo

ReadFn = Callable[[FileInfo, int, int], bytes]

WINDOW = 64  # recent durations kept per size class
MIN_SAMPLES = 5  # a size class needs this many before its own p50 is trusted
ASSUMED_BANDWIDTH = 50e6  # bytes/s, for size classes without samples yet
_WORKERS = 64  # requests run here so the caller can wait on either copy


def size_class(length: int) -> int:
    """0 for <= 8 KiB, then one class per factor of 4, up to 5 (>= 2 MiB)."""
    return min(5, max(0, (length.bit_length() - 12) // 2))


class Hedger:
    """Runs ranged reads with a hedge; one per replica (see ``Reader``)."""

    def __init__(self, read: Callable[[], ReadFn], *, floor: float, multiplier: float = 3.0,
                 max_concurrent: int = 4) -> None:
        self._read = read  # looked up per call: metrics wrap the storage's methods
        self.floor = floor
        self.multiplier = multiplier
        self.max_concurrent = max_concurrent
        self._samples = [deque(maxlen=WINDOW) for _ in range(6)]
        self._lock = threading.Lock()
        self._inflight = 0
        self.issued = 0  # hedges sent
        self.won = 0  # hedges that answered first
        self.capped = 0  # slow requests not hedged because the cap was reached
        self._pool: ThreadPoolExecutor | None = None

    @property
    def enabled(self) -> bool:
        return self.floor > 0 and self.max_concurrent > 0

    def threshold(self, length: int) -> float:
        """Seconds after which a read of ``length`` bytes gets a hedge."""
        with self._lock:
            own = self._samples[size_class(length)]
            if len(own) >= MIN_SAMPLES:
                p50 = sorted(own)[len(own) // 2]
            else:  # no history for this size yet: any size's p50 plus transfer time
                every = sorted(d for s in self._samples for d in s)
                p50 = (every[len(every) // 2] if every else self.floor) + length / ASSUMED_BANDWIDTH
        return max(self.floor, self.multiplier * p50)

    def base_latency(self) -> float | None:
        """The fastest recent GET of at most 128 KiB: the network's round trip plus the
        server's least work, as callers that weigh a round trip against extra requests
        need it. None before any such GET (or with hedging off: nothing is timed)."""
        with self._lock:
            small = [min(s) for s in self._samples[:3] if s]
        return min(small) if small else None

    def read_range(self, info: FileInfo, offset: int, length: int) -> bytes:
        if not self.enabled:
            return self._read()(info, offset, length)
        pool = self._executor()
        primary = pool.submit(self._timed, info, offset, length)
        done, _ = wait([primary], timeout=self.threshold(length))
        if done or not primary.running() and not primary.done():
            return primary.result()  # answered, or still queued (a hedge would queue too)
        with self._lock:
            if self._inflight >= self.max_concurrent:
                self.capped += 1
                hedge = None
            else:
                self._inflight += 1
                self.issued += 1
                hedge = pool.submit(self._timed, info, offset, length)
        if hedge is None:
            return primary.result()
        hedge.add_done_callback(self._hedge_done)
        return self._first_success(primary, hedge)

    def _first_success(self, primary: Future[bytes], hedge: Future[bytes]) -> bytes:
        pending = {primary, hedge}
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in done:
                if f.exception() is None:
                    if f is hedge and not primary.done():
                        with self._lock:
                            self.won += 1
                    return f.result()
        return primary.result()  # both failed: the original request's error

    def _hedge_done(self, _: Future[bytes]) -> None:
        with self._lock:
            self._inflight -= 1

    def _timed(self, info: FileInfo, offset: int, length: int) -> bytes:
        start = time.perf_counter()
        data = self._read()(info, offset, length)
        elapsed = time.perf_counter() - start
        with self._lock:
            self._samples[size_class(length)].append(elapsed)
        return data

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            with self._lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(_WORKERS, thread_name_prefix="litevfs-get")
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"issued": self.issued, "won": self.won, "capped": self.capped,
                    "in_flight": self._inflight}
