"""Whole-file LTX decoding with structural checks and CRC-64 verification.

Used where a file is read in full (restore, hydration, verification); the VFS's
ranged page path decodes single frames with ``_impl.decode_page_frame``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType

from .. import _impl
from ..errors import ChecksumMismatchError, LTXFormatError
from .checksum import database_checksum
from .format import (
    CHECKSUM_FLAG, HEADER_SIZE, INDEX_LEN_SIZE, PAGE_FLAG_SIZE, PAGE_HEADER_SIZE,
    SIZE_PREFIX, TRAILER_SIZE, Header, Trailer, lock_pgno,
)

_U64 = struct.Struct(">Q")
_ZERO_PAGE_HEADER = b"\0" * PAGE_HEADER_SIZE
# Smallest possible file: header, end-of-pages header, index terminator, index length, trailer.
MIN_FILE_SIZE = HEADER_SIZE + PAGE_HEADER_SIZE + 1 + INDEX_LEN_SIZE + TRAILER_SIZE


@dataclass(frozen=True, slots=True)
class IndexLocation:
    """Where the page index sits in a file of ``file_size`` bytes."""

    start: int  # offset of the first index entry
    end: int  # offset of the 8-byte index length (just past the 0x00 terminator)


def locate_index(tail: bytes | memoryview, file_size: int) -> IndexLocation:
    """Find the page index from the last bytes of a file (at least the final 24)."""
    if file_size < MIN_FILE_SIZE:
        raise LTXFormatError(f"file too small to be LTX: {file_size} bytes")
    if len(tail) < TRAILER_SIZE + INDEX_LEN_SIZE:
        raise LTXFormatError(f"short read of file tail: {len(tail)} bytes")
    (index_len,) = _U64.unpack_from(tail, len(tail) - TRAILER_SIZE - INDEX_LEN_SIZE)
    end = file_size - TRAILER_SIZE - INDEX_LEN_SIZE
    start = end - index_len
    if index_len < 1 or start < HEADER_SIZE + PAGE_HEADER_SIZE:
        raise LTXFormatError(f"invalid page index length {index_len} for a {file_size}-byte file")
    return IndexLocation(start, end)


@dataclass(frozen=True, slots=True)
class DecodedFile:
    header: Header
    trailer: Trailer
    pages: list[tuple[int, bytes]]


class FileDecoder:
    """Decode a complete LTX file held in memory, checking its structure.

    ``pages()`` yields (pgno, page) in file order and verifies the file checksum
    (and, for checksummed snapshots, the database checksum) when exhausted.
    """

    def __init__(self, data: bytes | bytearray | memoryview, *, impl: ModuleType = _impl) -> None:
        self._data = data
        self._impl = impl
        size = len(data)
        self.header = Header.unpack(data)
        self.header.validate()
        self.trailer = Trailer.unpack(data)
        loc = locate_index(memoryview(data)[size - TRAILER_SIZE - INDEX_LEN_SIZE:], size)
        pgnos, offsets, sizes, end = impl.decode_page_index(data, loc.start)
        if end != loc.end:
            raise LTXFormatError(
                f"page index ends at {end} but its length field says {loc.end}")
        self.trailer.validate(self.header)
        self.index_start = loc.start
        self.pgnos, self.offsets, self.sizes = pgnos, offsets, sizes
        self._check_page_numbers()

    def _check_page_numbers(self) -> None:
        h = self.header
        lock = lock_pgno(h.page_size)
        if len(self.pgnos) and self.pgnos[-1] > h.commit:
            raise LTXFormatError(f"page {self.pgnos[-1]} is beyond the commit size {h.commit}")
        if lock in self.pgnos:
            raise LTXFormatError(f"file stores the lock page {lock}")
        if h.is_snapshot:
            expected = h.commit - (1 if h.commit >= lock else 0)
            if len(self.pgnos) != expected or (expected and self.pgnos[-1] != h.commit):
                raise LTXFormatError(
                    f"snapshot must hold every page 1..{h.commit}: it holds {len(self.pgnos)}")

    def pages(self, verify: bool = True) -> Iterator[tuple[int, bytes]]:
        data, h, core = self._data, self.header, self._impl
        crc = core.crc64(memoryview(data)[:HEADER_SIZE]) if verify else 0
        pos = HEADER_SIZE
        want_db_checksum = verify and h.is_snapshot and not h.no_checksum
        db_pages: list[tuple[int, bytes]] = []
        for i in range(len(self.pgnos)):
            if pos != self.offsets[i]:
                raise LTXFormatError(
                    f"page frame {i} is at offset {pos} but the index says {self.offsets[i]}")
            pgno, flags, page, frame_len = core.decode_page_frame(
                data, h.page_size, pos, self.sizes[i])
            if pgno != self.pgnos[i]:
                raise LTXFormatError(f"page frame {i} holds page {pgno}, index says {self.pgnos[i]}")
            if verify:
                head = PAGE_HEADER_SIZE + (SIZE_PREFIX if flags & PAGE_FLAG_SIZE else 0)
                crc = core.crc64(page, core.crc64(memoryview(data)[pos:pos + head], crc))
            if want_db_checksum:
                db_pages.append((pgno, page))
            pos += frame_len
            yield pgno, page
        if bytes(data[pos:pos + PAGE_HEADER_SIZE]) != _ZERO_PAGE_HEADER:
            raise LTXFormatError(f"missing end-of-pages marker at offset {pos}")
        if pos + PAGE_HEADER_SIZE != self.index_start:
            raise LTXFormatError(
                f"{self.index_start - pos - PAGE_HEADER_SIZE} unexpected bytes before the page index")
        if not verify:
            return
        size = len(data)
        crc = core.crc64(_ZERO_PAGE_HEADER, crc)
        crc = core.crc64(memoryview(data)[self.index_start:size - 8], crc)
        if CHECKSUM_FLAG | crc != self.trailer.file_checksum:
            raise ChecksumMismatchError(
                f"file checksum mismatch: stored {self.trailer.file_checksum:016x}, "
                f"computed {CHECKSUM_FLAG | crc:016x}")
        if want_db_checksum:
            got = database_checksum(db_pages, h.page_size, core.crc64)
            if got != self.trailer.post_apply_checksum:
                raise ChecksumMismatchError(
                    f"database checksum mismatch: stored {self.trailer.post_apply_checksum:016x}, "
                    f"computed {got:016x}")


def decode_file(data: bytes | bytearray | memoryview, *, verify: bool = True,
                impl: ModuleType = _impl) -> DecodedFile:
    """Decode and (by default) verify a whole LTX file."""
    dec = FileDecoder(data, impl=impl)
    pages = list(dec.pages(verify))
    return DecodedFile(dec.header, dec.trailer, pages)
