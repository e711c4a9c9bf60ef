"""LTX checksums built on the core CRC-64/GO-ISO: page and database checksums."""

from __future__ import annotations

import struct
from collections.abc import Iterable

from .. import _impl
from .format import CHECKSUM_FLAG, lock_pgno

_PGNO = struct.Struct(">I")


def page_checksum(pgno: int, page: bytes, crc64=_impl.crc64) -> int:
    """CRC of the big-endian page number followed by the page, flag bit set."""
    return CHECKSUM_FLAG | crc64(page, crc64(_PGNO.pack(pgno)))


def database_checksum(pages: Iterable[tuple[int, bytes]], page_size: int, crc64=_impl.crc64) -> int:
    """XOR of every page's checksum, the lock page excluded; the empty database is the flag."""
    lock = lock_pgno(page_size)
    value = 0
    for pgno, page in pages:
        if pgno != lock:
            value ^= page_checksum(pgno, page, crc64)
    return CHECKSUM_FLAG | value
