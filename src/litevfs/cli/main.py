"""The ``litevfs`` command line: restore, ls and query a replica.

Errors print one clear line on stderr and exit non-zero; tracebacks only with
``LITESTREAM_LOG_LEVEL=DEBUG``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import sys
from collections.abc import Sequence

from .._version import __version__
from ..errors import LiteVFSError
from ..ltx.format import parse_txid


def _parse_timestamp(text: str) -> float:
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid timestamp {text!r}: expected RFC 3339, e.g. 2026-01-02T03:04:05Z") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.timestamp()


def _parse_txid_arg(text: str) -> int:
    try:
        return parse_txid(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _cmd_restore(args: argparse.Namespace) -> int:
    from ..engine.restore import restore, terminal_progress
    from ..storage import open_storage

    storage = open_storage(args.url)
    try:
        result = restore(
            storage, args.output, txid=args.txid, timestamp=args.timestamp,
            workers=args.parallel, progress=None if args.quiet else terminal_progress(),
        )
    finally:
        storage.close()
    if not args.quiet:
        print(f"restored {result.path}: TXID {result.txid:016x}, {result.commit} pages of "
              f"{result.page_size} bytes from {result.files} files "
              f"({result.bytes_downloaded} bytes downloaded)", file=sys.stderr)
    return 0


def _cmd_ls(args: argparse.Namespace) -> int:
    from ..storage import open_storage

    storage = open_storage(args.url)
    try:
        levels = storage.list_all()
    finally:
        storage.close()
    rows = [f for lvl in sorted(levels) for f in levels[lvl]]
    if args.json:
        import json

        print(json.dumps([
            {"level": f.level, "min_txid": f"{f.min_txid:016x}", "max_txid": f"{f.max_txid:016x}",
             "size": f.size, "created_at": dt.datetime.fromtimestamp(f.created_at, dt.timezone.utc)
             .isoformat().replace("+00:00", "Z")} for f in rows]))
        return 0
    print(f"{'level':>5}  {'min_txid':16}  {'max_txid':16}  {'size':>12}  created")
    for f in rows:
        created = dt.datetime.fromtimestamp(f.created_at, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        print(f"{f.level:>5}  {f.min_txid:016x}  {f.max_txid:016x}  {f.size:>12}  {created}")
    for lvl in sorted(levels):
        if levels[lvl]:
            files = levels[lvl]
            print(f"# level {lvl}: {len(files)} files, {sum(f.size for f in files)} bytes, "
                  f"TXID {files[0].min_txid:016x}..{files[-1].max_txid:016x}")
    return 0


def _cmd_query(args: argparse.Namespace) -> int:
    from .query import run_query

    return run_query(args.url, args.sql, as_json=args.json)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="litevfs", description="Read SQLite databases straight from Litestream replicas.")
    parser.add_argument("--version", action="version", version=f"litevfs {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("restore", help="restore a replica into a local database file")
    p.add_argument("url", help="replica URL: s3://bucket/path?endpoint=..., file:///dir, or a directory")
    p.add_argument("-o", "--output", required=True, help="output database path (must not exist)")
    target = p.add_mutually_exclusive_group()
    target.add_argument("--txid", type=_parse_txid_arg, help="restore to this TXID (decimal or 16 hex digits)")
    target.add_argument("--timestamp", type=_parse_timestamp, help="restore the last state before this RFC 3339 time")
    p.add_argument("--parallel", type=int, default=8, help="concurrent downloads (default 8)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress or summary")
    p.set_defaults(func=_cmd_restore)

    p = sub.add_parser("ls", help="list the replica's LTX files per level")
    p.add_argument("url")
    p.add_argument("--json", action="store_true", help="print a JSON array")
    p.set_defaults(func=_cmd_ls)

    p = sub.add_parser("query", help="run one SQL statement against the replica")
    p.add_argument("url")
    p.add_argument("sql")
    p.add_argument("--json", action="store_true", help="print a JSON array of rows, each a list")
    p.set_defaults(func=_cmd_query)

    from ..vfs.writeapi import add_cli as _add_write_cli  # litevfs unsynced export|discard

    _add_write_cli(sub)

    from .info import add_info_parser

    add_info_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    level = os.environ.get("LITESTREAM_LOG_LEVEL", "WARNING").upper()
    logging.basicConfig(level=getattr(logging, level, logging.WARNING),
                        format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (LiteVFSError, OSError, ValueError) as exc:
        if level == "DEBUG":
            raise
        print(f"litevfs {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
