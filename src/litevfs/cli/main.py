"""The ``litevfs`` command: one parser, one subcommand module each (``restore``, ``ls``,
``query``, ``info``, ``unsynced``); every error a user can cause is one line."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from .._version import __version__
from ..config import FIELDS_BY_NAME, parse_log_level
from ..errors import LiteVFSError
from . import info, ls, query, restore, unsynced
from .common import (
    ENVIRONMENT, Parser, command_builder, common_arguments, resolve_replica,
)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="litevfs", description="Read SQLite databases straight from Litestream replicas.",
        epilog=ENVIRONMENT, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"litevfs {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = common_arguments()
    command = command_builder(sub, common)
    restore.add_parser(command)
    ls.add_parser(command)
    query.add_parser(command)
    unsynced.add_parser(sub)
    info.add_info_parser(sub, common, ENVIRONMENT)
    return parser


def _log_level() -> tuple[int, str | None]:
    """The CLI's log level from LITESTREAM_LOG_LEVEL / LITEVFS_LOG_LEVEL (as the library
    reads them: the first one set wins), and an error message for a bad value."""
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
        resolve_replica(args)
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - every error is one line (tracebacks at DEBUG)
        if level <= logging.DEBUG:
            raise
        command = args.command + (f" {args.action}" if getattr(args, "action", None) else "")
        print(f"litevfs {command}: {describe_error(exc)}", file=sys.stderr)
        return 1
