"""Cold start across database sizes and RTTs, with and without a warm persistent cache,
idle polling cost and peak RSS, against Litestream's VFS in the same run.

    python benchmarks/coldstart_matrix.py --sizes 200 1024 --rtt-ms 20
    python benchmarks/coldstart_matrix.py --quick          # 10 MB, ~1 min

For each size: build the database, replicate it with the real ``litestream replicate``
(SeaweedFS on 127.0.0.1), then at each RTT run fresh processes (``coldstart.py``'s
child) for:

* ``litestream``: Litestream's VFS;
* ``litevfs-cython`` / ``litevfs-python``: cold, no persistent cache (both twins);
* ``litevfs-cython-warm``: ``LITEVFS_CACHE_DIR`` warmed by one earlier process (page
  indexes, pages and the learned boot set on local disk; one LIST still checks
  freshness);
* idle polling: requests per minute of an open, idle reader, for Litestream's VFS and
  for litevfs on a replica with a litevfs head object (what a litevfs writer keeps).

The four cold-start readers run ``--repeat`` interleaved rounds (default 5); each JSON
line holds a reader's medians and its individual cold starts (``cold_start_runs_s``);
per-run lines are printed as ``#`` comments.

Output: JSON lines (``--out``), a ratio table, and ``--chart`` (PNG of cold start vs
size and RTT; needs matplotlib, the ``bench`` extra; skipped when absent).
Only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

import coldstart  # noqa: E402  (benchmarks/coldstart.py: child process, proxy, setup)


def _write_head(server: Any, bucket: str) -> None:
    """Give the replica a litevfs head object, as a litevfs writer would."""
    from litevfs.engine.head import write_head
    from litevfs.storage import open_storage
    from tests.rig.seaweed import s3_replica_url

    storage = open_storage(s3_replica_url(bucket, "db", server.endpoint, server.region),
                           access_key_id=server.access_key, secret_access_key=server.secret_key)
    try:
        levels = storage.list_all()
        write_head(storage, max(f.max_txid for fs in levels.values() for f in fs))
    finally:
        storage.close()


def run_size(args: argparse.Namespace, size_mb: float, work: Path) -> list[dict[str, Any]]:
    from tests.rig.seaweed import s3_replica_url

    ns = argparse.Namespace(**vars(args))
    ns.size = size_mb
    server, bucket, db, max_id, owned = coldstart._prepare(ns, work)
    results: list[dict[str, Any]] = []
    try:
        rng = random.Random(7)
        ids = [rng.randint(1, max_id) for _ in range(args.points + 1)]
        for rtt in args.rtt_ms:
            proxy = coldstart._counting_proxy(server.port, rtt / 2000)
            try:
                url = s3_replica_url(bucket, "db", proxy.endpoint, server.region)
                cache = tempfile.mkdtemp(prefix="litevfs-bench-cache-")

                def run(reader: str, label: str, env_extra: dict[str, str] | None = None,
                        idle_s: float = 0.0, python: str | None = None) -> dict[str, Any]:
                    env = server.env()
                    env.update(env_extra or {})
                    r = coldstart._run_reader(reader, url=url, env=env, proxy=proxy, ids=ids,
                                              count=False, local_db=db, timeout=args.timeout,
                                              idle_s=idle_s, python=python)
                    r.update(reader=label, rtt_ms=rtt, size_mb=round(db.stat().st_size / 1e6, 1),
                             page_size=args.page_size, points=args.points)
                    if idle_s and "requests_idle" in r:
                        r["idle_requests_per_min"] = r["requests_idle"] * 60.0 / idle_s
                    print("# " + json.dumps(r, sort_keys=True), flush=True)
                    return r

                def report(r: dict[str, Any]) -> None:
                    line = json.dumps(r, sort_keys=True)
                    print(line, flush=True)
                    if args.out:
                        with open(args.out, "a") as f:
                            f.write(line + "\n")
                    results.append(r)

                cold = {"LITEVFS_BOOT_SET": "off"}
                warm_env = {"LITEVFS_CACHE_DIR": cache}
                run("litevfs-cython", "warming", warm_env)  # fills the cache dir
                readers: list[tuple[str, str, dict[str, str] | None, str | None]] = [
                    ("litestream", "litestream", None, None),
                    ("litevfs-cython", "litevfs-cython", cold, None),
                    ("litevfs-python", "litevfs-python", cold, None),
                    ("litevfs-cython", "litevfs-cython-warm", warm_env, None)]
                if args.baseline_python:  # the same readers from another install
                    base_cache = {"LITEVFS_CACHE_DIR": tempfile.mkdtemp(prefix="litevfs-base-")}
                    run("litevfs-cython", "warming", base_cache, python=args.baseline_python)
                    readers += [
                        ("litevfs-cython", "baseline-cython", cold, args.baseline_python),
                        ("litevfs-cython", "baseline-cython-warm", base_cache,
                         args.baseline_python)]
                # Rounds interleave the readers, so a slow spell of this noisy machine
                # hits all of them; each reader's figures are the medians of its rounds.
                rounds: dict[str, list[dict[str, Any]]] = {}
                for i in range(args.repeat):
                    for reader, label, env_extra, python in readers:
                        idle = args.idle_s if i == 0 and reader == "litestream" else 0.0
                        rounds.setdefault(label, []).append(
                            run(reader, label, env_extra, idle, python))
                for label, runs in rounds.items():
                    report(median_of(runs))
                if not args.idle:
                    continue
                _write_head(server, bucket)
                # Unbounded verification bandwidth, and the child waits for the one-time
                # background CRC check of the snapshot to end before its idle window
                # (its GETs are reported as requests_settle): the window counts polling.
                report(run("litevfs-cython", "litevfs-idle-head",
                           {"LITEVFS_BOOT_SET": "off", "LITEVFS_VERIFY_BANDWIDTH": "0"},
                           idle_s=args.idle_s))
            finally:
                proxy.stop()
    finally:
        if owned is not None:
            owned.stop()
    return results


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One result from several runs of a reader: the median of every number that all
    runs (or, for the idle window, any run) reported; the cold starts are kept too."""
    out = dict(runs[-1])
    for key in set().union(*runs):
        values = [r[key] for r in runs if isinstance(r.get(key), (int, float))
                  and not isinstance(r.get(key), bool)]
        if values and (len(values) == len(runs) or key.startswith(("idle", "requests_idle"))):
            out[key] = statistics.median(values)
    out["runs"] = len(runs)
    out["cold_start_runs_s"] = [round(r["cold_start_s"], 4) for r in runs
                                if "cold_start_s" in r]
    errors = [r["error"] for r in runs if "error" in r]
    if errors:
        out["error"] = errors[0]
    return out


def table(results: list[dict[str, Any]]) -> str:
    lines = []
    keys = [("cold_start_s", "cold start s"), ("requests_open", "requests at open"),
            ("first_query_s", "first query s"), ("points_warm_p50_ms", "warm point ms"),
            ("peak_rss_mb", "peak RSS MB"), ("idle_requests_per_min", "idle req/min")]
    groups = sorted({(r["size_mb"], r["rtt_ms"]) for r in results})
    for size, rtt in groups:
        by = {r["reader"]: r for r in results if (r["size_mb"], r["rtt_ms"]) == (size, rtt)
              and r["reader"] != "warming"}
        base = by.get("litestream", {})
        lines.append(f"\n{size} MB, RTT {rtt} ms")
        lines.append(f"{'metric':<18}" + "".join(f"{n:>22}" for n in by))
        for key, label in keys:
            row = f"{label:<18}"
            for name, r in by.items():
                v = r.get(key)
                b = base.get(key)
                if name == "litevfs-idle-head" and key == "idle_requests_per_min":
                    b = base.get(key)
                cell = "-" if not isinstance(v, (int, float)) else f"{v:.4g}"
                if isinstance(v, (int, float)) and isinstance(b, (int, float)) and b and \
                        name != "litestream":
                    cell += f" ({v / b:.2f}x)"
                row += f"{cell:>22}"
            lines.append(row)
    return "\n".join(lines)


def chart(results: list[dict[str, Any]], path: str) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 5))
    colors = {"litestream": "tab:red", "litevfs-cython": "tab:blue",
              "litevfs-python": "tab:green", "litevfs-cython-warm": "tab:purple"}
    rtts = sorted({r["rtt_ms"] for r in results})
    styles = [("-", "o"), ("--", "s"), (":", "^"), ("-.", "D")]  # one per RTT
    for reader, color in colors.items():
        for i, rtt in enumerate(rtts):
            pts = sorted((r["size_mb"], r["cold_start_s"]) for r in results
                         if r["reader"] == reader and r["rtt_ms"] == rtt and "cold_start_s" in r)
            if pts:
                line, marker = styles[i % len(styles)]
                ax.plot([p[0] for p in pts], [p[1] for p in pts], color=color, linestyle=line,
                        marker=marker, label=f"{reader}, {rtt:g} ms RTT")
    ax.set_xlabel("database size (MB)")
    ax.set_ylabel("cold start: process start to first row (s)")
    ax.set_xscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=float, nargs="*", default=[200.0, 1024.0])
    p.add_argument("--rtt-ms", type=float, nargs="*", default=[20.0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--page-size", type=int, default=4096)
    p.add_argument("--points", type=int, default=100)
    p.add_argument("--idle-s", type=float, default=60.0,
                   help="idle polling window (long enough that the poll interval's back-off "
                        "after the open, 1 -> 2 -> 4 -> 6 s, is not most of it)")
    p.add_argument("--repeat", type=int, default=5,
                   help="interleaved rounds per reader; medians are reported")
    p.add_argument("--timeout", type=float, default=900.0)
    p.add_argument("--baseline-python", help="also run litevfs from this interpreter (a venv "
                   "with another version installed): before/after in one run")
    p.add_argument("--no-idle", dest="idle", action="store_false",
                   help="skip the idle-polling measurement (head object)")
    p.add_argument("--out", help="append JSON lines here")
    p.add_argument("--chart", default="coldstart_matrix.png", help="PNG path ('' for none)")
    p.add_argument("--endpoint")
    p.add_argument("--access-key", default=os.environ.get("AWS_ACCESS_KEY_ID", ""))
    p.add_argument("--secret-key", default=os.environ.get("AWS_SECRET_ACCESS_KEY", ""))
    p.add_argument("--region", default="us-east-1")
    args = p.parse_args(argv)
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    os.environ.pop("AWS_CA_BUNDLE", None)
    if args.quick:
        args.sizes, args.points, args.idle_s, args.repeat = [10.0], 30, 10.0, 2
    results: list[dict[str, Any]] = []
    for size in args.sizes:
        with tempfile.TemporaryDirectory(prefix="litevfs-matrix-") as tmp:
            results += run_size(args, size, Path(tmp))
    print(table(results))
    if args.chart:
        made = chart(results, args.chart)
        print(f"# chart: {made}" if made else "# chart skipped (pip install matplotlib)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
