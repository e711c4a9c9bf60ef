"""Build LTX files from (pgno, page) pairs with a correct header, index and checksums."""

from __future__ import annotations

import struct
from collections.abc import Iterable
from types import ModuleType

from .. import _impl
from ..errors import LTXFormatError
from .checksum import database_checksum
from .format import (
    CHECKSUM_FLAG, ENCODING_BLOCK, ENCODING_FRAME, ENCODINGS, HEADER_FLAG_NO_CHECKSUM,
    HEADER_SIZE, PAGE_FLAG_SIZE, PAGE_HEADER_SIZE, SIZE_PREFIX, Header, Trailer, lock_pgno,
)

_U64 = struct.Struct(">Q")


def _uvarint(value: int, out: bytearray) -> None:
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def encode_file(
    pages: Iterable[tuple[int, bytes]],
    *,
    page_size: int,
    commit: int,
    min_txid: int,
    max_txid: int,
    timestamp_ms: int = 0,
    encoding: str = ENCODING_FRAME,
    checksums: bool = False,
    pre_apply_checksum: int = 0,
    post_apply_checksum: int | None = None,
    impl: ModuleType = _impl,
) -> bytes:
    """Encode one LTX file.

    ``encoding`` "frame" (legacy LZ4 frames, readable by every Litestream 0.5.x) is
    the default; "block" is the smaller format only Litestream >= 0.5.16 reads.
    With ``checksums=False`` (what Litestream itself writes) the header carries the
    no-checksum flag; with True, snapshots get a computed post-apply checksum and
    incremental files need ``pre_apply_checksum`` and ``post_apply_checksum``.
    """
    if encoding not in ENCODINGS:
        raise ValueError(f"unknown LTX page encoding {encoding!r}: expected one of {ENCODINGS}")
    block = encoding == ENCODING_BLOCK
    pages = list(pages)
    lock = lock_pgno(page_size)
    prev = 0
    for pgno, page in pages:
        if pgno <= prev:
            raise LTXFormatError(f"pages must be strictly ascending: {pgno} after {prev}")
        if pgno > commit:
            raise LTXFormatError(f"page {pgno} is beyond the commit size {commit}")
        if pgno == lock:
            raise LTXFormatError(f"the lock page {lock} must not be stored")
        if len(page) != page_size:
            raise LTXFormatError(f"page {pgno} has {len(page)} bytes, expected {page_size}")
        prev = pgno
    if min_txid == 1:
        expected = commit - (1 if commit >= lock else 0)
        if len(pages) != expected:
            raise LTXFormatError(f"a snapshot must hold every page 1..{commit}")
    if checksums:
        flags = 0
        if min_txid == 1:
            pre_apply_checksum = 0
            post = database_checksum(pages, page_size, impl.crc64)
        elif post_apply_checksum is None:
            raise ValueError("incremental checksummed files need post_apply_checksum")
        else:
            post = post_apply_checksum
    else:
        flags, pre_apply_checksum, post = HEADER_FLAG_NO_CHECKSUM, 0, 0
    header = Header(flags, page_size, commit, min_txid, max_txid, timestamp_ms, pre_apply_checksum)
    header.validate()

    out = bytearray(header.pack())
    crc = impl.crc64(out)
    index = bytearray()
    for pgno, page in pages:
        frame = impl.encode_page_frame(pgno, page, block)
        head = PAGE_HEADER_SIZE + (SIZE_PREFIX if block else 0)
        crc = impl.crc64(page, impl.crc64(memoryview(frame)[:head], crc))
        _uvarint(pgno, index)
        _uvarint(len(out), index)
        _uvarint(len(frame), index)
        out += frame
    index.append(0)
    index += _U64.pack(len(index))
    out += b"\0" * PAGE_HEADER_SIZE
    out += index
    post_bytes = _U64.pack(post)
    crc = impl.crc64(post_bytes, impl.crc64(index, impl.crc64(b"\0" * PAGE_HEADER_SIZE, crc)))
    out += Trailer(post, CHECKSUM_FLAG | crc).pack()
    assert len(out) > HEADER_SIZE
    return bytes(out)


__all__ = ["encode_file", "ENCODING_FRAME", "ENCODING_BLOCK", "PAGE_FLAG_SIZE"]
