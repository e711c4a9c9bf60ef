"""``litevfs query URL SQL``: run SQL against a replica, print the rows.

Formats: ``text`` (tab-separated, a header line of column names), ``json`` (an
array of objects keyed by column name), ``json-arrays`` (an array of arrays), ``csv``
(RFC 4180, header line). With several statements, each statement's rows follow in
turn; text and CSV print a new header line when the columns change.
"""

from __future__ import annotations

import argparse
import base64
import csv
import json
import sys
from typing import IO, Any

import litevfs

from ..errors import EmptyReplicaError
from .common import Command, parse_wait_arg, storage_options

FORMATS = ("text", "json", "json-arrays", "csv")


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


def _csv(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "x'" + bytes(value).hex() + "'"
    return value


def unique_keys(names: list[str]) -> list[str]:
    """Column names as JSON object keys: a repeated name gets ``_2``, ``_3``...
    (``SELECT a, a`` would otherwise lose a value)."""
    seen: set[str] = set()
    out = []
    for name in names:
        key, n = name, 1
        while key in seen:
            n += 1
            key = f"{name}_{n}"
        seen.add(key)
        out.append(key)
    return out


def run_query(url: str, sql: str, as_json: bool = False, *, fmt: str | None = None,
              header: bool = True, out: IO[str] | None = None, **options: Any) -> int:
    """Print the rows of ``sql`` run on the replica at ``url`` in ``fmt`` (one of
    ``FORMATS``; ``as_json`` is ``fmt="json"``). ``options`` are connection options
    (``litevfs.connect``). Returns 0; errors (SQL, apsw, storage) raise."""
    fmt = fmt or ("json" if as_json else "text")
    if fmt not in FORMATS:
        raise ValueError(f"unknown output format {fmt!r}: expected one of {', '.join(FORMATS)}")
    out = out or sys.stdout
    con = litevfs.connect(url, **options)
    try:
        cursor = con.cursor()
        columns: list[list[str]] = [[]]  # the running statement's column names

        def trace(_cursor: Any, _sql: str, _bindings: Any) -> bool:
            # Called as each statement starts: its columns are known even with no rows.
            columns[0] = [name for name, _ in _cursor.getdescription()]
            return True

        cursor.exec_trace = trace
        rows = cursor.execute(sql)
        if fmt in ("json", "json-arrays"):
            items = []
            for row in rows:
                values = [_jsonable(v) for v in row]
                items.append(values if fmt == "json-arrays"
                             else dict(zip(unique_keys(columns[0]), values)))
            json.dump(items, out)
            out.write("\n")
            return 0
        writer: Any = None
        if fmt == "csv":
            writer = csv.writer(out, lineterminator="\n")
        shown: list[str] | None = None
        for row in rows:
            if header and columns[0] != shown:
                shown = columns[0]
                if writer is not None:
                    writer.writerow(shown)
                else:
                    out.write("\t".join(shown) + "\n")
            if writer is not None:
                writer.writerow([_csv(v) for v in row])
            else:
                out.write("\t".join(_text(v) for v in row) + "\n")
        if header and shown is None and columns[0]:  # no rows: still say what the columns are
            if writer is not None:
                writer.writerow(columns[0])
            else:
                out.write("\t".join(columns[0]) + "\n")
    finally:
        con.close()
    return 0


def run(args: argparse.Namespace) -> int:
    options: dict[str, Any] = {"wait_for_replica": args.wait_for_replica}
    options.update(storage_options(args))
    try:
        return run_query(args.url, args.sql, fmt=args.format, header=not args.no_header,
                         **options)
    except EmptyReplicaError as exc:  # name the flag, not the library option
        raise EmptyReplicaError(str(exc).replace("wait_for_replica=30s",
                                                 "--wait-for-replica 30s")) from None



def add_parser(command: Command) -> None:
    p = command("query", "run SQL against the replica (read-only)",
                "Open the replica read-only (nothing is downloaded whole) and print the "
                "rows of SQL: tab-separated text with a header line by default.")
    p.add_argument("sql", help="SQL to run (several statements: each one's rows in turn)")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", dest="format", action="store_const", const="json",
                     default="text", help="a JSON array of objects keyed by column name "
                     "(blobs base64; a repeated name gets a _2 suffix)")
    fmt.add_argument("--json-arrays", dest="format", action="store_const",
                     const="json-arrays", help="a JSON array of rows, each an array")
    fmt.add_argument("--csv", dest="format", action="store_const", const="csv",
                     help="CSV (RFC 4180) with a header line; NULL is an empty field")
    p.add_argument("--no-header", action="store_true", help="no header line (text, CSV)")
    p.add_argument("--wait-for-replica", type=parse_wait_arg, default=0.0,
                   metavar="DURATION", help="wait this long for an empty replica's first "
                   "file (default: fail at once)")
    p.set_defaults(func=run)

