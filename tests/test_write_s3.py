"""Write mode against the real components: SeaweedFS, `litestream restore`,
`litestream replicate` and Litestream's own VFS; writers and readers in separate
processes (kill -9, two writers at once, cross-process visibility)."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import litevfs
from litevfs.engine.plan import calc_restore_plan
from litevfs.storage import open_storage
from tests.rig.litestream import S3Replica
from tests.rig.litestream import restore as litestream_restore

pytestmark = [pytest.mark.litestream]

CHILD = str(Path(__file__).with_name("write_child.py"))
REPO = Path(__file__).resolve().parents[1]


def child_env(seaweed, core, **extra) -> dict[str, str]:
    env = seaweed.env()
    env["PYTHONPATH"] = str(REPO)
    env.pop("AWS_CA_BUNDLE", None)
    if core.__name__.endswith("_py"):
        env["LITEVFS_NO_EXTENSIONS"] = "1"
    env.update(extra)
    return env


def spawn(args, env, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, CHILD, *args], env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def read_until(proc, prefix: str, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    for line in proc.stdout:
        if line.startswith(prefix):
            return line.strip()
        if time.monotonic() > deadline:
            break
    raise AssertionError(f"no {prefix!r} from child; stderr:\n{proc.stderr.read()[-3000:]}")


def finish(proc, timeout: float = 60.0) -> list[str]:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return out.splitlines()


def litestream_rows(url, seaweed, tmp_path, name="ls.db", sql="SELECT id FROM t ORDER BY id"):
    out = litestream_restore(url, tmp_path / name, env=seaweed.env())
    con = sqlite3.connect(out)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return con.execute(sql).fetchall()
    finally:
        con.close()


def litestream_vfs_rows(url, seaweed, sql):
    env = seaweed.env()
    env["LITESTREAM_REPLICA_URL"] = url
    env["LITESTREAM_LOG_FILE"] = os.devnull
    env["PYTHONPATH"] = str(REPO)
    out = subprocess.run([sys.executable, CHILD, "litestream-vfs", sql], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-3000:]
    return [tuple(r) for r in json.loads(out.stdout.strip().splitlines()[-1])]


def test_kill9_in_a_commit_loop_then_recovery(seaweed, s3_url, tmp_path, core):
    env = child_env(seaweed, core)
    buffer = str(tmp_path / "w.wbuf")
    committed = 0
    rng = random.Random(4)
    for _round in range(2):
        proc = spawn(["writer", s3_url, buffer, "0", "100000", "--interval=300ms"], env)
        read_until(proc, "ready")
        stop_after = committed + rng.randint(150, 400)
        for line in proc.stdout:
            if line.startswith("committed"):
                committed = int(line.split()[1])
                if committed >= stop_after:
                    break
        time.sleep(rng.random() * 0.2)
        proc.send_signal(signal.SIGKILL)  # mid-loop: the next commit may be half-written
        proc.wait()
        # Commits that returned after our last read line count too: read the rest.
        for line in proc.stdout.read().splitlines():
            if line.startswith("committed"):
                committed = int(line.split()[1])
        proc.stdout.close()
        proc.stderr.close()
    # Restart: recovery uploads everything, then a clean close.
    proc = spawn(["writer", s3_url, buffer, "0", "5", "--sync"], env)
    lines = finish(proc)
    assert "closed" in lines, lines
    ids = [r[0] for r in litestream_rows(s3_url, seaweed, tmp_path)]
    # Every commit that returned is there; at most the one in flight at the kill more.
    assert committed > 300 and ids == list(range(1, len(ids) + 1))
    assert committed + 5 <= len(ids) <= committed + 5 + 2
    assert litestream_vfs_rows(s3_url, seaweed, "SELECT count(*), max(id) FROM t") == [
        (len(ids), len(ids))]


def test_two_writer_processes_exactly_one_wins(seaweed, s3_url, tmp_path, core):
    env = child_env(seaweed, core)
    first = spawn(["writer", s3_url, str(tmp_path / "init.wbuf"), "1", "3", "--sync"], env)
    assert "closed" in finish(first)
    a = spawn(["writer", s3_url, str(tmp_path / "a.wbuf"), "1000", "20", "--wait", "--sync",
               "--interval=0"], env)
    b = spawn(["writer", s3_url, str(tmp_path / "b.wbuf"), "2000", "20", "--wait", "--sync",
               "--interval=0"], env)
    for p in (a, b):
        read_until(p, "ready")
    for p in (a, b):
        p.stdin.write("go\n")
        p.stdin.flush()
    out = {"a": finish(a), "b": finish(b)}
    synced = [k for k, lines in out.items() if any(x.startswith("synced") for x in lines)]
    conflicted = [k for k, lines in out.items() if any(x.startswith("conflict") for x in lines)]
    assert len(synced) == 1 and len(conflicted) == 1, out
    loser = conflicted[0]
    assert any(x.startswith("close-error") for x in out[loser]), out[loser]  # not silent
    winner_first = 1000 if synced[0] == "a" else 2000
    ids = [r[0] for r in litestream_rows(s3_url, seaweed, tmp_path)]
    assert ids == [1, 2, 3] + list(range(winner_first, winner_first + 20))
    # The loser's transactions are still in its buffer: export them.
    export = tmp_path / "loser.db"
    res = subprocess.run([sys.executable, "-m", "litevfs", "unsynced", "export",
                          str(tmp_path / f"{loser}.wbuf"), "-o", str(export)],
                         env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    loser_first = 3000 - winner_first
    con = sqlite3.connect(export)
    assert [r[0] for r in con.execute("SELECT id FROM t ORDER BY id")] == [1, 2, 3] + list(
        range(loser_first, loser_first + 20))
    con.close()


def test_litevfs_writes_read_by_litestream_restore_and_vfs(seaweed, s3_url, tmp_path, core):
    con = litevfs.connect(s3_url, write=True, impl=core, sync_interval=0,
                          buffer_path=str(tmp_path / "w.wbuf"))
    con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    for batch in range(4):
        with con:
            con.executemany("INSERT INTO t(v) VALUES (?)",
                            [(f"{batch}-{i}-" + "y" * 400,) for i in range(250)])
        litevfs.sync(con)
    con.execute("DELETE FROM t WHERE id % 3 = 0")
    con.execute("VACUUM")
    expected = con.execute("SELECT id, v FROM t ORDER BY id").fetchall()
    con.close()
    assert litestream_rows(s3_url, seaweed, tmp_path, sql="SELECT id, v FROM t ORDER BY id") \
        == expected
    assert litestream_vfs_rows(s3_url, seaweed, "SELECT count(*), sum(id) FROM t") == [
        (len(expected), sum(r[0] for r in expected))]


def test_takeover_of_a_litestream_replica(seaweed, s3_bucket, s3_url, tmp_path,
                                          litestream_factory, core):
    db = tmp_path / "primary.db"
    src = sqlite3.connect(db, isolation_level=None)
    src.execute("PRAGMA journal_mode=WAL")
    src.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    ls = litestream_factory(db, S3Replica(seaweed, s3_bucket, "db"))
    before = ls.local_txid()
    src.executemany("INSERT INTO t(id, v) VALUES (?, ?)", [(i, "ls") for i in range(1, 201)])
    ls.wait_caught_up(before)
    src.close()
    ls.stop()
    con = litevfs.connect(s3_url, write=True, impl=core, sync_interval=0,
                          buffer_path=str(tmp_path / "w.wbuf"))
    assert con.execute("SELECT count(*) FROM t").fetchone() == (200,)
    con.executemany("INSERT INTO t(id, v) VALUES (?, ?)", [(i, "lv") for i in range(201, 301)])
    con.execute("UPDATE t SET v = 'lv2' WHERE id <= 10")
    con.close()
    rows = litestream_rows(s3_url, seaweed, tmp_path, sql="SELECT id, v FROM t ORDER BY id")
    assert [r[0] for r in rows] == list(range(1, 301))
    assert rows[0][1] == "lv2" and rows[150][1] == "ls" and rows[250][1] == "lv"


def test_reader_process_sees_writes_within_two_polls(seaweed, s3_url, tmp_path, core):
    con = litevfs.connect(s3_url, write=True, impl=core, sync_interval="200ms",
                          buffer_path=str(tmp_path / "w.wbuf"))
    con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY)")
    litevfs.sync(con)
    reader = spawn(["reader", s3_url], child_env(seaweed, core))
    try:
        assert read_until(reader, "count").split()[1] == "0"
        lags = []
        for n in range(1, 4):
            con.execute("INSERT INTO t VALUES (?)", (n,))
            t0 = time.monotonic()
            line = read_until(reader, "count", timeout=10)
            assert line.split()[1] == str(n)
            lags.append(float(line.split()[2]) - t0)
        # sync interval (0.2 s) + poll interval (0.2 s) + upload/list: about two polls.
        assert max(lags) < 1.2, lags
    finally:
        reader.stdin.close()
        reader.wait(timeout=20)
        con.close()


def test_writer_compaction_keeps_cold_reads_bounded(seaweed, s3_url, tmp_path, core):
    con = litevfs.connect(s3_url, write=True, impl=core, sync_interval="50ms",
                          compaction_levels="1s,2s", snapshot_interval="3s",
                          l0_retention="1s", snapshot_retention="2s",
                          buffer_path=str(tmp_path / "w.wbuf"))
    con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    deadline = time.monotonic() + 4
    n = 0
    while time.monotonic() < deadline:
        n += 1
        con.execute("INSERT INTO t(v) VALUES (?)", ("z" * 100,))
        time.sleep(0.01)
    txid = litevfs.sync(con)
    time.sleep(2.2)  # one more compaction + retention round
    storage = open_storage(s3_url)
    try:
        levels = storage.list_all()
        plan = calc_restore_plan(levels)
    finally:
        storage.close()
    con.close()
    assert txid > 20  # many L0 files were written (about 80 on an idle machine)...
    assert len(levels[0]) < txid / 2  # ...and retention removed most of them
    assert levels[9] and len(plan) <= 8, [(f.level, f.min_txid, f.max_txid) for f in plan]
    assert litestream_rows(s3_url, seaweed, tmp_path, sql="SELECT count(*) FROM t") == [(n,)]


def test_injected_5xx_and_lost_responses_keep_the_buffer(seaweed, s3_bucket, tmp_path, core,
                                                         monkeypatch):
    from litevfs.write import syncer as syncer
    from tests.rig.seaweed import s3_replica_url

    monkeypatch.setattr(syncer, "UPLOAD_ATTEMPTS", 2)  # the S3 client retries each one too
    from tests.test_storage_s3 import FaultProxy

    proxy = FaultProxy(seaweed.endpoint)
    try:
        url = s3_replica_url(s3_bucket, "db", proxy.endpoint, seaweed.region)
        con = litevfs.connect(url, write=True, impl=core, sync_interval=0,
                              buffer_path=str(tmp_path / "w.wbuf"))
        con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
        assert litevfs.sync(con, timeout=60) == 1
        con.execute("INSERT INTO t(v) VALUES ('one')")
        proxy.add("503", 1000, method="PUT")
        with pytest.raises(litevfs.StorageError):
            litevfs.sync(con, timeout=60)
        status = litevfs.write_status(con)
        assert status["pending_transactions"] == 1 and status["conflict"] is None
        con.execute("INSERT INTO t(v) VALUES ('two')")  # commits go on meanwhile
        proxy.rules.clear()
        proxy.add("lose_response", 1, method="PUT")  # the upload lands, its answer is lost
        assert litevfs.sync(con, timeout=60) == 2
        con.execute("INSERT INTO t(v) VALUES ('three')")
        proxy.add("503", 2, method="PUT")  # retried inside one sync
        assert litevfs.sync(con, timeout=60) == 3
        assert litevfs.write_status(con)["pending_transactions"] == 0
        con.close()
    finally:
        proxy.close()
    plain = s3_replica_url(s3_bucket, "db", seaweed.endpoint, seaweed.region)
    assert litestream_rows(plain, seaweed, tmp_path, sql="SELECT v FROM t ORDER BY id") == [
        ("one",), ("two",), ("three",)]
