"""Learned boot set: recorded at one open, replayed at the next (from the disk cache
or, shared, from the small object under <path>/litevfs/), verified before use."""

from __future__ import annotations

from pathlib import Path

import litevfs
from litevfs.engine import bootset as bootset
from litevfs.engine import diskcache as diskcache
from litevfs.ltx.format import FileInfo
from litevfs.session import open_replicas
from litevfs.storage.memory import MemoryStorage
from tests.vfs_support import FakeLitestream, make_accounts_db, unique_memory_url

QUERY = "SELECT name, balance FROM accounts WHERE id = 1234"


def _restart() -> None:
    assert not open_replicas()
    for store in diskcache._stores.values():
        store.close()
    diskcache._stores.clear()


def _setup(tmp_path: Path) -> tuple[str, FakeLitestream]:
    url = unique_memory_url("boot")
    make_accounts_db(tmp_path / "p.db", accounts=3000, blob_rows=30).close()
    ls = FakeLitestream(tmp_path / "p.db", url)
    ls.sync()
    return url, ls


def _run(url: str, core, **kw) -> tuple[list, dict]:
    con = litevfs.connect(url, impl=core, poll_interval=0, **kw)
    try:
        before = litevfs.stats(con)
        rows = con.execute(QUERY).fetchall()
        after = litevfs.stats(con)
        # let plan-aware prefetch (engine/tops.py) finish, so its pages reach the disk
        # cache as a longer-lived process's would
        from litevfs.vfs.registry import file_of

        replica = file_of(con).replica
        assert replica.tops.wait_idle()
        while replica.reader.busy():
            import time

            time.sleep(0.005)
        return rows, {"before": before, "after": after}
    finally:
        con.close()
        _restart()


def test_codec_round_trip() -> None:
    a, b = FileInfo(0, 5, 5, 1000, 12.0), FileInfo(9, 1, 4, 99999, 10.0)
    data = bootset.encode_boot_set(4096, [(b, 1, 100, 50), (a, 7, 300, 40), (b, 2, 150, 60)])
    page_size, per_file = bootset.decode_boot_set(data)
    assert page_size == 4096
    assert per_file == {b: [(1, 100, 50), (2, 150, 60)], a: [(7, 300, 40)]}


def test_local_boot_set_makes_the_first_query_free(tmp_path: Path, core) -> None:
    url, _ = _setup(tmp_path)
    cache_dir = str(tmp_path / "cache")
    _restart()
    rows1, s1 = _run(url, core, cache_dir=cache_dir)
    assert s1["after"]["boot_set"]["recorded"] > 0
    # a second machine-local run: the pages come back before the first query
    rows2, s2 = _run(url, core, cache_dir=cache_dir)
    assert rows2 == rows1
    boot = s2["after"]["boot_set"]
    assert boot["used"] >= boot["recorded"] > 0 or boot["used"] > 0
    assert s2["after"]["gets"] == s2["before"]["gets"]  # the query needed no request
    assert s2["after"]["memory_cache"]["misses"] == s2["before"]["memory_cache"]["misses"]


def test_boot_pages_from_the_index_read_are_on_disk_next_time(tmp_path: Path, core) -> None:
    """Files above verify_max_size are read by range: page 1 and its neighbours arrive
    with the header read of the index fetch. They must reach the disk cache too, or
    the next open's boot replay fetches them again (a round trip at open)."""
    url, _ = _setup(tmp_path)
    cache_dir = str(tmp_path / "cache")
    _restart()
    rows1, _ = _run(url, core, cache_dir=cache_dir, verify_max_size="1KiB")
    rows2, s2 = _run(url, core, cache_dir=cache_dir, verify_max_size="1KiB")
    assert rows2 == rows1
    boot = s2["after"]["boot_set"]
    assert boot["used"] > 0 and boot["requests"] == 0
    # (no GET count check: the background CRC check of these files reads them now)


def test_shared_boot_set_helps_a_new_machine(tmp_path: Path, core) -> None:
    url, _ = _setup(tmp_path)
    _restart()
    # read_ahead=0: no plan-aware prefetch, whose background GETs of pages the query does
    # not need (the tree's upper levels) could land inside the measured window
    rows1, _ = _run(url, core, boot_set="shared", read_ahead=0)  # no cache dir at all
    storage = MemoryStorage(url.removeprefix("memory://"))
    assert storage.get_object(bootset.OBJECT_NAME).startswith(b'{"v":1')
    rows2, s2 = _run(url, core, boot_set="shared", read_ahead=0,
                     cache_dir=str(tmp_path / "new-machine"))
    assert rows2 == rows1
    assert s2["after"]["boot_set"]["used"] > 0
    assert s2["after"]["gets"] == s2["before"]["gets"]
    # With plan-aware prefetch on (the default) the boot set is used the same way; only
    # the request count is left out, for the reason above.
    rows3, s3 = _run(url, core, boot_set="shared", cache_dir=str(tmp_path / "third-machine"))
    assert rows3 == rows1
    assert s3["after"]["boot_set"]["used"] > 0


def test_stale_boot_set_is_ignored(tmp_path: Path, core) -> None:
    """After the primary changed the pages, the boot set's frames are of an older file
    the view no longer uses for them: they must not be served."""
    url, ls = _setup(tmp_path)
    cache_dir = str(tmp_path / "cache")
    _restart()
    _run(url, core, cache_dir=cache_dir)
    con = ls.db()
    con.execute("UPDATE accounts SET balance = balance + 1")
    con.close()
    ls.sync()
    rows, _ = _run(url, core, cache_dir=cache_dir)
    assert rows == [("name-01234", 1001)]


def test_unreadable_boot_set_is_ignored(tmp_path: Path, core) -> None:
    url, _ = _setup(tmp_path)
    MemoryStorage(url.removeprefix("memory://")).put_object(bootset.OBJECT_NAME, b"{garbage")
    _restart()
    rows, _ = _run(url, core, boot_set="shared")
    assert rows == [("name-01234", 1000)]
