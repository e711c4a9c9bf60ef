"""Compaction and retention follow the storage's clock, not the writer's: with the
local clock 14 minutes fast (inside S3's signing window) retention must not delete L0
files younger than ``l0_retention`` nor compact every level on every tick; 14 minutes
slow, compaction must not stall. Against SeaweedFS, with ``time.time`` shifted."""

from __future__ import annotations

import time

import pytest

from litevfs.engine.plan import calc_restore_plan
from litevfs.ltx.encoder import encode_file
from litevfs.storage import open_storage
from litevfs.storage.base import parse_http_date
from litevfs.write.compactor import CompactionPolicy, compact_once

pytestmark = [pytest.mark.s3]
PS = 4096
SKEW = 14 * 60.0


def _l0(storage, txid: int) -> None:
    storage.write_ltx(0, txid, txid, encode_file(
        [(1, bytes([txid]) * PS)], page_size=PS, commit=1, min_txid=txid, max_txid=txid))


def _shift(monkeypatch, skew: float) -> None:
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + skew)


def test_http_dates():
    assert parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT") == 0
    assert parse_http_date("Fri, 04 Dec 2026 22:03:21 GMT") == 1796421801
    assert parse_http_date("Sun, 29 Feb 2032 12:00:00 GMT") == 1961668800
    assert parse_http_date("not a date") is None
    assert parse_http_date("Fri, 04 Dec 2026 22:03:21 PST") is None


def test_a_fast_clock_keeps_l0_retention_and_compacts_on_schedule(s3_url, monkeypatch, core):
    storage = open_storage(s3_url)
    try:
        for txid in (1, 2, 3):
            _l0(storage, txid)
        _shift(monkeypatch, SKEW)
        policy = CompactionPolicy((60.0,), 0.0, 300.0, 86400.0)
        compact_once(storage, policy, impl=core)  # first L1: always due
        _l0(storage, 4)
        compact_once(storage, policy, impl=core)
        levels = storage.list_all()
        # Without the server's clock: a second L1 (every tick is "due") and L0 1..3
        # deleted although they are seconds old.
        assert [(f.min_txid, f.max_txid) for f in levels[1]] == [(1, 3)]
        assert [f.max_txid for f in levels[0]] == [1, 2, 3, 4]
        assert abs(storage.server_time() - (time.time() - SKEW)) < 3
    finally:
        storage.close()


def test_a_slow_clock_does_not_stall_compaction_or_retention(s3_url, monkeypatch, core):
    storage = open_storage(s3_url)
    try:
        for txid in (1, 2):
            _l0(storage, txid)
        _shift(monkeypatch, -SKEW)
        policy = CompactionPolicy((1.0,), 0.0, 1.0, 86400.0)
        compact_once(storage, policy, impl=core)
        _l0(storage, 3)
        time.sleep(2.2)  # past the next 1 s boundary and the 1 s retention, on S3's clock
        compact_once(storage, policy, impl=core)
        compact_once(storage, policy, impl=core)  # retention after the second L1
        levels = storage.list_all()
        # Without the server's clock the boundary stays 14 minutes behind: no new L1 and
        # no L0 ever old enough to delete.
        assert [(f.min_txid, f.max_txid) for f in levels[1]] == [(1, 2), (3, 3)]
        assert [f.max_txid for f in levels[0]] == [3]  # the newest L0 always stays
        assert [f.max_txid for f in calc_restore_plan(levels)][-1] == 3
    finally:
        storage.close()
