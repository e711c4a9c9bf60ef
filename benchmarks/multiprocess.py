"""Many writer processes, one replica (the machine-local shared write state).

    python benchmarks/multiprocess.py                 # ~2 minutes
    python benchmarks/multiprocess.py --procs 1,2,4 --seconds 5 --rounds 3

Starts its own SeaweedFS on 127.0.0.1 (only 127.0.0.1 is contacted), then:

* for N in ``--procs`` writer processes (fresh interpreters, compiled core) on one
  replica: every process commits small transactions (one ~100-byte INSERT each) as fast
  as it can for ``--seconds``, all starting together: aggregate commits/s, commit
  latency p50/p99 over every commit, and the requests the N processes sent to the
  bucket per minute (LIST+GET+PUT+DELETE, from ``litevfs.stats``);
* the same N processes each on its own replica (N independent single-process
  writers), for the requests per minute they cost together;
* cross-process visibility: process A commits a row every ~2 ms, process B runs read
  transactions in a loop; delay = when B first sees the row - when A's COMMIT returned
  (CLOCK_MONOTONIC is shared by the processes): p50/p99 over ``--samples`` rows.

Output: one JSON line per measurement, then a table. ``--rounds`` interleaves rounds
(the machine is shared: each round is reported, the table shows the median).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]  # tests.rig; litevfs is the installed package
REQUEST_KINDS = ("lists", "gets", "puts", "deletes")


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def _requests(stats: dict[str, Any]) -> int:
    return sum(int(stats.get(k, 0) or 0) for k in REQUEST_KINDS)


# -- children ----------------------------------------------------------------------------
def _child_writer(args: argparse.Namespace) -> None:
    import litevfs

    con = litevfs.connect(args.url, write=True, sync_interval=args.sync_interval)
    con.set_busy_timeout(60000)
    con.execute("CREATE TABLE IF NOT EXISTS small(id INTEGER PRIMARY KEY, v TEXT)")
    litevfs.sync(con, timeout=60)
    print("ready", flush=True)
    start_at = float(sys.stdin.readline())  # the parent's go: a CLOCK_MONOTONIC time
    while time.monotonic() < start_at:
        time.sleep(0.0005)
    before = _requests(litevfs.stats(con))
    cpu0 = time.process_time()
    payload = "p" * 100
    lat = []
    end = start_at + args.seconds
    perf = time.perf_counter
    while time.monotonic() < end:
        t = perf()
        con.execute("INSERT INTO small(v) VALUES (?)", (payload,))
        lat.append(perf() - t)
    cpu = time.process_time() - cpu0
    requests = _requests(litevfs.stats(con)) - before
    litevfs.sync(con, timeout=120)
    con.close()
    print(json.dumps({"commits": len(lat), "lat": lat, "requests": requests, "cpu_s": cpu}),
          flush=True)


def _child_visibility(args: argparse.Namespace) -> None:
    import litevfs

    con = litevfs.connect(args.url, write=True, sync_interval="1s")
    con.set_busy_timeout(60000)
    if args.role == "a":
        con.execute("CREATE TABLE IF NOT EXISTS vis(id INTEGER PRIMARY KEY, v TEXT)")
        litevfs.sync(con, timeout=60)
    print("ready", flush=True)
    sys.stdin.readline()
    out = []
    if args.role == "a":
        for i in range(1, args.samples + 1):
            con.execute("INSERT INTO vis(id, v) VALUES (?, 'x')", (i,))
            out.append((i, time.monotonic()))
            time.sleep(0.002)
    else:
        seen = 0
        deadline = time.monotonic() + 120
        while seen < args.samples and time.monotonic() < deadline:
            n = con.execute("SELECT max(id) FROM vis").fetchone()[0] or 0
            if n > seen:
                now = time.monotonic()
                out += [(i, now) for i in range(seen + 1, n + 1)]
                seen = n
    con.close()
    print(json.dumps(out), flush=True)


# -- parent ------------------------------------------------------------------------------
def _spawn(argv: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(Path(__file__).resolve()), *argv], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _ready(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        line = p.stdout.readline()
        if line.strip() != "ready":
            raise SystemExit(f"child failed: {line}{p.stderr.read()[-3000:]}")


def _collect(procs: list[subprocess.Popen], timeout: float) -> list[Any]:
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=timeout)
        lines = [x for x in stdout.splitlines() if x.startswith(("{", "["))]
        if p.returncode != 0 or not lines:
            raise SystemExit(f"child failed ({p.returncode}):\n{stderr[-3000:]}")
        out.append(json.loads(lines[-1]))
    return out


def _writers(server: Any, n: int, shared: bool, args: argparse.Namespace,
             env: dict[str, str]) -> dict[str, Any]:
    from tests.rig.seaweed import s3_replica_url, unique_bucket_name

    bucket = server.create_bucket(unique_bucket_name("mpbench"))
    urls = [s3_replica_url(bucket, "db" if shared else f"db{i}", server.endpoint,
                           server.region) for i in range(n)]
    procs = [_spawn(["--child", "writer", "--url", u, "--seconds", str(args.seconds),
                     "--sync-interval", args.sync_interval], env) for u in urls]
    _ready(procs)
    start_at = time.monotonic() + 0.5
    for p in procs:
        p.stdin.write(f"{start_at}\n")
        p.stdin.flush()
    results = _collect(procs, args.seconds + 300)
    lat = [x for r in results for x in r["lat"]]
    commits = sum(r["commits"] for r in results)
    return {"bench": "writers", "procs": n, "replicas": 1 if shared else n,
            "commits": commits, "commits_per_s": commits / args.seconds,
            "commit_p50_ms": _pct(lat, 0.5) * 1e3, "commit_p99_ms": _pct(lat, 0.99) * 1e3,
            "per_process": [r["commits"] for r in results],
            "cpu_us_per_commit": sum(r["cpu_s"] for r in results) / max(commits, 1) * 1e6,
            "requests_per_min": sum(r["requests"] for r in results) * 60 / args.seconds}


def _visibility(server: Any, args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    from tests.rig.seaweed import s3_replica_url, unique_bucket_name

    bucket = server.create_bucket(unique_bucket_name("mpvis"))
    url = s3_replica_url(bucket, "db", server.endpoint, server.region)
    a = _spawn(["--child", "visibility", "--role", "a", "--url", url, "--samples",
                str(args.samples)], env)
    _ready([a])
    b = _spawn(["--child", "visibility", "--role", "b", "--url", url, "--samples",
                str(args.samples)], env)
    _ready([b])
    for p in (b, a):
        p.stdin.write("go\n")
        p.stdin.flush()
    committed, seen = (dict(map(tuple, r)) for r in _collect([a, b], 300))
    delays = [max(0.0, seen[i] - committed[i]) for i in committed if i in seen]
    return {"bench": "visibility", "samples": len(delays),
            "visibility_p50_ms": _pct(delays, 0.5) * 1e3,
            "visibility_p99_ms": _pct(delays, 0.99) * 1e3,
            "visibility_max_ms": max(delays) * 1e3 if delays else float("nan")}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--procs", default="1,2,4,8")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--samples", type=int, default=500)
    p.add_argument("--sync-interval", default="1s")
    p.add_argument("--no-independent", action="store_true",
                   help="skip the N independent replicas comparison")
    p.add_argument("--child", choices=("writer", "visibility"), help=argparse.SUPPRESS)
    p.add_argument("--role", help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    if args.child == "writer":
        _child_writer(args)
        return 0
    if args.child == "visibility":
        _child_visibility(args)
        return 0
    from tests.rig.seaweed import SeaweedServer

    procs = [int(x) for x in args.procs.split(",")]
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="litevfs-mpbench-") as tmp:
        state = Path(tmp) / "state"
        state.mkdir(mode=0o700)
        server = SeaweedServer().start()
        try:
            env = server.env()
            env["PYTHONPATH"] = str(REPO)
            env["XDG_STATE_HOME"] = str(state)  # the buffers (and their sharing) live here
            env.pop("AWS_CA_BUNDLE", None)
            for _round in range(args.rounds):
                for n in procs:
                    r = _writers(server, n, True, args, env)
                    print(json.dumps(r), flush=True)
                    results.append(r)
                    if not args.no_independent and n > 1:
                        r = _writers(server, n, False, args, env)
                        print(json.dumps(r), flush=True)
                        results.append(r)
                r = _visibility(server, args, env)
                print(json.dumps(r), flush=True)
                results.append(r)
        finally:
            server.stop()

    def med(rows: list[dict[str, Any]], key: str) -> float:
        return statistics.median(r[key] for r in rows)

    print(f"\n{'processes':>9} {'replicas':>8} {'commits/s':>10} {'vs 1 proc':>9} "
          f"{'p50 ms':>8} {'p99 ms':>8} {'requests/min':>13}")
    single = [r for r in results if r["bench"] == "writers" and r["procs"] == 1]
    base = med(single, "commits_per_s") if single else None
    for n in procs:
        for replicas in sorted({r["replicas"] for r in results
                                if r["bench"] == "writers" and r["procs"] == n}):
            rows = [r for r in results if r["bench"] == "writers" and r["procs"] == n
                    and r["replicas"] == replicas]
            rate = med(rows, "commits_per_s")
            ratio = f"{rate / base:.2f}x" if base else "-"
            print(f"{n:>9} {replicas:>8} {rate:>10.0f} {ratio:>9} {med(rows, 'commit_p50_ms'):>8.3f}"
                  f" {med(rows, 'commit_p99_ms'):>8.3f} {med(rows, 'requests_per_min'):>13.0f}")
    vis = [r for r in results if r["bench"] == "visibility"]
    if vis:
        print(f"cross-process visibility: p50 {med(vis, 'visibility_p50_ms'):.3f} ms, "
              f"p99 {med(vis, 'visibility_p99_ms'):.3f} ms, max "
              f"{med(vis, 'visibility_max_ms'):.3f} ms ({vis[0]['samples']} rows)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
