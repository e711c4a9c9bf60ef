"""The writer keeps its replica healthy the way ``litestream replicate`` does:
``compact_once()`` merges level L-1 files into level L on Litestream's schedule
(30 s, 5 min, 1 h by default, aligned to the wall clock), writes a level-9 snapshot
every ``snapshot_interval``, and applies retention: an L0 file is deleted only when
level 1 covers it *and* it is older than ``l0_retention`` (readers that indexed it
have time to move on); snapshots older than ``snapshot_retention`` go (the newest
stays), and with them L1..L8 files below the oldest remaining snapshot.

Every output is a conditional create: if someone else wrote the same range first,
theirs stays. Only TXIDs the head object has recorded are compacted (``fence.py``):
an upload whose commit point has not happened yet (or never will: its writer was
fenced out) is never merged into a higher level. :class:`Compactor` is the thin thread around ``compact_once``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType

from .. import _impl
from .._worker import Worker
from ..errors import AlreadyExistsError, LiteVFSError
from .fence import committed_limit
from ..ltx.decoder import decode_file
from ..ltx.encoder import encode_file
from ..ltx.format import ENCODING_FRAME, SNAPSHOT_LEVEL, FileInfo, lock_pgno
from ..engine.plan import calc_restore_plan, torn_files, without_torn
from ..storage.base import StorageClient

log = logging.getLogger("litevfs.compactor")


@dataclass(frozen=True)
class CompactionPolicy:
    level_intervals: tuple[float, ...] = (30.0, 300.0, 3600.0)  # levels 1, 2, 3, ...
    snapshot_interval: float = 24 * 3600.0  # 0: no snapshots
    l0_retention: float = 300.0
    snapshot_retention: float = 24 * 3600.0

    @property
    def tick(self) -> float:
        intervals = [i for i in (*self.level_intervals, self.snapshot_interval) if i > 0]
        return max(0.2, min([*intervals, 15.0]) / 2)


@dataclass(frozen=True)
class Merged:
    pages: dict[int, bytes]
    page_size: int
    commit: int
    timestamp_ms: int


def merge_files(storage: StorageClient, infos: Sequence[FileInfo],
                impl: ModuleType = _impl) -> Merged:
    """Decode (verifying checksums) and merge files in TXID order: newest page wins,
    pages past the last commit are dropped."""
    pages: dict[int, bytes] = {}
    page_size = commit = timestamp = 0
    for info in infos:
        decoded = decode_file(storage.read_range(info, 0, None), verify=True, impl=impl)
        header = decoded.header
        if page_size and header.page_size != page_size:
            raise LiteVFSError(f"{info.name}: page size {header.page_size} != {page_size}")
        page_size, commit, timestamp = header.page_size, header.commit, header.timestamp
        pages.update(decoded.pages)
    return Merged({p: d for p, d in pages.items() if p <= commit}, page_size, commit, timestamp)


def _write(storage: StorageClient, level: int, lo: int, hi: int, merged: Merged,
           impl: ModuleType) -> FileInfo | None:
    lock = lock_pgno(merged.page_size)
    data = encode_file(sorted(p for p in merged.pages.items() if p[0] != lock),
                       page_size=merged.page_size, commit=merged.commit, min_txid=lo,
                       max_txid=hi, timestamp_ms=merged.timestamp_ms,
                       encoding=ENCODING_FRAME, impl=impl)
    try:
        info = storage.write_ltx(level, lo, hi, data, if_absent=True)
    except AlreadyExistsError:
        return None
    log.info("wrote level %d file %s", level, info.name)
    return info


def _due(files: Sequence[FileInfo], interval: float, now: float) -> bool:
    boundary = now - now % interval
    return not files or max(f.created_at for f in files) < boundary


def compact_level(storage: StorageClient, levels: dict[int, list[FileInfo]], level: int,
                  interval: float, now: float, impl: ModuleType = _impl) -> FileInfo | None:
    """Merge the contiguous level-(L-1) files newer than level L into one L file."""
    dst = levels.get(level, [])
    if not _due(dst, interval, now):
        return None
    done = max((f.max_txid for f in dst), default=0)
    inputs: list[FileInfo] = []
    for f in levels.get(level - 1, []):
        if f.min_txid <= done:
            continue
        if inputs and f.min_txid != inputs[-1].max_txid + 1:
            break  # a gap: compact the contiguous part only
        if not inputs and done and f.min_txid != done + 1:
            break
        inputs.append(f)
    if not inputs:
        return None
    merged = merge_files(storage, inputs, impl)
    info = _write(storage, level, inputs[0].min_txid, inputs[-1].max_txid, merged, impl)
    if info is not None:
        levels.setdefault(level, []).append(info)
    return info


def snapshot(storage: StorageClient, levels: dict[int, list[FileInfo]], interval: float,
             now: float, impl: ModuleType = _impl) -> FileInfo | None:
    """A level-9 snapshot of the latest state, when one is due."""
    snaps = levels.get(SNAPSHOT_LEVEL, [])
    plan = calc_restore_plan(levels) if any(levels.values()) else []
    if not plan or not _due(snaps, interval, now):
        return None
    position = plan[-1].max_txid
    if snaps and snaps[-1].max_txid >= position:
        return None
    merged = merge_files(storage, plan, impl)
    info = _write(storage, SNAPSHOT_LEVEL, 1, position, merged, impl)
    if info is not None:
        levels.setdefault(SNAPSHOT_LEVEL, []).append(info)
    return info


def enforce_retention(storage: StorageClient, levels: dict[int, list[FileInfo]],
                      policy: CompactionPolicy, now: float) -> list[FileInfo]:
    """Delete what no restore plan needs any more (see the module docstring)."""
    doomed: list[FileInfo] = []
    l0, l1 = levels.get(0, []), levels.get(1, [])
    if l1:
        covered = max(f.max_txid for f in l1)
        for f in l0[:-1]:  # the newest L0 file always stays
            if f.max_txid > covered or f.created_at > now - policy.l0_retention:
                break  # never create a gap: stop at the first file still needed
            doomed.append(f)
    snaps = levels.get(SNAPSHOT_LEVEL, [])
    old = [f for f in snaps[:-1] if f.created_at < now - policy.snapshot_retention]
    if old:
        doomed += old
        floor = max(f.max_txid for f in old)
        for lvl in range(1, SNAPSHOT_LEVEL):
            files = levels.get(lvl, [])
            doomed += [f for f in files[:-1] if f.max_txid < floor]
    if doomed:
        storage.delete_ltx(doomed)
        gone = {(f.level, f.min_txid, f.max_txid) for f in doomed}
        for lvl, files in levels.items():
            files[:] = [f for f in files if (f.level, f.min_txid, f.max_txid) not in gone]
        log.info("retention deleted %d files", len(doomed))
    return doomed


def compact_once(storage: StorageClient, policy: CompactionPolicy, now: float | None = None,
                 impl: ModuleType = _impl) -> list[FileInfo]:
    """One round: compactions that are due, a snapshot if due, retention. Returns the
    files written."""
    limit = committed_limit(storage)
    listed = storage.list_all()
    # The storage's clock (as of the LIST's answer): created_at times are its
    # LastModified, so schedules and retention hold whatever this machine's clock says.
    now = storage.server_time() if now is None else now
    torn = torn_files(listed)
    if torn:  # uploads cut short: never committed (plan.py); compaction rewrites outputs
        log.warning("deleting %d torn objects (uploads cut short): %s", len(torn),
                    ", ".join(f"level {f.level} {f.name}" for f in torn))
        storage.delete_ltx(torn)
    levels = {lvl: [f for f in files if limit is None or f.max_txid <= limit]
              for lvl, files in without_torn(listed).items()}
    written = []
    for level, interval in enumerate(policy.level_intervals, start=1):
        info = compact_level(storage, levels, level, interval, now, impl)
        if info is not None:
            written.append(info)
    if policy.snapshot_interval > 0:
        info = snapshot(storage, levels, policy.snapshot_interval, now, impl)
        if info is not None:
            written.append(info)
    enforce_retention(storage, levels, policy, now)
    return written


class Compactor(Worker):
    """Runs :func:`compact_once` every ``policy.tick`` seconds until stopped."""

    stop_timeout = 60.0

    def __init__(self, storage: StorageClient, policy: CompactionPolicy,
                 impl: ModuleType = _impl, name: str = "") -> None:
        super().__init__(f"litevfs-compact {name}")
        self.storage = storage
        self.policy = policy
        self.impl = impl
        self.name = name
        self.first_wait = policy.tick

    def start(self) -> None:
        if self.policy.level_intervals or self.policy.snapshot_interval:
            super().start()

    def step(self) -> float:
        compact_once(self.storage, self.policy, impl=self.impl)
        return self.policy.tick

    def on_error(self, exc: Exception) -> float:  # the next tick retries
        log.warning("compaction of %s failed: %s", self.name, exc)
        return self.policy.tick
