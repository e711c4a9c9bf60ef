"""Finish checks a new user meets first: the version flag, type information shipped,
and the log level taken from LITESTREAM_LOG_LEVEL."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

import litevfs
from tests.vfs_support import FakeLitestream, make_accounts_db, unique_memory_url


def test_version_flag() -> None:
    out = subprocess.run([sys.executable, "-m", "litevfs", "--version"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and litevfs.__version__ in out.stdout


def test_py_typed_is_shipped() -> None:
    assert (Path(litevfs.__file__).parent / "py.typed").exists()


def test_log_level_from_litestream_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = unique_memory_url("loglevel")
    make_accounts_db(tmp_path / "p.db").close()
    FakeLitestream(tmp_path / "p.db", url).sync()
    logger = logging.getLogger("litevfs")
    saved = logger.level
    monkeypatch.setenv("LITESTREAM_LOG_LEVEL", "debug")
    try:
        litevfs.connect(url, poll_interval=0, boot_set="off").close()
        assert logger.level == logging.DEBUG
    finally:
        logger.setLevel(saved)
