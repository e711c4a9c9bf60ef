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

``--readers 1,2,4,8`` runs the read-only bench instead: N read-only processes
(``write=False``) and one writer committing a row every ``--every`` seconds, the writer
on this machine ("machine": the readers follow its log), on another machine ("alone":
its own buffer home; the readers elect one poller and follow its board) or the same
with every reader on its own buffer home ("independent": N pollers, as before readers
shared anything): the readers' bucket requests per minute and the visibility delay
(commit returned -> a reader's read transaction sees the row), p50/p99 over every
reader and row. "of which polls": head object GETs and LISTs; the rest are the new
objects' index and page reads (once per machine: ``engine/objstore.py``). Requests are
counted from each reader's join on (its open and first poll are a one-off per process).

    python benchmarks/multiprocess.py --readers 1,2,4,8 --seconds 10

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


def _child_feeder(args: argparse.Namespace) -> None:
    """A writer committing one row every ``--every`` seconds for ``--seconds``."""
    import litevfs

    con = litevfs.connect(args.url, write=True, sync_interval=args.sync_interval)
    con.set_busy_timeout(60000)
    con.execute("CREATE TABLE IF NOT EXISTS vis(id INTEGER PRIMARY KEY, v TEXT)")
    litevfs.sync(con, timeout=60)
    print("ready", flush=True)
    sys.stdin.readline()
    out = []
    end = time.monotonic() + args.seconds
    i = 0
    while time.monotonic() < end:
        i += 1
        con.execute("INSERT INTO vis(id, v) VALUES (?, 'x')", (i,))
        out.append((i, time.monotonic()))
        time.sleep(args.every)
    con.close()
    print(json.dumps(out), flush=True)


def _child_reader(args: argparse.Namespace) -> None:
    """A read-only process: read transactions in a loop (one every ``--reader-tick``
    seconds: the visibility figures include up to that much of it), when each row first
    showed up, and the bucket requests it sent."""
    import litevfs

    con = litevfs.connect(args.url, poll_interval=args.poll_interval,
                          poll_max_interval=args.poll_interval)
    # Counted from the join on (write_status waits for it): a reader's open and its own
    # first poll before joining are a one-off per process, not a rate; counted in an 8 s
    # window they made the readers' requests per minute grow with N.
    litevfs.write_status(con)
    print("ready", flush=True)
    sys.stdin.readline()
    def polls(stats: dict[str, Any]) -> int:  # head object GETs and LISTs
        return int((stats.get("freshness") or {}).get("head_gets", 0)) + int(stats["lists"])

    first = litevfs.stats(con)
    before, polls0, t0 = _requests(first), polls(first), time.monotonic()
    seen, out = 0, []
    end = t0 + args.seconds + 3  # the last rows' sync and poll
    while time.monotonic() < end:
        n = con.execute("SELECT max(id) FROM vis").fetchone()[0] or 0
        if n > seen:
            now = time.monotonic()
            out += [(i, now) for i in range(seen + 1, n + 1)]
            seen = n
        time.sleep(args.reader_tick)
    last = litevfs.stats(con)
    requests, poll_requests = _requests(last) - before, polls(last) - polls0
    elapsed = time.monotonic() - t0
    con.close()
    print(json.dumps({"seen": out, "requests": requests, "polls": poll_requests,
                      "seconds": elapsed}), flush=True)


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


def _readers(server: Any, n: int, mode: str, args: argparse.Namespace,
             env: dict[str, str], tmp: Path) -> dict[str, Any]:
    """N read-only processes and one writer. ``mode``: "machine" (the writer is on this
    machine: readers follow its log), "alone" (the writer is on another machine, i.e. its
    own buffer home: the readers elect one poller), "independent" (as "alone", but each
    reader with its own buffer home: N pollers, as before readers shared anything)."""
    from tests.rig.seaweed import s3_replica_url, unique_bucket_name

    bucket = server.create_bucket(unique_bucket_name("mpread"))
    url = s3_replica_url(bucket, "db", server.endpoint, server.region)

    def home(name: str) -> dict[str, str]:
        path = tmp / f"{mode}-{n}-{name}"
        path.mkdir(mode=0o700)
        return {**env, "XDG_STATE_HOME": str(path)}

    shared = home("machine")
    feeder = _spawn(["--child", "feeder", "--url", url, "--seconds", str(args.seconds),
                     "--every", str(args.every), "--sync-interval", args.sync_interval],
                    shared if mode == "machine" else home("other"))
    _ready([feeder])
    readers = [_spawn(["--child", "reader", "--url", url, "--seconds", str(args.seconds),
                       "--reader-tick", str(args.reader_tick),
                       "--poll-interval", args.poll_interval],
                      home(f"r{i}") if mode == "independent" else shared)
               for i in range(n)]
    _ready(readers)
    for p in (*readers, feeder):
        p.stdin.write("go\n")
        p.stdin.flush()
    committed = dict(map(tuple, _collect([feeder], args.seconds + 300)[0]))
    results = _collect(readers, args.seconds + 300)
    delays = [max(0.0, t - committed[i]) for r in results for i, t in r["seen"]
              if i in committed]
    minutes = statistics.mean(r["seconds"] for r in results) / 60
    return {"bench": "readers", "mode": mode, "readers": n, "samples": len(delays),
            "requests_per_min": sum(r["requests"] for r in results) / minutes,
            "poll_requests_per_min": sum(r["polls"] for r in results) / minutes,
            "visibility_p50_ms": _pct(delays, 0.5) * 1e3,
            "visibility_p99_ms": _pct(delays, 0.99) * 1e3}


def _readers_table(results: list[dict[str, Any]], counts: list[int]) -> None:
    rows = [r for r in results if r["bench"] == "readers"]
    if not rows:
        return
    print(f"\n{'readers':>7} {'writer':>12} {'requests/min':>13} {'of which polls':>15} "
          f"{'vis p50 ms':>11} {'vis p99 ms':>11}")
    for mode in ("machine", "alone", "independent"):
        for n in counts:
            got = [r for r in rows if r["mode"] == mode and r["readers"] == n]
            if got:
                med = statistics.median
                print(f"{n:>7} {mode:>12} {med(r['requests_per_min'] for r in got):>13.0f} "
                      f"{med(r['poll_requests_per_min'] for r in got):>15.0f} "
                      f"{med(r['visibility_p50_ms'] for r in got):>11.1f} "
                      f"{med(r['visibility_p99_ms'] for r in got):>11.1f}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--procs", default="1,2,4,8")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--samples", type=int, default=500)
    p.add_argument("--sync-interval", default="1s")
    p.add_argument("--no-independent", action="store_true",
                   help="skip the N independent replicas comparison")
    p.add_argument("--readers", default="",
                   help="read-only processes, e.g. 1,2,4,8: run only the readers bench")
    p.add_argument("--reader-modes", default="machine,alone,independent")
    p.add_argument("--poll-interval", default="1s", help="readers' poll interval")
    p.add_argument("--reader-tick", type=float, default=0.001,
                   help="readers bench: seconds between a reader's read transactions")
    p.add_argument("--every", type=float, default=0.05, help="readers bench: seconds "
                   "between the writer's commits")
    p.add_argument("--child", choices=("writer", "visibility", "feeder", "reader"),
                   help=argparse.SUPPRESS)
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
    if args.child in ("feeder", "reader"):
        (_child_feeder if args.child == "feeder" else _child_reader)(args)
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
            counts = [int(x) for x in args.readers.split(",") if x]
            for _round in range(args.rounds if counts else 0):
                for n in counts:
                    for mode in args.reader_modes.split(","):
                        r = _readers(server, n, mode, args, env, Path(tmp))
                        print(json.dumps(r), flush=True)
                        results.append(r)
            for _round in range(0 if counts else args.rounds):
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

    if counts:
        _readers_table(results, counts)
        return 0

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
