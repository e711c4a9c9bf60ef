"""``litevfs restore``: materialise a replica into a local database file (the work is
``engine.restore.restore``), with Litestream's flags and a progress line in bytes."""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import TextIO

from ..engine.restore import ProgressFn, restore
from ..errors import EmptyReplicaError
from .common import (
    Command, open_from_args, parse_timestamp_arg, parse_txid_arg, positive_int, say,
)


def run(args: argparse.Namespace) -> int:
    if args.if_db_not_exists and os.path.exists(args.output):
        say(args, f"database {args.output} already exists, skipping (-if-db-not-exists)")
        return 0
    storage = open_from_args(args)
    try:
        result = restore(
            storage, args.output, txid=args.txid, timestamp=args.timestamp,
            workers=args.parallelism, progress=None if args.quiet else terminal_progress(),
        )
    except EmptyReplicaError as exc:
        if not args.if_replica_exists:
            raise
        say(args, f"no backups to restore, skipping (-if-replica-exists): {exc}")
        return 0
    finally:
        storage.close()
    say(args, f"restored {result.path}: TXID {result.txid:016x}, {result.commit} pages of "
               f"{result.page_size} bytes from {result.files} files "
               f"({result.bytes_downloaded} bytes downloaded)")
    return 0


def terminal_progress(stream: TextIO = sys.stderr, interval: float = 0.1) -> ProgressFn | None:
    """A one-line progress bar in bytes (and MB/s) when ``stream`` is a terminal, else
    None. Redrawn at most every ``interval`` seconds, and once at the end."""
    if not stream.isatty():
        return None
    started = time.monotonic()
    last = [0.0]

    def show(done: int, total: int, files_done: int, files_total: int) -> None:
        now = time.monotonic()
        finished = done >= total
        if not finished and now - last[0] < interval:
            return
        last[0] = now
        width = 30
        filled = width * done // max(total, 1)
        rate = done / max(now - started, 1e-6) / 1e6
        stream.write(f"\rrestoring [{'#' * filled}{'.' * (width - filled)}] "
                     f"{done / 1e6:.1f}/{total / 1e6:.1f} MB, {rate:.1f} MB/s, "
                     f"file {files_done}/{files_total}")
        if finished:
            stream.write("\n")
        stream.flush()

    return show


def add_parser(command: Command) -> None:
    p = command("restore", "restore a replica into a local database file",
                "Download the replica's restore plan (every file CRC-64-verified, written "
                "as it downloads with bounded memory) into a new database file. "
                "Litestream's single-dash flags (-o, -txid, -timestamp, -parallelism, "
                "-if-db-not-exists, -if-replica-exists) are accepted too.")
    p.add_argument("-o", "--output", required=True,
                   help="output database path (must not exist; written atomically)")
    target = p.add_mutually_exclusive_group()
    target.add_argument("-txid", "--txid", type=parse_txid_arg, metavar="TXID",
                        help="restore to this TXID (decimal, or 16 hex digits as listed)")
    target.add_argument("-timestamp", "--timestamp", type=parse_timestamp_arg, metavar="TIME",
                        help="restore the last state before TIME: RFC 3339 "
                             "(2026-01-02T03:04:05Z) or relative ('5 minutes ago', "
                             "'yesterday')")
    p.add_argument("-parallelism", "--parallelism", "--parallel", dest="parallelism",
                   type=positive_int, default=8, metavar="N",
                   help="concurrent ranged downloads (default 8)")
    p.add_argument("-if-db-not-exists", "--if-db-not-exists", action="store_true",
                   dest="if_db_not_exists",
                   help="do nothing (exit 0) when the output file already exists")
    p.add_argument("-if-replica-exists", "--if-replica-exists", action="store_true",
                   dest="if_replica_exists",
                   help="do nothing (exit 0) when the replica has no backups")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress or summary")
    p.set_defaults(func=run)

