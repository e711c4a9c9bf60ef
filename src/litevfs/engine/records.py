"""Reading b-tree pages without SQLite, for key-driven prefetch (``engine/keyahead.py``):
the cells of a page, the values of their records, and which child of an interior page a
key descends into.

SQLite's file format (section 1.6): a page starts with a header (8 bytes for leaves, 12
for interior pages, after the 100-byte database header on page 1), then an array of
2-byte cell offsets. Table leaf cells are (payload size, rowid, payload); table interior
cells (left child, rowid); index cells (payload size, payload) with a left child first
on interior pages. A payload is a record: a header of serial types, then the values.
Only the local part of a cell is read: the first columns of a record practically never
spill, and a value cut short is simply missing (a wrong guess costs bytes, never rows).
Damaged pages give fewer cells, never an error: SQLite reports it when it reads them.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from .schema import record_values, varint

TABLE_INTERIOR, INDEX_INTERIOR, INDEX_LEAF, TABLE_LEAF = 5, 2, 10, 13
_HEADER = {TABLE_INTERIOR: 12, INDEX_INTERIOR: 12, INDEX_LEAF: 8, TABLE_LEAF: 8}
_MANY = 1 << 30  # record_values: every value


def page_kind(page: bytes, pgno: int) -> int:
    """The b-tree page type byte (2, 5, 10, 13; anything else: not a b-tree page)."""
    base = 100 if pgno == 1 else 0
    return page[base] if len(page) > base else 0


def _pointers(page: bytes, pgno: int) -> tuple[int, int, tuple[int, ...]]:
    base = 100 if pgno == 1 else 0
    kind = page[base]
    head = _HEADER.get(kind)
    if head is None or len(page) < base + head:
        return kind, 0, ()
    ncells, = struct.unpack_from(">H", page, base + 3)
    if base + head + 2 * ncells > len(page):
        return kind, 0, ()
    right = struct.unpack_from(">I", page, base + 8)[0] if head == 12 else 0
    return kind, right, struct.unpack_from(f">{ncells}H", page, base + head)


def _local_record(page: bytes, pos: int, size: int) -> list[object]:
    """The values of a record of ``size`` bytes at ``pos``, as far as the page holds them."""
    end = min(len(page), pos + size)
    try:
        return record_values(page, pos, end, _MANY)
    except (IndexError, struct.error, ValueError):
        return []


def table_leaf_rows(page: bytes, pgno: int) -> list[tuple[int, list[object]]]:
    """(rowid, values) of each cell of a table leaf page, in rowid order."""
    kind, _, ptrs = _pointers(page, pgno)
    if kind != TABLE_LEAF:
        return []
    rows = []
    try:
        for ptr in ptrs:
            size, pos = varint(page, ptr)
            rowid, pos = varint(page, pos)
            if rowid >= 1 << 63:
                rowid -= 1 << 64
            rows.append((rowid, _local_record(page, pos, size)))
    except IndexError:
        pass
    return rows


def index_leaf_keys(page: bytes, pgno: int) -> list[list[object]]:
    """The values of each cell of an index leaf page, in key order."""
    kind, _, ptrs = _pointers(page, pgno)
    if kind != INDEX_LEAF:
        return []
    keys = []
    try:
        for ptr in ptrs:
            size, pos = varint(page, ptr)
            keys.append(_local_record(page, pos, size))
    except IndexError:
        pass
    return keys


def _rank(value: object) -> int:
    """SQLite's order of storage classes: NULL < numbers < text < blob."""
    if value is None:
        return 0
    if isinstance(value, (int, float)):
        return 1
    return 2 if isinstance(value, str) else 3


def key_before(a: object, b: object) -> bool:
    """``a < b`` in SQLite's order under the BINARY collation (text compares as UTF-8
    bytes, which is code point order)."""
    ra, rb = _rank(a), _rank(b)
    if ra != rb:
        return ra < rb
    return ra != 0 and a < b  # type: ignore[operator]


def _child_for(page: bytes, right: int, ptrs: tuple[int, ...],
               before: Callable[[int], bool | None]) -> int | None:
    """The child left of the first cell for which ``before(ptr)`` is False (the right
    child when there is none); ``before`` returns None for a cell it cannot read."""
    lo, hi = 0, len(ptrs)
    try:
        while lo < hi:
            mid = (lo + hi) // 2
            below = before(ptrs[mid])
            if below is None:
                return None
            if below:
                lo = mid + 1
            else:
                hi = mid
        if lo == len(ptrs):
            return right
        return struct.unpack_from(">I", page, ptrs[lo])[0]
    except (IndexError, struct.error):
        return None


def table_child(page: bytes, pgno: int, rowid: int) -> int | None:
    """The child of a table interior page whose subtree holds ``rowid``; None when the
    page is not one."""
    kind, right, ptrs = _pointers(page, pgno)
    if kind != TABLE_INTERIOR:
        return None

    def before(ptr: int) -> bool:  # the cell's key: the largest rowid on its left
        key, _ = varint(page, ptr + 4)
        return (key - (1 << 64) if key >= 1 << 63 else key) < rowid

    return _child_for(page, right, ptrs, before)


def index_child(page: bytes, pgno: int, key: object) -> int | None:
    """The child of an index interior page where the first entry whose first column
    equals ``key`` (or the first greater one) lies; None when the page is not one."""
    kind, right, ptrs = _pointers(page, pgno)
    if kind != INDEX_INTERIOR:
        return None

    def before(ptr: int) -> bool | None:  # the cell's first column < key
        size, pos = varint(page, ptr + 4)
        first = _local_record(page, pos, size)[:1]
        return key_before(first[0], key) if first else None

    return _child_for(page, right, ptrs, before)


def edge_children(page: bytes, pgno: int) -> list[int]:
    """Every child of an interior page (either kind) in key order; [] for other pages."""
    kind, right, ptrs = _pointers(page, pgno)
    if kind not in (TABLE_INTERIOR, INDEX_INTERIOR):
        return []
    try:
        return [struct.unpack_from(">I", page, p)[0] for p in ptrs] + [right]
    except struct.error:
        return []


def table_leaf_row(page: bytes, pgno: int, rowid: int) -> list[object] | None:
    """The values of the row ``rowid`` on a table leaf page, None when it is not there."""
    kind, _, ptrs = _pointers(page, pgno)
    if kind != TABLE_LEAF:
        return None
    lo, hi = 0, len(ptrs)
    try:
        while lo < hi:
            mid = (lo + hi) // 2
            size, pos = varint(page, ptrs[mid])
            key, pos = varint(page, pos)
            if key >= 1 << 63:
                key -= 1 << 64
            if key == rowid:
                return _local_record(page, pos, size)
            if key < rowid:
                lo = mid + 1
            else:
                hi = mid
    except IndexError:
        pass
    return None


def index_leaf_matches(page: bytes, pgno: int, key: object, most: int) -> list[list[object]]:
    """The entries (values) of an index leaf page whose first column equals ``key``, at
    most ``most`` of them, in key order."""
    kind, _, ptrs = _pointers(page, pgno)
    if kind != INDEX_LEAF:
        return []

    def entry(i: int) -> list[object]:
        size, pos = varint(page, ptrs[i])
        return _local_record(page, pos, size)

    out: list[list[object]] = []
    lo, hi = 0, len(ptrs)
    try:
        while lo < hi:  # the first entry whose first column >= key
            mid = (lo + hi) // 2
            first = entry(mid)[:1]
            if not first:
                return []
            if key_before(first[0], key):
                lo = mid + 1
            else:
                hi = mid
        while lo < len(ptrs) and len(out) < most:
            values = entry(lo)
            if not values or key_before(key, values[0]):
                break
            out.append(values)
            lo += 1
    except IndexError:
        pass
    return out


def index_interior_entry(page: bytes, pgno: int, i: int) -> list[object] | None:
    """The entry (values) in cell ``i`` of an index interior page: it sorts between the
    subtrees of children ``i`` and ``i + 1``. None when the page is not one."""
    kind, _, ptrs = _pointers(page, pgno)
    if kind != INDEX_INTERIOR or not 0 <= i < len(ptrs):
        return None
    try:
        size, pos = varint(page, ptrs[i] + 4)
    except IndexError:
        return None
    return _local_record(page, pos, size)
