"""Decode one LTX file from its bytes in order, piece by piece, with bounded memory.

``restore`` downloads files in chunks and writes pages as they are decoded, so a
multi-gigabyte snapshot never sits in memory whole (``decoder.FileDecoder`` needs the
whole file: the page index is at its end). Held at any time: the bytes of one
unfinished frame (at most about two pages) plus, at the end, the page index and the
trailer. Every check of ``FileDecoder`` is made: frame structure, page numbers
against the header and the index, the file CRC-64 and a snapshot's database
checksum; the checksums are known only once the last byte arrived (``finish``), so
pages handed out before must not be trusted until then.
"""

from __future__ import annotations

from array import array
from types import ModuleType

from .. import _impl
from ..errors import ChecksumMismatchError, LTXFormatError
from .checksum import page_checksum
from .decoder import locate_index
from .format import (
    CHECKSUM_FLAG, HEADER_SIZE, INDEX_LEN_SIZE, PAGE_FLAG_SIZE, PAGE_HEADER_SIZE, SIZE_PREFIX,
    TRAILER_SIZE, Header, Trailer, lock_pgno,
)

_ZERO_PAGE_HEADER = b"\0" * PAGE_HEADER_SIZE


def max_frame_size(page_size: int) -> int:
    """An upper bound of one page frame: LZ4's worst case for an incompressible page
    (size + size/255 + 16) plus the frame and LZ4 frame headers, generously."""
    return 2 * page_size + 1024


class StreamDecoder:
    """Feed the bytes of one ``size``-byte LTX file in order (``feed``), collect the
    pages each piece completes, then ``finish()`` verifies everything.

    ``expect_txids``: (min, max) the header must carry (the file's name says so);
    ``expect_page_size``: the page size of the files applied before (0: any)."""

    def __init__(self, size: int, *, impl: ModuleType = _impl,
                 expect_txids: tuple[int, int] | None = None,
                 expect_page_size: int = 0) -> None:
        self.size = size
        self.impl = impl
        self.expect_txids = expect_txids
        self.expect_page_size = expect_page_size
        self.header: Header | None = None
        self._buf = bytearray()
        self._base = 0  # file offset of _buf[0]
        self._fed = 0
        self._crc = 0
        self._db_checksum = 0
        self._want_db_checksum = False
        self._lock = 0
        self._max_frame = 0
        self._index_start: int | None = None  # set at the end-of-pages marker
        self.pgnos = array("I")
        self.offsets = array("Q")
        self.sizes = array("I")

    @property
    def pages_done(self) -> int:
        return len(self.pgnos)

    def feed(self, data: bytes | bytearray | memoryview) -> list[tuple[int, bytes]]:
        """Take the next bytes; returns the (pgno, page) pairs they completed, in order."""
        self._fed += len(data)
        if self._fed > self.size:
            raise LTXFormatError(f"more than the expected {self.size} bytes")
        self._buf += data
        out: list[tuple[int, bytes]] = []
        if self.header is None and not self._read_header():
            return out
        if self._index_start is None:
            self._read_frames(out)
        return out

    def _read_header(self) -> bool:
        if len(self._buf) < HEADER_SIZE:
            return False
        raw = bytes(self._buf[:HEADER_SIZE])
        header = Header.unpack(raw)
        header.validate()
        if self.expect_txids is not None and (header.min_txid, header.max_txid) != self.expect_txids:
            raise LTXFormatError("header TXID range does not match the file name")
        if self.expect_page_size and header.page_size != self.expect_page_size:
            raise LTXFormatError(f"page size {header.page_size} differs from earlier files "
                                 f"({self.expect_page_size})")
        self.header = header
        self._crc = self.impl.crc64(raw)
        self._lock = lock_pgno(header.page_size)
        self._max_frame = max_frame_size(header.page_size)
        self._want_db_checksum = header.is_snapshot and not header.no_checksum
        del self._buf[:HEADER_SIZE]
        self._base = HEADER_SIZE
        return True

    def _read_frames(self, out: list[tuple[int, bytes]]) -> None:
        header = self.header
        assert header is not None
        buf, impl, page_size = self._buf, self.impl, header.page_size
        crc64 = impl.crc64
        at_end = self._fed == self.size
        pos = 0
        while len(buf) - pos >= PAGE_HEADER_SIZE:
            if buf[pos:pos + PAGE_HEADER_SIZE] == _ZERO_PAGE_HEADER:
                self._index_start = self._base + pos + PAGE_HEADER_SIZE
                pos += PAGE_HEADER_SIZE
                break
            # Decode only with a whole frame surely in hand (or the whole file): then an
            # error is the file's, never a frame cut by the chunk boundary.
            if len(buf) - pos < self._max_frame and not at_end:
                break
            offset = self._base + pos
            pgno, flags, page, frame_len = impl.decode_page_frame(buf, page_size, pos, -1)
            if pgno > header.commit:
                raise LTXFormatError(f"page {pgno} is beyond the commit size {header.commit}")
            if pgno == self._lock:
                raise LTXFormatError(f"file stores the lock page {pgno}")
            head = PAGE_HEADER_SIZE + (SIZE_PREFIX if flags & PAGE_FLAG_SIZE else 0)
            self._crc = crc64(page, crc64(bytes(buf[pos:pos + head]), self._crc))
            if self._want_db_checksum:
                self._db_checksum ^= page_checksum(pgno, page, crc64)
            self.pgnos.append(pgno)
            self.offsets.append(offset)
            self.sizes.append(frame_len)
            out.append((pgno, page))
            pos += frame_len
        if self._index_start is None:
            del buf[:pos]  # keep only the unfinished frame
            self._base += pos
        elif pos:
            del buf[:pos]  # keep the index and trailer (needed whole by finish)
            self._base += pos
        if at_end and self._index_start is None:
            raise LTXFormatError(f"missing end-of-pages marker at offset {self._base}")

    def finish(self) -> Header:
        """Check the end of the file (page index, trailer, checksums); the header."""
        if self._fed != self.size:
            raise LTXFormatError(f"short file: {self._fed} of {self.size} bytes")
        header = self.header
        if header is None:
            raise LTXFormatError(f"file too small to be LTX: {self.size} bytes")
        if self._index_start is None:
            raise LTXFormatError(f"missing end-of-pages marker at offset {self._base}")
        tail = bytes(self._buf)  # index, index length, trailer
        loc = locate_index(tail[-(TRAILER_SIZE + INDEX_LEN_SIZE):], self.size)
        if loc.start != self._index_start:
            raise LTXFormatError(
                f"{loc.start - self._index_start} unexpected bytes before the page index")
        pgnos, offsets, sizes, end = self.impl.decode_page_index(tail, 0)
        if end + self._index_start != loc.end:
            raise LTXFormatError(
                f"page index ends at {end + self._index_start} but its length field says "
                f"{loc.end}")
        if (list(pgnos) != list(self.pgnos) or list(offsets) != list(self.offsets)
                or list(sizes) != list(self.sizes)):
            raise LTXFormatError("page index does not match the page frames")
        if header.is_snapshot:
            expected = header.commit - (1 if header.commit >= self._lock else 0)
            if len(pgnos) != expected or (expected and pgnos[-1] != header.commit):
                raise LTXFormatError(
                    f"snapshot must hold every page 1..{header.commit}: it holds {len(pgnos)}")
        trailer = Trailer.unpack(tail)
        trailer.validate(header)
        crc64 = self.impl.crc64
        crc = crc64(tail[:len(tail) - 8], crc64(_ZERO_PAGE_HEADER, self._crc))
        if CHECKSUM_FLAG | crc != trailer.file_checksum:
            raise ChecksumMismatchError(
                f"file checksum mismatch: stored {trailer.file_checksum:016x}, "
                f"computed {CHECKSUM_FLAG | crc:016x}")
        if self._want_db_checksum:
            got = CHECKSUM_FLAG | self._db_checksum
            if got != trailer.post_apply_checksum:
                raise ChecksumMismatchError(
                    f"database checksum mismatch: stored {trailer.post_apply_checksum:016x}, "
                    f"computed {got:016x}")
        return header
