"""An unusable ``cache_dir`` (read-only, not a directory) costs nothing measurable at
open, is reported once with the reason, and shows as disabled in ``stats()``.

Root ignores permission bits: as root the read-only directory is one on a read-only
file system (``/proc/sys``, which not even root can create files in)."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest

import litevfs
from litevfs.config import Config
from litevfs.engine import diskcache


def _replica(tmp_path: Path, core) -> str:
    url = f"file://{tmp_path / 'replica'}"
    con = litevfs.connect(url, write=True, impl=core, buffer_path=str(tmp_path / "w.wbuf"))
    con.execute("CREATE TABLE t(x)")
    con.execute("INSERT INTO t VALUES (1), (2)")
    con.close()
    return url


@pytest.fixture
def read_only_dir(tmp_path: Path):
    if os.getuid() != 0:
        path = tmp_path / "ro-cache"
        path.mkdir()
        path.chmod(0o555)
        yield str(path)
        path.chmod(0o755)
        return
    if os.access("/proc/sys", os.W_OK) or not os.path.isdir("/proc/sys"):
        pytest.skip("running as root without a read-only directory to use")
    yield "/proc/sys"


def test_read_only_cache_dir_is_cheap_said_once_and_shown_disabled(
        tmp_path: Path, core, read_only_dir: str, caplog) -> None:
    url = _replica(tmp_path, core)
    diskcache._disabled.pop(read_only_dir, None)
    with caplog.at_level(logging.WARNING, "litevfs"):
        started = time.perf_counter()
        assert diskcache.open_disk_cache(
            Config.resolve({"replica_url": url, "cache_dir": read_only_dir}), url) is None
        assert time.perf_counter() - started < 0.010  # a few stats, not SQLite's retries
        diskcache._disabled.pop(read_only_dir, None)
        started = time.perf_counter()
        con = litevfs.connect(url, impl=core, cache_dir=read_only_dir, boot_set="off")
        opened = time.perf_counter() - started
        try:
            assert con.execute("SELECT count(*) FROM t").fetchone()[0] == 2
            disk = litevfs.stats(con)["disk_cache"]
        finally:
            con.close()
        litevfs.connect(url, impl=core, cache_dir=read_only_dir, boot_set="off").close()
    assert opened < 0.5  # SQLite's retries made it ~1.4 s
    warnings = [r.getMessage() for r in caplog.records if "page cache" in r.getMessage()]
    assert len(warnings) == 2, warnings  # once per disabling above, not once per open
    assert "read-only" in warnings[-1] and read_only_dir in warnings[-1]
    assert disk == {"enabled": False, "dir": read_only_dir, "reason": disk["reason"]}
    assert "read-only" in disk["reason"]


def test_cache_dir_that_is_a_file_is_disabled_at_once(tmp_path: Path, core, caplog) -> None:
    replica = tmp_path / "replica"
    con = litevfs.connect(f"file://{replica}", write=True, impl=core,
                          buffer_path=str(tmp_path / "w.wbuf"))
    con.execute("CREATE TABLE t(x)")
    con.close()
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    diskcache._disabled.pop(str(blocker), None)
    con = litevfs.connect(f"file://{replica}", impl=core, cache_dir=str(blocker))
    try:
        disk = litevfs.stats(con)["disk_cache"]
        assert disk["enabled"] is False and disk["dir"] == str(blocker)
        assert "not a directory" in disk["reason"] or "cannot be created" in disk["reason"]
    finally:
        con.close()


def test_usable_cache_reports_enabled(tmp_path: Path, core) -> None:
    replica = tmp_path / "replica"
    con = litevfs.connect(f"file://{replica}", write=True, impl=core,
                          buffer_path=str(tmp_path / "w.wbuf"))
    con.execute("CREATE TABLE t(x)")
    con.close()
    con = litevfs.connect(f"file://{replica}", impl=core, cache_dir=str(tmp_path / "cache"))
    try:
        con.execute("SELECT * FROM t").fetchall()
        disk = litevfs.stats(con)["disk_cache"]
        assert disk["enabled"] is True and disk["reason"] is None
    finally:
        con.close()
