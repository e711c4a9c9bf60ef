"""Plan-aware prefetch, the engine's half: fetch the tops of the b-trees a statement is
about to open, all in parallel, before SQLite descends them one round trip per level.

The VFS layer learns from each statement's program (``vfs/statements.py``) which
b-trees it opens (their root pages) and which it will scan whole, and calls
:meth:`TreeTops.want`. This worker then, per request: fetches the roots that are not
cached (coalesced, in parallel), and for each root that is an interior page with at
most ``FANOUT`` children (or any number, for a tree the statement scans whole), fetches
those children too, and the tree's right edge down to its last leaf (one page per
level: the newest rows of append-mostly tables, what "latest N" queries read; each
tree's edge goes on as soon as its own page arrives). So a join's descent into several
tables costs about one round trip for their upper levels together, then one per leaf.
The roots and the edges are what the statement waits for next: they go to the reader's
urgent pool, never queued behind the fan-out. When key-driven prefetch runs the
statement's join (``engine/keyahead.py``), only the trees it probes by column values
are fanned out (``fan``); it descends the others by key. Nothing is fetched for trees whose tops are cached: a
request for those costs one probe of the page cache. Fetched pages are ordinary cache
entries (interior pages go to their protected tier, ``state.py``).

The fan-out below the roots pays only on a slow network: each extra page is a request
the client and the server spend CPU on, while a level SQLite descends itself costs one
round trip. When recent small GETs answer within ``FAST_RTT_S`` (object storage on the
same host or rack), only the roots are fetched.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, wait
from typing import TYPE_CHECKING

from .._worker import Worker
from ..errors import LiteVFSError
from .scan import btree_children
from .schema import schema_rows

if TYPE_CHECKING:
    from .reader import Reader
    from .state import View

log = logging.getLogger("litevfs.tops")

FANOUT = 64  # a root with more children: not all of them (a point query uses one)
BUDGET = 512  # pages of the level below the roots fetched per request
MAX_QUEUED = 64
EDGE_WAIT_S = 0.1  # a wait for an edge page, in slices (a close is noticed this fast)
FAST_RTT_S = 0.008  # below this round trip, a level costs less than the fan-out saving it


class TreeTops(Worker):
    """One per replica: fetches the upper levels of the b-trees statements open."""

    def __init__(self, reader: Reader) -> None:
        super().__init__("litevfs-tops")
        self.reader = reader
        self._queue: deque[tuple[View, tuple[int, ...], frozenset[int], frozenset[int] | None]
                           | View] = deque()
        self._lock = threading.Lock()
        self._done: dict[int, tuple[int, int]] = {}  # root -> (txid, levels done) this view
        self.requests = self.pages = self.skipped = self.fast_skips = 0
        self._working = False

    def want(self, view: View, roots: tuple[int, ...], scans: frozenset[int] = frozenset(),
             fan: frozenset[int] | None = None) -> bool:
        """Fetch the tops of the trees at ``roots`` (``scans``: read whole) in the
        background; ``fan``: only these roots get their children fetched (None: any
        small enough; key-driven prefetch descends the others by key). Returns False at
        once when they were fetched for this view already (then nothing is queued)."""
        done = self._done
        txid = view.txid
        todo = tuple(r for r in roots if done.get(r, (-1,))[0] != txid)
        if not todo:
            self.skipped += 1
            return False
        with self._lock:
            if len(self._queue) >= MAX_QUEUED:
                return False
            for r in todo:
                done[r] = (txid, 0)
            self._queue.append((view, todo, scans, fan))
        self.start()
        self.wake()
        return True

    def want_schema(self, view: View) -> None:
        """After an open: fetch what SQLite reads when it loads the schema, beyond page 1
        (the rest of the schema table, and the statistics tables of an ANALYZEd
        database, which SQLite reads before planning the first query)."""
        with self._lock:
            self._queue.append(view)
        self.start()
        self.wake()

    def step(self) -> float | None:
        with self._lock:
            item = self._queue.popleft() if self._queue else None
            self._working = item is not None
        if item is None:
            return 5.0  # idle: want() wakes the worker
        try:
            if isinstance(item, tuple):
                self._fetch(*item)
            else:
                self._fetch_schema(item)
        except (LiteVFSError, OSError) as exc:  # the statement's own reads report it
            log.debug("fetching b-tree tops failed: %s", exc)
        finally:
            self._working = False
        return 0.0

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """For tests: until every queued request was handled (its fetches sent)."""
        return self.wait_until(lambda: not self._queue and not self._working, timeout, self._lock)

    def _fetch_schema(self, view: View) -> None:
        reader = self.reader
        page1 = reader.read_page(view, 1)
        children = btree_children(page1, 1)
        leaves = [(1, page1)]
        if children:  # the schema spans several pages
            self.requests += reader.prefetch(view, children)
            leaves = [(c, reader.read_page(view, c)) for c in children]
        stats = [root for pgno, page in leaves for kind, name, root in schema_rows(page, pgno)
                 if kind == "table" and name.startswith("sqlite_stat") and root > 0]
        if stats:
            self.pages += len(stats)
            self.requests += reader.prefetch(view, stats)

    def _fetch(self, view: View, roots: tuple[int, ...], scans: frozenset[int],
               fan: frozenset[int] | None) -> None:
        reader = self.reader
        self.requests += reader.prefetch(view, list(roots), urgent=True)
        rtt = reader.hedger.base_latency()
        if rtt is not None and rtt < FAST_RTT_S and not scans:
            self.fast_skips += 1
            return  # a fast network: SQLite's own descent is cheaper than the fan-out
        budget, below, edge = BUDGET, [], []
        for root in roots:
            children = btree_children(reader.read_page(view, root), root)  # waits for it
            if not children:
                continue
            if (len(children) <= FANOUT and (fan is None or root in fan)) or root in scans:
                below += children[:budget]
                budget -= min(budget, len(children))
            else:
                below.append(children[-1])
            if root not in scans:
                edge.append(children[-1])
        # The right edge of each tree, down to its last leaf: the newest rows of
        # append-mostly tables (feeds, logs, "latest N") live there; one page per level.
        # The edge is what a statement waits for next: it never queues behind the fan-out.
        self.pages += len(below)
        if edge:
            self.requests += reader.prefetch(view, edge, urgent=True)
        if below:
            self.requests += reader.prefetch(view, below)
        self._follow_edges(view, edge)

    def _follow_edges(self, view: View, edge: list[int]) -> None:
        """Fetch the next page of each tree's right edge as soon as its current one
        arrives (each tree on its own: a slow page of one never holds up the others)."""
        reader = self.reader
        todo = edge
        while todo:
            flying: dict[Future[dict[int, bytes]], None] = {}
            waiting, nxt = [], []
            for pgno in todo:
                future = reader.in_flight(view, pgno)
                if future is not None and not future.done():
                    flying[future] = None
                    waiting.append(pgno)
                    continue
                children = btree_children(reader.read_page(view, pgno), pgno)
                if children:
                    nxt.append(children[-1])
            if nxt:
                self.pages += len(nxt)
                self.requests += reader.prefetch(view, nxt, urgent=True)
            elif flying:
                if self.stopped:
                    return
                wait(flying, timeout=EDGE_WAIT_S, return_when=FIRST_COMPLETED)
            todo = waiting + nxt

    def stats(self) -> dict[str, int]:
        return {"requests": self.requests, "pages": self.pages, "skipped": self.skipped,
                "fast_network_skips": self.fast_skips}

    def close(self) -> None:
        self.stop()
