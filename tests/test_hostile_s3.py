"""Hostile or corrupt LTX headers against SeaweedFS: the restore applies the reader's
bounds (no 16 TiB sparse file from a commit of 2^32-1) and every header error names
the object it comes from."""

from __future__ import annotations

import struct
import subprocess
import sys

import pytest

import litevfs
from litevfs.errors import LTXFormatError
from litevfs.ltx.encoder import encode_file
from litevfs.storage import open_storage
from tests.test_write_s3 import child_env

pytestmark = [pytest.mark.s3]
PS = 4096


def test_restore_refuses_an_impossible_commit(seaweed, s3_url, tmp_path, core):
    storage = open_storage(s3_url)
    try:
        storage.write_ltx(0, 1, 1, encode_file([(1, b"\1" * PS)], page_size=PS, commit=1,
                                               min_txid=1, max_txid=1))
        storage.write_ltx(0, 2, 2, encode_file([(2, b"\2" * PS)], page_size=PS,
                                               commit=2**32 - 1, min_txid=2, max_txid=2))
    finally:
        storage.close()
    out_path = tmp_path / "huge.db"
    res = subprocess.run([sys.executable, "-m", "litevfs", "restore", s3_url, "-o",
                          str(out_path)], env=child_env(seaweed, core), capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 1, res.stderr
    assert "impossible" in res.stderr and "0000000000000002" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert not out_path.exists() and not list(tmp_path.glob(".litevfs-restore-*"))
    with pytest.raises(LTXFormatError, match="impossible"):
        litevfs.connect(s3_url, impl=core)


def test_an_invalid_page_size_names_the_file(s3_url, core):
    data = bytearray(encode_file([(1, b"\1" * PS)], page_size=PS, commit=1, min_txid=1,
                                 max_txid=1))
    struct.pack_into(">I", data, 8, 1 << 30)  # page size 1 GiB
    storage = open_storage(s3_url)
    try:
        storage.write_ltx(0, 1, 1, bytes(data))
    finally:
        storage.close()
    with pytest.raises(LTXFormatError,
                       match=r"0000000000000001-0000000000000001\.ltx.*invalid page size"):
        litevfs.connect(s3_url, impl=core)
