"""Restore plan selection, as Litestream's CalcRestorePlan does it."""

from __future__ import annotations

import pytest

from litevfs.errors import NonContiguousError, TxNotAvailableError
from litevfs.ltx.format import FileInfo
from litevfs.engine.plan import calc_restore_plan


def f(level, lo, hi, t=0.0):
    return FileInfo(level, lo, hi, 1000, created_at=t)


def names(plan):
    return [(x.level, x.min_txid, x.max_txid) for x in plan]


def test_snapshot_then_levels():
    levels = {9: [f(9, 1, 10), f(9, 1, 20)], 1: [f(1, 1, 15), f(1, 16, 25)],
              0: [f(0, i, i) for i in range(20, 31)]}
    assert names(calc_restore_plan(levels)) == [(9, 1, 20), (1, 16, 25)] + [(0, i, i) for i in range(26, 31)]


def test_prefers_furthest_then_smallest_min_then_higher_level():
    levels = {0: [f(0, 1, 1), f(0, 2, 2), f(0, 3, 3)], 1: [f(1, 1, 3)], 2: [f(2, 1, 3)]}
    assert names(calc_restore_plan(levels)) == [(2, 1, 3)]


def test_target_txid_and_unreachable_target():
    levels = {0: [f(0, 1, 1), f(0, 2, 2), f(0, 3, 3)], 1: [f(1, 1, 3)]}
    assert names(calc_restore_plan(levels, txid=2)) == [(0, 1, 1), (0, 2, 2)]
    with pytest.raises(TxNotAvailableError):
        calc_restore_plan(levels, txid=9)


def test_timestamp_target():
    levels = {0: [f(0, 1, 1, 10.0), f(0, 2, 2, 20.0), f(0, 3, 3, 30.0)]}
    assert names(calc_restore_plan(levels, timestamp=25.0)) == [(0, 1, 1), (0, 2, 2)]
    with pytest.raises(TxNotAvailableError):
        calc_restore_plan(levels, timestamp=5.0)


def test_gap_detected_for_latest_plan():
    levels = {0: [f(0, 1, 1), f(0, 2, 2), f(0, 5, 5)]}
    with pytest.raises(NonContiguousError, match="non-contiguous"):
        calc_restore_plan(levels)
    assert names(calc_restore_plan(levels, txid=2)) == [(0, 1, 1), (0, 2, 2)]


def test_empty_replica():
    with pytest.raises(TxNotAvailableError):
        calc_restore_plan({})


def test_overlapping_compaction_accepted():
    levels = {1: [f(1, 1, 10), f(1, 8, 12)], 0: [f(0, 13, 13)]}
    assert names(calc_restore_plan(levels)) == [(1, 1, 10), (1, 8, 12), (0, 13, 13)]
