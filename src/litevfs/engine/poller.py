"""Follow the primary: ``poll_once()`` finds new LTX files and publishes a new view;
:class:`Poller` is the thin thread around it.

Per poll: LIST levels 0 and 1 in parallel, extend the current position with the
contiguous chain of newer files (the one reaching furthest at each step, as the
restore plan does), and also merge level-1 files that cover TXIDs already applied
(their entries replace references to L0 files that retention will delete). Pages
keep their newest version, so the order files arrive in never regresses a page.
A gap that neither level bridges (a reader that fell behind retention) makes the
poll re-plan from every level instead of freezing.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from .._worker import Worker
from .plan import next_chain

if TYPE_CHECKING:
    from .replica import Replica

log = logging.getLogger("litevfs.poller")


def poll_once(replica: Replica) -> bool:
    """One poll. Returns True when a new view was published."""
    view = replica.current
    if replica.executor is not None:
        l0_future = replica.executor.submit(replica.storage.list_level, 0)
        l1 = replica.storage.list_level(1)
        l0 = l0_future.result()
    else:  # pragma: no cover - executor always exists
        l0, l1 = replica.storage.list_level(0), replica.storage.list_level(1)
    chain = next_chain(l0 + l1, view.txid)
    newest = max((f.max_txid for f in l0 + l1), default=0)
    reached = chain[-1].max_txid if chain else view.txid
    if newest > reached:
        log.info("TXID gap after %016x (newest file ends at %016x): re-planning",
                 reached, newest)
        replica.replan()
        replica.last_poll_ok = time.monotonic()
        return True
    catch_up = [f for f in l1 if view.l1_max_txid < f.max_txid <= view.txid]
    if not chain and not catch_up:
        replica.last_poll_ok = time.monotonic()
        return False
    indexes = replica.fetch_indexes(catch_up + chain)
    new_view = replica.extend_view(view, indexes)
    published = replica.publish(new_view)
    replica.last_poll_ok = time.monotonic()
    return published and new_view.txid != view.txid


class Poller(Worker):
    """Calls :func:`poll_once` every ``poll_interval`` seconds until stopped."""

    def __init__(self, replica: Replica) -> None:
        super().__init__()
        self.replica = replica
        self.interval = replica.config.poll_interval
        from .freshness import Freshness  # head-object polling when a litevfs writer keeps one

        replica.freshness = Freshness(replica)
        self.paused = False

    def start(self) -> None:
        if self.interval > 0:
            self._start_thread(f"litevfs-poll {self.replica.storage.url}")

    def stop(self) -> None:
        self._stop_thread(timeout=10)

    def _run(self) -> None:
        fresh = self.replica.freshness
        while not self._stop.is_set():
            self._wake.wait(fresh.interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                fresh.poll()
            except Exception as exc:  # keep following: the next tick retries
                log.warning("poll of %s failed: %s", self.replica.storage.url, exc)
