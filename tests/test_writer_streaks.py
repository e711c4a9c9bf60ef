"""The machine's write lock between processes (``write/shared.py``): a process that keeps
committing while another waits keeps the lock for a streak (a waiter does not take it
between two commits of the streak), hands it over once it pauses, and yields after
``STREAK_MAX`` commits. Two real processes: POSIX locks of one process never conflict."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from litevfs.write import shared
from litevfs.write.shared import STREAK_MAX, LockKeeper, SharedFiles, WriterGate

GAP_S = 0.001  # between two commits of a streak: a waiter polling every 2 ms sees it free

WAITER = """
import sys, time
from litevfs.write.shared import SharedFiles, WriterGate
files = SharedFiles.open(sys.argv[1])
files.release_init()
gate = WriterGate(files)
print("waiting", flush=True)
ok = gate.wait(20.0)
print("got" if ok else "timeout", time.monotonic(), flush=True)
gate.release()
files.close()
"""


def _until(cond, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.001)
    return False


def _waiter(path: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", WAITER, path], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "waiting"
    return proc


def _gate(tmp_path: Path) -> tuple[str, SharedFiles, WriterGate]:
    path = str(tmp_path / "buf")
    files = SharedFiles.open(path)
    files.release_init()
    return path, files, WriterGate(files)


def test_a_streak_keeps_the_lock_then_hands_it_over_when_idle(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shared, "STREAK_IDLE_S", 0.05)  # a loaded machine's hiccups < this
    path, files, gate = _gate(tmp_path)
    keeper = LockKeeper(gate)
    keeper.start()
    proc = None
    try:
        assert gate.try_acquire()  # a write transaction in progress
        proc = _waiter(path)
        assert _until(files.waiters_hinted)
        gate.release()  # its commit: others wait, so a streak starts
        for _ in range(STREAK_MAX // 2):  # more commits, each after a short gap
            time.sleep(GAP_S)
            assert gate.try_acquire()
            gate.release()
        last = time.monotonic()
        assert proc.poll() is None  # the waiter did not get the lock mid-streak
        assert proc.stdout is not None
        word, at = proc.stdout.readline().split()
        assert word == "got" and float(at) > last  # only once the streak paused
        assert float(at) - last < 1.0
        assert proc.wait(10) == 0
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        keeper.stop()
        files.close()


def test_a_streak_ends_after_streak_max_commits(tmp_path: Path) -> None:
    path, files, gate = _gate(tmp_path)
    proc = None
    try:
        assert gate.try_acquire()
        proc = _waiter(path)
        assert _until(files.waiters_hinted)
        gate.release()
        commits = 1
        while True:
            time.sleep(GAP_S)
            if not gate.try_acquire():  # polite: refused once the streak is over
                break
            gate.release()
            commits += 1
            assert commits <= STREAK_MAX
        assert commits == STREAK_MAX
        assert proc.stdout is not None and proc.stdout.readline().startswith("got")
        assert proc.wait(10) == 0
        assert gate.wait(10.0)  # this process's turn again; a new streak may start
        assert gate.streak == 0
        gate.release()
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        files.close()


WAITER_MEANWHILE = """
import sys, time
from litevfs.write.shared import SharedFiles, WriterGate
files = SharedFiles.open(sys.argv[1])
files.release_init()
gate = WriterGate(files)
calls = []
print("waiting", flush=True)
ok = gate.wait(20.0, meanwhile=lambda: calls.append(time.monotonic()))
print("got" if ok else "timeout", len(calls), flush=True)
gate.release()
files.close()
"""


def test_a_waiter_works_meanwhile_between_looks_at_the_lock(tmp_path: Path) -> None:
    """``meanwhile`` (a writer catches up with the holder's commits) runs after each look
    that found the lock taken, so the next holder reads only the last few commits when it
    gets the lock; never once the lock is taken."""
    path, files, gate = _gate(tmp_path)
    proc = None
    try:
        assert gate.try_acquire(polite=False)
        proc = subprocess.Popen([sys.executable, "-c", WAITER_MEANWHILE, path],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "waiting"
        time.sleep(0.05)  # ~25 looks at 2 ms
        gate.release()  # kept for a streak (someone waits) ...
        assert files.drop_kept()  # ... and handed over, as the LockKeeper does
        files.ring_if_waited()
        word, calls = proc.stdout.readline().split()
        assert word == "got" and int(calls) >= 5
        assert proc.wait(10) == 0
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        files.close()


def test_a_writer_waiting_for_the_lock_catches_up_meanwhile(tmp_path: Path, core) -> None:
    """What a connection's busy wait runs between looks at the lock: the index takes in
    another process's commits, without ever waiting for this process's own lock."""
    import threading

    import litevfs
    from litevfs.vfs.registry import file_of

    url = (tmp_path / "replica").as_uri()
    buf = str(tmp_path / "w.wbuf")
    con = litevfs.connect(url, write=True, impl=core, buffer_path=buf, sync_interval=0,
                          poll_interval=0)
    try:
        con.execute("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v TEXT)")
        writer = file_of(con).writer
        seq = writer.buffer.last_seq
        child = subprocess.run([sys.executable, str(Path(__file__).with_name("write_child.py")),
                                "writer", url, buf, "1", "3", "--interval=0"],
                               capture_output=True, text=True, timeout=120)
        assert child.stdout.count("committed") == 3, child.stderr[-2000:]
        assert not writer.buffer.fresh()
        held, free = threading.Event(), threading.Event()

        def hold() -> None:
            with writer.lock:
                held.set()
                free.wait(10)

        holder = threading.Thread(target=hold)
        holder.start()
        assert held.wait(10)
        started = time.monotonic()
        writer.catch_up_while_waiting()  # busy here: skipped, at once
        assert time.monotonic() - started < 0.5 and writer.buffer.last_seq == seq
        free.set()
        holder.join()
        writer.catch_up_while_waiting()
        assert writer.buffer.fresh() and writer.buffer.last_seq >= seq + 3
        assert con.execute("SELECT count(*) FROM t").fetchone() == (3,)
    finally:
        con.close()
