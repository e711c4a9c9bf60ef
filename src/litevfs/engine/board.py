"""The poll board: what the machine's elected read-only poller learned from the bucket,
in one small file the other read-only processes build their views from without a
request (``write/readpoll.py`` elects the poller and tells the others when it changes).

The file holds the poller's TXID and the LTX files it applied in its recent polls,
each with its header and page index (``storage.fetch.pack_index``'s encoding), so a
follower needs neither the LIST nor the index reads. It is written to a temporary
name and renamed (a reader never sees half of it) and ends with a CRC of the rest.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Sequence
from typing import NamedTuple

from ..ltx.format import FileInfo
from ..storage.fetch import FileIndex
from ..storage.fetch import pack_index, unpack_index

MAGIC = b"LVBOARD1"
_HEAD = struct.Struct("<8sQI")  # magic, TXID, file count
_FILE = struct.Struct("<IQQQdI")  # level, min TXID, max TXID, size, created_at, blob length
_CRC = struct.Struct("<I")


class Board(NamedTuple):
    txid: int
    files: list[FileIndex]


def encode_board(txid: int, files: Sequence[FileIndex]) -> bytes:
    parts = [_HEAD.pack(MAGIC, txid, len(files))]
    for fi in files:
        info = fi.info
        blob = pack_index(fi.header.pack(), fi.pgnos, fi.offsets, fi.sizes)
        parts += [_FILE.pack(info.level, info.min_txid, info.max_txid, info.size,
                             float(info.created_at), len(blob)), blob]
    body = b"".join(parts)
    return body + _CRC.pack(zlib.crc32(body))


def decode_board(data: bytes) -> Board | None:
    """The board in ``data``, or None when it is not a complete one."""
    if len(data) < _HEAD.size + _CRC.size or _CRC.unpack_from(data, len(data) - 4)[0] != \
            zlib.crc32(memoryview(data)[:-4]):
        return None
    magic, txid, count = _HEAD.unpack_from(data)
    if magic != MAGIC:
        return None
    pos, files = _HEAD.size, []
    for _ in range(count):
        level, lo, hi, size, created, n = _FILE.unpack_from(data, pos)
        pos += _FILE.size
        unpacked = unpack_index(data[pos:pos + n])
        pos += n
        if unpacked is None:
            return None
        header, pgnos, offsets, sizes = unpacked
        files.append(FileIndex(FileInfo(level, lo, hi, size, created), header, pgnos,
                               offsets, sizes))
    return Board(txid, files)


def write_board(path: str, board: bytes) -> None:
    """Replace the board at ``path`` atomically (0600, like the buffer's files)."""
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(board)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def read_board(path: str) -> Board | None:
    try:
        with open(path, "rb") as f:
            return decode_board(f.read())
    except (OSError, struct.error):
        return None
