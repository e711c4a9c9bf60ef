"""Live replication: a writer process commits continuously, real `litestream
replicate` ships it to SeaweedFS with fast compaction, covered L0 files are deleted
(as retention does, but sooner), and reader processes on litevfs must see only
consistent snapshots and keep following. Both twins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from types import ModuleType

import pytest

import litevfs.vfs.connect as api
from tests.conftest import Impl
from tests.rig import dbgen
from tests.rig.litestream import Litestream, S3Replica
from tests.rig.seaweed import SeaweedServer, unique_bucket_name

pytestmark = [pytest.mark.s3, pytest.mark.litestream, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
POLL = 0.2

WRITER = textwrap.dedent("""
    import sys, time
    from tests.rig import dbgen
    db, seconds = sys.argv[1], float(sys.argv[2])
    conn = dbgen.connect(db)
    end = time.monotonic() + seconds
    i = 0
    while time.monotonic() < end:
        dbgen.transfer(conn, 5, seed=i)
        if i % 7 == 0:
            dbgen.grow(conn, 3, seed=i)
        i += 1
        time.sleep(0.01)
    print(i)
""")

READER = textwrap.dedent("""
    import json, sys, time
    import litevfs
    url, seconds, total = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    con = litevfs.connect(url, poll_interval=sys.argv[4])
    end = time.monotonic() + seconds
    out = {"transactions": 0, "violations": [], "txids": [], "errors": []}
    while time.monotonic() < end:
        try:
            con.execute("BEGIN")
            first = con.execute("SELECT id, balance FROM accounts ORDER BY id").fetchall()
            n_items = con.execute("SELECT count(*) FROM items").fetchone()[0]
            time.sleep(0.03)  # let the poller publish mid-transaction
            second = con.execute("SELECT id, balance FROM accounts ORDER BY id").fetchall()
            n_items2 = con.execute("SELECT count(*) FROM items").fetchone()[0]
            txid = con.execute("PRAGMA litestream_txid").fetchone()[0]
            con.execute("COMMIT")
        except Exception as exc:
            out["errors"].append(f"{type(exc).__name__}: {exc}")
            try:
                con.execute("ROLLBACK")
            except Exception:
                pass
            continue
        out["transactions"] += 1
        if sum(b for _, b in first) != total or first != second or n_items != n_items2:
            out["violations"].append(txid)
        if not out["txids"] or out["txids"][-1] != txid:
            out["txids"].append(txid)
    check = con.execute("PRAGMA integrity_check").fetchone()[0]
    out["integrity"] = check
    print(json.dumps(out))
""")


def _env(seaweed: SeaweedServer, impl: Impl) -> dict[str, str]:
    env = dict(os.environ)
    env.update(seaweed.env())
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    env.pop("AWS_CA_BUNDLE", None)
    env["PYTHONPATH"] = str(REPO)
    if impl.name == "python":
        env["LITEVFS_NO_EXTENSIONS"] = "1"
    else:
        env.pop("LITEVFS_NO_EXTENSIONS", None)
    return env


def _delete_covered_l0(seaweed: SeaweedServer, target: S3Replica, stop: threading.Event,
                       deleted: list[str]) -> None:
    """Retention, sped up: drop L0 files an L1 file covers (never the newest L0)."""
    client = seaweed.client()
    while not stop.wait(0.4):
        try:
            l1 = target.list_level(1)
            l0 = target.list_level(0)
        except Exception:
            continue
        if not l1 or len(l0) < 2:
            continue
        covered = l1[-1].max_txid
        for f in l0[:-1]:
            if f.max_txid <= covered:
                client.delete_object(Bucket=target.bucket, Key=f"{target.level_prefix(0)}{f.name}")
                deleted.append(f.name)


def test_readers_see_consistent_snapshots_while_l0_is_deleted(
        seaweed: SeaweedServer, tmp_path: Path, impl: Impl) -> None:
    seconds = 8.0
    bucket = seaweed.create_bucket(unique_bucket_name("live"))
    target = S3Replica(seaweed, bucket, "db")
    db = dbgen.create_db(tmp_path / "live.db", 4096, rows=300, blobs=3)
    env = _env(seaweed, impl)
    with Litestream(db, target, workdir=tmp_path / "ls", l1_interval="1s",
                    snapshot_interval=None) as ls:
        ls.wait_for_txid(1)
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(db), str(seconds)],
                                  cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
        readers = [
            subprocess.Popen([sys.executable, "-c", READER, target.url, str(seconds + 1),
                              str(dbgen.TOTAL_BALANCE), f"{int(POLL * 1000)}ms"],
                             cwd=REPO, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
            for _ in range(2)
        ]
        stop = threading.Event()
        deleted: list[str] = []
        janitor = threading.Thread(target=_delete_covered_l0,
                                   args=(seaweed, target, stop, deleted), daemon=True)
        janitor.start()
        try:
            assert writer.wait(timeout=60) == 0
            outs = [r.communicate(timeout=60) for r in readers]
        finally:
            stop.set()
            janitor.join(timeout=10)
            for p in [writer, *readers]:
                if p.poll() is None:
                    p.kill()
        final = ls.wait_caught_up(settle=0.2)
    for (stdout, stderr), proc in zip(outs, readers, strict=True):
        assert proc.returncode == 0, stderr[-3000:]
        report = json.loads(stdout.strip().splitlines()[-1])
        assert report["errors"] == [], report["errors"][:5]
        assert report["violations"] == []
        assert report["integrity"] == "ok"
        assert report["transactions"] > 20
        txids = [int(t, 16) for t in report["txids"]]
        assert txids == sorted(txids) and len(txids) > 5, txids  # followed the writer
        assert txids[-1] >= final - 10, (txids[-1], final)
    assert deleted, "the janitor never deleted a covered L0 file: compaction did not run"


def test_new_commits_visible_within_two_poll_intervals(
        seaweed: SeaweedServer, tmp_path: Path, core: ModuleType) -> None:
    bucket = seaweed.create_bucket(unique_bucket_name("lag"))
    target = S3Replica(seaweed, bucket, "db")
    db = dbgen.create_db(tmp_path / "lag.db", 4096, rows=50, blobs=0)
    with Litestream(db, target, workdir=tmp_path / "ls") as ls:
        ls.wait_for_txid(1)
        con = api.connect(target.url, impl=core, poll_interval=f"{int(POLL * 1000)}ms")
        try:
            latencies = []
            for i in range(4):
                before = ls.local_txid()
                dbgen.transfer(db, 3, seed=i)
                txid = ls.wait_for_local(before)
                ls.wait_for_txid(txid)
                uploaded = time.monotonic()
                while True:
                    seen = int(con.execute("PRAGMA litestream_txid").fetchone()[0], 16)
                    if seen >= txid:
                        break
                    assert time.monotonic() - uploaded < 10, "reader never caught up"
                    time.sleep(0.005)
                latencies.append(time.monotonic() - uploaded)
                state = dbgen.state_from(lambda sql: [tuple(r) for r in con.execute(sql)])
                assert state.balance_total == dbgen.TOTAL_BALANCE
            assert max(latencies) <= 2 * POLL + 0.1, latencies
            lag = con.execute("SELECT litestream_lag()").fetchone()[0]
            assert 0 <= lag <= 1
        finally:
            con.close()
