"""Reading SQLite's own records where the engine needs a hint from them: the rows of the
schema table (``sqlite_schema``: type, name, tbl_name, rootpage, sql), from a table
leaf page, without SQLite. Only the local part of each cell is read (the first columns
never spill); a damaged page gives fewer rows, never an error (SQLite reports it when it
reads the page itself)."""

from __future__ import annotations

import struct

LEAF_TABLE = 13


def varint(buf: bytes, pos: int) -> tuple[int, int]:
    """SQLite's big-endian varint at ``pos``: (value, position after it)."""
    value = 0
    for i in range(8):
        byte = buf[pos + i]
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            return value, pos + i + 1
    return (value << 8) | buf[pos + 8], pos + 9


_INT_SIZES = {1: 1, 2: 2, 3: 3, 4: 4, 5: 6, 6: 8}


def record_values(buf: bytes, pos: int, end: int, count: int) -> list[object]:
    """The first ``count`` values of the record at ``buf[pos:end]`` (text decoded)."""
    header_size, p = varint(buf, pos)
    header_end = pos + header_size
    types = []
    while p < header_end and len(types) < count:
        t, p = varint(buf, p)
        types.append(t)
    values: list[object] = []
    data = header_end
    for t in types:
        if t == 0:
            values.append(None)
        elif t in _INT_SIZES:
            n = _INT_SIZES[t]
            values.append(int.from_bytes(buf[data:data + n], "big", signed=True))
            data += n
        elif t == 7:
            values.append(struct.unpack_from(">d", buf, data)[0])
            data += 8
        elif t in (8, 9):
            values.append(t - 8)
        elif t >= 12:
            n = (t - 12) // 2
            raw = bytes(buf[data:data + n])
            values.append(raw.decode("utf-8", "replace") if t % 2 else raw)
            data += n
        else:
            break
        if data > end:
            return values[:-1]
    return values


def schema_rows(page: bytes, pgno: int) -> list[tuple[str, str, int]]:
    """(type, name, rootpage) of each schema row on a table leaf page."""
    base = 100 if pgno == 1 else 0
    if len(page) < base + 8 or page[base] != LEAF_TABLE:
        return []
    ncells, = struct.unpack_from(">H", page, base + 3)
    rows = []
    try:
        for ptr in struct.unpack_from(f">{ncells}H", page, base + 8):
            size, p = varint(page, ptr)
            _rowid, p = varint(page, p)
            values = record_values(page, p, min(len(page), p + size), 4)
            if len(values) == 4 and isinstance(values[3], int):
                rows.append((str(values[0]), str(values[1]), values[3]))
    except (IndexError, struct.error):
        pass
    return rows
