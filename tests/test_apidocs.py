"""The API reference builds from the docstrings (scripts/apidocs.py, pdoc) without a
warning, and documents the public entry points."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ENTRY_POINTS = ("connect", "register", "sync", "write_status", "export_unsynced",
                "discard_unsynced", "hydration_status", "stats", "restore", "open_storage",
                "LiteVFSError", "StorageError", "ConflictError", "ConfigError")


def test_api_reference_builds(tmp_path: Path):
    pytest.importorskip("pdoc", reason="pdoc is in the test extra: pip install '.[test]'")
    out = tmp_path / "api"
    # A child process: the build binds litevfs' lazy exports, which tests must not see.
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "apidocs.py"), "-o", str(out),
                           "--strict"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "warning" not in proc.stderr.lower(), proc.stderr
    page = (out / "litevfs.html").read_text()
    for name in ENTRY_POINTS:
        assert f'id="{name}"' in page, f"{name} is missing from the API reference"
    # Each entry point has a docstring, not just a signature.
    for name in ("connect", "sync", "hydration_status", "restore", "open_storage"):
        own = page.split(f'id="{name}"', 1)[1].split('class="def"')[1]  # up to the next one
        assert 'class="docstring"' in own, f"{name} has no docstring"
    for sub in ("errors", "storage", "ltx", "config"):
        assert (out / "litevfs" / f"{sub}.html").exists(), sub
