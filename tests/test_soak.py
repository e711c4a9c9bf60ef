"""Soak: real ``litestream replicate`` with a writer and compaction, 4 reader processes
checking an invariant in every read transaction, a hydrating reader, and a litevfs
writer on another prefix, for ``LITEVFS_SOAK_SECONDS`` (default 60).

Passes with zero invariant violations, bounded RSS (end within 1.5x + 40 MiB of the
value once warm) and no leaked file descriptors or threads in any child.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import litevfs
from tests.rig import dbgen, report
from tests.rig.litestream import Litestream, S3Replica
from tests.rig.seaweed import SeaweedServer, s3_replica_url

pytestmark = [pytest.mark.s3, pytest.mark.litestream, pytest.mark.slow]
CHILD = str(Path(__file__).with_name("soak_child.py"))


def test_soak(seaweed: SeaweedServer, tmp_path: Path) -> None:
    seconds = float(os.environ.get("LITEVFS_SOAK_SECONDS", "60"))
    bucket = seaweed.warm_bucket()
    db = dbgen.create_db(tmp_path / "primary.db", 4096, rows=300, blobs=4)
    ls = Litestream(db, S3Replica(seaweed, bucket, "db"), workdir=tmp_path / "ls",
                    l1_interval="2s", snapshot_interval="15s", l0_retention="10s")
    ls.start()
    stop = threading.Event()
    written = [0]

    def write() -> None:  # the primary: transfers keep sum(balance) constant
        i = 0
        while not stop.is_set():
            i += 1
            dbgen.transfer(db, 5, seed=i)
            if i % 50 == 0:
                dbgen.grow(db, 5, seed=i)
            written[0] += 1
            time.sleep(0.02)

    env = seaweed.env()  # children import the installed litevfs (compiled core)
    procs: list[subprocess.Popen[str]] = []
    writer = threading.Thread(target=write, daemon=True)
    try:
        ls.wait_for_txid(1)
        writer.start()
        url = s3_replica_url(bucket, "db", seaweed.endpoint, seaweed.region)
        url2 = s3_replica_url(bucket, "db2", seaweed.endpoint, seaweed.region)
        args = [["reader", url, str(seconds)] for _ in range(4)]
        args.append(["reader", url, str(seconds), "hydrate"])
        args.append(["writer", url2, str(seconds), str(tmp_path / "w.wbuf")])
        for a in args:
            procs.append(subprocess.Popen([sys.executable, CHILD, *a], env=env,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          text=True))
        results = []
        for p in procs:
            out, err = p.communicate(timeout=seconds + 120)
            assert p.returncode == 0, err[-3000:]
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        stop.set()
        if writer.is_alive():
            writer.join(30)
        for p in procs:
            if p.poll() is None:
                p.kill()
        ls.stop()

    violations = sum(r["violations"] for r in results)
    transactions = sum(r["transactions"] for r in results)
    peak = max(r["peak_rss_kib"] for r in results)
    report.record("soak_seconds", seconds)
    report.record("soak_read_transactions", transactions)
    report.record("soak_primary_commits", written[0])
    report.record("soak_violations", violations)
    report.record_max("soak_peak_rss_mib", round(peak / 1024, 1))
    print(json.dumps({"soak": results}))
    assert violations == 0, results
    for r in results:
        assert r["transactions"] > 10, r
        assert r.get("ioerrors", 0) == 0, r
        warm, end = r["warm"], r["end"]
        assert end["rss_kib"] <= warm["rss_kib"] * 1.5 + 40 * 1024, r
        assert end["fds"] <= warm["fds"] + 4, r  # files, pipes: no growth
        # keep-alive connections: the fast path's pool (32) and botocore's (32) at most
        assert end.get("sockets", 0) <= 2 * 32 + 8, r
        assert end["threads"] <= warm["threads"] + 2, r
        # pools grow on demand only up to their maxima: io 32, s3 16, hedged GETs 64, hydrate 16
        assert end.get("pool_threads", 0) <= 32 + 16 + 64 + 16, r
    assert results[4].get("hydration") in ("complete", "hydrating"), results[4]
    # the litevfs writer's synced state is what a fresh reader sees
    con = litevfs.connect(url2, poll_interval=0, boot_set="off")
    try:
        assert con.execute("SELECT count(*), sum(bal) FROM acct").fetchall() == [(50, 5000)]
    finally:
        con.close()
