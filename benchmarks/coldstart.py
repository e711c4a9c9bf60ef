"""Cold start of litevfs (both twins) against Litestream's own VFS, on one replica.

    python benchmarks/coldstart.py --quick            # ~10 MB database, < 60 s
    python benchmarks/coldstart.py --size 200         # the issue's 200 MB run
    python benchmarks/coldstart.py --endpoint http://127.0.0.1:9000 --access-key K --secret-key S

Starts its own SeaweedFS on 127.0.0.1 (unless ``--endpoint``), builds a database of
``--size`` MB, replicates it with the real ``litestream replicate``, then measures in
fresh processes, for each reader (litevfs compiled, litevfs pure, Litestream's VFS
loaded into apsw, and apsw on the local file as the warm baseline):

* cold start: process start -> first row of a primary-key query;
* open time, first-query time, requests at open and for the first query;
* p50/p99 of random point queries (cold-ish), then the same again (warm);
* ``SELECT COUNT(*) FROM items`` time and requests;
* with ``--scan``, a full scan of the ``items`` table b-tree (leaves and overflow pages).

Every reader talks to S3 through a counting loopback proxy (so request counts are
comparable); ``--rtt-ms`` (default 0 and 20) adds half of it each way. Output: one
JSON line per (reader, rtt) on stdout, then a table of litevfs/Litestream ratios.
Only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]  # tests.rig; litevfs is the installed package

READERS = ("litevfs-cython", "litevfs-python", "litestream", "local")
CHILD = Path(__file__).resolve().with_name("coldstart_child.py")
_REQUEST_LINE = re.compile(rb"(?:^|\r\n)(?:GET|HEAD|PUT|POST|DELETE) /")


# -- child side ----------------------------------------------------------------------


# -- parent side ---------------------------------------------------------------------


class ExternalServer:
    """An S3 endpoint we did not start (MinIO, another SeaweedFS) on 127.0.0.1."""

    def __init__(self, endpoint: str, access_key: str, secret_key: str, region: str) -> None:
        parts = urlsplit(endpoint)
        if parts.hostname not in ("127.0.0.1", "localhost"):
            raise SystemExit("--endpoint must be on 127.0.0.1")
        self.endpoint, self.port = endpoint.rstrip("/"), parts.port or 80
        self.access_key, self.secret_key, self.region = access_key, secret_key, region
        self._client: Any = None

    def env(self) -> dict[str, str]:
        from tests.rig.seaweed import clean_aws_env

        env = clean_aws_env()
        env.update({"AWS_ACCESS_KEY_ID": self.access_key,
                    "AWS_SECRET_ACCESS_KEY": self.secret_key, "AWS_REGION": self.region,
                    "AWS_DEFAULT_REGION": self.region, "AWS_EC2_METADATA_DISABLED": "true"})
        return env

    @property
    def shared_client(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            self._client = boto3.client(
                "s3", endpoint_url=self.endpoint, region_name=self.region,
                aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key,
                config=Config(s3={"addressing_style": "path"}))
        return self._client

    def create_bucket(self, name: str) -> str:
        self.shared_client.create_bucket(Bucket=name)
        return name


def _counting_proxy(target_port: int, delay_s: float) -> Any:
    import asyncio  # not at module level: the children run this file and must start lean

    from tests.rig.proxy import LatencyProxy

    class CountingProxy(LatencyProxy):
        """Counts HTTP requests (request lines sent upstream) on top of the delay."""

        requests = 0

        async def _handle(self, creader: Any, cwriter: Any) -> None:
            proxy = self

            class Counting:
                async def read(self, n: int = -1) -> bytes:
                    chunk = await creader.read(n)
                    proxy.requests += len(_REQUEST_LINE.findall(chunk))
                    return chunk

                def __getattr__(self, name: str) -> Any:
                    return getattr(creader, name)

            try:
                await super()._handle(Counting(), cwriter)
            except asyncio.CancelledError:
                pass  # stop() cancels open connections; nothing to report


    return CountingProxy(target_port, delay_s).start()


def _run_reader(reader: str, *, env: dict[str, str], **kw: Any) -> dict[str, Any]:
    """One fresh reader process on a new machine (its own empty state home: no page
    index another process of the machine kept). ``python``: another interpreter (a venv
    with another litevfs installed, for before/after comparisons in one run)."""
    from tests.rig.machine import new_machine

    with new_machine(env) as machine_env:
        return _run_reader_on(reader, env=machine_env, **kw)


def _run_reader_on(reader: str, *, url: str, env: dict[str, str], proxy: Any, ids: list[int],
                   count: bool, local_db: Path, timeout: float, idle_s: float = 0.0,
                   scan: bool = False, python: str | None = None) -> dict[str, Any]:
    child_env = dict(env)
    child_env["PYTHONPATH"] = str(REPO)
    child_env.pop("AWS_CA_BUNDLE", None)
    # Like an installed package: bytecode is cached, not recompiled at every start.
    child_env.pop("PYTHONDONTWRITEBYTECODE", None)
    if reader == "litevfs-python":
        child_env["LITEVFS_NO_EXTENSIONS"] = "1"
    else:
        child_env.pop("LITEVFS_NO_EXTENSIONS", None)
    extension = ""
    if reader == "litestream":
        import litestream_vfs

        extension = litestream_vfs.loadable_path()
        child_env["LITESTREAM_REPLICA_URL"] = url
        child_env["LITESTREAM_LOG_FILE"] = os.devnull  # it logs to stdout by default
    spec = {"child": reader, "url": url, "ids": ids, "local_db": str(local_db),
            "extension": extension, "count": count, "idle_s": idle_s, "scan": scan}
    cmd = [python or sys.executable, str(CHILD), json.dumps(spec), "0"]
    result: dict[str, Any] = {"reader": reader}
    before = proxy.requests
    cmd[-1] = repr(time.time())  # spawned at
    proc = subprocess.Popen(cmd, env=child_env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=tempfile.gettempdir())
    deadline = time.monotonic() + timeout
    try:
        assert proc.stdout is not None and proc.stdin is not None
        for line in proc.stdout:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{reader} exceeded {timeout:g}s")
            if not line.startswith("{"):
                continue
            msg = json.loads(line)
            name = msg.pop("phase")
            now = proxy.requests
            result[f"requests_{name}"] = now - before
            before = now
            result.update(msg)
            proc.stdin.write("\n")
            proc.stdin.flush()
            if name == "done":
                break
        proc.stdin.close()
        proc.wait(timeout=30)
    except Exception as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode not in (0, None) and "error" not in result:
        result["error"] = (proc.stderr.read() if proc.stderr else "")[-2000:]
    for key in ("points_cold", "points_warm"):
        values = result.pop(key, None)
        if values:
            ordered = sorted(values)
            result[f"{key}_p50_ms"] = statistics.median(ordered) * 1000
            result[f"{key}_p99_ms"] = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000
    return result


def _prepare(args: argparse.Namespace, work: Path) -> tuple[Any, str, Path, int, Any]:
    from tests.rig import dbgen
    from tests.rig.litestream import Litestream, S3Replica
    from tests.rig.seaweed import SeaweedServer, unique_bucket_name

    server: Any
    if args.endpoint:
        server = ExternalServer(args.endpoint, args.access_key, args.secret_key, args.region)
        owned = None
    else:
        server = owned = SeaweedServer().start()
    bucket = server.create_bucket(unique_bucket_name("bench"))
    db = work / "bench.db"
    t = time.monotonic()
    dbgen.make_db(db, args.page_size, int(args.size * (1 << 20)), seed=1)
    print(f"# database: {db.stat().st_size / 1e6:.1f} MB, page size {args.page_size}, "
          f"built in {time.monotonic() - t:.1f}s", file=sys.stderr)
    target = S3Replica(server, bucket, "db")  # type: ignore[arg-type]
    t = time.monotonic()
    with Litestream(db, target, workdir=work / "ls", l1_interval=None,
                    snapshot_interval=None) as ls:
        ls.wait_for_txid(1, timeout=600)
        ls.wait_caught_up(settle=0.5, timeout=600)
    print(f"# replicated with litestream in {time.monotonic() - t:.1f}s", file=sys.stderr)
    import sqlite3

    con = sqlite3.connect(db)
    max_id = con.execute("SELECT max(id) FROM kv").fetchone()[0]
    con.close()
    return server, bucket, db, max_id, owned


def _table(results: list[dict[str, Any]]) -> str:
    metrics = [("cold_start_s", "cold start"), ("import_open_s", "open"),
               ("first_query_s", "first query"), ("requests_open", "requests at open"),
               ("requests_first", "requests 1st query"), ("points_cold_p50_ms", "point p50"),
               ("points_cold_p99_ms", "point p99"), ("points_warm_p50_ms", "warm point p50"),
               ("count_s", "COUNT(*)"), ("requests_count", "COUNT(*) requests"),
               ("scan_s", "full scan"), ("requests_scan", "full scan requests")]
    lines = []
    for rtt in sorted({r["rtt_ms"] for r in results}):
        by = {r["reader"]: r for r in results if r["rtt_ms"] == rtt}
        base = by.get("litestream", {})
        lines.append(f"\nRTT {rtt} ms")
        head = f"{'metric':<20}" + "".join(f"{n:>16}" for n in by) + \
            "".join(f"{'ratio ' + n.split('-')[0][:4] + '-' + n.split('-')[-1]:>16}"
                    for n in by if n.startswith(("litevfs", "baseline")))
        lines.append(head)
        for key, label in metrics:
            if not any(isinstance(r.get(key), (int, float)) for r in by.values()):
                continue  # a phase this run did not measure (e.g. no --scan)
            row = f"{label:<20}"
            for r in by.values():
                v = r.get(key)
                row += f"{v:>16.4g}" if isinstance(v, (int, float)) else f"{'-':>16}"
            for n, r in by.items():
                if not n.startswith(("litevfs", "baseline")):
                    continue
                a, b = r.get(key), base.get(key)
                ratio = a / b if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else None
                row += f"{ratio:>16.3f}" if ratio is not None else f"{'-':>16}"
            lines.append(row)
        local = by.get("local", {}).get("points_warm_p50_ms")
        for n, r in by.items():
            if n.startswith("litevfs") and local and r.get("points_warm_p50_ms"):
                lines.append(f"warm point p50 {n} / apsw local file: "
                             f"{r['points_warm_p50_ms'] / local:.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=float, default=200.0, help="database size in MB")
    p.add_argument("--quick", action="store_true", help="small database, fewer queries (< 60 s)")
    p.add_argument("--page-size", type=int, default=4096)
    p.add_argument("--points", type=int, default=200, help="random point queries per reader")
    p.add_argument("--rtt-ms", type=float, nargs="*", default=[0, 20])
    p.add_argument("--readers", nargs="*", default=list(READERS), choices=READERS)
    p.add_argument("--no-count", dest="count", action="store_false")
    p.add_argument("--scan", action="store_true",
                   help="also time a full scan of the items table (Litestream's VFS reads "
                        "it one page per round trip: use a small --size)")
    p.add_argument("--timeout", type=float, default=600.0, help="per reader process")
    p.add_argument("--endpoint", help="use this S3 endpoint (127.0.0.1) instead of SeaweedFS")
    p.add_argument("--access-key", default=os.environ.get("AWS_ACCESS_KEY_ID", ""))
    p.add_argument("--secret-key", default=os.environ.get("AWS_SECRET_ACCESS_KEY", ""))
    p.add_argument("--region", default="us-east-1")
    p.add_argument("--out", help="also append the JSON lines to this file")
    p.add_argument("--baseline-python", help="also run litevfs-cython from this interpreter "
                   "(a venv with another litevfs installed: before/after in one run)")
    args = p.parse_args(argv)
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    os.environ.pop("AWS_CA_BUNDLE", None)
    if args.quick:
        args.size, args.points = min(args.size, 10.0), min(args.points, 50)
    from tests.rig.seaweed import s3_replica_url

    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="litevfs-bench-") as tmp:
        # Read-only opens join the machine's shared state under the buffer home: keep it
        # in the run's directory, not the user's (every fresh process starts alone there).
        os.environ["XDG_STATE_HOME"] = str(Path(tmp) / "state")
        server, bucket, db, max_id, owned = _prepare(args, Path(tmp))
        try:
            rng = random.Random(7)
            ids = [rng.randint(1, max_id) for _ in range(args.points + 1)]
            for rtt in args.rtt_ms:
                proxy = _counting_proxy(server.port, rtt / 2000)
                try:
                    url = s3_replica_url(bucket, "db", proxy.endpoint, server.region)
                    runs = [(reader, reader, None) for reader in args.readers]
                    if args.baseline_python:  # before/after in one run
                        runs.append(("baseline-cython", "litevfs-cython", args.baseline_python))
                    for label, reader, python in runs:
                        r = _run_reader(reader, url=url, env=server.env(), proxy=proxy, ids=ids,
                                        count=args.count and reader != "local", local_db=db,
                                        timeout=args.timeout, python=python,
                                        scan=args.scan and reader != "local")
                        r.update(reader=label, rtt_ms=rtt, size_mb=round(db.stat().st_size / 1e6, 1),
                                 page_size=args.page_size, points=args.points)
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
    print(_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
