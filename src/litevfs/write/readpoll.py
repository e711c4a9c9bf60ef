"""One poller per machine among the read-only processes of a replica.

While a process of the machine holds DUTY (a writer syncing), everyone follows the
shared log and nobody else polls (``session._MachinePolls``). Without one, the
read-only members elect a poller with the POLL lock byte of ``P.shm``: it polls the
bucket as a lone process would (``Freshness``: the head object, else LISTs) and, when
its view moves (a new TXID, or level-1 files merged), writes the poll board ``P.board``
(``engine/board.py``: its TXID and the recent LTX files with their page indexes) and bumps the board's sequence number
in the mapped page. The others look at that word every ``FOLLOW_TICK_S`` and at the
start of each read transaction, and extend their views from the board: no LIST and no
index read, so the machine's requests do
not grow with the number of readers. The lock dies with the poller (kill -9
included): the next follower to tick takes it and polls from then on.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from ..engine.board import encode_board, read_board, write_board
from ..engine.poller import poll_once
from .shared import POLL

if TYPE_CHECKING:
    from ..engine.freshness import Freshness
    from ..engine.state import ReplicaState
    from ..engine.views import ViewBuilder
    from .writer import Writer

log = logging.getLogger("litevfs.poller")

FOLLOW_TICK_S = 0.1  # a follower reads one mapped word this often (no request)


class ReaderPolls:
    """The poll tick of a read-only member: poll and publish when elected, else follow
    the board."""

    def __init__(self, freshness: Freshness, state: ReplicaState, views: ViewBuilder) -> None:
        self.freshness = freshness
        self.state = state
        self.views = views
        # (TXID, newest merged L1 TXID) of the last board this process wrote: a poll that
        # only merged level-1 files (their entries replace L0 ones retention deletes) is
        # published too, or the followers would keep reading L0 files that are gone.
        self.published: tuple[int, int] | None = None
        self.board_polls = 0  # boards applied (diagnostics)
        self._lock = threading.Lock()  # the poll thread and read transactions both follow

    def interval(self, member: Writer) -> float:
        if member.files.held(POLL):
            return self.freshness.interval
        return min(self.freshness.interval, FOLLOW_TICK_S)

    def poll(self, member: Writer) -> bool:
        files = member.files
        if files.held(POLL) or files.lock(POLL):
            return self._poll_and_publish(member)
        with self._lock:
            return self._follow(member)

    def before_read(self, member: Writer) -> None:
        """At the start of a read transaction (``Writer.member_read``, when the board's
        number is not ``member.board_seen``): a board published since the last tick is
        applied first, so a follower reads what the poller has (new TXIDs, and level-1
        merges before retention deletes the L0 files they cover)."""
        if not member.files.held(POLL):
            with self._lock:
                self._follow(member)

    def elected(self, member: Writer) -> bool:
        return member.files.held(POLL)

    def _poll_and_publish(self, member: Writer) -> bool:
        files = member.files
        published = self.freshness.poll()
        files.set_polled_ms(int(time.time() * 1000))
        view = self.state.current
        key = (view.txid, view.l1_max_txid)
        if key != self.published:
            write_board(member.buffer_path + ".board",
                        encode_board(view.txid, list(self.views.recent.values())))
            seq = files.board_seq() + 1
            files.set_board_seq(seq)
            member.board_seen = seq
            self.published = key
        return published

    def _follow(self, member: Writer) -> bool:
        files, state = member.files, self.state
        polled = files.polled_ms()
        if polled:  # the elected poller's last poll is ours (litestream_lag and status)
            age = max(0.0, time.time() - polled / 1000)
            state.last_poll_ok = time.monotonic() - age
        self.published = None  # a follower elected later publishes at once
        seq = files.board_seq()
        if seq == member.board_seen:
            return False
        board = read_board(member.buffer_path + ".board")
        member.board_seen = seq
        if board is None:
            return False
        self.board_polls += 1  # new TXIDs, or level-1 files to merge: as a poll would
        return poll_once(state, self.views, board.files)
