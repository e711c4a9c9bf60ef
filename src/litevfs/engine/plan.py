"""Restore plans: which LTX files give a state.

``calc_restore_plan`` follows Litestream's ``CalcRestorePlan``: start from the newest
fitting level-9 snapshot, then repeatedly take, across levels 8..0, the contiguous file
reaching furthest; a "latest" plan that leaves files beyond a gap is an error.
``next_chain`` is the same rule from a position onwards (what a poll applies next).
Pure functions of a listing: no I/O, light imports (the cold open plans early).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..errors import LTXFormatError, NonContiguousError, TxNotAvailableError
from ..ltx.format import HEADER_SIZE, MAX_LEVEL, SNAPSHOT_LEVEL, TRAILER_SIZE, FileInfo

# The smallest well-formed LTX file: header, the end-of-pages marker, an empty index (its
# 0 terminator and 8-byte length) and the trailer. Anything shorter is an upload that was
# cut short (a torn object): it never held a committed transaction.
MIN_LTX_SIZE = HEADER_SIZE + 6 + 1 + 8 + TRAILER_SIZE


def is_torn(info: FileInfo) -> bool:
    """Too small to be an LTX file (sizes come from the listing: no read needed)."""
    return info.size < MIN_LTX_SIZE


def torn_files(levels: Mapping[int, Sequence[FileInfo]]) -> list[FileInfo]:
    return [f for lvl in sorted(levels) for f in levels[lvl] if is_torn(f)]


def without_torn(levels: Mapping[int, Sequence[FileInfo]]) -> dict[int, list[FileInfo]]:
    """The listing minus torn objects: plans, polls, compaction and the writer's position
    never build on them. One at the tip is simply not committed; one inside the history
    leaves a gap, which ``calc_restore_plan`` reports naming it."""
    return {lvl: [f for f in files if not is_torn(f)] for lvl, files in levels.items()}


def _fits(info: FileInfo, txid: int | None, timestamp: float | None) -> bool:
    if txid is not None and info.max_txid > txid:
        return False
    return timestamp is None or info.created_at < timestamp


def calc_restore_plan(
    levels: Mapping[int, Sequence[FileInfo]],
    txid: int | None = None,
    timestamp: float | None = None,
) -> list[FileInfo]:
    """Files to apply, in order, to reach the latest state, TXID ``txid`` or the
    last state before ``timestamp`` (seconds since the epoch). Torn objects (see
    ``is_torn``) are left out; one that leaves the plan short of the history raises
    LTXFormatError naming it."""
    if txid is not None and timestamp is not None:
        raise ValueError("give a target TXID or a timestamp, not both")
    torn = torn_files(levels)
    if not torn:
        return _plan(levels, txid, timestamp)
    try:
        plan = _plan(without_torn(levels), txid, timestamp)
    except (NonContiguousError, TxNotAvailableError) as exc:
        reached = 0
        try:
            reached = _plan(without_torn(levels), None, timestamp, check_gap=False)[-1].max_txid
        except (NonContiguousError, TxNotAvailableError):
            pass
        culprit = next((f for f in torn if f.min_txid <= reached + 1), torn[0])
        raise LTXFormatError(_torn_message(culprit) + f" ({exc})") from None
    return plan


def _torn_message(info: FileInfo) -> str:
    return (f"{info.name} (level {info.level}) holds {info.size} bytes: an upload cut short "
            "(torn object) inside the replica's history; it cannot be read")


def _plan(levels: Mapping[int, Sequence[FileInfo]], txid: int | None,
          timestamp: float | None, check_gap: bool = True) -> list[FileInfo]:
    plan: list[FileInfo] = []
    current = 0
    snapshots = [f for f in levels.get(SNAPSHOT_LEVEL, ()) if _fits(f, txid, timestamp)]
    if snapshots:
        plan.append(snapshots[-1])  # listing order: the last one is the newest
        current = snapshots[-1].max_txid
    others = [f for lvl in range(MAX_LEVEL - 1, -1, -1) for f in levels.get(lvl, ())]
    while txid is None or current < txid:
        best: FileInfo | None = None
        for f in others:
            if f.min_txid > current + 1 or f.max_txid <= current or not _fits(f, txid, timestamp):
                continue
            if best is None or (
                (-f.max_txid, f.min_txid, -f.level, f.created_at)
                < (-best.max_txid, best.min_txid, -best.level, best.created_at)
            ):
                best = f
        if best is None:
            break
        plan.append(best)
        current = best.max_txid
    if not plan:
        raise TxNotAvailableError("transaction not available: the replica has no usable LTX files")
    if txid is not None and current < txid:
        raise TxNotAvailableError(
            f"transaction not available: TXID {txid:016x} is beyond the replica ({current:016x})")
    if txid is None and timestamp is None and check_gap:
        for f in others:
            if f.max_txid > current:
                raise NonContiguousError(
                    f"non-contiguous ltx files: level {f.level} file {f.name} starts after "
                    f"TXID {current:016x} with nothing bridging the gap")
    return plan


def next_chain(files: Sequence[FileInfo], position: int) -> list[FileInfo]:
    """Files extending ``position`` contiguously, furthest-reaching first at each step
    (torn objects are never part of a chain)."""
    files = [f for f in files if not is_torn(f)]
    chain: list[FileInfo] = []
    current = position
    while True:
        best = None
        for f in files:
            if f.min_txid <= current + 1 and f.max_txid > current and (
                best is None or (f.max_txid, -f.min_txid) > (best.max_txid, -best.min_txid)
            ):
                best = f
        if best is None:
            return chain
        chain.append(best)
        current = best.max_txid
