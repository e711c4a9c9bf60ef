"""Read an LTX file's header and page index with ranged reads, as few and as
parallel as possible: one tail read (the whole file when it is small), the header
fetched concurrently, and a second read only when the index is larger than the tail.
"""

from __future__ import annotations

import struct
from array import array
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING

from .. import _impl
from ..errors import LTXFormatError
from ..ltx.decoder import locate_index
from ..ltx.format import HEADER_SIZE, FileInfo, Header
from .readsize import head_size_for

if TYPE_CHECKING:
    from array import array

    from .._pending import Pending

    from .base import StorageClient

DEFAULT_TAIL_SIZE = 32 * 1024


@dataclass(frozen=True, slots=True)
class FileIndex:
    """What a reader needs to serve pages from one LTX file."""

    info: FileInfo
    header: Header
    pgnos: array
    offsets: array
    sizes: array
    data: bytes | None = None  # the whole file, when the tail read returned all of it
    head: bytes | None = None  # the file's first bytes (header, then the lowest pages)
    index_len: int = 0  # bytes of the encoded page index (0: not known, from a cache)


def _check_header(info: FileInfo, raw: bytes) -> Header:
    try:
        header = Header.unpack(raw)
        header.validate()
    except LTXFormatError as exc:  # name the object: the reason alone does not say which
        raise LTXFormatError(f"{info.name} (level {info.level}): {exc}") from None
    if (header.min_txid, header.max_txid) != (info.min_txid, info.max_txid):
        raise LTXFormatError(
            f"{info.name}: header TXID range {header.min_txid:016x}-{header.max_txid:016x} "
            "does not match the file name")
    return header


def fetch_file_index(
    storage: StorageClient,
    info: FileInfo,
    *,
    tail_size: int = DEFAULT_TAIL_SIZE,
    executor: Executor | None = None,
    impl: ModuleType = _impl,
    head_size: int = HEADER_SIZE,
    started: tuple[Pending, Pending | None] | None = None,
) -> FileIndex:
    """Fetch and decode the header and page index of ``info``. With ``head_size`` above
    the header size, the concurrent header read also brings the first frames (page 1
    and its neighbours, in a snapshot) at no extra round trip; see ``FileIndex.head``.
    ``started``: the (tail, head) reads of these very sizes already in flight
    (``openahead.py``); they are adopted instead of being sent again."""
    header_future: Future[bytes] | Pending | None = None
    head_len = head_size_for(info, tail_size, head_size)
    if started is not None:
        header_future = started[1]
    elif head_len and executor is not None:
        header_future = executor.submit(storage.read_range, info, 0, head_len)
    try:
        tail = started[0].result() if started is not None else storage.read_tail(info, tail_size)
        whole = len(tail) >= info.size
        if whole and len(tail) != info.size:
            raise LTXFormatError(f"{info.name}: read {len(tail)} bytes, listing says {info.size}")
        try:
            loc = locate_index(tail, info.size)
            tail_start = info.size - len(tail)
            if loc.start >= tail_start:
                buf, base = tail, tail_start
            else:  # index larger than the tail: one more read, just the index
                buf = storage.read_range(info, loc.start, loc.end - loc.start + 8)
                base = loc.start
            pgnos, offsets, sizes, end = impl.decode_page_index(buf, loc.start - base)
        except LTXFormatError as exc:
            raise LTXFormatError(f"{info.name}: {exc}") from None
        if end + base != loc.end:
            raise LTXFormatError(f"{info.name}: page index length does not match its entries")
        head = None
        if whole:
            raw_header = tail[:HEADER_SIZE]
        elif header_future is not None:
            if isinstance(header_future, Future) and header_future.cancel():
                # Still queued: every pool thread may be a file's fetch waiting like this
                # one (a plan of 32+ large files deadlocked the pool): read it here.
                raw_header = head = storage.read_range(info, 0, head_len)
            else:
                raw_header = head = header_future.result()
            header_future = None
        else:
            raw_header = storage.read_range(info, 0, HEADER_SIZE)
        header = _check_header(info, raw_header[:HEADER_SIZE])
    finally:
        if header_future is not None:
            header_future.cancel()
    if len(pgnos) and (pgnos[-1] > header.commit):
        raise LTXFormatError(f"{info.name}: page {pgnos[-1]} beyond commit {header.commit}")
    return FileIndex(info, header, pgnos, offsets, sizes, tail if whole else None,
                     head if head is not None and len(head) > HEADER_SIZE else None,
                     loc.end - loc.start)


# A decoded index as one blob (the disk cache and the machine's shared indexes keep it):
_INDEX_HEAD = struct.Struct("<4sIII")  # magic, entries, offset typecode size, reserved
_INDEX_MAGIC = b"LVX1"


def _typed(values: array, typecode: str) -> array:
    """``values`` as an array of ``typecode``: the core's arrays already are (no copy;
    ``array(typecode, values)`` converts element by element: ~14 ms for 1 GiB's index)."""
    if isinstance(values, array) and values.typecode == typecode:
        return values
    return array(typecode, values)


def index_parts(header_raw: bytes, pgnos: array, offsets: array, sizes: array) -> list:
    """The pieces of ``pack_index``'s blob, uncopied (hash or write them one by one)."""
    return [_INDEX_HEAD.pack(_INDEX_MAGIC, len(pgnos), 8, 0), header_raw,
            memoryview(_typed(pgnos, "I")), memoryview(_typed(offsets, "Q")),
            memoryview(_typed(sizes, "I"))]


def pack_index(header_raw: bytes, pgnos: array, offsets: array, sizes: array) -> bytes:
    return b"".join(index_parts(header_raw, pgnos, offsets, sizes))


def unpack_index(blob: bytes | memoryview) -> tuple[Header, array, array, array] | None:
    if len(blob) < _INDEX_HEAD.size + HEADER_SIZE:
        return None
    magic, n, _, _ = _INDEX_HEAD.unpack_from(blob)
    if magic != _INDEX_MAGIC or len(blob) != _INDEX_HEAD.size + HEADER_SIZE + n * 16:
        return None
    pos = _INDEX_HEAD.size
    view = memoryview(blob)  # no intermediate copies of the slices
    header = Header.unpack(bytes(view[pos:pos + HEADER_SIZE]))
    pos += HEADER_SIZE
    pgnos, offsets, sizes = array("I"), array("Q"), array("I")
    pgnos.frombytes(view[pos:pos + 4 * n])
    pos += 4 * n
    offsets.frombytes(view[pos:pos + 8 * n])
    pos += 8 * n
    sizes.frombytes(view[pos:pos + 4 * n])
    return header, pgnos, offsets, sizes
