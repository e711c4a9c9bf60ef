"""Recognising scans from the page numbers a connection reads, and fetching ahead of them.

A connection's :class:`ScanTracker` sees each page read before and after the reader
serves it: sequential page numbers grow the read-ahead of the ranged GET, and b-tree
interior pages tell which children a scan will read next, so they are fetched in
parallel (``Reader.prefetch``) instead of one round trip per leaf.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .reader import Reader
    from .state import View

INTERIOR_PAGE_TYPES = (2, 5)  # index / table b-tree interior pages


def btree_children(page: bytes, pgno: int) -> list[int] | None:
    """Child page numbers of a b-tree interior page in key order, else None."""
    base = 100 if pgno == 1 else 0
    if len(page) < base + 12 or page[base] not in INTERIOR_PAGE_TYPES:
        return None
    ncells, = struct.unpack_from(">H", page, base + 3)
    right, = struct.unpack_from(">I", page, base + 8)
    end = base + 12 + 2 * ncells
    if end > len(page):
        return None
    children = []
    for ptr in struct.unpack_from(f">{ncells}H", page, base + 12):
        if ptr + 4 > len(page):
            return None
        children.append(struct.unpack_from(">I", page, ptr)[0])
    children.append(right)
    return children


class ScanTracker:
    """Per connection: recognises scans and decides how much to fetch ahead.

    * Sequential page numbers (table scans of a freshly written table) grow the
      read-ahead of the ranged GET, doubling up to ``read_ahead`` bytes.
    * B-tree scans: interior pages list their children; when SQLite reads two
      consecutive children of one interior page, the remaining children are fetched
      at once (coalesced, in parallel), so a scan costs a few round trips per interior
      page instead of one per leaf.
    """

    MAX_TRACKED = 50_000  # child -> parent entries kept before starting over

    def __init__(self, reader: Reader, read_ahead: int) -> None:
        self.reader = reader
        self.read_ahead = read_ahead
        self.ahead = 0
        self.last_pgno = 0
        self._parent_of: dict[int, tuple[int, int]] = {}  # child -> (parent, index)
        self._children: dict[int, list[int]] = {}
        self._last_index: dict[int, int] = {}
        self._prefetched_to: dict[int, int] = {}
        self._view_txid = -1

    def begin_transaction(self) -> None:
        """A new read transaction: forget which children were read last. Only a scan
        inside one transaction reads consecutive children; separate point queries that
        happen to land on neighbouring children must not start a prefetch cascade."""
        self._last_index.clear()
        self._prefetched_to.clear()
        self.ahead = 0
        self.last_pgno = 0

    def before_read(self, view: View, pgno: int) -> int:
        """Read-ahead bytes for a read of ``pgno``; may start a b-tree prefetch."""
        if view.txid != self._view_txid:  # page numbers mean new pages in a new view
            self._view_txid = view.txid
            self._parent_of.clear()
            self._children.clear()
            self._last_index.clear()
            self._prefetched_to.clear()
        if 0 < pgno - self.last_pgno <= 2:
            self.ahead = min(self.read_ahead, max(self.ahead * 2, view.page_size * 4))
        else:
            self.ahead = 0
        self.last_pgno = pgno
        parent = self._parent_of.get(pgno)
        if parent is not None and self.read_ahead:
            ppgno, i = parent
            if self._last_index.get(ppgno) == i - 1 and self._prefetched_to.get(ppgno, 0) <= i:
                budget = max(1, self.read_ahead // view.page_size)
                wanted = self._children[ppgno][i:i + budget]
                self.reader.prefetch(view, wanted)
                self._prefetched_to[ppgno] = i + len(wanted)
            self._last_index[ppgno] = i
        return self.ahead

    def after_read(self, view: View, pgno: int, page: bytes) -> None:
        kind = page[100] if pgno == 1 else page[0]
        if kind not in INTERIOR_PAGE_TYPES or pgno in self._children:
            return
        children = btree_children(page, pgno)
        if not children:
            return
        if len(self._parent_of) > self.MAX_TRACKED:
            self._parent_of.clear()
            self._children.clear()
        self._children[pgno] = children
        for i, child in enumerate(children):
            self._parent_of[child] = (pgno, i)
        parent = self._parent_of.get(pgno)
        if parent is not None and self._prefetched_to.get(parent[0], 0) > parent[1]:
            # An interior page reached by a scan: its children are next, fetch them now
            # instead of waiting for two of them to be read one by one.
            budget = max(1, self.read_ahead // view.page_size)
            self.reader.prefetch(view, children[:budget])
            self._prefetched_to[pgno] = min(budget, len(children))
            self._last_index[pgno] = -1
