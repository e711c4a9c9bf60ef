"""Pure-Python twin of the compiled core ``litevfs._pagecache``.

Same public names, argument names, results, exception classes and messages as
``src/_pagecache.pyx``; ``tests/test_core_parity.py`` holds the two to that.
Import it through ``litevfs._impl`` (tests and benchmarks excepted).

Contents: CRC-64/GO-ISO, the LTX page-index and page-frame codecs, the dense
``PageIndex`` (pgno -> file id, frame offset, frame size) and the byte-bounded
LRU ``PageCache`` of decompressed pages.

This module imports only the stdlib, ``lz4`` and ``litevfs.errors``. The few LTX
constants it needs are repeated below on purpose: importing ``litevfs.ltx``
would initialise that package, whose decoder imports ``_impl``, which imports
this module (a cycle). ``tests/test_core_crc.py`` checks they agree with
``litevfs.ltx.format``.
"""

from __future__ import annotations

import operator
from array import array
from collections import OrderedDict
from collections.abc import Iterable

import lz4.block
import lz4.frame

from .errors import LTXFormatError

IMPLEMENTATION_NAME = "python"

HEADER_SIZE = 100  # LTX header; the first page frame starts here
PAGE_HEADER_SIZE = 6  # u32 pgno + u16 flags
SIZE_PREFIX = 4  # u32 compressed size after the header when PAGE_FLAG_SIZE is set
PAGE_FLAG_SIZE = 0x0001
MIN_PAGE_SIZE = 512
MAX_PAGE_SIZE = 65536
MAX_FRAME_SIZE = 1 << 31  # largest frame size a page-index entry may carry

_U32_MAX = 0xFFFF_FFFF
_U64_MAX = 0xFFFF_FFFF_FFFF_FFFF
_I64_MAX = 0x7FFF_FFFF_FFFF_FFFF
_LZ4_FRAME_MAGIC = b"\x04\x22\x4d\x18"  # 0x184D2204 little-endian
_CRC_POLY = 0xD800000000000000  # CRC-64/ISO, reflected


# --------------------------------------------------------------------------- helpers


def _byte_view(data: object, what: str) -> memoryview:
    """A 1-D unsigned-byte view of any buffer (a non-contiguous one is copied)."""
    try:
        view = memoryview(data)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(
            f"{what} must be a bytes-like object, not {type(data).__name__!r}") from None
    if not view.c_contiguous:
        view = memoryview(view.tobytes())
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    return view


def _offset_arg(offset: object) -> int:
    value = operator.index(offset)  # type: ignore[call-overload]
    if value < 0:
        raise ValueError(f"offset must be >= 0, got {value}")
    return value


def _page_size_arg(page_size: object) -> int:
    value = operator.index(page_size)  # type: ignore[call-overload]
    if not (MIN_PAGE_SIZE <= value <= MAX_PAGE_SIZE and value & (value - 1) == 0):
        raise LTXFormatError(f"invalid page size {value}")
    return value


def _array_arg(typecode: str, values: object) -> array:
    if type(values) is array and values.typecode == typecode:  # type: ignore[attr-defined]
        return values  # type: ignore[return-value]
    return array(typecode, values)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- CRC-64


def _make_crc_table() -> list[int]:
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ _CRC_POLY if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC_TABLE = _make_crc_table()


def crc64(data: object, crc: int = 0) -> int:
    """CRC-64/GO-ISO of ``data`` continuing from ``crc`` (Go's ``crc64.Update``)."""
    view = _byte_view(data, "data")
    crc = operator.index(crc)
    if not 0 <= crc <= _U64_MAX:
        raise ValueError(f"crc must be an unsigned 64-bit integer, got {crc}")
    table = _CRC_TABLE
    crc ^= _U64_MAX
    for byte in view:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ _U64_MAX


# --------------------------------------------------------------------------- page index


def _uvarint(view: memoryview, pos: int, end: int) -> tuple[int, int]:
    """Decode one unsigned LEB128 varint at ``pos`` (Go ``binary.Uvarint`` limits)."""
    start = pos
    value = 0
    shift = 0
    while True:
        if pos >= end:
            raise LTXFormatError("truncated page index")
        byte = view[pos]
        if pos - start == 9 and byte > 1:
            raise LTXFormatError(f"page index varint at offset {start} overflows 64 bits")
        if byte < 0x80:
            return value | (byte << shift), pos + 1
        value |= (byte & 0x7F) << shift
        shift += 7
        pos += 1


def decode_page_index(data: object, offset: int = 0) -> tuple[array, array, array, int]:
    """Decode page-index entries from ``data[offset]`` through the 0 terminator.

    Returns ``(pgnos, offsets, sizes, end)``: arrays of typecodes ``I``, ``Q``,
    ``I`` and the position just after the terminator.
    """
    view = _byte_view(data, "data")
    pos = _offset_arg(offset)
    end = len(view)
    pgnos = array("I")
    offsets = array("Q")
    sizes = array("I")
    prev = 0
    while True:
        pgno, pos = _uvarint(view, pos, end)
        if pgno == 0:
            return pgnos, offsets, sizes, pos
        if pgno > _U32_MAX:
            raise LTXFormatError(f"page number {pgno} out of range in page index")
        if pgno <= prev:
            raise LTXFormatError(f"page index not sorted: page {pgno} after page {prev}")
        frame_offset, pos = _uvarint(view, pos, end)
        if frame_offset < HEADER_SIZE:
            raise LTXFormatError(
                f"page {pgno}: frame offset {frame_offset} is inside the LTX header")
        frame_size, pos = _uvarint(view, pos, end)
        if frame_size < PAGE_HEADER_SIZE:
            raise LTXFormatError(
                f"page {pgno}: frame size {frame_size} is smaller than a page header")
        if frame_size > MAX_FRAME_SIZE:
            raise LTXFormatError(f"page {pgno}: frame size {frame_size} exceeds 2**31")
        pgnos.append(pgno)
        offsets.append(frame_offset)
        sizes.append(frame_size)
        prev = pgno


# --------------------------------------------------------------------------- page frames


def _lz4_frame_end(view: memoryview, pos: int, end: int, pgno: int, size: int) -> int:
    """Walk the LZ4 frame starting at ``pos`` to just after its end; never past ``end``.

    Only the structure is read (header length, block lengths, end mark,
    checksum); lz4 itself validates the content afterwards.
    """

    def overrun() -> LTXFormatError:
        if size >= 0:
            return LTXFormatError(f"page {pgno}: LZ4 frame runs past the frame size {size}")
        return LTXFormatError(f"page {pgno}: truncated page frame")

    if pos + 7 > end:  # magic, FLG, BD, header checksum
        raise overrun()
    if view[pos:pos + 4] != _LZ4_FRAME_MAGIC:
        raise LTXFormatError(f"page {pgno}: bad LZ4 frame magic")
    flg = view[pos + 4]
    pos += 7
    if flg & 0x08:  # content size
        pos += 8
    if flg & 0x01:  # dictionary id
        pos += 4
    block_checksum = 4 if flg & 0x10 else 0
    while True:
        if pos + 4 > end:
            raise overrun()
        block = int.from_bytes(view[pos:pos + 4], "little")
        pos += 4
        if block == 0:  # end mark
            break
        pos += (block & 0x7FFF_FFFF) + block_checksum
    if flg & 0x04:  # content checksum
        pos += 4
    if pos > end:
        raise overrun()
    return pos


def decode_page_frame(data: object, page_size: int, offset: int = 0,
                      size: int = -1) -> tuple[int, int, bytes, int]:
    """Decode the page frame at ``data[offset]``.

    ``size`` is the frame length from the page index (header included), which
    must match exactly, or -1 to find the length from the frame itself.
    Returns ``(pgno, flags, page, frame_len)``.
    """
    view = _byte_view(data, "data")
    page_size = _page_size_arg(page_size)
    pos = _offset_arg(offset)
    size = operator.index(size)
    if size < -1:
        raise ValueError(f"size must be -1 or >= 0, got {size}")
    if size >= 0:
        if size < PAGE_HEADER_SIZE:
            raise LTXFormatError(f"page frame size {size} is smaller than a page header")
        end = pos + size
        if end > len(view):
            raise LTXFormatError("truncated page frame")
    else:
        end = len(view)
        if pos + PAGE_HEADER_SIZE > end:
            raise LTXFormatError("truncated page frame header")
    pgno = int.from_bytes(view[pos:pos + 4], "big")
    flags = int.from_bytes(view[pos + 4:pos + 6], "big")
    if pgno == 0:
        if flags == 0:
            raise LTXFormatError("unexpected end-of-pages header (page number 0)")
        raise LTXFormatError("page frame has page number 0")
    if flags & ~PAGE_FLAG_SIZE:
        raise LTXFormatError(f"page {pgno}: invalid page frame flags 0x{flags:04x}")

    if flags & PAGE_FLAG_SIZE:
        if pos + PAGE_HEADER_SIZE + SIZE_PREFIX > end:
            raise LTXFormatError(f"page {pgno}: truncated page frame size prefix")
        start = pos + PAGE_HEADER_SIZE + SIZE_PREFIX
        frame_len = PAGE_HEADER_SIZE + SIZE_PREFIX + int.from_bytes(view[start - 4:start], "big")
        if size >= 0 and frame_len != size:
            raise LTXFormatError(
                f"page {pgno}: frame length {frame_len} does not match the frame size {size}")
        if pos + frame_len > end:
            raise LTXFormatError(f"page {pgno}: truncated page frame")
        try:
            page = lz4.block.decompress(view[start:pos + frame_len], uncompressed_size=page_size)
        except lz4.block.LZ4BlockError as exc:
            raise LTXFormatError(f"page {pgno}: corrupt LZ4 block: {exc}") from exc
    else:
        start = pos + PAGE_HEADER_SIZE
        stop = _lz4_frame_end(view, start, end, pgno, size)
        frame_len = stop - pos
        if size >= 0 and frame_len != size:
            raise LTXFormatError(
                f"page {pgno}: frame length {frame_len} does not match the frame size {size}")
        decompressor = lz4.frame.LZ4FrameDecompressor()
        try:
            page = decompressor.decompress(view[start:stop], max_length=page_size + 1)
        except (RuntimeError, ValueError) as exc:
            raise LTXFormatError(f"page {pgno}: corrupt LZ4 frame: {exc}") from exc
        if len(page) <= page_size and not (decompressor.eof and not decompressor.unused_data):
            raise LTXFormatError(f"page {pgno}: corrupt LZ4 frame: no end mark")
    if len(page) != page_size:
        if len(page) > page_size:
            raise LTXFormatError(f"page {pgno}: page decompresses to more than {page_size} bytes")
        raise LTXFormatError(
            f"page {pgno}: page decompresses to {len(page)} bytes, expected {page_size}")
    return pgno, flags, page, frame_len


def encode_page_frame(pgno: int, page: object, block: bool = False) -> bytes:
    """Encode one page frame: size-prefixed LZ4 block (``block=True``) or legacy LZ4 frame."""
    pgno = operator.index(pgno)
    if not 1 <= pgno <= _U32_MAX:
        raise ValueError(f"page number {pgno} out of range")
    view = _byte_view(page, "page")
    n = len(view)
    if not (MIN_PAGE_SIZE <= n <= MAX_PAGE_SIZE and n & (n - 1) == 0):
        raise ValueError(f"invalid page size {n}")
    if block:
        payload = lz4.block.compress(view, store_size=False)
        return b"".join((pgno.to_bytes(4, "big"), b"\x00\x01",
                         len(payload).to_bytes(4, "big"), payload))
    payload = lz4.frame.compress(
        view, block_size=lz4.frame.BLOCKSIZE_MAX64KB, block_linked=False,
        content_checksum=True, store_size=False)
    return b"".join((pgno.to_bytes(4, "big"), b"\x00\x00", payload))


# --------------------------------------------------------------------------- PageIndex


class PageIndex:
    """Dense pgno -> (file id, frame offset, frame size) map.

    Storage: three arrays indexed by pgno (slot 0 unused), 16 bytes per page of
    capacity, grown geometrically (x1.5, or exactly to the largest pgno of a
    merge). A frame size of 0 marks an absent page. Pages store a small internal
    *slot* number per file; each slot knows its file id, max TXID and how many
    pages reference it, and is recycled once nothing does.

    Memory is proportional to the largest pgno merged: callers must reject
    page numbers above the database's commit size before merging.
    """

    __slots__ = ("_slots", "_offsets", "_sizes", "_capacity", "_count", "_max",
                 "_slot_of", "_slot_fid", "_slot_txid", "_slot_refs", "_free")

    def __init__(self) -> None:
        self._slots = array("I")
        self._offsets = array("Q")
        self._sizes = array("I")
        self._capacity = 0
        self._count = 0
        self._max = 0
        self._slot_of: dict[int, int] = {}
        self._slot_fid: list[int] = []
        self._slot_txid: list[int] = []
        self._slot_refs: list[int] = []
        self._free: list[int] = []

    # -- internals

    def _reserve(self, needed: int) -> None:
        if needed <= self._capacity:
            return
        old = self._capacity
        new = max(needed, old + old // 2)
        grow = new - old
        try:
            self._slots.frombytes(bytes(4 * grow))
            self._offsets.frombytes(bytes(8 * grow))
            self._sizes.frombytes(bytes(4 * grow))
        except MemoryError:  # all or nothing, as in the compiled twin
            del self._slots[old:], self._offsets[old:], self._sizes[old:]
            raise MemoryError(f"PageIndex: cannot grow to {new} pages") from None
        self._capacity = new

    def _shrink(self) -> None:
        keep = self._max + 1 if self._max else 0
        if self._capacity > 2 * keep:
            del self._slots[keep:]
            del self._offsets[keep:]
            del self._sizes[keep:]
            self._capacity = keep

    def _check_txid(self, file_id: int, max_txid: int) -> None:
        slot = self._slot_of.get(file_id)
        if slot is not None and self._slot_txid[slot] != max_txid:
            raise ValueError(f"file id {file_id} is already in the index with max TXID "
                             f"{self._slot_txid[slot]}, not {max_txid}")

    def _acquire_slot(self, file_id: int, max_txid: int) -> int:
        slot = self._slot_of.get(file_id)
        if slot is not None:
            return slot
        if self._free:
            slot = self._free.pop()
            self._slot_fid[slot] = file_id
            self._slot_txid[slot] = max_txid
            self._slot_refs[slot] = 0
        else:
            slot = len(self._slot_fid)
            self._slot_fid.append(file_id)
            self._slot_txid.append(max_txid)
            self._slot_refs.append(0)
        self._slot_of[file_id] = slot
        return slot

    def _release_unused(self) -> None:
        for file_id, slot in list(self._slot_of.items()):
            if self._slot_refs[slot] == 0:
                del self._slot_of[file_id]
                self._free.append(slot)

    # -- public API

    def merge(self, file_id: int, max_txid: int, pgnos: Iterable[int],
              offsets: Iterable[int], sizes: Iterable[int]) -> int:
        """Install one LTX file's entries; a page already held by a file with a
        larger max TXID is kept (newest wins). Returns the number installed."""
        file_id = operator.index(file_id)
        if not 0 <= file_id <= _U32_MAX:
            raise ValueError(f"file id {file_id} out of range")
        max_txid = operator.index(max_txid)
        if not 0 <= max_txid <= _U64_MAX:
            raise ValueError(f"max TXID {max_txid} out of range")
        pg = _array_arg("I", pgnos)
        off = _array_arg("Q", offsets)
        sz = _array_arg("I", sizes)
        n = len(pg)
        if len(off) != n or len(sz) != n:
            raise ValueError(
                f"pgnos, offsets and sizes differ in length ({n}, {len(off)}, {len(sz)})")
        if n == 0:
            return 0
        if min(pg) == 0:
            raise ValueError("page number 0 in merge")
        if min(sz) == 0:
            raise ValueError("frame size 0 in merge")
        top = max(pg)
        self._check_txid(file_id, max_txid)
        self._reserve(top + 1)  # before the slot: a MemoryError leaves no trace
        slot = self._acquire_slot(file_id, max_txid)
        slots, offs, sizes_, txids, refs = (
            self._slots, self._offsets, self._sizes, self._slot_txid, self._slot_refs)
        installed = 0
        added = 0
        for i in range(n):
            p = pg[i]
            if sizes_[p]:
                old = slots[p]
                if txids[old] > max_txid:
                    continue
                refs[old] -= 1
            else:
                added += 1
            slots[p] = slot
            offs[p] = off[i]
            sizes_[p] = sz[i]
            installed += 1
        refs[slot] += installed
        self._count += added
        if installed and top > self._max:
            # every pgno of this merge above the old max was absent, hence installed
            self._max = top
        self._release_unused()
        return installed

    def lookup(self, pgno: int) -> tuple[int, int, int] | None:
        """``(file_id, frame offset, frame size)`` of ``pgno``, or None."""
        p = operator.index(pgno)
        if p <= 0 or p > self._max:
            return None
        size = self._sizes[p]
        if size == 0:
            return None
        return self._slot_fid[self._slots[p]], self._offsets[p], size

    def truncate(self, commit: int) -> None:
        """Drop every page above ``commit`` (the database shrank)."""
        commit = operator.index(commit)
        if commit < 0:
            raise ValueError(f"commit must be >= 0, got {commit}")
        if commit >= self._max:
            return
        slots, offs, sizes, refs = self._slots, self._offsets, self._sizes, self._slot_refs
        for p in range(commit + 1, self._max + 1):
            if sizes[p]:
                refs[slots[p]] -= 1
                slots[p] = 0
                offs[p] = 0
                sizes[p] = 0
                self._count -= 1
        p = commit
        while p > 0 and not sizes[p]:
            p -= 1
        self._max = p
        self._release_unused()
        self._shrink()

    def file_ids(self) -> set[int]:
        """File ids still referenced by at least one page."""
        return set(self._slot_of)

    def copy(self) -> PageIndex:
        new = PageIndex()
        new._slots = self._slots[:]
        new._offsets = self._offsets[:]
        new._sizes = self._sizes[:]
        new._capacity = self._capacity
        new._count = self._count
        new._max = self._max
        new._slot_of = dict(self._slot_of)
        new._slot_fid = list(self._slot_fid)
        new._slot_txid = list(self._slot_txid)
        new._slot_refs = list(self._slot_refs)
        new._free = list(self._free)
        return new

    def __len__(self) -> int:
        return self._count

    @property
    def max_pgno(self) -> int:
        """Largest page number present (0 when empty)."""
        return self._max

    @property
    def nbytes(self) -> int:
        """Bytes held by the per-page arrays (16 per page of capacity)."""
        return self._capacity * 16

    def __repr__(self) -> str:
        return f"<PageIndex pages={self._count} max_pgno={self._max} files={len(self._slot_of)}>"

    def __reduce__(self) -> tuple:
        raise TypeError("PageIndex cannot be pickled or copied by the copy module: use .copy()")


# --------------------------------------------------------------------------- PageCache


def _require_index(index: object) -> None:
    if not isinstance(index, PageIndex):
        raise TypeError(f"index must be a PageIndex of the same core, not "
                        f"{type(index).__module__}.{type(index).__qualname__}")


class PageCache:
    """Byte-bounded LRU of decompressed pages keyed by int (no locking: callers hold one)."""

    __slots__ = ("_capacity", "_data", "_nbytes", "_hits", "_misses", "_evictions")

    def __init__(self, capacity: int) -> None:
        capacity = operator.index(capacity)
        if not 0 <= capacity <= _I64_MAX:
            raise ValueError(f"capacity must be between 0 and 2**63-1, got {capacity}")
        self._capacity = capacity
        self._data: OrderedDict[object, bytes] = OrderedDict()
        self._nbytes = 0
        self._hits = 0
        self._misses = 0
        self._evictions = 0

    def get(self, key: int) -> bytes | None:
        value = self._data.get(key)
        if value is None:
            self._misses += 1
            return None
        self._data.move_to_end(key)
        self._hits += 1
        return value

    def page_for(self, index: PageIndex, pgno: int) -> bytes | None:
        """The cached page of ``pgno`` in ``index`` (a PageIndex), or None.

        Fuses ``index.lookup(pgno)``, the key ``(file_id << 32) | pgno`` and
        ``get(key)``: a page the index maps is a hit (made most recent) or a miss,
        counted as ``get`` counts them; a page absent from the index (or a pgno
        out of range) returns None and counts nothing.
        """
        _require_index(index)
        p = operator.index(pgno)
        if p <= 0 or p > index._max or not index._sizes[p]:
            return None
        key = (index._slot_fid[index._slots[p]] << 32) | p
        value = self._data.get(key)  # get(key), inlined: one call less on every page read
        if value is None:
            self._misses += 1
            return None
        self._data.move_to_end(key)
        self._hits += 1
        return value

    def uncached(self, index: PageIndex, pgnos: Iterable[int],
                 skip: object = None) -> tuple[array, array, array, array]:
        """The pages of ``pgnos`` that ``index`` maps but this cache does not hold, and
        whose key is not in ``skip`` (a container of cache keys, e.g. fetches in flight),
        in the order given, as four arrays: page numbers ("I"), file ids ("I"), frame
        offsets ("Q") and frame sizes ("I"). A probe: no LRU change, no counters. This is
        the lookup of prefetch planning, where a scan asks about hundreds of pages."""
        _require_index(index)
        out_p, out_f, out_o, out_s = array("I"), array("I"), array("Q"), array("I")
        data, top = self._data, index._max
        sizes, slots, offsets, fids = index._sizes, index._slots, index._offsets, index._slot_fid
        for pgno in pgnos:
            p = operator.index(pgno)
            if p <= 0 or p > top or not sizes[p]:
                continue
            fid = fids[slots[p]]
            key = (fid << 32) | p
            if key in data or (skip is not None and key in skip):  # type: ignore[operator]
                continue
            out_p.append(p)
            out_f.append(fid)
            out_o.append(offsets[p])
            out_s.append(sizes[p])
        return out_p, out_f, out_o, out_s

    def put(self, key: int, value: bytes) -> None:
        if not isinstance(value, bytes):
            raise TypeError(f"PageCache values must be bytes, not {type(value).__name__!r}")
        old = self._data.pop(key, None)
        if old is not None:
            self._nbytes -= len(old)
        n = len(value)
        if n > self._capacity or self._capacity == 0:
            return
        data = self._data
        while self._nbytes > self._capacity - n:
            _, evicted = data.popitem(last=False)
            self._nbytes -= len(evicted)
            self._evictions += 1
        data[key] = value
        self._nbytes += n

    def discard(self, key: int) -> None:
        old = self._data.pop(key, None)
        if old is not None:
            self._nbytes -= len(old)

    def clear(self) -> None:
        """Drop every entry (the hit/miss/eviction counters are kept)."""
        self._data.clear()
        self._nbytes = 0

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def nbytes(self) -> int:
        return self._nbytes

    @property
    def hits(self) -> int:
        return self._hits

    @property
    def misses(self) -> int:
        return self._misses

    @property
    def evictions(self) -> int:
        return self._evictions

    def __repr__(self) -> str:
        return (f"<PageCache entries={len(self._data)} nbytes={self._nbytes} "
                f"capacity={self._capacity}>")

    def __reduce__(self) -> tuple:
        raise TypeError("PageCache cannot be pickled or copied")


__all__ = [
    "IMPLEMENTATION_NAME", "crc64", "decode_page_index", "decode_page_frame",
    "encode_page_frame", "PageIndex", "PageCache",
]
