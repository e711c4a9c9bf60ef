"""``litevfs ls``: every LTX file of a replica, per level."""

from __future__ import annotations

import argparse
import datetime as dt
import json

from ..storage import empty_replica_message
from .common import Command, open_from_args, say


def run(args: argparse.Namespace) -> int:
    storage = open_from_args(args)
    try:
        levels = storage.list_all()
        rows = [f for lvl in sorted(levels) for f in levels[lvl]]
        empty = None
        if not rows:
            empty = empty_replica_message(storage, hint=False)
    finally:
        storage.close()

    def iso(t: float) -> str:
        return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    if args.json:
        print(json.dumps([{"level": f.level, "min_txid": f"{f.min_txid:016x}",
                           "max_txid": f"{f.max_txid:016x}", "size": f.size,
                           "created_at": iso(f.created_at)} for f in rows]))
    if empty is not None:
        say(args, empty)
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



def add_parser(command: Command) -> None:
    p = command("ls", "list the replica's LTX files per level",
                "List the LTX files of every level (exit 1 when there are none).")
    p.add_argument("--json", action="store_true", help="print a JSON array of files")
    p.set_defaults(func=run)

