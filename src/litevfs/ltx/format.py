"""LTX (format version 3) constants, header/trailer structs and file names.

Facts from the LTX specification as implemented by superfly/ltx v0.5.x; see
docs in the README. Stdlib only, and light: a cold open imports this before its first
request, so the value types are named tuples (``dataclasses`` and ``re`` would cost
more to import than the request takes to build).
"""

from __future__ import annotations

import struct
from collections import namedtuple

from ..errors import LTXFormatError

MAGIC = b"LTX1"
HEADER_SIZE = 100
TRAILER_SIZE = 16
PAGE_HEADER_SIZE = 6  # u32 pgno + u16 flags
SIZE_PREFIX = 4  # u32 compressed size, present when the frame flag 0x0001 is set
INDEX_LEN_SIZE = 8

HEADER_FLAG_NO_CHECKSUM = 0x00000002
HEADER_FLAG_MASK = HEADER_FLAG_NO_CHECKSUM
PAGE_FLAG_SIZE = 0x0001  # LZ4 block with size prefix (ltx >= v0.5.2)
CHECKSUM_FLAG = 1 << 63

PENDING_BYTE = 0x40000000
MIN_PAGE_SIZE = 512
MAX_PAGE_SIZE = 65536
MAX_LEVEL = 9
SNAPSHOT_LEVEL = 9

ENCODING_FRAME = "frame"  # legacy per-page LZ4 frame, readable by every 0.5.x
ENCODING_BLOCK = "block"  # size-prefixed LZ4 block, litestream >= 0.5.16 only
ENCODINGS = (ENCODING_FRAME, ENCODING_BLOCK)

_HEADER = struct.Struct(">4sIIIQQqQqqIIQ20s")
_TRAILER = struct.Struct(">QQ")
assert _HEADER.size == HEADER_SIZE and _TRAILER.size == TRAILER_SIZE

_HEX = frozenset("0123456789abcdef")


def is_valid_page_size(page_size: int) -> bool:
    return MIN_PAGE_SIZE <= page_size <= MAX_PAGE_SIZE and page_size & (page_size - 1) == 0


def lock_pgno(page_size: int) -> int:
    """The page holding SQLite's PENDING_BYTE: never stored in LTX files."""
    return PENDING_BYTE // page_size + 1


def format_txid(txid: int) -> str:
    return f"{txid:016x}"


def parse_txid(text: str) -> int:
    """Parse a TXID: exactly 16 digits (or a 0x prefix) is hex, as Litestream prints it;
    anything shorter is decimal."""
    text = text.strip()
    try:
        if text.lower().startswith("0x"):
            value = int(text[2:], 16)
        elif len(text) == 16:
            value = int(text, 16)
        else:
            value = int(text, 10)
    except ValueError:
        raise ValueError(f"invalid TXID {text!r}: expected decimal or 16 hex digits") from None
    if value < 0 or value >= 1 << 64:
        raise ValueError(f"invalid TXID {text!r}: out of range")
    return value


def format_filename(min_txid: int, max_txid: int) -> str:
    return f"{min_txid:016x}-{max_txid:016x}.ltx"


def parse_filename(name: str) -> tuple[int, int] | None:
    """(min_txid, max_txid) of a strict LTX file name, or None for any other name."""
    # exactly <16 lowercase hex>-<16 lowercase hex>.ltx, as ltx.ParseFilename accepts
    if len(name) != 37 or name[16] != "-" or not name.endswith(".ltx"):
        return None
    lo, hi = name[:16], name[17:33]
    if not _HEX.issuperset(lo) or not _HEX.issuperset(hi):
        return None
    return int(lo, 16), int(hi, 16)


class Header(namedtuple("Header", (
        "flags", "page_size", "commit", "min_txid", "max_txid",
        "timestamp",  # milliseconds since the Unix epoch
        "pre_apply_checksum", "wal_offset", "wal_size", "wal_salt1", "wal_salt2", "node_id"),
        defaults=(0, 0, 0, 0, 0, 0, 0))):
    __slots__ = ()

    @property
    def is_snapshot(self) -> bool:
        return self.min_txid == 1

    @property
    def no_checksum(self) -> bool:
        return bool(self.flags & HEADER_FLAG_NO_CHECKSUM)

    def pack(self) -> bytes:
        return _HEADER.pack(
            MAGIC, self.flags, self.page_size, self.commit, self.min_txid, self.max_txid,
            self.timestamp, self.pre_apply_checksum, self.wal_offset, self.wal_size,
            self.wal_salt1, self.wal_salt2, self.node_id, b"\0" * 20,
        )

    @classmethod
    def unpack(cls, data: bytes | memoryview) -> Header:
        if len(data) < HEADER_SIZE:
            raise LTXFormatError(f"truncated header: {len(data)} of {HEADER_SIZE} bytes")
        f = _HEADER.unpack_from(data, 0)
        if f[0] != MAGIC:
            raise LTXFormatError(f"bad magic {bytes(f[0])!r}: not an LTX file")
        return cls(*f[1:13])

    def validate(self) -> None:
        """The checks ltx's Header.Validate performs, with messages naming the field."""
        if self.flags & ~HEADER_FLAG_MASK:
            raise LTXFormatError(f"invalid header flags 0x{self.flags:08x}")
        if not is_valid_page_size(self.page_size):
            raise LTXFormatError(f"invalid page size {self.page_size}")
        if self.min_txid == 0 or self.max_txid == 0:
            raise LTXFormatError("header TXID range must not contain zero")
        if self.min_txid > self.max_txid:
            raise LTXFormatError(
                f"header min TXID {self.min_txid} is greater than max TXID {self.max_txid}")
        if self.wal_offset < 0 or self.wal_size < 0:
            raise LTXFormatError("negative WAL offset or size in header")
        if (self.wal_salt1 or self.wal_salt2) and self.wal_offset == 0:
            raise LTXFormatError("WAL salt set without a WAL offset")
        if self.wal_offset == 0 and self.wal_size != 0:
            raise LTXFormatError("WAL size set without a WAL offset")
        if self.is_snapshot or self.no_checksum:
            if self.pre_apply_checksum != 0:
                raise LTXFormatError("pre-apply checksum must be zero for snapshots "
                                     "and files without checksums")
        elif self.pre_apply_checksum & CHECKSUM_FLAG == 0:
            raise LTXFormatError("pre-apply checksum is missing its flag bit")


class Trailer(namedtuple("Trailer", ("post_apply_checksum", "file_checksum"))):
    __slots__ = ()

    def pack(self) -> bytes:
        return _TRAILER.pack(self.post_apply_checksum, self.file_checksum)

    @classmethod
    def unpack(cls, data: bytes | memoryview) -> Trailer:
        if len(data) < TRAILER_SIZE:
            raise LTXFormatError(f"truncated trailer: {len(data)} of {TRAILER_SIZE} bytes")
        return cls(*_TRAILER.unpack_from(data, len(data) - TRAILER_SIZE))

    def validate(self, header: Header) -> None:
        if header.no_checksum:
            if self.post_apply_checksum != 0:
                raise LTXFormatError("post-apply checksum must be zero when the "
                                     "no-checksum flag is set")
        elif self.post_apply_checksum & CHECKSUM_FLAG == 0:
            raise LTXFormatError("post-apply checksum is missing its flag bit")
        if self.file_checksum & CHECKSUM_FLAG == 0:
            raise LTXFormatError("file checksum is missing its flag bit")


class FileInfo(namedtuple("FileInfo", ("level", "min_txid", "max_txid", "size", "created_at"),
                          defaults=(0.0,))):
    """One LTX object as a listing reports it (``created_at``: seconds since the epoch,
    S3 LastModified or file mtime)."""

    __slots__ = ()

    @property
    def name(self) -> str:
        return format_filename(self.min_txid, self.max_txid)
