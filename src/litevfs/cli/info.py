"""``litevfs info URL``: a health summary of a replica without opening it as a database.

One listing (every level in one request on S3), one header read of the newest file
(for the database size), and the litevfs head object when a litevfs writer keeps
one. Prints TXID, lag (age of the newest file), files and bytes per level, database
size, and the request cost of gathering it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import textwrap
import time
from typing import Any

from ..engine.head import read_head
from ..engine.metrics import request_cost_usd
from ..engine.plan import calc_restore_plan
from ..ltx.format import HEADER_SIZE, Header
from ..storage import empty_replica_message, open_storage
from .common import storage_options


def replica_info(url: str, **storage_options: Any) -> dict[str, Any]:
    """The summary as a dict (``litevfs info --json`` prints it). An empty replica has
    ``txid`` None and ``error`` saying why; ``estimated_cost_usd`` is None off S3."""
    storage = open_storage(url, **storage_options)
    try:
        levels = storage.list_all()
        files = [f for lvl in sorted(levels) for f in levels[lvl]]
        out: dict[str, Any] = {
            "replica": storage.url,
            "levels": {str(lvl): {"files": len(fs), "bytes": sum(f.size for f in fs),
                                  "min_txid": f"{fs[0].min_txid:016x}",
                                  "max_txid": f"{fs[-1].max_txid:016x}"}
                       for lvl, fs in sorted(levels.items()) if fs},
            "files": len(files),
            "bytes": sum(f.size for f in files),
        }
        if not files:
            out.update(txid=None, lag_s=None, page_size=None, pages=None, db_size=None)
        else:
            plan = calc_restore_plan(levels)
            newest = plan[-1]
            header = Header.unpack(storage.read_range(newest, 0, HEADER_SIZE))
            created = max(f.created_at for f in files)
            out.update(
                txid=f"{newest.max_txid:016x}",
                lag_s=round(max(0.0, time.time() - created), 3),
                newest_file_at=dt.datetime.fromtimestamp(created, dt.timezone.utc)
                .isoformat().replace("+00:00", "Z"),
                plan_files=len(plan), page_size=header.page_size, pages=header.commit,
                db_size=header.page_size * header.commit,
            )
        try:
            head = read_head(storage)
            out["head_txid"] = None if head is None else f"{head:016x}"
        except Exception:  # noqa: BLE001 - the head object is optional
            out["head_txid"] = None
        if not files:
            out["error"] = empty_replica_message(storage, hint=False)
        stats = storage.stats.snapshot()
        out["requests"] = {k: stats[k] for k in ("lists", "gets")}
        # Requests cost money on S3 only: no price for a local directory.
        out["estimated_cost_usd"] = (request_cost_usd(stats["lists"], stats["gets"], 0)
                                     if storage.url.startswith("s3://") else None)
        return out
    finally:
        storage.close()


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{n} B"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def cmd_info(args: argparse.Namespace) -> int:
    """Exit 0 for a replica with files; 1 (one line on stderr) for an empty one."""
    info = replica_info(args.url, **storage_options(args))
    if args.json:
        print(json.dumps(info))
    if info["txid"] is None:
        print(f"litevfs info: {info['error']}", file=sys.stderr)
        return 1
    if args.json:
        return 0
    print(f"replica   {info['replica']}")
    print(f"TXID      {info['txid']}" + (
        f"  (head object: {info['head_txid']})" if info.get("head_txid") else ""))
    print(f"lag       {info['lag_s']:.1f} s since the newest file ({info['newest_file_at']})")
    print(f"database  {info['pages']} pages of {info['page_size']} bytes = "
          f"{_human(info['db_size'])}; restore plan {info['plan_files']} files")
    print(f"files     {info['files']} ({_human(info['bytes'])})")
    for lvl, row in info["levels"].items():
        print(f"  level {lvl}: {row['files']:>6} files {_human(row['bytes']):>12}  "
              f"TXID {row['min_txid']}..{row['max_txid']}")
    if info["estimated_cost_usd"] is not None:
        print(f"cost      {info['requests']['lists']} LIST + {info['requests']['gets']} GET "
              f"= ${info['estimated_cost_usd']:.7f}")
    return 0


def add_info_parser(sub: Any, common: argparse.ArgumentParser | None = None,
                    epilog: str | None = None) -> None:
    p = sub.add_parser(
        "info", parents=[common] if common is not None else [],
        help="health summary of a replica (TXID, lag, files per level)",
        description=textwrap.fill(
            "TXID, lag, database size and files per level from one listing and one header "
            "read, without opening the database (exit 1 for a replica with no LTX files). "
            "On S3 also the request cost of gathering it.", 78),
        epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False)
    if common is None:
        p.add_argument("url")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_info)
