"""scripts/demo.py (what `bash scripts/demo.sh` runs) works end to end, small: real
SeaweedFS and litestream on 127.0.0.1, both readers, every step, one JSON document."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.rig.seaweed import clean_aws_env

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.s3, pytest.mark.litestream, pytest.mark.slow]


def test_demo_runs_and_reports_every_step(tmp_path: Path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo.py"), "--size", "2", "--rounds", "1",
         "--rtt-ms", "0", "--commits", "5", "--json"],
        env=clean_aws_env(), cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    assert {r["label"] for r in doc["cold_start"]} == {"litevfs", "Litestream VFS"}
    assert all(r["cold_start_s"] > 0 and r["requests"] > 0 for r in doc["cold_start"])
    assert doc["write"]["commits"] == 10 and doc["write"]["txid"] >= 3  # litestream's 1, then 2 syncs
    assert set(doc["hydration"]) == {"litevfs", "Litestream VFS"}
    assert doc["restore"]["identical"] and doc["restore"]["txid"] == doc["write"]["txid"]
    summary = proc.stderr[proc.stderr.index("Summary:"):]
    for text in ("cold start -> first row, direct", "hydration -> complete local copy",
                 "restore -> local file", "ratio = litevfs time / Litestream time"):
        assert text in summary, summary
