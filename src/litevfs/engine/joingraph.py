"""Key-driven prefetch, what a statement's program says: which cursor's values position
which other cursor (a join's dependency graph), derived from the rows of ``EXPLAIN``.

A nested-loop join reads its outer cursor in order (``Rewind``/``Last``: the driver)
and positions each inner cursor with a key taken from cursors already positioned:
``Column A, i, rX`` (or ``Rowid``/``IdxRowid A, rX``) then ``SeekRowid``/``NotExists
B, _, rX`` (a table by rowid) or ``SeekGE``/``SeekGT``... ``B, _, rX`` (an index by its
first column), and ``DeferredSeek I, _, T`` (a table by the rowid of index entry I). A
key may also be a bound parameter (``Variable``) or a literal (``Integer``). The graph
records, for each such probe, the cursor, its b-tree's root page, whether it is an index,
and where its key comes from; registers are followed in program order, which is the
loops' nesting order. Anything not understood is left out: the graph is a hint (a wrong
one costs bytes, never rows; ``engine/keyahead.py`` executes it ahead of SQLite).
"""

from __future__ import annotations

from typing import Any, NamedTuple

_OPENS = ("OpenRead", "ReopenIdx")
_ROWID_SEEKS = ("SeekRowid", "NotExists")
_KEY_SEEKS = ("SeekGE", "SeekGT", "SeekLE", "SeekLT")
_WHOLE = ("Rewind", "Last")
_NEEDS_ALL_ROWS = frozenset(("AggStep", "AggStep1", "AggInverse", "SorterInsert",
                             "IdxInsert", "Count"))
MAX_LIMIT = 64  # driver rows executed ahead, at most (a bigger LIMIT is a scan's job)


class Source(NamedTuple):
    """Where a key comes from: ``column`` (field ``arg`` of ``cursor``'s record),
    ``rowid`` (of ``cursor``'s row or index entry), ``param`` (bound parameter number
    ``arg``, 1-based) or ``value`` (the literal ``arg``)."""

    kind: str
    cursor: int = -1
    arg: Any = None


class Probe(NamedTuple):
    """An inner cursor positioned by a key: one row (a table by rowid) or every entry
    whose first column equals the key (``many``: an index)."""

    cursor: int
    root: int
    is_index: bool
    key: Source
    many: bool


class JoinGraph(NamedTuple):
    """The driver (outer cursor read in order; -1: none), its tree, its direction, the
    LIMIT (a Source, or None), the probes in program order and the OFFSET (rows read
    and skipped before the LIMIT's)."""

    driver: int
    driver_root: int
    driver_index: bool
    reverse: bool
    limit: Source | None
    probes: tuple[Probe, ...]
    offset: Source | None = None

    @property
    def scattered(self) -> frozenset[int]:
        """Roots of the trees probed by column values (a user id, a tag id): their keys
        land anywhere, so their upper levels are worth fetching whole. Rowid keys of
        an ordered driver tend to be neighbours (the newest posts' comments)."""
        return frozenset(p.root for p in self.probes if p.key.kind == "column")


def _binary_first_column(p4: Any) -> bool:
    """Does an index's KeyInfo (``k(n,coll,...)`` in EXPLAIN) sort its first column
    ascending under BINARY? (Only then can keys be compared without SQLite.)"""
    if not isinstance(p4, str) or not p4.startswith("k("):
        return False
    parts = p4[2:].rstrip(")").split(",")
    return len(parts) > 1 and parts[1] in ("", "B")


def graph_from_program(rows: Any) -> JoinGraph | None:
    """The join graph of a statement from its ``EXPLAIN`` rows (addr, opcode, p1, p2, p3,
    p4, ...), or None when nothing can be executed ahead (no probe whose key another
    cursor gives, or a driver without a LIMIT whose rows all feed an aggregate/sorter)."""
    roots: dict[int, tuple[int, bool, bool]] = {}  # cursor -> (root, index, comparable)
    regs: dict[int, Source] = {}
    probes: dict[int, Probe] = {}
    whole: list[tuple[int, bool]] = []
    limit: Source | None = None
    offset: Source | None = None
    all_rows = False
    for row in rows:
        op, p1, p2, p3 = row[1], row[2], row[3], row[4]
        p4 = row[5] if len(row) > 5 else None
        if op in _OPENS:
            if p3 == 0 and isinstance(p2, int) and p2 > 0:
                index = isinstance(p4, str) and p4.startswith("k(")
                roots[p1] = (p2, index, not index or _binary_first_column(p4))
        elif op == "Column":
            regs[p3] = Source("column", p1, p2)
        elif op in ("Rowid", "IdxRowid"):
            regs[p2] = Source("rowid", p1)
        elif op == "Variable":
            regs[p2] = Source("param", -1, p1)
        elif op == "Integer":
            regs[p2] = Source("value", -1, p1)
        elif op in ("SCopy", "Copy") and p1 in regs:
            regs[p2] = regs[p1]
        elif op in _ROWID_SEEKS or op in _KEY_SEEKS:
            tree = roots.get(p1)
            key = regs.get(p3)
            if tree is None or key is None or p1 in probes or not tree[2]:
                continue
            index = tree[1]
            if op in _ROWID_SEEKS and index:
                continue
            probes[p1] = Probe(p1, tree[0], index, key, index)
        elif op == "DeferredSeek":
            tree = roots.get(p3)
            if tree is not None and not tree[1] and p3 not in probes and p1 in roots:
                probes[p3] = Probe(p3, tree[0], False, Source("rowid", p1), False)
        elif op in _WHOLE:
            whole.append((p1, op == "Last"))
        elif op == "DecrJumpZero":
            limit = regs.get(p1)
        elif op == "OffsetLimit":
            offset = regs.get(p3)
        elif op in _NEEDS_ALL_ROWS:
            all_rows = True
    driver, reverse = next(((c, r) for c, r in whole if c not in probes and c in roots),
                           (-1, False))
    if driver >= 0 and (limit is None or all_rows or not roots[driver][2]):
        driver = -1  # every row is read (a walk's job) or keys cannot be compared
    known = {driver} | set(probes)
    kept = tuple(p for p in probes.values()
                 if p.key.kind in ("param", "value") or p.key.cursor in known)
    if not any(p.key.cursor in known and p.key.cursor >= 0 for p in kept):
        return None  # no key taken from another cursor: SQLite's own descent is as fast
    root, index = roots[driver][:2] if driver >= 0 else (0, False)
    return JoinGraph(driver, root, index, reverse, limit, kept, offset)
