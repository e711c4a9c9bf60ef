"""Cheap freshness: a tiny head object naming the latest TXID, polled conditionally.

A litevfs writer records every sync in the head object ``<path>/litevfs/head``
(``head.py``; Litestream ignores it), whose ``txid`` names the latest TXID.
Readers then poll it with a conditional GET (``If-None-Match: <etag>``): an unchanged
replica answers 304 with no body, one request per poll instead of Litestream's two
whole-level LISTs. Only when the head moved past the reader's view does the poll
do the normal LIST-based catch-up (``poller.poll_once``).

The interval adapts: after a change it drops back to ``poll_interval``; each idle
poll doubles it, up to ``poll_max_interval``. Replicas without a head object (written
by ``litestream replicate``) keep the plain LIST poll at ``poll_interval``; their
head is looked for again every ``RECHECK_S`` seconds, so a litevfs writer that
starts later is picked up; in head mode a LIST poll still runs every
``HEAD_RECHECK_S`` seconds in case a writer that keeps no head takes over.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from .head import HEAD_NAME, head_txid

from .poller import poll_once
from .state import ReplicaState
from .views import ViewBuilder

if TYPE_CHECKING:
    from ..storage.base import StorageClient

log = logging.getLogger("litevfs.freshness")

RECHECK_S = 60.0  # list mode: look for a head object again this often
HEAD_RECHECK_S = 300.0  # head mode: one LIST poll this often anyway


def conditional_get(storage: StorageClient, name: str, etag: str | None
                    ) -> tuple[bytes | None, str | None, bool]:
    """(data, etag, changed). ``changed`` is False when the object still has ``etag``
    (then data is None); a missing object is (None, None, True)."""
    return storage.get_object_if_changed(name, etag)


class Freshness:
    """Decides, per poll tick, whether a LIST-based poll is needed."""

    def __init__(self, state: ReplicaState, views: ViewBuilder,
                 clock: Any = time.monotonic) -> None:
        self.state = state
        self.views = views
        self.clock = clock
        self.base = state.config.poll_interval
        self.max = max(self.base, state.config.poll_max_interval)
        self.interval = self.base
        self.mode = "unknown"  # "head" (litevfs writer) or "list" (litestream replicate)
        self._etag: str | None = None
        self._head_txid = 0
        self._next_check = 0.0
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
            return poll_once(self.state, self.views)
        if not changed:
            self.not_modified += 1
            self.state.last_poll_ok = time.monotonic()
            self.interval = min(self.max, self.interval * 2)
            return False
        self._etag = etag
        try:
            self._head_txid = head_txid(data or b"")
        except ValueError:
            self._head_txid = 1 << 64  # unreadable: let the LIST decide
        if self._head_txid <= self.state.current.txid:
            self.state.last_poll_ok = time.monotonic()
            self.interval = min(self.max, self.interval * 2)
            return False
        self.interval = self.base
        self.list_polls += 1
        return poll_once(self.state, self.views)

    def stats(self) -> dict[str, Any]:
        return {"mode": self.mode, "interval_s": self.interval, "polls": self.polls,
                "head_gets": self.head_gets, "not_modified": self.not_modified,
                "list_polls": self.list_polls}
