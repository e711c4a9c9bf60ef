"""`litevfs restore` equals the real `litestream restore` byte for byte, on replicas
written by the real `litestream replicate` (S3 on SeaweedFS and file://), at several
page sizes, latest and at earlier TXIDs, block and legacy-frame encodings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from litevfs.engine.restore import restore
from litevfs.storage import open_storage
from tests.rig import dbgen
from tests.rig.litestream import restore as litestream_restore

pytestmark = [pytest.mark.litestream, pytest.mark.slow]

CASES = [
    pytest.param("s3", 1024, None, id="s3-1024"),
    pytest.param("s3", 4096, None, id="s3-4096"),
    pytest.param("s3", 65536, None, id="s3-65536"),
    pytest.param("file", 4096, None, id="file-4096"),
    pytest.param("s3", 4096, "0.5.15", id="s3-4096-legacy-frames"),
]


def _both(scn, tmp_path: Path, txid: int | None, core) -> tuple[bytes, bytes]:
    theirs = litestream_restore(scn.url, tmp_path / f"ls-{txid}.db", txid=txid, env=scn.env)
    ours = tmp_path / f"lv-{txid}-{core.IMPLEMENTATION_NAME}.db"
    storage = open_storage(scn.url)
    try:
        result = restore(storage, ours, txid=txid, impl=core)
    finally:
        storage.close()
    if txid is not None:
        assert result.txid == txid
    return theirs.read_bytes(), ours.read_bytes()


@pytest.mark.parametrize("kind,page_size,version", CASES)
def test_restore_byte_identical(scenario_factory, tmp_path, core, kind, page_size, version):
    scn = scenario_factory(page_size=page_size, kind=kind, version=version)
    targets = [None, scn.marks["initial"], scn.marks["overflow"], scn.marks["deleted"],
               scn.marks["vacuumed"]]
    for txid in targets:
        theirs, ours = _both(scn, tmp_path, txid, core)
        assert len(ours) == len(theirs), f"size differs at TXID {txid}"
        assert ours == theirs, f"content differs at TXID {txid}"
        db = tmp_path / f"lv-{txid}-{core.IMPLEMENTATION_NAME}.db"
        assert dbgen.integrity_ok(db)
        expected = scn.final_state if txid is None else scn.state_at(txid)
        assert dbgen.state(db) == expected


def test_restore_cli(scenario_factory, tmp_path):
    scn = scenario_factory(page_size=4096, kind="s3")
    env = {**os.environ, **scn.env}
    out = tmp_path / "cli.db"
    proc = subprocess.run(
        [sys.executable, "-m", "litevfs", "restore", scn.url, "-o", str(out),
         "--txid", f"{scn.marks['overflow']:016x}"],
        capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert dbgen.state(out) == scn.state_at(scn.marks["overflow"])
    # Decimal TXIDs are accepted too, and an existing output is refused with one line.
    proc = subprocess.run(
        [sys.executable, "-m", "litevfs", "restore", scn.url, "-o", str(out),
         "--txid", str(scn.marks["overflow"])],
        capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and "exists" in proc.stderr

    proc = subprocess.run([sys.executable, "-m", "litevfs", "ls", scn.url],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "# level 9:" in proc.stdout and "# level 0:" in proc.stdout


def test_restore_cli_errors(seaweed, tmp_path):
    env = {**os.environ, **seaweed.env()}
    url = f"s3://no-such-bucket-x/db?endpoint={seaweed.endpoint}&region=us-east-1&forcePathStyle=true"
    proc = subprocess.run([sys.executable, "-m", "litevfs", "restore", url, "-o", str(tmp_path / "x.db")],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 1
    assert "no-such-bucket-x" in proc.stderr and proc.stderr.count("\n") == 1
    assert not (tmp_path / "x.db").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = subprocess.run([sys.executable, "-m", "litevfs", "restore", f"file://{empty}", "-o",
                           str(tmp_path / "y.db")], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 1 and "has no LTX files" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "litevfs", "restore", f"file://{empty}", "-o",
                           str(tmp_path / "y.db"), "--txid", "zz"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 2 and "TXID" in proc.stderr
