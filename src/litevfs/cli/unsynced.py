"""``litevfs unsynced export|discard``: get a write buffer's transactions out after a
conflict, or drop them (``write/export.py`` does the work)."""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import LiteVFSError, WriteBufferError
from ..write.export import discard_buffer, export_buffer


def _export(args: argparse.Namespace) -> int:
    info, n = export_buffer(args.buffer, args.output)
    print(f"exported {n} unsynced transactions of {info['url']} (base TXID "
          f"{info['base_txid']:016x}) to {args.output}")
    return 0


def _discard(args: argparse.Namespace) -> int:
    try:  # refused while a live writer holds the buffer
        info, n = discard_buffer(args.buffer)
    except WriteBufferError as exc:
        raise LiteVFSError(str(exc)) from None
    print(f"discarded {n} unsynced transactions of {info['url']}")
    return 0


def add_parser(sub: Any) -> None:
    """Add ``litevfs unsynced export|discard`` to the CLI's subparsers."""
    p = sub.add_parser("unsynced", help="export or discard a write buffer's unsynced transactions")
    actions = p.add_subparsers(dest="action", required=True)
    e = actions.add_parser("export", help="write base state + unsynced transactions to a db")
    e.add_argument("buffer", help="write buffer file (buffer_path)")
    e.add_argument("-o", "--output", required=True, help="output database path (must not exist)")
    e.set_defaults(func=_export)
    d = actions.add_parser("discard", help="delete the buffer (refused while a writer holds it)")
    d.add_argument("buffer")
    d.set_defaults(func=_discard)
