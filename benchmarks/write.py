"""Write mode: litevfs (both twins) against Litestream's VFS write mode.

    python benchmarks/write.py               # ~1 minute
    python benchmarks/write.py --small 5000 --large 300

Starts its own SeaweedFS on 127.0.0.1, then for each writer, in a fresh process on
an empty replica prefix (a new database):

* commit latency p50/p99 of small transactions (one ~100-byte INSERT each);
* commit latency p50/p99 of 100-page transactions (100 rows of ~4000-byte blobs);
* sync time of 1,000 dirty pages: litevfs ``litevfs.sync()`` (and close);
  Litestream's VFS has no forced sync, so its time is the close (final sync) with the
  sync interval set to 1 h (litevfs close is measured the same way).

litevfs runs with its crash-safe buffer (no fsync per commit, the default, and
``--fsync`` adds a run with ``buffer_fsync=true``); Litestream's VFS with
``LITESTREAM_WRITE_ENABLED=true``. Output: one JSON line per writer, then a table.
Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]  # tests.rig; litevfs is the installed package

WRITERS = ("litevfs-cython", "litevfs-python", "litestream")


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def _child(args: argparse.Namespace) -> None:
    import apsw

    if args.child == "litestream":
        loader = apsw.Connection(":memory:")
        loader.enable_load_extension(True)
        loader.load_extension(args.extension)
        con = apsw.Connection("file:replica.db?vfs=litestream",
                              flags=apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE
                              | apsw.SQLITE_OPEN_URI)
        sync = None
    else:
        import litevfs

        if litevfs.IMPLEMENTATION != args.child.removeprefix("litevfs-"):  # never mislabel
            raise SystemExit(f"{args.child}: the installed litevfs core is "
                             f"{litevfs.IMPLEMENTATION!r}; build the extension first")

        con = litevfs.connect(args.url, write=True, sync_interval="1h",
                              buffer_path=args.buffer, buffer_fsync=args.fsync,
                              compaction_levels="off", snapshot_interval=0)

        def sync() -> None:
            litevfs.sync(con, timeout=60)

    con.execute("CREATE TABLE small(id INTEGER PRIMARY KEY, v TEXT)")
    con.execute("CREATE TABLE big(id INTEGER PRIMARY KEY, v BLOB)")
    if sync is not None:
        sync()

    def timed(fn, n: int) -> list[float]:
        out = []
        for i in range(n):
            t = time.perf_counter()
            fn(i)
            out.append(time.perf_counter() - t)
        return out

    payload = "p" * 100
    small = timed(lambda i: con.execute("INSERT INTO small(v) VALUES (?)", (payload,)),
                  args.small)

    def hundred(i: int) -> None:
        with con:
            con.executemany("INSERT INTO big(v) VALUES (randomblob(3900))", [()] * 100)

    large = timed(hundred, args.large)
    result: dict[str, Any] = {
        "small_p50_ms": _pct(small, 0.5) * 1e3, "small_p99_ms": _pct(small, 0.99) * 1e3,
        "large_p50_ms": _pct(large, 0.5) * 1e3, "large_p99_ms": _pct(large, 0.99) * 1e3,
    }
    if sync is not None:
        sync()  # start the sync measurement from a clean buffer
    con.execute("CREATE TABLE thousand(id INTEGER PRIMARY KEY, v BLOB)")
    with con:
        con.executemany("INSERT INTO thousand(v) VALUES (randomblob(3900))", [()] * 1000)
    if sync is not None:
        t = time.perf_counter()
        sync()
        result["sync_1000_pages_s"] = time.perf_counter() - t
        with con:
            con.executemany("UPDATE thousand SET v = randomblob(3900) WHERE id = ?",
                            [(i,) for i in range(1, 1001)])
    t = time.perf_counter()
    con.close()
    result["close_sync_1000_pages_s"] = time.perf_counter() - t
    print(json.dumps(result), flush=True)


def _run(writer: str, server: Any, work: Path, args: argparse.Namespace,
         fsync: bool = False, python: str | None = None, label: str = "") -> dict[str, Any]:
    from tests.rig.seaweed import s3_replica_url, unique_bucket_name

    bucket = server.create_bucket(unique_bucket_name("wbench"))
    url = s3_replica_url(bucket, "db", server.endpoint, server.region)
    env = server.env()
    env["PYTHONPATH"] = str(REPO)
    env.pop("AWS_CA_BUNDLE", None)
    extension = ""
    if writer == "litevfs-python":
        env["LITEVFS_NO_EXTENSIONS"] = "1"
    if writer == "litestream":
        import litestream_vfs

        extension = litestream_vfs.loadable_path()
        env.update({"LITESTREAM_REPLICA_URL": url, "LITESTREAM_LOG_FILE": os.devnull,
                    "LITESTREAM_WRITE_ENABLED": "true", "LITESTREAM_SYNC_INTERVAL": "1h",
                    "LITESTREAM_BUFFER_PATH": str(work / f"{bucket}.lsbuf")})
    cmd = [python or sys.executable, str(Path(__file__).resolve()), "--child", writer, "--url", url,
           "--buffer", str(work / f"{bucket}.wbuf"), "--extension", extension,
           "--small", str(args.small), "--large", str(args.large)]
    if fsync:
        cmd.append("--fsync")
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout,
                          cwd=work)
    lines = [x for x in proc.stdout.splitlines() if x.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"{writer} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    result = {"writer": (label or writer) + ("+fsync" if fsync else ""), **json.loads(lines[-1]),
              "small_n": args.small, "large_n": args.large}
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--small", type=int, default=2000, help="small transactions (default 2000)")
    p.add_argument("--large", type=int, default=100, help="100-page transactions (default 100)")
    p.add_argument("--writers", default=",".join(WRITERS))
    p.add_argument("--fsync", action="store_true", help="also run litevfs with buffer_fsync")
    p.add_argument("--timeout", type=float, default=600)
    p.add_argument("--baseline-python", help="also run litevfs-cython from this interpreter "
                   "(a venv with another version installed): before/after in one run")
    p.add_argument("--repeat", type=int, default=1,
                   help="interleaved rounds of every writer (each reported)")
    p.add_argument("--child", choices=WRITERS, help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    p.add_argument("--buffer", help=argparse.SUPPRESS)
    p.add_argument("--extension", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    if args.child:
        _child(args)
        return 0
    from tests.rig.seaweed import SeaweedServer

    results = []
    with tempfile.TemporaryDirectory(prefix="litevfs-wbench-") as tmp:
        server = SeaweedServer().start()
        try:
            runs: list[tuple[str, bool, str | None, str]] = [
                (w, False, None, w) for w in args.writers.split(",")]
            if args.fsync:
                runs.append(("litevfs-cython", True, None, "litevfs-cython"))
            if args.baseline_python:
                runs.append(("litevfs-cython", False, args.baseline_python, "baseline-cython"))
            for _round in range(args.repeat):
                for writer, fsync, python, label in runs:
                    r = _run(writer, server, Path(tmp), args, fsync, python, label)
                    print(json.dumps(r), flush=True)
                    results.append(r)
        finally:
            server.stop()
    cols = ["small_p50_ms", "small_p99_ms", "large_p50_ms", "large_p99_ms",
            "sync_1000_pages_s", "close_sync_1000_pages_s"]
    print(f"\n{'writer':22}" + "".join(f"{c:>24}" for c in cols))
    for r in results:
        cells = "".join(f"{r[c]:>24.3f}" if c in r else f"{'-':>24}" for c in cols)
        print(f"{r['writer']:22}{cells}")
    ls = next((r for r in results if r["writer"] == "litestream"), None)
    if ls:
        for r in results:
            if r is not ls:
                print(f"{r['writer']}: small commit p50 {r['small_p50_ms'] / ls['small_p50_ms']:.2f}x"
                      f" Litestream's, 100-page p50 {r['large_p50_ms'] / ls['large_p50_ms']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
