"""Background hydration: litevfs (both twins) against Litestream's VFS hydration.

    python benchmarks/hydrate.py --quick            # ~10 MB database, < 1 min
    python benchmarks/hydrate.py --size 200         # the issue's 200 MB run

Starts SeaweedFS on 127.0.0.1 (or uses ``--endpoint``), builds a database of
``--size`` MB, replicates it with the real ``litestream replicate``, then for each
reader, in a fresh process, behind a counting loopback proxy adding ``--rtt-ms``:

* time from open to full hydration (litevfs: ``litevfs.hydration_status``;
  Litestream: its ``PRAGMA litestream_hydration_progress`` reaching 100);
* bytes downloaded and HTTP requests (counted by the proxy, whole process);
* point-query p50/p99 while hydrating (one query every ``--query-gap-ms``) and after.

Output: one JSON line per (reader, rtt), then a table with litevfs/Litestream ratios
and downloaded bytes / database size. Only 127.0.0.1 is ever contacted.

``--processes N``: N litevfs processes of one machine start together, once with one
shared ``hydration_path`` (one downloads, the others follow) and once with a path each;
reported per mode: bytes downloaded by all of them, seconds until every process serves
every point query locally (a pass over the ids without a GET), point p50 after.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]

READERS = ("litevfs-cython", "litevfs-python", "litestream")
POINT_SQL = "SELECT id, k, v FROM kv WHERE id = ?"


# -- child side ----------------------------------------------------------------------


def _child(args: argparse.Namespace) -> None:
    ids = [int(x) for x in args.ids.split(",")]
    t0 = time.perf_counter()
    import apsw

    if args.child == "litestream":
        loader = apsw.Connection(":memory:")
        loader.enable_load_extension(True)
        loader.load_extension(args.extension)
        con = apsw.Connection("file:replica.db?vfs=litestream",
                              flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI)

        def progress() -> float:
            row = con.execute("PRAGMA litestream_hydration_progress").fetchone()
            return float(row[0]) if row and row[0] else 0.0
    else:
        import litevfs

        if litevfs.IMPLEMENTATION != args.child.removeprefix("litevfs-"):  # never mislabel
            raise SystemExit(f"{args.child}: the installed litevfs core is "
                             f"{litevfs.IMPLEMENTATION!r}; build the extension first")

        con = litevfs.connect(args.url, hydration=True, poll_interval="1s",
                              hydration_concurrency=args.concurrency,
                              hydration_path=args.hydration_path or None)

        def progress() -> float:
            st = litevfs.hydration_status(con)
            if st["state"] != "following":
                return float(st["percent"])
            gets = litevfs.stats(con)["gets"]  # a follower: done when a pass is all local
            for x in ids:
                con.execute(POINT_SQL, (x,)).fetchone()
            return 100.0 if litevfs.stats(con)["gets"] == gets else 0.0
    t_open = time.perf_counter()
    during: list[float] = []
    i = 0
    gap = args.query_gap_ms / 1000
    done_at = None
    while time.perf_counter() - t0 < args.timeout:
        if progress() >= 100.0:
            done_at = time.perf_counter()
            break
        s = time.perf_counter()
        row = con.execute(POINT_SQL, (ids[i % len(ids)],)).fetchone()
        during.append(time.perf_counter() - s)
        assert row is not None and row[0] == ids[i % len(ids)], row
        i += 1
        time.sleep(gap)
    after = []
    for x in ids:
        s = time.perf_counter()
        con.execute(POINT_SQL, (x,)).fetchone()
        after.append(time.perf_counter() - s)
    out: dict[str, Any] = {"open_s": t_open - t0,
                           "hydrate_s": None if done_at is None else done_at - t0,
                           "points_during": during, "points_after": after}
    if args.child != "litestream":
        import litevfs

        st = litevfs.hydration_status(con)
        out.update(hydrator_bytes=st["bytes_fetched"], hydrator_requests=st["requests"],
                   impl=litevfs.IMPLEMENTATION, state=st["state"])
    print(json.dumps(out), flush=True)
    con.close()


# -- parent side ---------------------------------------------------------------------


def _percentiles(result: dict[str, Any]) -> None:
    for key in ("points_during", "points_after"):
        values = sorted(result.pop(key, None) or [])
        result[f"{key}_n"] = len(values)
        if values:
            result[f"{key}_p50_ms"] = statistics.median(values) * 1000
            result[f"{key}_p99_ms"] = values[min(len(values) - 1, int(len(values) * .99))] * 1000


def _run_reader(reader: str, args: argparse.Namespace, *, env: dict[str, str],
                **kw: Any) -> dict[str, Any]:
    """One reader process on a new machine (an empty state home); ``python``: another
    interpreter (a baseline install)."""
    from tests.rig.machine import new_machine

    with new_machine(env) as machine_env:
        return _run_reader_on(reader, args, env=machine_env, **kw)


def _run_reader_on(reader: str, args: argparse.Namespace, *, url: str, env: dict[str, str],
                   proxy: Any, ids: list[int], python: str | None = None) -> dict[str, Any]:
    child_env = dict(env)
    child_env["PYTHONPATH"] = str(REPO)
    child_env["AWS_EC2_METADATA_DISABLED"] = "true"
    child_env.pop("AWS_CA_BUNDLE", None)
    if reader == "litevfs-python":
        child_env["LITEVFS_NO_EXTENSIONS"] = "1"
    else:
        child_env.pop("LITEVFS_NO_EXTENSIONS", None)
    extension = ""
    tmp = tempfile.mkdtemp(prefix="hydrate-bench-")
    if reader == "litestream":
        import litestream_vfs

        extension = litestream_vfs.loadable_path()
        child_env.update(LITESTREAM_REPLICA_URL=url, LITESTREAM_LOG_FILE=os.devnull,
                         LITESTREAM_HYDRATION_ENABLED="true",
                         LITESTREAM_HYDRATION_PATH=os.path.join(tmp, "hydrated.db"))
    cmd = [python or sys.executable, str(Path(__file__).resolve()), "--child", reader, "--url", url,
           "--ids", ",".join(map(str, ids)), "--extension", extension,
           "--concurrency", str(args.concurrency), "--timeout", str(args.timeout),
           "--query-gap-ms", str(args.query_gap_ms)]
    down0, req0 = proxy.bytes_down, proxy.requests
    result: dict[str, Any] = {"reader": reader}
    try:
        proc = subprocess.run(cmd, env=child_env, capture_output=True, text=True,
                              timeout=args.timeout + 60, cwd=tmp)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode != 0 or not lines:
            result["error"] = (proc.stderr or proc.stdout)[-2000:]
        else:
            result.update(json.loads(lines[-1]))
    except subprocess.TimeoutExpired as exc:
        result["error"] = f"timeout: {exc}"
    finally:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    result["bytes_down"] = proxy.bytes_down - down0
    result["requests"] = proxy.requests - req0
    _percentiles(result)
    return result


def _processes(args: argparse.Namespace, *, url: str, env: dict[str, str], proxy: Any,
               ids: list[int], rtt: float) -> list[dict[str, Any]]:
    """N processes at once: one shared hydration_path, then a path each."""
    out = []
    for mode in ("shared", "separate"):
        tmp = tempfile.mkdtemp(prefix="hydrate-shared-")
        child_env = dict(env, PYTHONPATH=str(REPO), AWS_EC2_METADATA_DISABLED="true")
        child_env.pop("AWS_CA_BUNDLE", None)
        child_env.pop("LITEVFS_NO_EXTENSIONS", None)
        home = os.path.join(tmp, "state")  # the processes of one new machine (removed below)
        os.mkdir(home, 0o700)
        child_env["XDG_STATE_HOME"] = home
        down0, req0 = proxy.bytes_down, proxy.requests
        t0 = time.perf_counter()
        procs = []
        for i in range(args.processes):
            path = os.path.join(tmp, "shared.db" if mode == "shared" else f"own-{i}.db")
            cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "litevfs-cython",
                   "--url", url, "--ids", ",".join(map(str, ids)), "--hydration-path", path,
                   "--concurrency", str(args.concurrency), "--timeout", str(args.timeout),
                   "--query-gap-ms", str(args.query_gap_ms)]
            procs.append(subprocess.Popen(cmd, env=child_env, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True, cwd=tmp))
        children = []
        for proc in procs:
            stdout, stderr = proc.communicate(timeout=args.timeout + 60)
            lines = [ln for ln in stdout.splitlines() if ln.startswith("{")]
            children.append(json.loads(lines[-1]) if lines else {"error": stderr[-2000:]})
        wall = time.perf_counter() - t0
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        after = sorted(x for c in children for x in c.get("points_after", []))
        rec = {"experiment": "processes", "mode": mode, "processes": args.processes,
               "rtt_ms": rtt, "all_local_s": wall, "bytes_down": proxy.bytes_down - down0,
               "requests": proxy.requests - req0,
               "states": sorted(str(c.get("state")) for c in children),
               "errors": [c["error"] for c in children if "error" in c],
               "points_after_p50_ms": statistics.median(after) * 1000 if after else None}
        out.append(rec)
    return out


def _table(results: list[dict[str, Any]], db_bytes: int) -> str:
    metrics = [("hydrate_s", "time to hydrated (s)"), ("bytes_down_mb", "downloaded (MB)"),
               ("download_ratio", "downloaded / db size"), ("requests", "HTTP requests"),
               ("points_during_p50_ms", "point p50 during (ms)"),
               ("points_during_p99_ms", "point p99 during (ms)"),
               ("points_after_p50_ms", "point p50 after (ms)")]
    for r in results:
        r["bytes_down_mb"] = r["bytes_down"] / 1e6
        r["download_ratio"] = r["bytes_down"] / db_bytes
    lines = [f"database: {db_bytes / 1e6:.1f} MB"]
    for rtt in sorted({r["rtt_ms"] for r in results}):
        by = {r["reader"]: r for r in results if r["rtt_ms"] == rtt}
        base = by.get("litestream", {})
        lines.append(f"\nRTT {rtt:g} ms")
        ours = [n for n in by if n.startswith(("litevfs", "baseline"))]
        lines.append(f"{'metric':<26}" + "".join(f"{n:>16}" for n in by)
                     + "".join(f"{'ratio ' + n.split('-')[-1]:>16}" for n in ours))
        for key, label in metrics:
            row = f"{label:<26}"
            for r in by.values():
                v = r.get(key)
                row += f"{v:>16.4g}" if isinstance(v, (int, float)) else f"{'-':>16}"
            for n in ours:
                a, b = by[n].get(key), base.get(key)
                ok = isinstance(a, (int, float)) and isinstance(b, (int, float)) and b
                row += f"{a / b:>16.3f}" if ok else f"{'-':>16}"
            lines.append(row)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=float, default=200.0, help="database size in MB")
    p.add_argument("--quick", action="store_true", help="10 MB database (< 1 min)")
    p.add_argument("--page-size", type=int, default=4096)
    p.add_argument("--rtt-ms", type=float, nargs="*", default=[0, 20])
    p.add_argument("--readers", nargs="*", default=list(READERS), choices=READERS)
    p.add_argument("--concurrency", type=int, default=16, help="litevfs hydration_concurrency")
    p.add_argument("--points", type=int, default=200, help="point-query ids")
    p.add_argument("--query-gap-ms", type=float, default=5.0,
                   help="pause between point queries while hydrating")
    p.add_argument("--timeout", type=float, default=600.0, help="per reader process")
    p.add_argument("--endpoint", help="use this S3 endpoint (127.0.0.1) instead of SeaweedFS")
    p.add_argument("--access-key", default=os.environ.get("AWS_ACCESS_KEY_ID", ""))
    p.add_argument("--secret-key", default=os.environ.get("AWS_SECRET_ACCESS_KEY", ""))
    p.add_argument("--region", default="us-east-1")
    p.add_argument("--out", help="also append the JSON lines to this file")
    p.add_argument("--baseline-python", help="also run litevfs-cython from this interpreter "
                   "(a venv with another litevfs installed: before/after in one run)")
    p.add_argument("--processes", type=int, default=0,
                   help="N processes sharing one hydration_path vs a path each (litevfs-cython)")
    p.add_argument("--hydration-path", help=argparse.SUPPRESS)
    p.add_argument("--child", choices=READERS, help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    p.add_argument("--ids", help=argparse.SUPPRESS)
    p.add_argument("--extension", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        _child(args)
        return 0
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    os.environ.pop("AWS_CA_BUNDLE", None)
    if args.quick:
        args.size, args.points = min(args.size, 10.0), min(args.points, 50)
    import coldstart  # the same SeaweedFS + litestream preparation and counting proxy
    from tests.rig.seaweed import s3_replica_url

    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="litevfs-hydrate-") as tmp:
        from tests.rig.machine import private_state_home

        private_state_home(tmp)  # nothing left in the user's ~/.local/state
        server, bucket, db, max_id, owned = coldstart._prepare(args, Path(tmp))
        db_bytes = db.stat().st_size
        try:
            rng = random.Random(11)
            ids = [rng.randint(1, max_id) for _ in range(args.points)]
            for rtt in args.rtt_ms:
                proxy = coldstart._counting_proxy(server.port, rtt / 2000)
                try:
                    url = s3_replica_url(bucket, "db", proxy.endpoint, server.region)
                    if args.processes:
                        for r in _processes(args, url=url, env=server.env(), proxy=proxy,
                                            ids=ids, rtt=rtt):
                            r["db_bytes"] = db_bytes
                            line = json.dumps(r, sort_keys=True)
                            print(line, flush=True)
                            if args.out:
                                with open(args.out, "a") as f:
                                    f.write(line + "\n")
                        continue
                    runs = [(reader, reader, None) for reader in args.readers]
                    if args.baseline_python:  # before/after in one run
                        runs.append(("baseline-cython", "litevfs-cython", args.baseline_python))
                    for label, reader, python in runs:
                        r = _run_reader(reader, args, url=url, env=server.env(), proxy=proxy,
                                        ids=ids, python=python)
                        r.update(reader=label, rtt_ms=rtt, db_bytes=db_bytes, page_size=args.page_size,
                                 concurrency=args.concurrency)
                        results.append(r)
                        line = json.dumps(r, sort_keys=True)
                        print(line, flush=True)
                        if args.out:
                            with open(args.out, "a") as f:
                                f.write(line + "\n")
                finally:
                    proxy.stop()
        finally:
            if owned is not None:
                owned.stop()
    if results:
        print(_table(results, db_bytes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
