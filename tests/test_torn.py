"""Torn objects (uploads cut short) on the memory backend: plans, polls, the writer's
position and the compactor never build on them (both core twins)."""

from __future__ import annotations

import pytest

from litevfs.engine.plan import MIN_LTX_SIZE, calc_restore_plan, is_torn, next_chain
from litevfs.errors import LTXFormatError
from litevfs.ltx.format import FileInfo
from litevfs.storage.memory import MemoryStorage
from litevfs.write.compactor import CompactionPolicy, compact_once
from litevfs.write.syncer import sync_once
from tests.test_fencing import open_writer
from tests.test_syncer import PS, restored
from tests.vfs_support import unique_memory_url


def f(level, lo, hi, size=1000):
    return FileInfo(level, lo, hi, size, 0.0)


def test_plans_skip_a_torn_tip_and_name_one_inside_the_history():
    levels = {0: [f(0, 1, 1), f(0, 2, 2), f(0, 3, 3, size=0)]}
    assert [x.max_txid for x in calc_restore_plan(levels)] == [1, 2]
    assert [x.max_txid for x in next_chain(levels[0], 1)] == [2]
    assert is_torn(f(0, 1, 1, MIN_LTX_SIZE - 1)) and not is_torn(f(0, 1, 1, MIN_LTX_SIZE))
    gap = {0: [f(0, 1, 1), f(0, 2, 2, size=0), f(0, 3, 3)]}
    with pytest.raises(LTXFormatError, match="0000000000000002.*torn"):
        calc_restore_plan(gap)
    # A torn L1 whose range the L0 files still cover costs nothing.
    covered = {0: [f(0, 1, 1), f(0, 2, 2)], 1: [f(1, 1, 2, size=0)]}
    assert [(x.level, x.max_txid) for x in calc_restore_plan(covered)] == [(0, 1), (0, 2)]


def test_the_compactor_replaces_a_torn_output_and_never_counts_it(tmp_path, core):
    url = unique_memory_url("torncompact")
    r = open_writer(url, tmp_path, core, "w")
    try:
        for i in (1, 2, 3):
            r.writer.commit({1: bytes([i]) * PS}, 1)
            assert sync_once(r.writer) == i
        storage = MemoryStorage(url.removeprefix("memory://"))
        storage.write_ltx(1, 1, 3, b"")  # a compaction upload cut short
        now = max(x.created_at for x in storage.list_level(0)) + 10
        # Retention alone (no level due): the torn L1 covers nothing, no L0 file goes.
        compact_once(storage, CompactionPolicy((), 0.0, 0.0, 86400.0), now, core)
        assert [x.max_txid for x in storage.list_level(0)] == [1, 2, 3]
        assert storage.list_level(1) == []  # the torn output is gone
        compact_once(storage, CompactionPolicy((1.0,), 0.0, 0.0, 86400.0), now + 10, core)
        assert [(x.min_txid, x.max_txid) for x in storage.list_level(1)] == [(1, 3)]
        assert not is_torn(storage.list_level(1)[0])
        assert restored(url, tmp_path, core).read_bytes() == b"\3" * PS
    finally:
        from litevfs.session import release_replica

        release_replica(r)


def test_a_torn_tip_is_not_a_rival_and_is_replaced(tmp_path, core):
    url = unique_memory_url("torntip")
    r = open_writer(url, tmp_path, core, "w")
    try:
        r.writer.commit({1: b"\1" * PS}, 1)
        assert sync_once(r.writer) == 1
        MemoryStorage(url.removeprefix("memory://")).write_ltx(0, 2, 2, b"\0" * 40)
        r.writer.commit({1: b"\2" * PS}, 1)
        assert sync_once(r.writer) == 2 and r.writer.conflict is None
        assert restored(url, tmp_path, core).read_bytes() == b"\2" * PS
    finally:
        from litevfs.session import release_replica

        release_replica(r)
