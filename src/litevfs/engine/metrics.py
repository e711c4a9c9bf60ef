"""Cost and health metrics of one replica: request counts, bytes, cache hit rates,
time spent waiting on object storage, and what the requests would cost on S3.

The storage backends already count requests and bytes (``StorageStats``); this
module adds wall time per storage call (measured around the backend's public
methods, outermost call only, so a ``list_all`` that lists level by level counts
once) and joins everything into one JSON-able dict, served by
``PRAGMA litevfs_stats`` and ``litevfs.stats(conn)``.
"""

from __future__ import annotations

import functools
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .replica import Replica
    from ..storage.base import StorageClient

# S3 Standard request prices (USD, us-east-1, per request): LIST and PUT are "tier 1"
# ($0.005 / 1,000), GET and HEAD "tier 2" ($0.0004 / 1,000), DELETE is free. Transfer
# out of the region is not included (it is free inside the region).
PRICE_TIER1 = 0.005 / 1000
PRICE_TIER2 = 0.0004 / 1000

_TIMED = ("list_level", "list_all", "read_range", "read_tail", "read_many", "get_object",
          "put_object", "write_ltx", "delete_ltx", "delete_object")


def request_cost_usd(lists: int, gets: int, puts: int) -> float:
    """Estimated request cost at S3 Standard prices."""
    return (lists + puts) * PRICE_TIER1 + gets * PRICE_TIER2


class RemoteTimer:
    """Wall time spent inside storage calls, summed over threads."""

    def __init__(self) -> None:
        self.ns = 0
        self.calls = 0
        self._local = threading.local()
        self._lock = threading.Lock()

    def instrument(self, storage: StorageClient) -> None:
        """Wrap ``storage``'s request methods (instance attributes, class untouched)."""
        if getattr(storage, "_litevfs_timer", None) is not None:
            return
        storage._litevfs_timer = self  # type: ignore[attr-defined]
        for name in _TIMED:
            method = getattr(storage, name, None)
            if method is not None:
                setattr(storage, name, self._wrap(method))

    def _wrap(self, method: Any) -> Any:
        local = self._local

        @functools.wraps(method)
        def timed(*args: Any, **kwargs: Any) -> Any:
            depth = getattr(local, "depth", 0)
            if depth:
                return method(*args, **kwargs)
            local.depth = 1
            start = time.perf_counter_ns()
            try:
                return method(*args, **kwargs)
            finally:
                local.depth = 0
                elapsed = time.perf_counter_ns() - start
                with self._lock:
                    self.ns += elapsed
                    self.calls += 1
        return timed


class Metrics:
    """Per-replica counters beyond the storage's own (attached as ``replica.metrics``)."""

    def __init__(self, replica: Replica) -> None:
        self.replica = replica
        self.timer = RemoteTimer()
        self.timer.instrument(replica.storage)
        self.opened_at = time.time()
        self._t0 = time.perf_counter()
        self.open_s: float | None = None  # time to build the first view

    def opened(self) -> None:
        self.open_s = time.perf_counter() - self._t0

    def snapshot(self) -> dict[str, Any]:
        replica = self.replica
        storage = replica.storage.stats.snapshot()
        cache = replica.cache
        out: dict[str, Any] = {
            "replica": replica.storage.url,
            "implementation": getattr(replica.impl, "IMPLEMENTATION_NAME", replica.impl.__name__),
            **storage,
            "remote_s": round(self.timer.ns / 1e9, 6),
            "remote_calls": self.timer.calls,
            "estimated_cost_usd": round(request_cost_usd(
                storage.get("lists", 0), storage.get("gets", 0), storage.get("puts", 0)), 8),
            "memory_cache": {"hits": cache.hits, "misses": cache.misses, "entries": len(cache),
                             "bytes": cache.nbytes, "capacity": cache.capacity,
                             "evictions": cache.evictions},
            "open_s": None if self.open_s is None else round(self.open_s, 6),
            "uptime_s": round(time.time() - self.opened_at, 3),
        }
        view = replica._current
        if view is not None:
            out.update(txid=f"{view.txid:016x}", page_size=view.page_size, pages=view.commit,
                       index_bytes=getattr(view.index, "nbytes", 0))
        last = replica.last_poll_ok
        out["lag_s"] = None if last is None else round(time.monotonic() - last, 3)
        disk = getattr(replica, "disk", None)
        reader = getattr(replica, "reader", None)
        out["hedged_gets"] = reader.hedger.stats() if reader is not None else None
        if disk is not None:
            out["disk_cache"] = disk.stats()
        else:  # configured but unusable: say so (None when not configured)
            from .diskcache import disabled_status

            out["disk_cache"] = disabled_status(getattr(replica, "config", None))
        boot = getattr(replica, "boot", None)
        out["boot_set"] = boot.stats() if boot is not None else None
        fresh = getattr(replica, "freshness", None)
        out["freshness"] = fresh.stats() if fresh is not None else None
        out["open_reads_ahead"] = getattr(replica, "reads_adopted", 0)
        verifier = getattr(replica, "verifier", None)
        out["verification"] = None if verifier is None else {
            "files_verified": verifier.files_verified, "bytes_verified": verifier.bytes_verified,
            "files_remembered": verifier.files_remembered, "files_failed": len(verifier.failed)}
        return out


def metrics_of(replica: Replica) -> Metrics:
    """The replica's metrics (created on first use for replicas opened without them)."""
    metrics = getattr(replica, "metrics", None)
    if metrics is None:
        metrics = replica.metrics = Metrics(replica)  # type: ignore[attr-defined]
    return metrics
