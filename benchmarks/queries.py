"""Real queries on a multi-table replica: litevfs vs Litestream's VFS vs local SQLite.

    python benchmarks/queries.py --size 100 --rtt-ms 20            # quick (~100 MB)
    python benchmarks/queries.py                                    # ~1 GB, 0 and 20 ms RTT
    python benchmarks/queries.py --work /tmp/qbench --only bytes warm lag

The database (``querydb.py``: users 100k, posts 1M, comments 2M, tags, post_tags, 9
indexes at ``--size 1024``) is replicated by the real ``litestream replicate`` to
SeaweedFS on 127.0.0.1. Every reader reaches S3 through a latency proxy that records
each HTTP request (``timeline.py``). Each measurement is a fresh process, spawn to
result, for each query shape:

* ``point_join``: a post by primary key joined with its author;
* ``join5``: the 20 newest (post, tag, comment) rows with the author (5 tables,
  ORDER BY created_at DESC LIMIT 20);
* ``group_by``: posts per user, GROUP BY over the posts_user index;
* ``scan``: a full scan of posts, the largest table.

Readers: ``litevfs-cython``, ``litevfs-python``, ``litestream`` (its VFS in apsw),
``local`` (apsw on the local file), and ``baseline-cython`` with ``--baseline-python``
(another install, for before/after in one run). Rounds interleave the readers
(``--repeat``, default 3); ``litevfs-bootset`` is the compiled core with
``boot_set=shared`` and ``litevfs-machine`` a second process of a machine whose first
process opened the replica before (neither in the default set); every other child runs
on a new machine (its own empty state home); each JSON line gives a reader's medians: wall time, requests,
bytes, peak RSS and sequential request rounds (the longest chain of requests each sent
after the previous one's answer arrived; whole process and the query alone).

More experiments (``--only``): ``bytes`` (1,000 point queries in one process: bytes
downloaded against what the queries need), ``warm`` (opens with a ~650 MB cache_dir
left by a full scan), ``lag`` (a reader behind a litevfs writer syncing every second:
lag of every commit, and requests per second when idle), ``gets`` (GETs per random point
query in a long-lived reader, for big databases). ``--chart`` draws the query times.
Only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(REPO), str(HERE)]

CHILD = HERE / "queries_child.py"
QUERIES = {
    "point_join": "SELECT p.id, p.title, p.score, u.name, u.email FROM posts p "
                  "JOIN users u ON u.id = p.user_id WHERE p.id = ?",
    "join5": "SELECT p.id, p.title, u.name, t.name, c.id, substr(c.body, 1, 30) FROM posts p "
             "JOIN users u ON u.id = p.user_id JOIN post_tags pt ON pt.post_id = p.id "
             "JOIN tags t ON t.id = pt.tag_id JOIN comments c ON c.post_id = p.id "
             "ORDER BY p.created_at DESC LIMIT 20",
    "group_by": "SELECT user_id, count(*) AS n FROM posts GROUP BY user_id "
                "ORDER BY n DESC, user_id LIMIT 10",
    "scan": "SELECT count(*), sum(length(body)), max(score) FROM posts",
}
POINT_SQL = "SELECT id, user_id, title FROM posts WHERE id = ?"
READERS = ("litevfs-cython", "litevfs-python", "litevfs-bootset", "litevfs-machine",
           "litestream", "local")
# litevfs-bootset: the compiled core with ``boot_set=shared`` (what the replica's earlier
# readers needed, replayed by a process with no local state; a new machine's first open).
# litevfs-machine: the compiled core in a second process of a machine whose first process
# already opened the replica (it finds the big page indexes that one kept: no index read).
READER_OPTIONS = {"litevfs-bootset": {"boot_set": "shared"}, "litevfs-machine": {}}
STATE_VERSION = 1


def log(msg: str) -> None:
    print(f"# {msg}", file=sys.stderr, flush=True)


# -- set-up -----------------------------------------------------------------------------


class Bench:
    """The server, the replica and the local database (kept in ``--work`` between runs)."""

    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args, self.work = args, work
        self.db = work / "social.db"
        self.state_path = work / "state.json"
        self.server: Any = None
        self.bucket = ""

    def start(self) -> None:
        from tests.rig.seaweed import SeaweedServer

        state = {}
        if self.state_path.exists():
            state = json.loads(self.state_path.read_text())
        wanted = {"version": STATE_VERSION, "size_mb": self.args.size}
        fresh = {k: state.get(k) for k in wanted} != wanted
        if fresh:
            for p in (self.db, self.state_path):
                p.unlink(missing_ok=True)
            state = dict(wanted)
        self.server = SeaweedServer(base_dir=self.work / "seaweed").start()
        if not self.db.exists():
            import querydb

            t = time.monotonic()
            querydb.make_db(self.db, self.args.size / 1024)
            log(f"database: {self.db.stat().st_size / 1e6:.1f} MB in {time.monotonic() - t:.0f}s")
        if not state.get("bucket"):
            self.bucket = self.replicate()
            state["bucket"] = self.bucket
            self.state_path.write_text(json.dumps(state))
        self.bucket = state["bucket"]

    def replicate(self) -> str:
        from tests.rig.litestream import Litestream, S3Replica
        from tests.rig.seaweed import unique_bucket_name

        bucket = self.server.create_bucket(unique_bucket_name("queries"))
        t = time.monotonic()
        with Litestream(self.db, S3Replica(self.server, bucket, "db"), workdir=self.work / "ls",
                        l1_interval=None, snapshot_interval=None) as ls:
            ls.wait_for_txid(1, timeout=1800)
            ls.wait_caught_up(settle=0.5, timeout=1800)
        log(f"replicated with litestream in {time.monotonic() - t:.0f}s")
        return bucket

    def url(self, proxy: Any, path: str = "db") -> str:
        from tests.rig.seaweed import s3_replica_url

        return s3_replica_url(self.bucket, path, proxy.endpoint, self.server.region)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    def max_post(self) -> int:
        import sqlite3

        con = sqlite3.connect(self.db)
        try:
            return int(con.execute("SELECT max(id) FROM posts").fetchone()[0])
        finally:
            con.close()


# -- one child process --------------------------------------------------------------------


def run_child(bench: Bench, proxy: Any, reader: str, sql: str, **kw: Any) -> dict[str, Any]:
    """One fresh reader process on a new machine (an empty state home, unless
    ``env_extra`` names one); the proxy's timeline is cut at each phase."""
    from tests.rig.machine import new_machine

    if "XDG_STATE_HOME" in (kw.get("env_extra") or {}):
        return _run_child_on(bench, proxy, reader, sql, **kw)
    with new_machine({}) as machine:
        kw["env_extra"] = {**machine, **(kw.get("env_extra") or {})}
        return _run_child_on(bench, proxy, reader, sql, **kw)


def _run_child_on(bench: Bench, proxy: Any, reader: str, sql: str, *,
                  params: list | None = None, options: dict[str, Any] | None = None,
                  python: str | None = None, timeout: float = 600.0,
                  env_extra: dict[str, str] | None = None, path: str = "db") -> dict[str, Any]:
    env = bench.server.env()
    env["PYTHONPATH"] = str(REPO)
    env.pop("AWS_CA_BUNDLE", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(env_extra or {})
    kind = reader
    if reader.startswith("baseline-"):
        kind = "litevfs-" + reader.split("-", 1)[1]
    if reader in READER_OPTIONS:
        kind = "litevfs-cython"
        options = {**READER_OPTIONS[reader], **(options or {})}
    if kind == "litevfs-python":
        env["LITEVFS_NO_EXTENSIONS"] = "1"
    else:
        env.pop("LITEVFS_NO_EXTENSIONS", None)
    spec: dict[str, Any] = {"reader": kind, "url": bench.url(proxy, path), "sql": sql,
                            "params": params, "local_db": str(bench.db),
                            "options": options or {}}
    if reader == "litestream":
        import litestream_vfs

        spec["extension"] = litestream_vfs.loadable_path()
        env["LITESTREAM_REPLICA_URL"] = spec["url"]
        env["LITESTREAM_LOG_FILE"] = os.devnull
    result: dict[str, Any] = {"reader": reader}
    proxy.take()
    windows = {}
    spawned = time.time()
    proc = subprocess.Popen([python or sys.executable, str(CHILD), json.dumps(spec), repr(spawned)],
                            env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=tempfile.gettempdir())
    deadline = time.monotonic() + timeout
    try:
        assert proc.stdout is not None and proc.stdin is not None
        for line in proc.stdout:
            if not line.startswith("{"):
                continue
            msg = json.loads(line)
            name = msg.pop("phase")
            windows[name] = proxy.take()
            result.update(msg)
            if time.monotonic() > deadline:
                raise TimeoutError(f"{reader} exceeded {timeout:g}s")
            proc.stdin.write("\n")
            proc.stdin.flush()
            if name == "done":
                break
        proc.stdin.close()
        proc.wait(timeout=30)
    except Exception as exc:  # noqa: BLE001 - reported in the result
        result["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode not in (0, None) and "error" not in result:
        result["error"] = (proc.stderr.read() if proc.stderr else "")[-2000:]
    whole = [r for name in ("open", "query") if name in windows for r in windows[name].requests]
    if "query" in windows:
        from timeline import Window

        w, q = Window(whole), windows["query"]
        result.update(requests=w.count, bytes=w.bytes, rounds=w.rounds, kinds=w.kinds(),
                      query_requests=q.count, query_bytes=q.bytes, query_rounds=q.rounds)
    return result


def medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in runs if "error" not in r]
    out = dict(ok[0] if ok else runs[0])
    out.pop("stats", None)
    out.pop("query_times", None)
    for key in ("wall_s", "open_s", "query_s", "requests", "bytes", "rounds", "query_requests",
                "query_bytes", "query_rounds", "peak_rss_mb", "startup_s"):
        vals = [r[key] for r in ok if isinstance(r.get(key), (int, float))]
        if vals:
            out[key] = statistics.median(vals)
            out[key + "_runs"] = vals
    out["runs"] = len(ok)
    if len(ok) < len(runs):
        out["errors"] = [r["error"] for r in runs if "error" in r]
    return out


# -- the experiments -----------------------------------------------------------------------


def emit(args: argparse.Namespace, record: dict[str, Any]) -> None:
    line = json.dumps(record, sort_keys=True)
    print(line, flush=True)
    if args.out:
        with open(args.out, "a") as f:
            f.write(line + "\n")


def queries(args: argparse.Namespace, bench: Bench, proxy: Any, rtt: float,
            results: list[dict[str, Any]]) -> None:
    readers = list(args.readers)
    if args.baseline_python:
        readers.append("baseline-cython")
    rng = random.Random(11)
    max_post = bench.max_post()
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    machine = None
    if "litevfs-machine" in readers:  # the machine's first process, not measured
        machine = {"XDG_STATE_HOME": tempfile.mkdtemp(prefix="litevfs-machine-")}
        run_child(bench, proxy, "litevfs-cython", "SELECT 1", env_extra=machine)
    try:
        _queries(args, bench, proxy, rtt, readers, rng, max_post, runs, machine)
    finally:
        if machine is not None:
            shutil.rmtree(machine["XDG_STATE_HOME"], ignore_errors=True)
    for (name, reader), rs in runs.items():
        rec = medians(rs)
        rec.update(experiment="query", size_mb=args.size)
        results.append(rec)
        emit(args, rec)


def _queries(args: argparse.Namespace, bench: Bench, proxy: Any, rtt: float, readers: list[str],
             rng: random.Random, max_post: int, runs: dict[tuple[str, str], list[dict[str, Any]]],
             machine: dict[str, str] | None) -> None:
    for i in range(args.repeat):
        for name in args.queries:
            for reader in readers:
                if reader == "litestream" and name in args.litestream_skip:
                    continue
                if reader == "litestream" and name in ("group_by",) and i >= args.litestream_repeat:
                    continue
                params = [[rng.randint(1, max_post)]] if "?" in QUERIES[name] else None
                python = args.baseline_python if reader.startswith("baseline") else None
                r = run_child(bench, proxy, reader, QUERIES[name], params=params,
                              python=python, timeout=args.timeout,
                              env_extra=machine if reader == "litevfs-machine" else None)
                r.update(query=name, rtt_ms=rtt)
                log(f"{name} {reader} rtt={rtt}: " + json.dumps(
                    {k: r.get(k) for k in ("wall_s", "requests", "rounds", "query_rounds",
                                           "bytes", "peak_rss_mb", "rows", "error")}))
                runs.setdefault((name, reader), []).append(r)


def frame_sizes(bench: Bench, proxy: Any, pages: list[int]) -> tuple[int, int]:
    """(bytes of the frames of ``pages`` in the replica, pages found)."""
    import litevfs
    from litevfs.vfs.registry import file_of

    os.environ.update(bench.server.env())  # the local server's credentials
    con = litevfs.connect(bench.url(proxy), verify_max_size=0, boot_set="off")
    try:
        view = file_of(con).replica.current
        total = found = 0
        for p in pages:
            entry = view.index.lookup(p)
            if entry is not None:
                total += entry[2]
                found += 1
        return total, found
    finally:
        con.close()


def bytes_experiment(args: argparse.Namespace, bench: Bench, proxy: Any, rtt: float,
                     results: list[dict[str, Any]]) -> None:
    """1,000 random point queries in one process: bytes downloaded vs needed."""
    rng = random.Random(5)
    max_post = bench.max_post()
    params = [[rng.randint(1, max_post)] for _ in range(args.points)]
    sql = QUERIES["point_join"]
    traced = run_child(bench, proxy, "local-traced", sql, params=params)
    needed, found = frame_sizes(bench, proxy, traced.get("pages", []))
    readers = ["litevfs-cython", "litestream"] + (["baseline-cython"] if args.baseline_python else [])
    for reader in readers:
        python = args.baseline_python if reader.startswith("baseline") else None
        r = run_child(bench, proxy, reader, sql, params=params, python=python,
                      timeout=args.timeout)
        stats = r.pop("stats", None) or {}
        rec = {k: r.get(k) for k in ("reader", "wall_s", "query_s", "requests", "bytes",
                                     "query_bytes", "peak_rss_mb", "error")}
        rec.update(experiment="bytes", rtt_ms=rtt, points=args.points, size_mb=args.size,
                   needed_pages=found, needed_frame_bytes=needed,
                   ratio_to_needed=(r["bytes"] / needed) if needed and r.get("bytes") else None,
                   verification=stats.get("verification"))
        results.append(rec)
        emit(args, rec)


def warm_experiment(args: argparse.Namespace, bench: Bench, proxy: Any, rtt: float,
                    results: list[dict[str, Any]]) -> None:
    """Opens with a big cache_dir: one full scan fills it, then fresh processes open."""
    installs = [("litevfs-cython", None)]
    if args.baseline_python:
        installs.append(("baseline-cython", args.baseline_python))
    for reader, python in installs:
        cache = bench.work / f"warmcache-{reader}"
        if not (cache / "pages.sqlite3").exists():
            opts = {"cache_dir": str(cache), "cache_dir_size": "2GiB"}
            r = run_child(bench, proxy, reader, QUERIES["scan"], options=opts, python=python,
                          timeout=args.timeout)
            log(f"warming {reader}: {r.get('wall_s')} s {r.get('error', '')}")
        size = sum(f.stat().st_size for f in cache.iterdir() if f.is_file())
        rng = random.Random(3)
        runs = []
        for _ in range(args.repeat):
            params = [[rng.randint(1, bench.max_post())]]
            runs.append(run_child(bench, proxy, reader, POINT_SQL, params=params, python=python,
                                  options={"cache_dir": str(cache)}, timeout=args.timeout))
        rec = medians(runs)
        rec.update(experiment="warm", rtt_ms=rtt, cache_mb=round(size / 1e6, 1),
                   size_mb=args.size)
        results.append(rec)
        emit(args, rec)


LAG_WRITER = r"""
import json, sys, time, litevfs
spec = json.loads(sys.argv[1])
con = litevfs.connect(spec["url"], write=True, sync_interval="1s")
con.execute("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, ts REAL NOT NULL)")
litevfs.sync(con)
print("ready", flush=True)
sys.stdin.readline()
end = time.time() + spec["seconds"]
i = con.execute("SELECT coalesce(max(id), 0) FROM t").fetchone()[0]
while time.time() < end:
    i += 1
    con.execute("INSERT INTO t VALUES (?, ?)", (i, time.time()))
    time.sleep(1 / spec["rate"])
print("idle", flush=True)
sys.stdin.readline()
con.close()
"""

LAG_READER = r"""
import json, sys, time
spec = json.loads(sys.argv[1])
if spec["reader"] == "litestream":
    import apsw
    loader = apsw.Connection(":memory:"); loader.enable_load_extension(True)
    loader.load_extension(spec["extension"])
    con = apsw.Connection("file:r.db?vfs=litestream", flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI)
else:
    import litevfs
    con = litevfs.connect(spec["url"], wait_for_replica="30s")
print("ready", flush=True)
seen, lags, last = {}, [], 0
stop = time.time() + spec["seconds"]
while time.time() < stop:
    try:
        rows = con.execute("SELECT id, ts FROM t WHERE id > ? ORDER BY id", (last,)).fetchall()
    except Exception:
        rows = []
    now = time.time()
    for i, ts in rows:
        lags.append(now - ts)
        last = i
    time.sleep(0.01)
print(json.dumps({"lags": lags}), flush=True)
if spec["reader"] != "litestream":
    from litevfs.session import open_replicas
    (rep,) = open_replicas()
    def reqs():
        s = rep.storage.stats.snapshot()
        return s.get("gets", 0) + s.get("lists", 0)
    time.sleep(spec["settle"])
    a, t = reqs(), time.time()
    time.sleep(spec["idle"])
    print(json.dumps({"idle_requests": reqs() - a, "idle_s": time.time() - t,
                      "freshness": rep.metrics.snapshot().get("freshness")}), flush=True)
else:
    print(json.dumps({}), flush=True)
"""


def lag_experiment(args: argparse.Namespace, bench: Bench, proxy: Any, rtt: float,
                   results: list[dict[str, Any]]) -> None:
    """A litevfs writer committing ``--lag-rate``/s and syncing every second; readers
    record when each commit becomes visible; then the writer idles."""
    import litestream_vfs

    env = bench.server.env()
    env["PYTHONPATH"] = str(REPO)
    env.pop("AWS_CA_BUNDLE", None)
    installs = [("litevfs-cython", sys.executable)]
    if args.baseline_python:
        installs.append(("baseline-cython", args.baseline_python))
    installs.append(("litestream", sys.executable))
    for reader, python in installs:
        path = f"lag-{reader}-{int(time.time())}"
        url = bench.url(proxy, path)
        wspec = {"url": url, "seconds": args.lag_seconds, "rate": args.lag_rate}
        wpython = python if reader != "litestream" else sys.executable
        writer = subprocess.Popen([wpython, "-c", LAG_WRITER, json.dumps(wspec)], env=env,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert writer.stdout is not None and writer.stdin is not None
        writer.stdout.readline()
        rspec = {"url": url, "reader": "litestream" if reader == "litestream" else "litevfs",
                 "seconds": args.lag_seconds + 3, "settle": 10.0, "idle": args.idle_s,
                 "extension": litestream_vfs.loadable_path()}
        renv = dict(env)
        if reader == "litestream":
            renv["LITESTREAM_REPLICA_URL"] = url
            renv["LITESTREAM_LOG_FILE"] = os.devnull
        rd = subprocess.Popen([python, "-c", LAG_READER, json.dumps(rspec)], env=renv,
                              stdout=subprocess.PIPE, text=True)
        assert rd.stdout is not None
        rd.stdout.readline()
        proxy.take()
        writer.stdin.write("\n")
        writer.stdin.flush()
        lags = json.loads(rd.stdout.readline())["lags"]
        window = proxy.take()
        idle = json.loads(rd.stdout.readline())
        writer.stdin.write("\n")
        writer.stdin.flush()
        writer.wait(60)
        rd.wait(60)
        lags.sort()
        rec = {"experiment": "lag", "reader": reader, "rtt_ms": rtt, "commits": len(lags),
               "rate": args.lag_rate}
        if lags:
            rec.update(lag_median_s=statistics.median(lags),
                       lag_p95_s=lags[min(len(lags) - 1, int(0.95 * len(lags)))],
                       lag_max_s=lags[-1])
        rec["requests_during_commits"] = window.count
        if idle.get("idle_s"):
            rec["idle_requests_per_s"] = idle["idle_requests"] / idle["idle_s"]
            rec["freshness"] = idle.get("freshness")
        results.append(rec)
        emit(args, rec)


GETS_CHILD = r"""
import json, random, sys, time, litevfs
spec = json.loads(sys.argv[1])
con = litevfs.connect(spec["url"], **spec["options"])
from litevfs.session import open_replicas
(rep,) = open_replicas()
stats = rep.storage.stats
rng = random.Random(spec["seed"])
per, times = [], []
for _ in range(spec["n"]):
    i = rng.randint(1, spec["max_id"])
    a = stats.snapshot().get("gets", 0)
    s = time.perf_counter()
    con.execute(spec["sql"], (i,)).fetchall()
    times.append(time.perf_counter() - s)
    per.append(stats.snapshot().get("gets", 0) - a)
print(json.dumps({"gets": per, "times": times, "stats": rep.metrics.snapshot()}))
"""


def gets_experiment(args: argparse.Namespace, bench: Bench, proxy: Any, rtt: float,
                    results: list[dict[str, Any]]) -> None:
    """GETs per random point query in a long-lived reader (first vs the rest), without
    and with a cache_dir that earlier processes filled."""
    env = bench.server.env()
    env["PYTHONPATH"] = str(REPO)
    env.pop("AWS_CA_BUNDLE", None)
    installs = [("litevfs-cython", sys.executable)]
    if args.baseline_python:
        installs.append(("baseline-cython", args.baseline_python))
    for reader, python in installs:
        cache = tempfile.mkdtemp(prefix="litevfs-gets-")
        for label, options, seed in (("cold", {}, 1), ("cache_dir-1", {"cache_dir": cache}, 2),
                                     ("cache_dir-2", {"cache_dir": cache}, 3)):
            spec = {"url": bench.url(proxy), "options": options, "seed": seed,
                    "n": args.points, "max_id": bench.max_post(), "sql": POINT_SQL}
            out = subprocess.run([python, "-c", GETS_CHILD, json.dumps(spec)], env=env,
                                 capture_output=True, text=True, timeout=args.timeout)
            if out.returncode:
                log(f"gets {reader} {label} failed: {out.stderr[-2000:]}")
                continue
            data = json.loads(out.stdout.strip().splitlines()[-1])
            gets, times = data["gets"], sorted(data["times"])
            half = gets[len(gets) // 2:]
            rec = {"experiment": "gets", "reader": reader, "variant": label, "rtt_ms": rtt,
                   "size_mb": args.size, "points": len(gets),
                   "gets_p50": statistics.median(gets), "gets_mean": statistics.mean(gets),
                   "gets_p50_second_half": statistics.median(half),
                   "gets_mean_second_half": statistics.mean(half),
                   "time_p50_ms": statistics.median(times) * 1000,
                   "bytes": data["stats"].get("bytes_read"),
                   "memory_cache": data["stats"].get("memory_cache")}
            results.append(rec)
            emit(args, rec)


# -- report ------------------------------------------------------------------------------


def table(results: list[dict[str, Any]]) -> str:
    lines = []
    q = [r for r in results if r.get("experiment") == "query"]
    for rtt in sorted({r["rtt_ms"] for r in q}):
        lines.append(f"\nRTT {rtt:g} ms: wall s / requests / rounds (query rounds) / MB / RSS MB")
        readers = sorted({r["reader"] for r in q if r["rtt_ms"] == rtt})
        for name in QUERIES:
            by = {r["reader"]: r for r in q if r["rtt_ms"] == rtt and r["query"] == name}
            if not by:
                continue
            ls = by.get("litestream", {}).get("wall_s")
            cells = []
            for reader in readers:
                r = by.get(reader)
                if r is None or "wall_s" not in r:
                    cells.append(f"{reader}: -")
                    continue
                ratio = f" ({r['wall_s'] / ls:.2f}x LS)" if ls and reader != "litestream" else ""
                cells.append(f"{reader}: {r['wall_s']:.3f}{ratio} / {r.get('requests', 0):g} / "
                             f"{r.get('rounds', 0):g} ({r.get('query_rounds', 0):g}) / "
                             f"{(r.get('bytes') or 0) / 1e6:.1f} / {r.get('peak_rss_mb') or 0:.0f}")
            lines.append(f"  {name}:\n    " + "\n    ".join(cells))
    for r in results:
        if r.get("experiment") != "query":
            lines.append(json.dumps(r, sort_keys=True))
    return "\n".join(lines)


def chart(results: list[dict[str, Any]], path: str) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    q = [r for r in results if r.get("experiment") == "query" and "wall_s" in r]
    rtts = sorted({r["rtt_ms"] for r in q})
    if not q:
        return None
    readers = sorted({r["reader"] for r in q})
    fig, axes = plt.subplots(1, len(rtts), figsize=(6 * len(rtts), 4.5), squeeze=False)
    for ax, rtt in zip(axes[0], rtts):
        width = 0.8 / len(readers)
        for k, reader in enumerate(readers):
            vals = []
            for name in QUERIES:
                r = next((x for x in q if x["rtt_ms"] == rtt and x["query"] == name
                          and x["reader"] == reader), None)
                vals.append(r["wall_s"] if r else 0)
            ax.bar([i + k * width for i in range(len(QUERIES))], vals, width, label=reader)
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(QUERIES))], list(QUERIES))
        ax.set_yscale("log")
        ax.set_ylabel("spawn -> result, s (median)")
        ax.set_title(f"{rtt:g} ms RTT")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=float, default=1024.0, help="database size in MB (scale)")
    p.add_argument("--rtt-ms", type=float, nargs="*", default=[0, 20])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--readers", nargs="*", choices=READERS,
                   default=[r for r in READERS if r not in READER_OPTIONS])
    p.add_argument("--queries", nargs="*", default=list(QUERIES), choices=list(QUERIES))
    p.add_argument("--only", nargs="*", default=["queries"],
                   choices=["queries", "bytes", "warm", "lag", "gets"])
    p.add_argument("--baseline-python", help="also run litevfs from this interpreter")
    p.add_argument("--litestream-skip", nargs="*", default=["scan"],
                   help="query shapes Litestream's VFS skips (its full scan takes ~an hour)")
    p.add_argument("--litestream-repeat", type=int, default=1,
                   help="rounds of Litestream's slow group_by")
    p.add_argument("--points", type=int, default=1000)
    p.add_argument("--lag-seconds", type=float, default=30.0)
    p.add_argument("--lag-rate", type=float, default=50.0)
    p.add_argument("--idle-s", type=float, default=30.0)
    p.add_argument("--timeout", type=float, default=900.0)
    p.add_argument("--work", help="keep the database, server data and caches here")
    p.add_argument("--out", help="append JSON lines to this file")
    p.add_argument("--chart", default="", help="PNG of the query times")
    args = p.parse_args(argv)
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    os.environ.pop("AWS_CA_BUNDLE", None)
    from timeline import start_proxy

    tmp = None
    if args.work:
        work = Path(args.work)
        work.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="litevfs-queries-")
        work = Path(tmp.name)
    from tests.rig.machine import private_state_home

    state_dir = tempfile.TemporaryDirectory(prefix="litevfs-queries-state-")
    private_state_home(state_dir.name)  # nothing left in the user's ~/.local/state
    bench = Bench(args, work)
    results: list[dict[str, Any]] = []
    try:
        bench.start()
        for rtt in args.rtt_ms:
            proxy = start_proxy(bench.server.port, rtt)
            try:
                for what in args.only:
                    {"queries": queries, "bytes": bytes_experiment, "warm": warm_experiment,
                     "lag": lag_experiment, "gets": gets_experiment}[what](
                        args, bench, proxy, rtt, results)
            finally:
                proxy.stop()
    finally:
        bench.stop()
        state_dir.cleanup()
        if tmp is not None:
            tmp.cleanup()
    print(table(results))
    if args.chart:
        made = chart(results, args.chart)
        print(f"# chart: {made}" if made else "# chart skipped (pip install matplotlib)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
