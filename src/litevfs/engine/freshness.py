"""Cheap freshness: a tiny head object naming the latest TXID, polled conditionally.

A litevfs writer records every sync in the head object ``<path>/litevfs/head``
(``head.py``; Litestream ignores it), whose ``txid`` names the latest TXID.
Readers then poll it with a conditional GET (``If-None-Match: <etag>``): an unchanged
replica answers 304 with no body, one request per poll instead of Litestream's two
whole-level LISTs. Only when the head moved past the reader's view does the poll
do the normal LIST-based catch-up (``poller.poll_once``).

The interval tracks the writer. A writer announces its sync interval in the head
(``sync``) next to the time it recorded its last sync (``at``): while it is active the
reader polls just after each sync is due (``at`` + k x interval + a small margin for the
upload), and looks again shortly after when the upload was late, so a commit is seen
about one upload after it was synced instead of up to a whole poll interval later. A
head without ``sync`` is polled every ``poll_interval`` while active. Only when nothing
changed for ``IDLE_AFTER`` (3 sync intervals, at least 3 s) does the interval double per
idle poll, up to ``poll_max_interval``; the first change drops it back at once.
Replicas without a head object (written by ``litestream replicate``) keep the plain
LIST poll at ``poll_interval``; their head is looked for again every ``RECHECK_S``
seconds, so a litevfs writer that starts later is picked up; in head mode a LIST poll
still runs every ``HEAD_RECHECK_S`` seconds in case a writer that keeps no head takes
over.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from .head import HEAD_NAME, decode_head

from .poller import poll_once
from .state import ReplicaState
from .views import ViewBuilder

if TYPE_CHECKING:
    from ..storage.base import StorageClient

log = logging.getLogger("litevfs.freshness")

RECHECK_S = 60.0  # list mode: look for a head object again this often
HEAD_RECHECK_S = 300.0  # head mode: one LIST poll this often anyway
IDLE_AFTER_PERIODS = 3  # no change for this many sync intervals (and >= IDLE_AFTER_MIN_S):
IDLE_AFTER_MIN_S = 3.0  # the writer is idle, back off
MIN_PERIOD_S = 0.05  # never poll faster than this, whatever a head announces
LATE_RETRIES = 2  # polls that look again shortly after a sync that was due but not seen


def conditional_get(storage: StorageClient, name: str, etag: str | None
                    ) -> tuple[bytes | None, str | None, bool]:
    """(data, etag, changed). ``changed`` is False when the object still has ``etag``
    (then data is None); a missing object is (None, None, True)."""
    return storage.get_object_if_changed(name, etag)


class Freshness:
    """Decides, per poll tick, whether a LIST-based poll is needed, and when to poll next
    (``interval``, seconds from now)."""

    def __init__(self, state: ReplicaState, views: ViewBuilder,
                 clock: Any = time.monotonic, wall: Any = time.time) -> None:
        self.state = state
        self.views = views
        self.clock = clock
        self.wall = wall  # compared with the writer's ``at`` (same-clock assumption checked)
        self.base = state.config.poll_interval
        self.max = max(self.base, state.config.poll_max_interval)
        self.interval = self.base
        self.period = self.base  # the writer's sync interval when announced
        self.announced = False
        self.mode = "unknown"  # "head" (litevfs writer) or "list" (litestream replicate)
        self._etag: str | None = None
        self._head_txid = 0
        self._head_at: float | None = None  # writer wall clock of its last recorded sync
        self._next_check = 0.0
        self._last_change = clock()
        self._late = 0  # polls in a row that found a due sync not there yet
        self.polls = self.head_gets = self.not_modified = self.list_polls = 0

    def poll(self) -> bool:
        """One tick: returns True when a new view was published."""
        self.polls += 1
        now = self.clock()
        if self.mode != "head" and now < self._next_check:
            self.list_polls += 1
            return poll_once(self.state, self.views)
        try:
            data, etag, changed = conditional_get(self.state.storage, HEAD_NAME, self._etag)
            self.head_gets += 1
        except Exception as exc:  # noqa: BLE001 - a failed head read falls back to LIST
            log.debug("head object read failed: %s", exc)
            data, etag, changed = None, None, True
        if data is None and changed and etag is None:  # no head object: litestream layout
            if self.mode != "list":
                log.debug("%s has no head object: polling by LIST", self.state.storage.url)
            self.mode, self._etag, self.interval = "list", None, self.base
            self._next_check = now + RECHECK_S
            self.list_polls += 1
            return poll_once(self.state, self.views)
        self.mode = "head"
        if now >= self._next_check:  # safety net: a non-litevfs writer may have taken over
            self._next_check = now + HEAD_RECHECK_S
            self.list_polls += 1
            if changed and etag is not None:
                self._etag = etag
                self._learn(data)
            published = poll_once(self.state, self.views)
            self._schedule(now, changed or published)
            return published
        if not changed:
            self.not_modified += 1
            self.state.last_poll_ok = time.monotonic()
            self._schedule(now, False)
            return False
        self._etag = etag
        self._learn(data)
        if self._head_txid <= self.state.current.txid:
            self.state.last_poll_ok = time.monotonic()
            self._schedule(now, True)
            return False
        self.list_polls += 1
        published = poll_once(self.state, self.views)
        self._schedule(now, True)
        return published

    def _learn(self, data: bytes | None) -> None:
        """What the head says: its TXID, and the writer's schedule when announced."""
        try:
            head = decode_head(data or b"")
        except ValueError:
            self._head_txid = 1 << 64  # unreadable: let the LIST decide
            return
        self._head_txid = head.txid
        self._head_at = head.at_ms / 1000 if head.at_ms else None
        self.announced = head.sync_ms > 0
        self.period = max(MIN_PERIOD_S, head.sync_ms / 1000) if self.announced else self.base

    def _schedule(self, now: float, changed: bool) -> None:
        """Set ``interval``: on the writer's schedule while it is active, doubling only
        once nothing changed for a while."""
        period = self.period
        if changed:
            self._last_change, self._late = now, 0
        idle_after = max(IDLE_AFTER_MIN_S, IDLE_AFTER_PERIODS * period)
        if now - self._last_change >= idle_after:  # idle: back off
            self.interval = min(self.max, max(self.interval, period) * 2)
            return
        due = self._until_next_sync(period)
        if due is None:  # no usable schedule: poll every period
            self.interval = period
        elif not changed and self._late < LATE_RETRIES and due > 0.6 * period:
            # the sync we polled for was due but is not there yet (a slow upload, or a
            # quiet interval): look again shortly instead of a whole interval later
            self._late += 1
            self.interval = max(MIN_PERIOD_S, 0.15 * period)
        else:
            self._late = 0
            self.interval = due

    def _until_next_sync(self, period: float) -> float | None:
        """Seconds until just after the writer's next sync lands, from the head's ``at``
        and announced interval; None when there is no schedule or the clocks disagree."""
        at = self._head_at
        if not self.announced or at is None:
            return None
        since = self.wall() - at
        if since < -period or since > 1000 * period:  # clock skew: do not trust ``at``
            return None
        margin = min(0.25 * period, 0.05 + 0.1 * period)  # the sync's upload, then ours
        k = max(1, int((since - margin) // period) + 1)  # the next sync not yet looked for
        return max(MIN_PERIOD_S, at + k * period + margin - self.wall())

    def stats(self) -> dict[str, Any]:
        return {"mode": self.mode, "interval_s": round(self.interval, 3), "polls": self.polls,
                "head_gets": self.head_gets, "not_modified": self.not_modified,
                "list_polls": self.list_polls,
                "writer_sync_s": self.period if self.announced else None}
