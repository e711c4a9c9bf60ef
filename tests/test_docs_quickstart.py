"""README "Your first replica in two minutes" runs as written.

The blocks are taken from README.md by their marker comments (so the README and this
test cannot drift): the ``first-replica:server`` block starts the S3 server in the
background, then every ``first-replica:run`` block runs in order in one bash shell
(Python blocks through ``python - <<EOF``), as a reader pasting them into a terminal
would. Each ``# → text`` line in a block is output the README promises: it must appear.
Everything listens on and talks to 127.0.0.1 only.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.rig.seaweed import clean_aws_env

ROOT = Path(__file__).resolve().parent.parent
_BLOCK = re.compile(r"<!-- first-replica:(server|run) -->\s*\n```(\w+)\n(.*?)\n```", re.S)
_EXPECT = re.compile(r"#\s*→\s*(.+)$")

pytestmark = [pytest.mark.s3, pytest.mark.litestream]


def readme_blocks() -> list[tuple[str, str, str]]:
    """(kind, language, code) of every marked block, in README order."""
    return _BLOCK.findall((ROOT / "README.md").read_text())


def test_readme_has_the_marked_blocks():
    blocks = readme_blocks()
    kinds = [k for k, _, _ in blocks]
    assert kinds.count("server") == 1 and kinds[0] == "server", kinds
    assert kinds.count("run") >= 4, kinds
    langs = {lang for _, lang, _ in blocks}
    assert langs <= {"sh", "python"}, langs
    text = " ".join(code for _, _, code in blocks)
    for needed in ("scripts/s3-server.py", "examples/litestream.yml", "litestream replicate",
                   "litevfs query", "litevfs.connect(", "litevfs restore"):
        assert needed in text, needed


def _script(blocks: list[tuple[str, str, str]]) -> str:
    parts = ["set -euo pipefail"]
    for _, lang, code in blocks:
        if lang == "python":
            assert "PYEOF" not in code
            parts.append(f"python - <<'PYEOF'\n{code}\nPYEOF")
        else:
            parts.append(code)
    return "\n".join(parts) + "\n"


def _normalise(text: str) -> str:
    return " ".join(text.split())


def test_first_replica_in_two_minutes(tmp_path: Path):
    blocks = readme_blocks()
    server_code = blocks[0][2]
    run_blocks = blocks[1:]
    # The reader works in a clone: scripts/ and examples/ are where the README says.
    for name in ("scripts", "examples"):
        (tmp_path / name).symlink_to(ROOT / name)
    env = clean_aws_env()
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "LITESTREAM_REPLICA_URL"):
        env.pop(name, None)  # only what the README sets may count
    server_log = open(tmp_path / "server.out", "wb")
    server = subprocess.Popen(["bash", "-c", f"exec {server_code.strip()}"], cwd=tmp_path,
                              env=env, stdout=server_log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    steps: subprocess.Popen[str] | None = None
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "s3.env").exists():
            assert server.poll() is None, (tmp_path / "server.out").read_text()
            assert time.monotonic() < deadline, "s3-server.py never became ready"
            time.sleep(0.1)
        started = time.monotonic()
        steps = subprocess.Popen(["bash", "-c", _script(run_blocks)], cwd=tmp_path, env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                 start_new_session=True)
        out, _ = steps.communicate(timeout=120)
        elapsed = time.monotonic() - started
        assert steps.returncode == 0, f"README steps failed ({steps.returncode}):\n{out}"
        expected = [m.group(1).strip() for _, _, code in run_blocks
                    for line in code.splitlines() if (m := _EXPECT.search(line))]
        assert expected, "the README promises no output"
        missing = [e for e in expected if _normalise(e) not in _normalise(out)]
        assert not missing, f"promised output missing: {missing}\n--- output:\n{out}"
        assert elapsed < 60, f"the two-minute tour took {elapsed:.0f} s"
    finally:
        for proc in (steps, server):
            if proc is not None and proc.poll() is None:
                # Its own process group: the background litestream goes with the shell.
                try:
                    os.killpg(proc.pid, signal.SIGTERM if proc is server else signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if steps is not None:
            try:  # a litestream the steps left running
                os.killpg(steps.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        server.wait(timeout=30)
        server_log.close()
    assert server.returncode == 0, (tmp_path / "server.out").read_text()
    assert not (tmp_path / "s3.env").exists(), "the server's env file outlives it"
    assert "S3 server stopped" in (tmp_path / "server.out").read_text()


def test_logging_example_shows_litevfs_logs(tmp_path: Path):
    """The README's logging block, run against a small file:// replica, prints the
    DEBUG line its comment shows."""
    import litevfs

    text = (ROOT / "README.md").read_text()
    m = re.search(r"<!-- logging-example -->\s*\n```python\n(.*?)\n```", text, re.S)
    assert m, "README has no logging example"
    code = m.group(1)
    replica = tmp_path / "replica"
    con = litevfs.connect(f"file://{replica}", write=True, sync_interval="0",
                          buffer_path=str(tmp_path / "write.wbuf"))
    con.execute("CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT)")
    con.execute("INSERT INTO users(name) VALUES ('ada')")
    litevfs.sync(con, timeout=10)
    con.close()
    env = clean_aws_env()
    env["REPLICA_URL"] = f"file://{replica}"
    for name in ("LITESTREAM_LOG_LEVEL", "LITEVFS_LOG_LEVEL"):
        env.pop(name, None)
    proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    promised = re.search(r"# (DEBUG litevfs\.replica: replica) \S+ (now at TXID)", code)
    assert promised, "the example's comment no longer shows the DEBUG line"
    line = re.search(r"DEBUG litevfs\.replica: replica (\S+) now at TXID 0+1 ", proc.stderr)
    assert line and line.group(1) == f"file://{replica}", proc.stderr
