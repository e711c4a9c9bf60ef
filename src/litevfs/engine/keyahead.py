"""Key-driven prefetch: execute a join's access pattern ahead of SQLite over raw pages, so
the leaves its rows need arrive a level at a time for all rows together instead of one
row after another.

SQLite runs a nested-loop join row by row: for each row of the outer cursor it descends
each inner b-tree with a key from the rows found so far, and every leaf it needs is a
round trip that depends on the previous one. The VFS layer derives the join's graph
from the statement's program (``engine/joingraph.py``: which cursor's values key which
cursor's seek) and hands it here with the statement's parameters. This worker then
reads the driver's b-tree in the statement's direction, decodes the next rows
(``engine/records.py``), takes their keys, and descends every inner tree for all of
them at once: each round fetches the pages every pending descent needs next, in
parallel (``Reader.prefetch``: coalesced ranged GETs), and cached pages (the tops
``engine/tops.py`` fetched, interior pages) cost no round at all. A leaf found gives the
keys of the next cursors. So the 20 rows of a 5-table "latest N" join take about as
many rounds as the join has levels, not one per row per table.

Bounds: at most LIMIT (+ OFFSET) driver rows (a driver needs a LIMIT; ``MAX_LIMIT``),
and fewer once the matches found show that the first rows already give LIMIT output
rows; ``PAGE_BUDGET`` pages and ``MAX_BATCHES`` batches of requests per statement; a new
statement or the end of the transaction cancels the work (checked as pages arrive).
Fetched pages are ordinary cache entries: a wrong guess costs bytes, never rows.
Nothing runs when recent small GETs answer within ``FAST_RTT_S`` (object storage next
door: SQLite's own reads cost less than the CPU this takes from its thread), nor when
the statement's last run found every page cached and nothing was fetched since (cached
workloads pay one dictionary probe).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, wait
from typing import TYPE_CHECKING, Any

from .._impl import cache_key
from .._worker import Worker
from .joingraph import MAX_LIMIT, JoinGraph, Probe, Source
from .records import (
    edge_children,
    index_child,
    index_interior_entry,
    index_leaf_keys,
    index_leaf_matches,
    table_child,
    table_leaf_row,
    table_leaf_rows,
)
from .tops import FAST_RTT_S

if TYPE_CHECKING:
    from .reader import Reader
    from .state import View

log = logging.getLogger("litevfs.keyahead")

PAGE_BUDGET = 384  # pages fetched ahead per statement, at most
MAX_BATCHES = 24  # requests for pages (each batch in parallel) per statement
WAIT_S = 5.0  # longest wait for one page before looking again
WAIT_SLICE_S = 0.1  # ... in slices: a cancel or a close is noticed this fast
MAX_MATCHES = 32  # entries of one index probe followed
MAX_CACHED_GRAPHS = 256  # statements remembered as needing no fetch
MAX_BINDINGS = 4096  # partial result rows followed per statement

Row = tuple[int | None, list]  # (rowid, values) of a row or index entry
Binding = tuple[int, dict]  # (driver row number, cursor -> Row)


class _Descent:
    """One inner b-tree descended by one key, for every binding that needs it."""

    __slots__ = ("probe", "key", "pgno", "waiting")

    def __init__(self, probe: Probe, key: object, binding: Binding) -> None:
        self.probe = probe
        self.key = key
        self.pgno = probe.root
        self.waiting = [binding]


class _Driver:
    """The outer cursor's walk: its edge leaf first, then the neighbouring leaves (and,
    in an index, the entry of the interior cell between two subtrees)."""

    __slots__ = ("pgno", "stack", "index", "reverse", "emitted", "offset", "done", "between")

    def __init__(self, graph: JoinGraph) -> None:
        self.pgno = graph.driver_root
        self.stack: list[tuple[bytes, int, list[int], int]] = []  # (page, pgno, kids, i)
        self.between: list[object] | None = None  # an interior entry not emitted yet
        self.index = graph.driver_index
        self.reverse = graph.reverse
        self.emitted = 0
        self.offset = 0  # rows of the current leaf already emitted
        self.done = False

    def next_leaf(self) -> bool:
        """Move to the next leaf in the walk's direction (False: the tree is done)."""
        step = -1 if self.reverse else 1
        self.offset = 0
        while self.stack:
            page, pgno, kids, i = self.stack[-1]
            j = i + step
            if 0 <= j < len(kids):
                self.stack[-1] = (page, pgno, kids, j)
                self.pgno = kids[j]
                if self.index:  # the cell between subtrees i and j holds an entry too
                    self.between = index_interior_entry(page, pgno, min(i, j))
                return True
            self.stack.pop()
        self.done = True
        return False


class KeyAhead(Worker):
    """One per replica: runs the newest statement's join ahead of SQLite."""

    def __init__(self, reader: Reader) -> None:
        super().__init__("litevfs-keyahead")
        self.reader = reader
        self._lock = threading.Lock()
        self._job: tuple[View, JoinGraph, Any, int] | None = None
        self._gen = 0
        self._working = False
        self.jobs = self.batches = self.pages = self.cancelled = self.fast_skips = 0
        self.over_budget = self.cached_skips = 0
        # graph -> (txid, reader.fetches) after a run that fetched nothing (cached work)
        self._cached: dict[JoinGraph, tuple[int, int]] = {}

    def want(self, view: View, graph: JoinGraph, params: Any = None) -> bool:
        """Execute ``graph`` ahead (with the statement's bound ``params``) in the
        background, replacing any earlier statement's work. False when skipped."""
        rtt = self.reader.hedger.base_latency()
        if rtt is not None and rtt < FAST_RTT_S:
            self.fast_skips += 1
            return False
        if self._cached.get(graph) == (view.txid, self.reader.fetches):
            self.cached_skips += 1  # its last run found every page cached, and nothing
            return False  # was fetched since: the pages are all still there
        with self._lock:
            self._gen += 1
            self._job = (view, graph, params, self._gen)
        self.start()
        self.wake()
        return True

    def cancel(self) -> None:
        """The statement (its transaction) ended: stop as its next page arrives."""
        if self._job is not None or self._working:
            with self._lock:
                self._gen += 1
                self._job = None

    def live(self, gen: int) -> bool:
        return gen == self._gen and not self.stopped

    def step(self) -> float | None:
        with self._lock:
            job, self._job = self._job, None
            self._working = job is not None
        if job is None:
            return 5.0  # idle: want() wakes the worker
        try:
            self.jobs += 1
            view, graph = job[0], job[1]
            before = (self.pages, self.cancelled, self.over_budget)
            _Execution(self, *job).run()
            if (self.pages, self.cancelled, self.over_budget) == before:  # ran, all cached
                if len(self._cached) >= MAX_CACHED_GRAPHS:
                    self._cached.clear()
                self._cached[graph] = (view.txid, self.reader.fetches)
            else:
                self._cached.pop(graph, None)
        except Exception as exc:  # noqa: BLE001 - a hint never fails a statement
            log.debug("key-driven prefetch stopped: %s", exc)
        finally:
            self._working = False
        return 0.0

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """For tests: until the queued statement's work is done."""
        return self.wait_until(lambda: self._job is None and not self._working, timeout, self._lock)

    def stats(self) -> dict[str, int]:
        return {"jobs": self.jobs, "batches": self.batches, "pages": self.pages,
                "cancelled": self.cancelled, "over_budget": self.over_budget,
                "cached_skips": self.cached_skips,
                "fast_network_skips": self.fast_skips}

    def close(self) -> None:
        self.stop()


class _Execution:
    """One statement's run (see the module docstring)."""

    def __init__(self, owner: KeyAhead, view: View, graph: JoinGraph, params: Any,
                 gen: int) -> None:
        self.owner = owner
        self.reader = owner.reader
        self.view = view
        self.graph = graph
        self.params = params
        self.gen = gen
        self.deps: dict[int, list[Probe]] = {}
        for probe in graph.probes:
            self.deps.setdefault(probe.key.cursor, []).append(probe)
        self.many = [p.cursor for p in graph.probes if p.many]
        self.descents: dict[tuple[int, object], _Descent] = {}
        self.results: dict[tuple[int, object], list[Row]] = {}
        self.counts: list[dict[int, int]] = []  # driver row -> many-probe -> matches
        self.bindings = 0
        self.work: deque[_Descent | _Driver] = deque()
        self.limit = 0
        self.need = 0
        self.driver: _Driver | None = None

    # -- keys ---------------------------------------------------------------------------
    def _resolve(self, source: Source, bound: dict) -> object:
        kind = source.kind
        if kind == "value":
            return source.arg
        if kind == "param":
            params = self.params
            if isinstance(params, (tuple, list)) and 0 < source.arg <= len(params):
                return params[source.arg - 1]
            return None
        row = bound.get(source.cursor)
        if row is None:
            return None
        if kind == "rowid":
            return row[0]
        values = row[1]
        return values[source.arg] if source.arg < len(values) else None

    def _probe(self, probe: Probe, binding: Binding) -> None:
        key = self._resolve(probe.key, binding[1])
        if probe.is_index:
            if not isinstance(key, (int, float, str)) or isinstance(key, bool):
                return
        elif not isinstance(key, int) or isinstance(key, bool):
            return  # a rowid is an integer
        slot = (probe.cursor, key)
        found = self.results.get(slot)
        if found is not None:
            self._bind(probe, found, binding)
            return
        descent = self.descents.get(slot)
        if descent is not None:
            descent.waiting.append(binding)
            return
        descent = self.descents[slot] = _Descent(probe, key, binding)
        self.work.append(descent)

    def _bind(self, probe: Probe, matches: list[Row], binding: Binding) -> None:
        row, bound = binding
        if probe.many and row < len(self.counts):
            counts = self.counts[row]
            counts[probe.cursor] = max(counts.get(probe.cursor, 0), len(matches))
        for match in matches:
            if self.bindings >= MAX_BINDINGS:
                return
            self.bindings += 1
            extended = (row, {**bound, probe.cursor: match})
            for dep in self.deps.get(probe.cursor, ()):
                self._probe(dep, extended)

    # -- pages --------------------------------------------------------------------------
    def _ready(self, pgno: int) -> bytes | None:
        """The page when it is at hand (cached), else None."""
        view, reader = self.view, self.reader
        entry = view.index.lookup(pgno)
        if entry is None:
            return b""  # not in the database: nothing to follow
        key = cache_key(entry[0], pgno)
        hydrator = reader.hydrator
        if key in reader.cache or key in reader.interior or (
                hydrator is not None and hydrator.has(pgno, entry[0])):
            return reader.read_page(view, pgno)
        return None

    def _advance(self, item: _Descent | _Driver, page: bytes) -> None:
        if isinstance(item, _Driver):
            self._advance_driver(item, page)
            return
        probe, pgno = item.probe, item.pgno
        child = index_child(page, pgno, item.key) if probe.is_index else \
            table_child(page, pgno, item.key)  # type: ignore[arg-type]
        if child is not None:
            item.pgno = child
            self.work.append(item)
            return
        matches: list[Row]
        if probe.is_index:
            matches = [(v[-1] if v and isinstance(v[-1], int) else None, v)
                       for v in index_leaf_matches(page, pgno, item.key, MAX_MATCHES)]
        else:
            values = table_leaf_row(page, pgno, item.key)  # type: ignore[arg-type]
            matches = [] if values is None else [(item.key, values)]  # type: ignore[list-item]
        slot = (probe.cursor, item.key)
        self.results[slot] = matches
        self.descents.pop(slot, None)
        for binding in item.waiting:
            self._bind(probe, matches, binding)

    def _advance_driver(self, drv: _Driver, page: bytes) -> None:
        kids = edge_children(page, drv.pgno)
        if kids:
            i = len(kids) - 1 if drv.reverse else 0
            drv.stack.append((page, drv.pgno, kids, i))
            drv.pgno = kids[i]
            self.work.append(drv)
            return
        if drv.offset == 0 and not self._emit_between(drv):
            return  # parked before this leaf
        if drv.index:
            rows: list[Row] = [(v[-1] if v and isinstance(v[-1], int) else None, v)
                               for v in index_leaf_keys(page, drv.pgno)]
        else:
            rows = list(table_leaf_rows(page, drv.pgno))  # type: ignore[arg-type]
        if drv.reverse:
            rows.reverse()
        for row in rows[drv.offset:]:
            if drv.emitted >= self.need:
                return  # parked on this leaf: more rows may be wanted later
            drv.offset += 1
            self._emit(drv, row)
        # the leaf is used up: the next one in the walk's direction
        if drv.next_leaf():
            self._emit_between(drv)  # its lookups need not wait for the next leaf
            self.work.append(drv)

    def _emit(self, drv: _Driver, row: Row) -> None:
        """One more driver row: its lookups start."""
        n = drv.emitted
        drv.emitted += 1
        self.counts.append({})
        probe = Probe(self.graph.driver, 0, drv.index, Source("value"), False)
        self._bind(probe, [row], (n, {}))

    def _emit_between(self, drv: _Driver) -> bool:
        """Emit the interior entry the walk just passed, if any (False: the rows wanted
        are all out; it waits for more to be wanted)."""
        values = drv.between
        if values is None:
            return True
        if drv.emitted >= self.need:
            return False
        drv.between = None
        self._emit(drv, (values[-1] if values and isinstance(values[-1], int) else None,
                         values))
        return True

    # -- the run ----------------------------------------------------------------------------
    def _covered(self) -> int:
        """Driver rows that the matches found so far show give LIMIT output rows (an
        unknown match count counts as one); all of them when not known yet."""
        total = 0
        for n, counts in enumerate(self.counts):
            est = 1
            for c in self.many:
                est *= counts.get(c, 1)
            total += est
            if total >= self.limit:
                return n + 1
        return len(self.counts) + (self.limit - total)

    def _prune(self, waiting: list[_Descent | _Driver]) -> list[_Descent | _Driver]:
        if self.driver is None:
            return waiting
        rows = self._covered()
        kept: list[_Descent | _Driver] = []
        for item in waiting:
            if isinstance(item, _Driver):
                if item.emitted < rows:
                    kept.append(item)
                continue
            item.waiting = [b for b in item.waiting if b[0] < rows]
            if item.waiting:
                kept.append(item)
            else:
                self.descents.pop((item.probe.cursor, item.key), None)
        return kept

    def run(self) -> None:
        graph, owner = self.graph, self.owner
        base: Binding = (0, {})
        for probe in graph.probes:
            if probe.key.kind in ("param", "value"):
                self._probe(probe, base)
        if graph.driver >= 0 and graph.limit is not None:
            limit = self._resolve(graph.limit, {})
            offset = 0 if graph.offset is None else self._resolve(graph.offset, {})
            if isinstance(limit, int) and isinstance(offset, int) and limit > 0 and (
                    offset <= 0 or limit + offset <= MAX_LIMIT):  # (else rows we skip)
                limit += max(0, offset)  # the OFFSET's rows are read too
                self.limit = self.need = min(limit, MAX_LIMIT)
                self.driver = _Driver(graph)
                self.work.append(self.driver)
        budget, batches = PAGE_BUDGET, 0
        work, reader, view = self.work, self.reader, self.view
        requested: set[int] = set()
        while True:
            waiting: list[_Descent | _Driver] = []
            while work:
                item = work.popleft()
                page = self._ready(item.pgno)
                if page is None:
                    waiting.append(item)
                elif page:
                    self._advance(item, page)
            drv = self.driver
            if drv is not None and not drv.done and drv not in waiting:
                wanted = self._covered()  # rows found give too few: read more of the driver
                if wanted > drv.emitted and self.need < MAX_LIMIT:
                    self.need = min(MAX_LIMIT, wanted)
                    work.append(drv)
                    continue
            waiting = self._prune(waiting)
            if not waiting:
                return
            if not owner.live(self.gen):
                owner.cancelled += 1
                return
            pgnos = dict.fromkeys(item.pgno for item in waiting)
            new = [p for p in pgnos if p not in requested]
            if new:
                if len(new) > budget or batches >= MAX_BATCHES:
                    owner.over_budget += 1
                    return
                budget -= len(new)
                batches += 1
                owner.batches += 1
                owner.pages += len(new)
                requested.update(new)
                if batches == 1:  # the inner trees' roots travel with the first request
                    new += [p.root for p in graph.probes if p.root not in requested]
                reader.prefetch(view, new, urgent=True)
            self._wait_any(waiting)
            work.extend(waiting)

    def _wait_any(self, waiting: list[_Descent | _Driver]) -> None:
        """Until a page some waiting descent needs arrives: each is followed as soon as
        its own page is there, not when the slowest of a level is."""
        reader, view = self.reader, self.view
        futures = set()
        for item in waiting:
            future = reader.in_flight(view, item.pgno)
            if future is None:  # cached meanwhile, or not fetched: read it (or learn why)
                try:
                    reader.read_page(view, item.pgno)
                except Exception as exc:  # noqa: BLE001 - SQLite's own read reports it
                    log.debug("key-driven prefetch: page %d: %s", item.pgno, exc)
                    item.pgno = 0  # nothing to follow (not in the index: dropped)
                return
            futures.add(future)
        deadline = time.monotonic() + WAIT_S
        while self.owner.live(self.gen) and time.monotonic() < deadline:
            done, _ = wait(futures, timeout=WAIT_SLICE_S, return_when=FIRST_COMPLETED)
            if done:
                return
