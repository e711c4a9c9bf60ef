"""Replica scenarios written by the real ``litestream replicate``.

:func:`build_scenario` produces, for one page size, a replica holding every shape a
reader must handle, and remembers what the database contained at each TXID:

* TXID 1: the first L0 file (a full image of the database, taken at start-up);
* several single-commit L0 files (grow, update, transfers);
* an L1 compaction covering them (L1 interval 1 s);
* a commit adding blobs of 2-4 pages (overflow chains);
* a level-9 snapshot covering that (snapshot interval 2 s);
* then, after a restart of litestream with compaction and snapshots pushed 1 h out,
  a tail of L0 files that no L1 file or snapshot covers: an update, a DELETE of 90 %
  of the rows, a VACUUM (the database shrinks: later files have a smaller Commit),
  and two more small commits.

Every step is one SQLite commit, and the rig waits until litestream has turned it into
its own TXID and uploaded it, so ``states`` maps each TXID to the content exactly.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.rig import dbgen
from tests.rig.litestream import (
    FileReplica, Litestream, LtxName, Replica, S3Replica, list_levels,
)
from tests.rig.seaweed import SeaweedServer


@dataclass
class Scenario:
    url: str                       # litestream replica URL (s3://...?endpoint=... or file://...)
    replica: Replica               # lister for the replica (list_level(level))
    page_size: int
    db_path: Path                  # the primary database, in its final state
    states: list[tuple[int, dbgen.DbState]]  # (TXID, content) after each step, ascending
    steps: list[tuple[int, str]]   # (TXID, what the step did)
    levels: dict[int, list[LtxName]]  # every LTX file per level at the end
    env: dict[str, str]            # environment for child processes reading the replica
    seconds: float = 0.0
    litestream_version: str | None = None
    marks: dict[str, int] = field(default_factory=dict)  # named TXIDs, see build_scenario
    # TXID -> UTC time after it was uploaded and before the next commit: a target for
    # ``restore(timestamp=...)``. Litestream refuses timestamps after the newest file's
    # CreatedAt ("timestamp does not exist"), and S3 LastModified has 1 s resolution,
    # so only times well before the end (e.g. marks "initial", "l1") are safe on S3.
    times: dict[int, dt.datetime] = field(default_factory=dict)

    @property
    def final_txid(self) -> int:
        return self.states[-1][0]

    @property
    def final_state(self) -> dbgen.DbState:
        return self.states[-1][1]

    def state_at(self, txid: int) -> dbgen.DbState:
        """Content as of ``txid`` (the newest recorded step at or before it)."""
        best = None
        for t, st in self.states:
            if t <= txid:
                best = st
        if best is None:
            raise KeyError(f"no state at or before TXID {txid}")
        return best


class _Stepper:
    def __init__(self, ls: Litestream, db: Path, states: list, steps: list, times: dict,
                 settle: float) -> None:
        self.ls, self.db, self.states, self.steps, self.settle = ls, db, states, steps, settle
        self.times = times

    def __call__(self, what: str, fn: Callable[[], object] | None = None) -> int:
        before = self.ls.local_txid()
        if fn is not None:
            fn()
        txid = self.ls.wait_caught_up(before if fn is not None else None, settle=self.settle)
        st = dbgen.state(self.db)
        if self.states and self.states[-1][0] == txid:
            self.states[-1] = (txid, st)
        else:
            self.states.append((txid, st))
        self.steps.append((txid, what))
        self.times[txid] = dt.datetime.now(dt.timezone.utc)
        time.sleep(0.01)  # the next commit is strictly later
        return txid


def build_scenario(
    target: SeaweedServer | str | os.PathLike[str],
    page_size: int,
    workdir: str | os.PathLike[str],
    *,
    bucket: str | None = None,
    path: str = "db",
    version: str | None = None,
    seed: int = 0,
) -> Scenario:
    """Build the replica described in the module docstring; takes a few seconds.

    ``target`` is a running SeaweedServer (a fresh bucket is made unless ``bucket``
    is given; the replica lives under ``path``) or a directory for a ``file://``
    replica. ``version`` picks another litestream (e.g. "0.5.15", legacy LZ4 frames).

    ``marks`` names some TXIDs: ``initial``, ``l1`` (covered by an L1 file),
    ``overflow``, ``snapshot`` (covered by a level-9 snapshot), ``deleted``,
    ``vacuumed``, ``final``.
    """
    t0 = time.monotonic()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if isinstance(target, SeaweedServer):
        bucket = bucket or target.warm_bucket()
        replica: Replica = S3Replica(target, bucket, path)
    else:
        rdir = Path(target)
        if rdir.exists():
            shutil.rmtree(rdir)
        rdir.mkdir(parents=True)
        replica = FileReplica(rdir)

    db = workdir / f"scenario-{page_size}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    shutil.rmtree(workdir / f".{db.name}-litestream", ignore_errors=True)
    dbgen.create_db(db, page_size, rows=150, blobs=2, seed=seed)

    states: list[tuple[int, dbgen.DbState]] = []
    steps: list[tuple[int, str]] = []
    marks: dict[str, int] = {}
    times: dict[int, dt.datetime] = {}

    # Phase 1: fast L1 compaction and snapshots.
    ls = Litestream(db, replica, workdir=workdir / "ls1", version=version,
                    l1_interval="1s", snapshot_interval="2s")
    ls.start()
    try:
        step = _Stepper(ls, db, states, steps, times, settle=0.12)
        ls.wait_for_txid(1)
        marks["initial"] = step("initial image")
        step("grow", lambda: dbgen.grow(db, 60, seed=seed + 1))
        step("update", lambda: dbgen.update(db, 25, seed=seed + 2))
        marks["l1"] = step("transfer", lambda: dbgen.transfer(db, 15, seed=seed + 3))
        ls.wait_for_txid(marks["l1"], level=1)
        marks["overflow"] = step("overflow blobs",
                                 lambda: dbgen.grow(db, 10, blobs=3, seed=seed + 4))
        marks["snapshot"] = step("transfer", lambda: dbgen.transfer(db, 15, seed=seed + 5))
        ls.wait_for_txid(marks["snapshot"], level=9)
    finally:
        ls.stop()

    # Phase 2: compaction/snapshots pushed out, so this tail stays in L0 only.
    ls = Litestream(db, replica, workdir=workdir / "ls2", version=version,
                    l1_interval="1h", snapshot_interval="1h")
    ls.start()
    try:
        step = _Stepper(ls, db, states, steps, times, settle=0.12)
        step("update", lambda: dbgen.update(db, 25, seed=seed + 6))
        marks["deleted"] = step("delete 90%", lambda: dbgen.shrink(db, 0.1, vacuum=False))
        marks["vacuumed"] = step("vacuum", lambda: dbgen.vacuum(db))
        step("grow", lambda: dbgen.grow(db, 5, seed=seed + 7))
        marks["final"] = step("transfer", lambda: dbgen.transfer(db, 5, seed=seed + 8))
    finally:
        ls.stop()

    levels = list_levels(replica)
    return Scenario(
        url=replica.url, replica=replica, page_size=page_size, db_path=db,
        states=states, steps=steps, levels=levels, env=replica.env(),
        seconds=time.monotonic() - t0, litestream_version=version, marks=marks,
        times=times,
    )
