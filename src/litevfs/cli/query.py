"""``litevfs query URL SQL [--json]``: run one statement against a replica."""

from __future__ import annotations

import base64
import json
import sys
from typing import IO, Any


def _jsonable(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    return value


def _text(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "x'" + bytes(value).hex() + "'"
    return str(value)


def run_query(url: str, sql: str, as_json: bool = False, *, out: IO[str] | None = None,
              **options: Any) -> int:
    """Print the rows of ``sql`` run on the replica at ``url``: tab-separated text, or
    with ``as_json`` one JSON array of rows (each a list; blobs base64). Returns 0."""
    from ..vfs.connect import connect

    out = out or sys.stdout
    con = connect(url, **options)
    try:
        rows = con.execute(sql).fetchall()
    finally:
        con.close()
    if as_json:
        json.dump([[_jsonable(v) for v in row] for row in rows], out)
        out.write("\n")
    else:
        for row in rows:
            out.write("\t".join(_text(v) for v in row) + "\n")
    return 0
