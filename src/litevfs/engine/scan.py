"""Recognising scans from the page numbers a connection reads, and fetching ahead of them.

A connection's :class:`ScanTracker` sees each page read before and after the reader
serves it: sequential page numbers grow the read-ahead of the ranged GET, and b-tree
interior pages tell which children a scan will read next. Once SQLite reads two
consecutive children of one interior page, a :class:`TreeWalk` fetches the rest of
that b-tree in key order ahead of the cursor: interior pages breadth-first (they say
where the leaves are), leaves in large batches whose neighbours in the LTX file are
coalesced into few ranged GETs (reading through small gaps of other tables' pages),
many in parallel, and overflow chains of the leaves when the tree has any. The window
of pages fetched ahead of the cursor starts small and grows to twice what the cursor
consumed (a short range scan costs little), up to a memory budget; the walk stops when its
transaction ends, when a newer walk replaces it, or when the cursor stops consuming.
"""

from __future__ import annotations

import logging
import struct
import threading
import time
from collections import deque
from typing import TYPE_CHECKING

from .._worker import Worker
from ..errors import LiteVFSError
from .schema import varint

if TYPE_CHECKING:
    from .reader import Reader
    from .state import View

log = logging.getLogger("litevfs.scan")

INTERIOR_PAGE_TYPES = (2, 5)  # index / table b-tree interior pages
LEAF_TABLE, LEAF_INDEX = 13, 10
WALK_MAX_BYTES = 64 * 1024 * 1024  # pages ahead of the cursor, at most (and cache_size / 2)
WALK_FIRST_PAGES = 16  # first window; then twice what the cursor consumed (at most 2x waste)
WALK_GAP = 524288  # bytes of unwanted frames read through to merge two ranges
WALK_RUN = 4194304  # largest ranged GET of a walk (x 32 in flight: bounded memory)
WALK_INTERIOR_AHEAD = 256  # interior pages requested ahead of the leaves they lead to
WALK_IDLE_S = 5.0  # a full window nobody consumes for this long: the cursor stopped
OVERFLOW_PROBE = 16  # leaves parsed to learn whether a tree has overflow chains
MAX_WALKS = 4  # concurrent walks per connection (a join may scan two trees)


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


def overflow_chains(page: bytes, pgno: int, usable: int) -> list[tuple[int, int]]:
    """(first overflow page, number of overflow pages) of each cell of a leaf page that
    spills (SQLite's file format, section 1.6), in cell order; [] for other pages."""
    base = 100 if pgno == 1 else 0
    if len(page) < base + 8:
        return []
    kind = page[base]
    if kind == LEAF_TABLE:
        most = usable - 35
    elif kind == LEAF_INDEX:
        most = (usable - 12) * 64 // 255 - 23
    else:
        return []
    least = (usable - 12) * 32 // 255 - 23
    ncells, = struct.unpack_from(">H", page, base + 3)
    out = []
    try:
        for ptr in struct.unpack_from(f">{ncells}H", page, base + 8):
            size, pos = varint(page, ptr)
            if kind == LEAF_TABLE:
                _, pos = varint(page, pos)  # the rowid
            if size <= most:
                continue
            local = least + (size - least) % (usable - 4)
            if local > most:
                local = least
            first, = struct.unpack_from(">I", page, pos + local)
            out.append((first, -(-(size - local) // (usable - 4))))
    except (IndexError, struct.error):
        return out  # a damaged page: SQLite will say so when it reads it
    return out


class TreeWalk(Worker):
    """Fetches the rest of one b-tree in key order ahead of a cursor (see the module
    docstring). ``items``: (pgno, height) in key order, height 0 for leaves."""

    def __init__(self, reader: Reader, view: View, items: list[tuple[int, int]],
                 max_pages: int, usable: int, certain: bool = True) -> None:
        super().__init__("litevfs-scan")
        self.reader = reader
        self.view = view
        self.items: deque[tuple[int, int]] = deque(items)
        self.max_pages = max(WALK_FIRST_PAGES, max_pages)
        self.window = WALK_FIRST_PAGES
        self.usable = usable
        self.certain = certain  # False: the heights are a guess, checked at the first leaf
        self.seq: dict[int, int] = {}  # issued leaf -> its place in key order
        self.members: set[int] = set()  # interior pages this walk expanded
        self._probed = 0
        self.issued = 0
        self.consumed = 0
        self.requested: set[int] = set()  # interior pages already asked for
        self.overflow: bool | None = None  # unknown until OVERFLOW_PROBE leaves are parsed
        self._to_parse: deque[int] = deque()
        self._consumed_at = time.monotonic()
        self._moved = threading.Event()
        self.requests = 0
        self.pages = 0

    def note(self, pgno: int) -> bool:
        """SQLite read ``pgno`` (True when it is one of this walk's pages)."""
        s = self.seq.get(pgno)
        if s is None:
            return pgno in self.members
        if s >= self.consumed:
            self.consumed = consumed = s + 1
            if consumed * 2 > self.window:  # slow start: ahead = twice what was read
                self.window = min(self.max_pages, consumed * 2)
            if consumed + self.window - self.issued >= self.window // 4:
                self._consumed_at = time.monotonic()
                self._moved.set()  # room for the next batch (not on every page: the
                # wake-up would cost the cursor the GIL each time)
        return True

    def step(self) -> float | None:
        if self.stopped:
            return None
        try:
            progressed = self._pump()
        except (LiteVFSError, OSError) as exc:  # the cursor's own reads report errors
            log.debug("scan prefetch stopped: %s", exc)
            return None
        if not self.items and not self._to_parse:
            return None  # everything is fetched or in flight
        if progressed:
            return 0.0
        if time.monotonic() - self._consumed_at > WALK_IDLE_S:
            return None  # the cursor stopped: keep what was fetched, fetch no more
        self._moved.wait(0.2)
        self._moved.clear()
        return 0.0

    def _pump(self) -> bool:
        items, reader, view = self.items, self.reader, self.view
        room = self.consumed + self.window - self.issued
        if room <= 0 or (self.issued and room < self.window // 4):
            # wait for the cursor: big batches coalesce (an index's leaves are
            # scattered through the file in no key order)
            return self._parse_overflow() if self._to_parse else False
        batch: list[int] = []
        while items and len(batch) < room and not self.stopped:
            pgno, height = items[0]
            if not height:
                batch.append(items.popleft()[0])
                continue
            # An interior page: its children come next in key order (it was asked for
            # ahead with the next ones; the batch waits for it, so batches stay big)
            self._request_interior()
            page = reader.read_page(view, pgno)
            items.popleft()
            self.members.add(pgno)
            children = btree_children(page, pgno) or []
            if height == 1 and not self.certain and children:
                self.certain = True  # the tree is balanced: one look is enough
                first = reader.read_page(view, children[0])
                if first[0] in INTERIOR_PAGE_TYPES:  # one level deeper than guessed
                    self.items = items = deque((p, h + 1) for p, h in items)
                    height += 1
            items.extendleft((c, height - 1) for c in reversed(children))
        if batch:
            self._issue(batch)
        if self._to_parse:
            self._parse_overflow()
        return True

    def _issue(self, pgnos: list[int]) -> None:
        for p in pgnos:
            self.seq[p] = self.issued
            self.issued += 1
        self.pages += len(pgnos)
        self.requests += self.reader.prefetch(self.view, pgnos, max_gap=WALK_GAP,
                                              max_run=WALK_RUN)
        if self.overflow is not False:
            self._to_parse.extend(pgnos)

    def _request_interior(self) -> None:
        """Ask for the next interior pages in key order (breadth-first lookahead)."""
        wanted = []
        for pgno, height in self.items:
            if height and pgno not in self.requested:
                self.requested.add(pgno)
                wanted.append(pgno)
                if len(wanted) >= WALK_INTERIOR_AHEAD:
                    break
        if wanted:
            self.requests += self.reader.prefetch(self.view, wanted, max_gap=WALK_GAP,
                                                  max_run=WALK_RUN)

    def _parse_overflow(self) -> bool:
        """Fetch the overflow chains of issued leaves as they arrive (assumed contiguous,
        as SQLite usually allocates them; a chain that is not is read normally). The
        first OVERFLOW_PROBE leaves tell whether the tree has any: most have none, and
        then no leaf is parsed."""
        todo, chains = self._to_parse, []
        while todo and len(chains) < 256 and not self.stopped:
            if self.overflow is None and self._probed >= OVERFLOW_PROBE:
                self.overflow = False
            if self.overflow is False:
                todo.clear()
                break
            pgno = todo.popleft()
            page = self.reader.read_page(self.view, pgno)  # in flight: waits for it
            self._probed += 1
            for first, count in overflow_chains(page, pgno, self.usable):
                self.overflow = True
                chains.extend(range(first, first + count))
        if chains:
            self.requests += self.reader.prefetch(self.view, chains, max_gap=WALK_GAP,
                                                  max_run=WALK_RUN)
        return bool(chains)


class ScanTracker:
    """Per connection: recognises scans and decides how much to fetch ahead.

    * Sequential page numbers (table scans of a freshly written table) grow the
      read-ahead of the ranged GET, doubling up to ``read_ahead`` bytes.
    * B-tree scans: interior pages list their children; when SQLite reads two
      consecutive children of one interior page, a :class:`TreeWalk` fetches the rest
      of the tree (from that page on, and the following siblings of its ancestors)
      ahead of the cursor. Separate point queries never start one: the children read
      must be consecutive within one read transaction.
    """

    MAX_TRACKED = 50_000  # child -> parent entries kept before starting over

    def __init__(self, reader: Reader, read_ahead: int, walk_bytes: int = WALK_MAX_BYTES
                 ) -> None:
        self.reader = reader
        self.read_ahead = read_ahead
        self.walk_bytes = walk_bytes
        self.ahead = 0
        self.last_pgno = 0
        self._parent_of: dict[int, tuple[int, int]] = {}  # child -> (parent, index)
        self._children: dict[int, list[int]] = {}
        self._last_index: dict[int, int] = {}
        self._leaves: set[int] = set()  # pages seen to be leaves (their parent is a leaf parent)
        self._view_txid = -1
        self.reserved = 0  # bytes at the end of each page (database header byte 20)
        self.walks: list[TreeWalk] = []
        self.full_scans: frozenset[int] = frozenset()  # roots the statement reads whole

    def begin_transaction(self) -> None:
        """A new read transaction: forget which children were read last. Only a scan
        inside one transaction reads consecutive children; separate point queries that
        happen to land on neighbouring children must not start a prefetch cascade."""
        self._last_index.clear()
        self.ahead = 0
        self.last_pgno = 0

    def expect_scans(self, roots: frozenset[int]) -> None:
        """The next statement reads the trees at ``roots`` whole (its program says so,
        ``vfs/statements.py``): their walks start at full width, no slow start."""
        self.full_scans = roots

    def end_transaction(self) -> None:
        """The transaction's cursors are gone: stop fetching ahead of them."""
        self.stop_walks()

    def stop_walks(self) -> None:
        walks, self.walks = self.walks, []
        for walk in walks:
            walk._stop.set()
            walk._moved.set()

    def before_read(self, view: View, pgno: int) -> int:
        """Read-ahead bytes for a read of ``pgno``; may start a b-tree walk."""
        if view.txid != self._view_txid:  # page numbers mean new pages in a new view
            self._view_txid = view.txid
            self._parent_of.clear()
            self._children.clear()
            self._last_index.clear()
            self._leaves.clear()
            self.stop_walks()
        if 0 < pgno - self.last_pgno <= 2:
            self.ahead = min(self.read_ahead, max(self.ahead * 2, view.page_size * 4))
        else:
            self.ahead = 0
        self.last_pgno = pgno
        for walk in self.walks:
            if walk.note(pgno):
                return self.ahead
        parent = self._parent_of.get(pgno)
        if parent is not None and self.read_ahead:
            ppgno, i = parent
            if self._last_index.get(ppgno) == i - 1:
                self._start_walk(view, ppgno, i)
            self._last_index[ppgno] = i
        return self.ahead

    def _start_walk(self, view: View, ppgno: int, i: int) -> None:
        """SQLite reads child ``i`` of ``ppgno`` right after child ``i - 1``: walk the
        rest of the tree from there (the ancestors' later children included)."""
        height, certain = self._height(self._children[ppgno][i - 1])
        items: list[tuple[int, int]] = [(c, height) for c in self._children[ppgno][i + 1:]]
        node, h = ppgno, height + 1
        seen = {ppgno}
        top = ppgno
        while node in self._parent_of:  # climb as far as the pages SQLite read tell
            up, j = self._parent_of[node]
            if up in seen:
                break
            seen.add(up)
            items += [(c, h) for c in self._children[up][j + 1:]]
            node, h = up, h + 1
            top = up
        if not items:
            return
        if len(self.walks) >= MAX_WALKS:
            oldest = self.walks.pop(0)
            oldest._stop.set()
            oldest._moved.set()
        budget = min(self.walk_bytes, self.reader.state.config.cache_size // 2)
        usable = view.page_size - self.reserved
        walk = TreeWalk(self.reader, view, items, budget // view.page_size, usable, certain)
        walk.members.update(self._children[ppgno][i - 1:i + 1])  # read now / just before
        walk.members.add(ppgno)
        if top in self.full_scans:  # the program reads this tree whole: no slow start
            walk.window = walk.max_pages
        self.walks.append(walk)
        walk.start()

    def _height(self, pgno: int) -> tuple[int, bool]:
        """(levels between ``pgno`` and the leaves, whether that is known) from the pages
        SQLite read; a guess of one more level when nothing below was seen (the walk
        checks it at its first leaf parent)."""
        height = 0
        while pgno not in self._leaves and height < 16:
            below = self._children.get(pgno)
            if below is None:
                return height + 1, False
            pgno = next((c for c in below if c in self._children or c in self._leaves),
                        below[0])
            height += 1
        return height, True

    def after_read(self, view: View, pgno: int, page: bytes) -> None:
        if pgno == 1:
            self.reserved = page[20]
        kind = page[100] if pgno == 1 else page[0]
        if kind not in INTERIOR_PAGE_TYPES:
            if kind in (LEAF_TABLE, LEAF_INDEX):
                if len(self._leaves) > self.MAX_TRACKED:
                    self._leaves.clear()
                self._leaves.add(pgno)
            return
        if pgno in self._children:
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
