"""Warm cached point queries: litevfs (both twins) vs apsw on a local file, in one
process, interleaved, so machine noise hits every reader alike.

    python benchmarks/warm_point.py [--rows 100000] [--queries 2000] [--rounds 15]

The replica is written to in-memory storage by the test suite's fake Litestream (every
page is cached after the warm-up, so storage plays no part in what is timed). Prints
one JSON line per reader (median µs per query over the rounds) and the ratios to apsw.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1])]  # tests.vfs_support

import apsw  # noqa: E402

import litevfs._pagecache as compiled  # noqa: E402
import litevfs._pagecache_py as pure  # noqa: E402
import litevfs.vfs.connect as api  # noqa: E402
from tests.vfs_support import FakeLitestream, unique_memory_url  # noqa: E402


def build(rows: int) -> tuple[Path, FakeLitestream]:
    db = Path(tempfile.mkdtemp(prefix="litevfs-warm-")) / "primary.db"
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("PRAGMA journal_mode=DELETE")
    con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    con.execute("BEGIN")
    con.executemany("INSERT INTO t VALUES(?, ?)", ((i, "x" * 100) for i in range(rows)))
    con.execute("COMMIT")
    con.close()
    ls = FakeLitestream(db, unique_memory_url("warm"))
    ls.sync()
    return db, ls


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--queries", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=15)
    args = p.parse_args()
    db, ls = build(args.rows)
    readers = {
        "litevfs-cython": api.connect(ls.storage.url, impl=compiled, poll_interval=0),
        "litevfs-python": api.connect(ls.storage.url, impl=pure, poll_interval=0),
        "apsw-local-file": apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY),
    }
    ids = random.Random(7).choices(range(args.rows), k=args.queries)

    def run(con: apsw.Connection) -> float:
        t0 = time.perf_counter_ns()
        for i in ids:
            con.execute("SELECT v FROM t WHERE id = ?", (i,)).fetchone()
        return (time.perf_counter_ns() - t0) / len(ids) / 1000

    for con in readers.values():  # warm every cache (ours and SQLite's)
        run(con)
        run(con)
    samples: dict[str, list[float]] = {name: [] for name in readers}
    for _ in range(args.rounds):
        for name, con in readers.items():
            samples[name].append(run(con))
    base = statistics.median(samples["apsw-local-file"])
    for name, values in samples.items():
        med = statistics.median(values)
        print(json.dumps({"bench": "warm_point_query_p50", "reader": name, "value": round(med, 3),
                          "unit": "us/query", "ratio_to_apsw_local": round(med / base, 3),
                          "rounds": args.rounds, "queries": args.queries}))
    print(f"\n{'reader':18} {'µs/query':>9} {'vs apsw local':>14}")
    for name, values in samples.items():
        med = statistics.median(values)
        print(f"{name:18} {med:9.2f} {med / base:13.2f}x")
    for con in readers.values():
        con.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
