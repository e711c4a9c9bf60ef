"""The view one connection reads: pinned for the length of a read transaction.

The replica publishes new views whenever the poller finds new files; a
connection adopts the latest only when it starts a transaction (SHARED lock), so
an open read transaction keeps reading the state it started with. A time-travel
request made inside a transaction is staged and applied when it ends. This file
owns the rule; ``vfsfile.py`` only calls begin/end from xLock/xUnlock.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .state import ReplicaState, View

_UNSET = object()


class Snapshot:
    def __init__(self, state: ReplicaState) -> None:
        self.state = state
        self._pinned: View | None = None
        self._travel: View | None = None  # the time-travel view, while active
        self._staged: object = _UNSET  # a travel change requested inside a transaction
        self._lock = threading.Lock()

    @property
    def view(self) -> View:
        """What a read sees now: the pinned view inside a transaction, else the newest."""
        return self._pinned or self._travel or self.state.current

    @property
    def in_transaction(self) -> bool:
        return self._pinned is not None

    @property
    def travel(self) -> View | None:
        return self._travel

    def begin(self) -> View:
        with self._lock:
            self._pinned = self._travel or self.state.current
            return self._pinned

    def end(self) -> None:
        with self._lock:
            self._pinned = None
            if self._staged is not _UNSET:
                self._travel = self._staged  # type: ignore[assignment]
                self._staged = _UNSET

    def repin(self, view: View) -> None:
        """Swap the pinned view for an equivalent one (same TXID, rebuilt from the
        files that exist now, after compaction deleted one the old view used)."""
        with self._lock:
            if self._pinned is not None:
                self._pinned = view
            if self._travel is not None and self._travel.txid == view.txid:
                self._travel = view

    def set_travel(self, view: View | None) -> None:
        """Start (a view) or stop (None) time travel, at the next transaction boundary."""
        with self._lock:
            if self._pinned is None:
                self._travel = view
            else:
                self._staged = view
