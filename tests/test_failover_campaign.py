"""A randomized failover and fault campaign: the default run does 2 rounds (about 10 s
per core twin); ``LITEVFS_CAMPAIGN=<rounds>`` runs a longer one (the README's figures).

Two writer processes share a replica on SeaweedFS, each through the rig's fault proxy
(503s, resets, requests cut mid-body, stalls on its PUTs). Each round one writer works
for a while, then dies (kill -9) or freezes (SIGSTOP) while the other takes over; a
frozen writer is resumed after the other wrote, compacted and let retention run, and
must not acknowledge anything that is not in the history. At the end `litestream
restore` is the judge: every acknowledged tag (a sync returned) must be there once.
The figures go to the reliability report (tests/rig/report.py).
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.rig import report
from tests.rig.faults import FaultProxy, Rule
from tests.rig.litestream import restore as litestream_restore
from tests.rig.seaweed import s3_replica_url
from tests.test_write_s3 import CHILD, child_env

pytestmark = [pytest.mark.s3, pytest.mark.litestream, pytest.mark.slow]
ROUNDS = int(os.environ.get("LITEVFS_CAMPAIGN", "2") or 2)


class Writer:
    """One writer process (an incarnation of slot a or b: the slot's buffer survives
    it); its tags are ``<slot><incarnation>-<n>``."""

    count = 0
    all: list[Writer] = []

    def __init__(self, slot: str, url: str, buffer: Path, env: dict[str, str]) -> None:
        Writer.count += 1
        self.slot = slot
        self.prefix = f"{slot}{Writer.count}"
        self.proc = subprocess.Popen([sys.executable, CHILD, "campaign", url, str(buffer),
                                      self.prefix], env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        self.acked: set[int] = set()  # tag numbers whose sync returned
        self._since = 0  # the last tag number an ack or a drop accounted for
        self.events: list[str] = [f"start {time.time():.3f}"]
        Writer.all.append(self)
        self.ready = threading.Event()
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.strip())
            if line.startswith("ready"):
                self.ready.set()
            elif line.startswith("acked"):
                n = int(line.split()[1])
                self.acked.update(range(self._since + 1, n + 1))
                self._since = n
            elif line.startswith("dropped"):
                self._since = int(line.split()[1])

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)


def test_failover_campaign(seaweed, s3_bucket, tmp_path, core):
    rng = random.Random(ROUNDS)
    proxy = FaultProxy(seaweed.port, seed=ROUNDS).start()
    for fault in ("503", "reset", "cut_request", "stall"):
        proxy.add(Rule(fault, method="PUT", probability=0.03, stall_s=1.5))
    url = s3_replica_url(s3_bucket, "db", proxy.endpoint, seaweed.region)
    env = child_env(seaweed, core, LITEVFS_COMPACTION_LEVELS="1s,3s", LITEVFS_L0_RETENTION="1s",
                    LITEVFS_SNAPSHOT_INTERVAL="0", LITEVFS_READ_TIMEOUT="1s")
    acked: dict[str, set[int]] = {}
    failovers = pauses = 0

    def record(w: Writer) -> None:
        acked.setdefault(w.prefix, set()).update(w.acked)

    try:
        slot = "a"
        for _round in range(ROUNDS):
            other = "b" if slot == "a" else "a"
            w = Writer(slot, url, tmp_path / f"{slot}.wbuf", env)
            assert w.ready.wait(60), w.lines
            time.sleep(rng.uniform(0.8, 2.0))
            if rng.random() < 0.35:  # freeze it, let the other take over, wake it up
                w.proc.send_signal(signal.SIGSTOP)
                w.events.append(f"stop {time.time():.3f}")
                pauses += 1
                t = Writer(other, url, tmp_path / f"{other}.wbuf", env)
                assert t.ready.wait(60), t.lines
                time.sleep(rng.uniform(2.5, 4.0))  # compaction and retention run
                t.kill()
                record(t)
                w.proc.send_signal(signal.SIGCONT)
                w.events.append(f"cont {time.time():.3f}")
                time.sleep(1.5)
            w.kill()
            record(w)
            failovers += 1
            slot = other
    finally:
        proxy.stop()
    plain = s3_replica_url(s3_bucket, "db", seaweed.endpoint, seaweed.region)
    out = litestream_restore(plain, tmp_path / "final.db", env=seaweed.env())
    con = sqlite3.connect(out)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        tags = [r[0] for r in con.execute("SELECT tag FROM c")]
    finally:
        con.close()
    present = {}
    for tag in tags:
        present[tag] = present.get(tag, 0) + 1
    duplicated = sum(1 for n in present.values() if n > 1)
    lost = [f"{s}-{n}" for s, ns in acked.items() for n in ns if f"{s}-{n}" not in present]
    total_acked = sum(len(v) for v in acked.values())
    report.record("campaign_failovers", failovers)
    report.record("campaign_pauses", pauses)
    report.record("campaign_faults_injected", proxy.total_injected)
    report.record("campaign_acked_commits", total_acked)
    report.record("campaign_lost", len(lost))
    report.record("campaign_duplicated", duplicated)
    if lost and os.environ.get("LITEVFS_CAMPAIGN_DEBUG"):
        for w in Writer.all:
            print(w.prefix, w.events, [x for x in w.lines if not x.startswith("acked")][:20],
                  [x for x in w.lines if x.startswith("acked")][-8:])
    print(f"campaign: {failovers} failovers ({pauses} with a paused writer), "
          f"{proxy.total_injected} faults, {total_acked} acknowledged commits, "
          f"{len(lost)} lost, {duplicated} duplicated")
    assert total_acked > 0
    assert not lost, lost[:20]
    assert duplicated == 0
