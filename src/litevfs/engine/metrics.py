"""Cost and health metrics of one replica: request counts, bytes, cache hit rates,
time spent waiting on object storage, and what the requests would cost on S3.

The storage backends already count requests and bytes (``StorageStats``); the
replica's ``MeteredStorage`` adds wall time per storage call; this module joins
everything into one JSON-able dict, served by ``PRAGMA litevfs_stats`` and
``litevfs.stats(conn)``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ..storage.metered import RemoteTimer
from .diskcache import disabled_status

if TYPE_CHECKING:
    from .state import ReplicaState

# S3 Standard request prices (USD, us-east-1, per request): LIST and PUT are "tier 1"
# ($0.005 / 1,000), GET and HEAD "tier 2" ($0.0004 / 1,000), DELETE is free. Transfer
# out of the region is not included (it is free inside the region).
PRICE_TIER1 = 0.005 / 1000
PRICE_TIER2 = 0.0004 / 1000


def request_cost_usd(lists: int, gets: int, puts: int) -> float:
    """Estimated request cost at S3 Standard prices."""
    return (lists + puts) * PRICE_TIER1 + gets * PRICE_TIER2


class Metrics:
    """Per-replica counters beyond the storage's own (``PRAGMA litevfs_stats``). The
    composition root gives it what to report on with :meth:`attach`."""

    def __init__(self) -> None:
        self.timer = RemoteTimer()  # fed by the replica's MeteredStorage
        self.opened_at = time.time()
        self._t0 = time.perf_counter()
        self.open_s: float | None = None  # time to build the first view
        self.state: ReplicaState | None = None
        self.sources: dict[str, Any] = {}

    def attach(self, state: ReplicaState | None = None, **sources: Any) -> None:
        """Report on ``state`` and on the named collaborators: ``views``, ``verifier``,
        ``disk``, ``hedger``, ``boot``, ``freshness`` (None: not there)."""
        if state is not None:
            self.state = state
        self.sources.update(sources)

    def opened(self) -> None:
        self.open_s = time.perf_counter() - self._t0

    def snapshot(self) -> dict[str, Any]:
        state = self.state
        assert state is not None, "Metrics.attach(state) first"
        src = self.sources
        storage = state.storage.stats.snapshot()
        cache = state.cache
        out: dict[str, Any] = {
            "replica": state.storage.url,
            "implementation": getattr(state.impl, "IMPLEMENTATION_NAME", state.impl.__name__),
            **storage,
            "remote_s": round(self.timer.ns / 1e9, 6),
            "remote_calls": self.timer.calls,
            "estimated_cost_usd": round(request_cost_usd(
                storage.get("lists", 0), storage.get("gets", 0), storage.get("puts", 0)), 8),
            "memory_cache": {"hits": cache.hits, "misses": cache.misses, "entries": len(cache),
                             "bytes": cache.nbytes, "capacity": cache.capacity,
                             "evictions": cache.evictions},
            "interior_cache": {"hits": state.interior.hits, "entries": len(state.interior),
                               "bytes": state.interior.nbytes,
                               "capacity": state.interior.capacity},
            "open_s": None if self.open_s is None else round(self.open_s, 6),
            "uptime_s": round(time.time() - self.opened_at, 3),
        }
        if state.opened:
            view = state.current
            out.update(txid=f"{view.txid:016x}", page_size=view.page_size, pages=view.commit,
                       index_bytes=getattr(view.index, "nbytes", 0))
        last = state.last_poll_ok
        out["lag_s"] = None if last is None else round(time.monotonic() - last, 3)
        hedger, disk, boot = src.get("hedger"), src.get("disk"), src.get("boot")
        fresh, views, verifier = src.get("freshness"), src.get("views"), src.get("verifier")
        out["hedged_gets"] = hedger.stats() if hedger is not None else None
        # configured but unusable: say so (None when not configured)
        out["disk_cache"] = disk.stats() if disk is not None else disabled_status(state.config)
        out["boot_set"] = boot.stats() if boot is not None else None
        out["freshness"] = fresh.stats() if fresh is not None else None
        out["open_reads_ahead"] = views.reads_adopted if views is not None else 0
        machine = views.machine if views is not None else None
        out["machine_indexes"] = machine.stats() if machine is not None else None
        tops = src.get("tops")
        out["plan_prefetch"] = tops.stats() if tops is not None else None
        keyahead = src.get("keyahead")
        out["join_prefetch"] = keyahead.stats() if keyahead is not None else None
        out["verification"] = None if verifier is None else verifier.stats()
        return out
