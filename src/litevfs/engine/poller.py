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
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .._worker import Worker
from .plan import is_torn, next_chain
from .state import ReplicaState
from .views import ViewBuilder

if TYPE_CHECKING:
    from ..storage.fetch import FileIndex
    from .freshness import Freshness

log = logging.getLogger("litevfs.poller")


def poll_once(state: ReplicaState, views: ViewBuilder,
              board: Sequence[FileIndex] | None = None) -> bool:
    """One poll. Returns True when a new view was published. ``board``: the files another
    process of the machine listed, with their indexes (``board.py``): no request unless
    they do not reach on from this view."""
    view = state.current
    known = None
    if board is None:
        storage = state.storage
        l0_future = state.executor.submit(storage.list_level, 0)
        l1 = storage.list_level(1)
        l0 = l0_future.result()
    else:
        known = {fi.info: fi for fi in board}
        l0 = [fi.info for fi in board if fi.info.level == 0]
        l1 = [fi.info for fi in board if fi.info.level == 1]
    l0 = [f for f in l0 if not is_torn(f)]  # an upload cut short: not
    l1 = [f for f in l1 if not is_torn(f)]  # a commit (plan.py), never waited for
    chain = next_chain(l0 + l1, view.txid)
    newest = max((f.max_txid for f in l0 + l1), default=0)
    reached = chain[-1].max_txid if chain else view.txid
    if newest > reached:
        log.info("TXID gap after %016x (newest file ends at %016x): re-planning",
                 reached, newest)
        views.replan()
        state.last_poll_ok = time.monotonic()
        return True
    catch_up = [f for f in l1 if view.l1_max_txid < f.max_txid <= view.txid]
    if not chain and not catch_up:
        state.last_poll_ok = time.monotonic()
        return False
    indexes = views.fetch_indexes(catch_up + chain, known)
    new_view = views.extend_view(view, indexes)
    published = state.publish(new_view)
    state.last_poll_ok = time.monotonic()
    return published and new_view.txid != view.txid


class Poller(Worker):
    """Runs ``freshness.poll()`` (a conditional GET of the head object, or
    :func:`poll_once`) every ``freshness.interval`` seconds until stopped."""

    def __init__(self, freshness: Freshness, interval: float, name: str = "") -> None:
        super().__init__(f"litevfs-poll {name}")
        self.freshness = freshness
        self.interval = interval  # 0: no thread (tests poll by hand)
        self.name = name
        self.first_wait = freshness.interval

    def start(self) -> None:
        if self.interval > 0:
            super().start()

    def step(self) -> float:
        self.freshness.poll()
        return self.freshness.interval

    def on_error(self, exc: Exception) -> float:  # keep following: the next tick retries
        log.warning("poll of %s failed: %s", self.name, exc)
        return self.freshness.interval
