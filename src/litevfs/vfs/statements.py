"""Plan-aware prefetch, the VFS half: learn which b-trees a statement opens from its
program, and hand their root pages to the engine before SQLite descends them.

Every connection to a replica gets an apsw exec tracer (installed by a connection
hook). The first time a statement text runs, ``EXPLAIN`` of it gives the program: its
``OpenRead``/``OpenWrite`` opcodes name the root page of each b-tree of the main
database it opens, and a cursor that is rewound (``Rewind``/``Last``) or counted
(``Count``) and never positioned by a seek is read whole, unless a LIMIT can stop it
early (a ``DecrJumpZero`` with nothing, like an aggregate or a sorter, that needs every
row first). What was learned is kept per statement text (and schema cookie). Each
execution then asks the engine (``engine/tops.py``) for the tops of those trees, which
returns at once when they are cached, and tells the connection's scan tracker which
trees are scanned whole (their walk starts at full width).

With ``join_prefetch`` on, the program also gives the join's graph (which cursor's
values key which other cursor's seek, ``engine/joingraph.py``), learned and kept with
the plan; each execution hands it with the statement's parameters to the engine
(``engine/keyahead.py``), which runs the join's lookups ahead of SQLite over raw pages.
The end of the statement's transaction cancels that work (``file.py``).

Queries whose pages are cached pay nothing: after ``QUIET_TRACES`` statements in a row
that needed no fetch, the tracer removes itself; the next page fetch of the connection
puts it back.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import apsw

if TYPE_CHECKING:
    from ..engine.joingraph import JoinGraph
    from ..engine.keyahead import KeyAhead
    from .file import LiteFile

log = logging.getLogger("litevfs.vfs")

MAX_PLANS = 256  # statement texts remembered per connection
QUIET_TRACES = 32  # statements in a row that fetched nothing: stop tracing
_OPENS = ("OpenRead", "OpenWrite", "ReopenIdx")
_SEEKS = frozenset(("SeekGE", "SeekGT", "SeekLE", "SeekLT", "SeekRowid", "NotExists",
                    "SeekScan", "DeferredSeek", "Found", "NotFound", "NoConflict",
                    "IdxGE", "IdxGT", "IdxLE", "IdxLT", "SeekEnd"))
_WHOLE = ("Rewind", "Last", "Count")
_NEEDS_ALL_ROWS = frozenset(("AggStep", "AggStep1", "AggInverse", "SorterInsert", "IdxInsert"))
# Only these are explained: EXPLAIN of a PRAGMA runs litevfs's own pragma handlers at
# prepare time (litestream_time, litevfs_sync, ...), and other statements open no b-tree.
_EXPLAINED = ("select", "with", "insert", "update", "delete", "replace", "values")


class Plan:
    __slots__ = ("roots", "scans", "graph")

    def __init__(self, roots: tuple[int, ...], scans: frozenset[int],
                 graph: JoinGraph | None = None) -> None:
        self.roots = roots
        self.scans = scans
        self.graph = graph  # the join's lookups, for key-driven prefetch (or None)


def plan_from_program(rows: Any) -> Plan:
    """The b-trees a statement opens (root pages, main database) and those it reads whole,
    from the rows of ``EXPLAIN`` (addr, opcode, p1, p2, p3, ...)."""
    roots: dict[int, int] = {}  # cursor -> root page
    seeked: set[int] = set()
    whole: set[int] = set()
    limit = all_rows = False
    for row in rows:
        op, p1, p2, p3 = row[1], row[2], row[3], row[4]
        if op in _OPENS:
            if p3 == 0 and isinstance(p2, int) and p2 > 0:  # main database, a literal root
                roots[p1] = p2
        elif op in _SEEKS:
            seeked.add(p1)
        elif op in _WHOLE:
            whole.add(p1)
        elif op == "DecrJumpZero":
            limit = True
        elif op in _NEEDS_ALL_ROWS:
            all_rows = True
    scans = frozenset(roots[c] for c in whole - seeked if c in roots) \
        if not limit or all_rows else frozenset()
    return Plan(tuple(dict.fromkeys(roots.values())), scans)


class StatementPlanner:
    """Per connection: the exec tracer (see the module docstring)."""

    def __init__(self, con: apsw.Connection, file: LiteFile) -> None:
        self.con = con
        self.file = file
        self.replica = file.replica
        self.tops = file.replica.tops
        self.join_prefetch = bool(file.replica.config.join_prefetch) and \
            hasattr(file.replica, "key_ahead")
        self.keyahead: KeyAhead | None = None  # the replica's worker, once a join needs it
        self.plans: OrderedDict[str, Plan] = OrderedDict()
        self._cookie = b""
        self._inside = False  # our own EXPLAIN runs through the tracer too
        self.fetches_seen = -1
        self._quiet = 0
        self.armed = False
        self.learned = self.traced = 0

    def arm(self) -> None:
        if not self.armed:
            self.armed = True
            self._quiet = 0
            self.con.exec_trace = self.trace

    def disarm(self) -> None:
        if self.armed:
            self.armed = False
            if self.con.exec_trace == self.trace:
                self.con.exec_trace = None

    def trace(self, _cursor: Any, sql: str, bindings: Any) -> bool:
        if self._inside:
            return True
        try:
            self._before(sql, bindings)
        except Exception as exc:  # noqa: BLE001 - a hint never fails a statement
            log.debug("plan-aware prefetch skipped: %s", exc)
        return True

    def _before(self, sql: str, bindings: Any) -> None:
        self.traced += 1
        fetches = self.replica.reader.fetches
        if fetches == self.fetches_seen:
            self._quiet += 1
            if self._quiet >= QUIET_TRACES:
                self.disarm()  # every page these statements need is cached
        else:
            self._quiet = 0
        self.fetches_seen = fetches
        cookie = self.file.schema_cookie()
        if cookie != self._cookie:  # the schema changed: root pages may have moved
            self._cookie = cookie
            self.plans.clear()
        plan = self.plans.get(sql)
        if plan is None:
            plan = self._learn(sql, bindings)
            self.plans[sql] = plan
            if len(self.plans) > MAX_PLANS:
                self.plans.popitem(last=False)
        else:
            self.plans.move_to_end(sql)
        self.file.scans.expect_scans(plan.scans)
        view = self.replica.current
        fan = None
        if plan.graph is not None and self._key_ahead().want(view, plan.graph, bindings):
            fan = plan.graph.scattered  # the others are descended by key, not fanned out
        if plan.roots:
            self.tops.want(view, plan.roots, plan.scans, fan)

    def _learn(self, sql: str, bindings: Any) -> Plan:
        if not sql.lstrip(" \t\r\n(").lower().startswith(_EXPLAINED):
            return Plan((), frozenset())
        self.learned += 1
        self._inside = True
        try:
            rows = self.con.execute("EXPLAIN " + sql, bindings).fetchall()
        except apsw.Error:
            return Plan((), frozenset())  # not explainable (e.g. a PRAGMA with side effects)
        finally:
            self._inside = False
        plan = plan_from_program(rows)
        if self.join_prefetch and sum(row[1] in _OPENS for row in rows) > 1:
            # local: only statements that open several b-trees can join (keeps the
            # import off opens and single-table workloads)
            from ..engine.joingraph import graph_from_program

            try:
                graph = graph_from_program(rows)
            except Exception as exc:  # noqa: BLE001 - a hint never fails a statement
                log.debug("no join graph: %s", exc)
                graph = None
            # Only a join driven by an ordered scan gains: a point lookup joined by key
            # (no driver) is a chain SQLite starts as early itself (measured: no gain).
            plan.graph = graph if graph is not None and graph.driver >= 0 else None
        return plan

    def _key_ahead(self) -> KeyAhead:
        worker = self.keyahead
        if worker is None:
            worker = self.keyahead = self.replica.key_ahead()
        return worker

    def statement_ended(self) -> None:
        """The statement's transaction ended: its lookups need no more pages."""
        if self.keyahead is not None:
            self.keyahead.cancel()


def install(con: apsw.Connection, file: LiteFile) -> StatementPlanner | None:
    """Give ``con`` (whose main database is ``file``) a statement planner."""
    if file.replica.tops is None or file.replica.config.read_ahead == 0:
        return None
    planner = StatementPlanner(con, file)
    file.planner = planner
    planner.arm()
    return planner
