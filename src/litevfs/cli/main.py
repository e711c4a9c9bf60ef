"""The ``litevfs`` command line: restore, ls, query and info of a replica.

Every error a user can cause prints one line on stderr and exits 1 (2 for a bad
command line); tracebacks only with ``LITEVFS_LOG_LEVEL=DEBUG`` (or
``LITESTREAM_LOG_LEVEL``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import textwrap
from collections.abc import Sequence
from typing import Any, NoReturn

from .._version import __version__
from ..ltx.format import parse_txid

URL_HELP = ("replica URL: s3://bucket/path?endpoint=http://host:port&region=..., "
            "file:///absolute/dir, or a directory path")

ENVIRONMENT = """\
replica URLs:
  s3://bucket/path                     AWS S3 (region from AWS_REGION or ?region=)
  s3://bucket/path?endpoint=URL        S3-compatible servers (MinIO, SeaweedFS, R2...);
                                       also region=, forcePathStyle=, skipVerify=
  file:///absolute/dir, or a path      Litestream's file replica layout

S3 credentials, first found wins:
  AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN)
  LITESTREAM_ACCESS_KEY_ID + LITESTREAM_SECRET_ACCESS_KEY
  the default AWS chain: AWS_PROFILE / ~/.aws/credentials, then instance
  metadata (set AWS_EC2_METADATA_DISABLED=true where there is none)

environment: LITEVFS_CONNECT_TIMEOUT, LITEVFS_READ_TIMEOUT (S3 timeouts),
LITEVFS_LOG_LEVEL or LITESTREAM_LOG_LEVEL (DEBUG also shows tracebacks)."""


class _Parser(argparse.ArgumentParser):
    """Command-line mistakes are one line too (not argparse's usage block)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _parse_timestamp(text: str) -> float:
    """RFC 3339 or a relative time (``5 minutes ago``, ``yesterday``), as the
    ``litestream_time`` PRAGMA accepts."""
    from ..engine.timetravel import TimeTravelError, parse_time

    try:
        return parse_time(text).timestamp()
    except TimeTravelError as exc:
        raise argparse.ArgumentTypeError(f"{exc}: {text!r}") from None


def _parse_txid_arg(text: str) -> int:
    try:
        return parse_txid(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _parse_timeout_arg(text: str) -> float:
    from ..config import parse_timeout

    try:
        return parse_timeout(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _parse_wait_arg(text: str) -> float:
    from ..config import parse_wait

    try:
        return parse_wait(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def storage_options(args: argparse.Namespace) -> dict[str, Any]:
    """The S3 timeouts given on the command line (unset ones come from the environment:
    ``LITEVFS_CONNECT_TIMEOUT`` / ``LITEVFS_READ_TIMEOUT``); none off S3."""
    from ..storage import parse_replica_url

    if parse_replica_url(args.url).scheme != "s3":
        return {}
    return {k: v for k in ("connect_timeout", "read_timeout")
            if (v := getattr(args, k, None)) is not None}


def _open(args: argparse.Namespace) -> Any:
    from ..storage import open_storage

    return open_storage(args.url, **storage_options(args))


def _say(args: argparse.Namespace, message: str) -> None:
    if not getattr(args, "quiet", False):
        print(f"litevfs {args.command}: {message}", file=sys.stderr)


def _cmd_restore(args: argparse.Namespace) -> int:
    from ..engine.restore import restore, terminal_progress
    from ..errors import EmptyReplicaError

    if args.if_db_not_exists and os.path.exists(args.output):
        _say(args, f"database {args.output} already exists, skipping (-if-db-not-exists)")
        return 0
    storage = _open(args)
    try:
        result = restore(
            storage, args.output, txid=args.txid, timestamp=args.timestamp,
            workers=args.parallelism, progress=None if args.quiet else terminal_progress(),
        )
    except EmptyReplicaError as exc:
        if not args.if_replica_exists:
            raise
        _say(args, f"no backups to restore, skipping (-if-replica-exists): {exc}")
        return 0
    finally:
        storage.close()
    _say(args, f"restored {result.path}: TXID {result.txid:016x}, {result.commit} pages of "
               f"{result.page_size} bytes from {result.files} files "
               f"({result.bytes_downloaded} bytes downloaded)")
    return 0


def _cmd_ls(args: argparse.Namespace) -> int:
    import datetime as dt

    storage = _open(args)
    try:
        levels = storage.list_all()
        rows = [f for lvl in sorted(levels) for f in levels[lvl]]
        empty = None
        if not rows:
            from ..storage import empty_replica_message

            empty = empty_replica_message(storage, hint=False)
    finally:
        storage.close()

    def iso(t: float) -> str:
        return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    if args.json:
        import json

        print(json.dumps([{"level": f.level, "min_txid": f"{f.min_txid:016x}",
                           "max_txid": f"{f.max_txid:016x}", "size": f.size,
                           "created_at": iso(f.created_at)} for f in rows]))
    if empty is not None:
        _say(args, empty)
        return 1
    if args.json:
        return 0
    print(f"{'level':>5}  {'min_txid':16}  {'max_txid':16}  {'size':>12}  created")
    for f in rows:
        print(f"{f.level:>5}  {f.min_txid:016x}  {f.max_txid:016x}  {f.size:>12}  "
              f"{iso(f.created_at)}")
    for lvl in sorted(levels):
        if levels[lvl]:
            files = levels[lvl]
            print(f"# level {lvl}: {len(files)} files, {sum(f.size for f in files)} bytes, "
                  f"TXID {files[0].min_txid:016x}..{files[-1].max_txid:016x}")
    return 0


def _cmd_query(args: argparse.Namespace) -> int:
    from .query import run_query

    from ..errors import EmptyReplicaError

    options: dict[str, Any] = {"wait_for_replica": args.wait_for_replica}
    options.update(storage_options(args))
    try:
        return run_query(args.url, args.sql, fmt=args.format, header=not args.no_header,
                         **options)
    except EmptyReplicaError as exc:  # name the flag, not the library option
        raise EmptyReplicaError(str(exc).replace("wait_for_replica=30s",
                                                 "--wait-for-replica 30s")) from None


def _common() -> argparse.ArgumentParser:
    """Arguments every command that reads a replica takes."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("url", help=URL_HELP)
    s3 = common.add_argument_group("S3 timeouts (each error names the endpoint)")
    s3.add_argument("--connect-timeout", type=_parse_timeout_arg, metavar="DURATION",
                    help="connecting to the endpoint (default 3s; LITEVFS_CONNECT_TIMEOUT)")
    s3.add_argument("--read-timeout", type=_parse_timeout_arg, metavar="DURATION",
                    help="waiting for the endpoint's answer (default 30s; a timed-out "
                         "request is tried once more; LITEVFS_READ_TIMEOUT)")
    return common


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="litevfs", description="Read SQLite databases straight from Litestream replicas.",
        epilog=ENVIRONMENT, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"litevfs {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = _common()

    def command(name: str, help: str, description: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name, parents=[common], help=help, description=textwrap.fill(description, 78),
            epilog=ENVIRONMENT,
            formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)

    p = command("restore", "restore a replica into a local database file",
                "Download the replica's restore plan (every file CRC-64-verified, written "
                "as it downloads with bounded memory) into a new database file. "
                "Litestream's single-dash flags (-o, -txid, -timestamp, -parallelism, "
                "-if-db-not-exists, -if-replica-exists) are accepted too.")
    p.add_argument("-o", "--output", required=True,
                   help="output database path (must not exist; written atomically)")
    target = p.add_mutually_exclusive_group()
    target.add_argument("-txid", "--txid", type=_parse_txid_arg, metavar="TXID",
                        help="restore to this TXID (decimal, or 16 hex digits as listed)")
    target.add_argument("-timestamp", "--timestamp", type=_parse_timestamp, metavar="TIME",
                        help="restore the last state before TIME: RFC 3339 "
                             "(2026-01-02T03:04:05Z) or relative ('5 minutes ago', "
                             "'yesterday')")
    p.add_argument("-parallelism", "--parallelism", "--parallel", dest="parallelism",
                   type=_positive_int, default=8, metavar="N",
                   help="concurrent ranged downloads (default 8)")
    p.add_argument("-if-db-not-exists", "--if-db-not-exists", action="store_true",
                   dest="if_db_not_exists",
                   help="do nothing (exit 0) when the output file already exists")
    p.add_argument("-if-replica-exists", "--if-replica-exists", action="store_true",
                   dest="if_replica_exists",
                   help="do nothing (exit 0) when the replica has no backups")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress or summary")
    p.set_defaults(func=_cmd_restore)

    p = command("ls", "list the replica's LTX files per level",
                "List the LTX files of every level (exit 1 when there are none).")
    p.add_argument("--json", action="store_true", help="print a JSON array of files")
    p.set_defaults(func=_cmd_ls)

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
    p.add_argument("--wait-for-replica", type=_parse_wait_arg, default=0.0,
                   metavar="DURATION", help="wait this long for an empty replica's first "
                   "file (default: fail at once)")
    p.set_defaults(func=_cmd_query)

    from ..vfs.writeapi import add_cli as _add_write_cli  # litevfs unsynced export|discard

    _add_write_cli(sub)

    from .info import add_info_parser

    add_info_parser(sub, common, ENVIRONMENT)
    return parser


def _log_level() -> tuple[int, str | None]:
    """The CLI's log level from LITESTREAM_LOG_LEVEL / LITEVFS_LOG_LEVEL (as the library
    reads them: the first one set wins), and an error message for a bad value."""
    from ..config import FIELDS_BY_NAME, parse_log_level

    for name in FIELDS_BY_NAME["log_level"].env:
        value = os.environ.get(name)
        if value:
            try:
                return getattr(logging, parse_log_level(value)), None
            except ValueError as exc:
                return logging.WARNING, f"environment variable {name}: {exc}"
    return logging.WARNING, None


def describe_error(exc: BaseException) -> str:
    """One line for ``exc``: its message, with the apsw class name (``SQLError: no
    such table: t``) or the class when the message alone would not say what failed."""
    if type(exc).__module__ == "apsw":
        text = f"{type(exc).__name__}: {exc}"
        if type(exc).__name__ == "ReadOnlyError":
            text += " (litevfs query opens the replica read-only)"
        return text
    from ..errors import LiteVFSError

    text = " ".join(str(exc).split())  # one line, whatever the message holds
    if isinstance(exc, (LiteVFSError, OSError)) and text:
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    level, bad_level = _log_level()
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if bad_level is not None:
        print(f"litevfs: {bad_level}", file=sys.stderr)
        return 2
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - every error is one line (tracebacks at DEBUG)
        if level <= logging.DEBUG:
            raise
        command = args.command + (f" {args.action}" if getattr(args, "action", None) else "")
        print(f"litevfs {command}: {describe_error(exc)}", file=sys.stderr)
        return 1
