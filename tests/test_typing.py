"""``litevfs.connect`` is typed for type checkers: it returns ``apsw.Connection`` and its
options are a TypedDict (``litevfs.ConnectOptions``), so mypy catches a misspelt or
mistyped option; ``dbapi2.connect`` takes the same options. The TypedDict and the
option table (``config.FIELDS``) have the same names."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from litevfs.config import FIELDS_BY_NAME
from litevfs.options import ConnectOptions

SNIPPET = '''
import apsw
import litevfs
from litevfs import dbapi2

con: apsw.Connection = litevfs.connect("s3://b/db", write=True, poll_interval="500ms",
                                       access_key_id="k", secret_access_key="s")
litevfs.connect(config="litestream.yml", db="/data/app.db")
d: dbapi2.Connection = dbapi2.connect("s3://b/db", isolation_level=None, cache_size=1 << 20)
litevfs.connect("s3://b/db", poll_intervl="1s")  # line 10: a typo
litevfs.connect("s3://b/db", write=[1])  # line 11: a wrong type
x: int = litevfs.connect("s3://b/db")  # line 12: not an int
dbapi2.connect("s3://b/db", hydraton=True)  # line 13: a typo
'''


def test_options_match_the_option_table() -> None:
    assert set(ConnectOptions.__annotations__) == set(FIELDS_BY_NAME)


@pytest.mark.slow
def test_mypy_catches_option_mistakes(tmp_path: Path) -> None:
    pytest.importorskip("mypy")
    snippet = tmp_path / "use_litevfs.py"
    snippet.write_text(SNIPPET)
    out = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "cache"),
                          "--no-error-summary", "--follow-imports=silent", str(snippet)],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    lines = [line for line in out.stdout.splitlines() if ": error:" in line]
    flagged = sorted({int(line.split(":")[1]) for line in lines})
    assert flagged == [10, 11, 12, 13], out.stdout
    assert '"poll_intervl"' in out.stdout and '"hydraton"' in out.stdout
