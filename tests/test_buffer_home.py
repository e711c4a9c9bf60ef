"""Where write buffers live: the per-user state directory (0700 directories, 0600 files),
refusing directories others could tamper with, recovery after a crash at the default
path, and adoption of a buffer left at the old ``$TMPDIR`` default."""

from __future__ import annotations

import logging
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import litevfs
from litevfs.write import home
from litevfs.write.buffer import WriteBuffer

CHILD = str(Path(__file__).with_name("write_child.py"))
REPO = Path(__file__).resolve().parents[1]


def _mode(path: str | Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh XDG_STATE_HOME and temp directory (the old default lived under it)."""
    st = tmp_path / "state"
    monkeypatch.setenv("XDG_STATE_HOME", str(st))
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir(mode=0o700)
    monkeypatch.setenv("TMPDIR", str(tmpdir))
    monkeypatch.setattr("tempfile.tempdir", None)  # re-read TMPDIR
    return st


def test_default_path_is_in_the_state_directory(state: Path) -> None:
    url = "file:///srv/replica"
    path = home.default_buffer_path(url)
    assert path.startswith(str(state / "litevfs" / "write-buffers") + os.sep)
    assert path.endswith(".wbuf") and len(os.path.basename(path)) == 24 + 5
    assert home.default_buffer_path(url) == path  # deterministic: found after a crash
    assert not os.path.exists(path)  # a pure function


def test_relative_xdg_state_home_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", "relative/dir")
    assert home.state_home() == os.path.join(os.path.expanduser("~"), ".local", "state")


def test_writer_creates_private_directories_and_files(state: Path, tmp_path: Path, core) -> None:
    os.umask(0o002)  # the group-writable umask of user-private-group systems
    try:
        url = f"file://{tmp_path / 'replica'}"
        con = litevfs.connect(url, write=True, sync_interval=0, impl=core)
        con.execute("CREATE TABLE t(x)")
        path = litevfs.write_status(con)["buffer_path"]
        assert path == home.default_buffer_path(url)
        assert _mode(state / "litevfs") == 0o700
        assert _mode(state / "litevfs" / "write-buffers") == 0o700
        assert _mode(path) == 0o600 and _mode(path + ".lock") == 0o600
        con.close()
    finally:
        os.umask(0o022)
    assert not os.path.exists(path)  # synced on close: removed


def test_group_writable_default_directory_is_refused(state: Path, tmp_path: Path) -> None:
    directory = state / "litevfs" / "write-buffers"
    directory.mkdir(parents=True, mode=0o700)
    directory.chmod(0o770)
    with pytest.raises(litevfs.WriteBufferError) as info:
        litevfs.connect(f"file://{tmp_path / 'replica'}", write=True)
    message = str(info.value)
    assert str(directory) in message and "buffer_path" in message and "\n" not in message
    assert "writable by other users" in message


def test_directory_of_another_user_is_refused(state: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    directory = tmp_path / "theirs"
    directory.mkdir(mode=0o755)
    if os.getuid() == 0:
        os.chown(directory, 4242, -1)
    else:  # pretend to be someone else
        monkeypatch.setattr(os, "getuid", lambda: os.stat(directory).st_uid + 4242)
    with pytest.raises(litevfs.WriteBufferError, match="owned by uid .*buffer_path"):
        home.check_directory(str(directory), strict=True)
    with pytest.raises(litevfs.WriteBufferError, match="owned by uid"):
        home.resolve_buffer_path("file:///r", str(directory / "w.wbuf"))


def test_explicit_buffer_path_in_a_world_writable_directory_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # like /tmp
    with pytest.raises(litevfs.WriteBufferError, match="writable by other users"):
        litevfs.connect(f"file://{tmp_path / 'replica'}", write=True,
                        buffer_path=str(shared / "w.wbuf"))


def test_unusable_buffer_path_names_path_and_option(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    for bad in (str(blocker / "w.wbuf"), "/proc/litevfs-test.wbuf"):
        with pytest.raises(litevfs.WriteBufferError) as info:
            litevfs.connect(f"file://{tmp_path / 'replica'}", write=True, buffer_path=bad)
        message = str(info.value)
        assert "buffer_path" in message and "\n" not in message
        assert os.path.dirname(bad) in message, message


def test_recovery_finds_a_crashed_writers_buffer_at_the_default_path(
        state: Path, tmp_path: Path) -> None:
    url = f"file://{tmp_path / 'replica'}"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, CHILD, "writer", url, "-", "1", "5",
                             "--interval=1h", "--wait"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout.readline().strip() == "ready"
    proc.stdin.write("go\n")
    proc.stdin.flush()
    lines = [proc.stdout.readline().strip() for _ in range(5)]
    assert lines[-1] == "committed 5"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    proc.stdin.close()
    assert os.path.exists(home.default_buffer_path(url))
    con = litevfs.connect(url, write=True)
    try:
        assert con.execute("SELECT count(*) FROM t").fetchone()[0] == 5
        litevfs.sync(con)
    finally:
        con.close()
    reader = litevfs.connect(url)
    assert reader.execute("SELECT max(id) FROM t").fetchone()[0] == 5
    reader.close()


def _legacy_buffer(url: str, rows: int) -> str:
    """A buffer at the old default location holding ``rows`` one-page transactions."""
    old = home.legacy_buffer_path(url)
    os.makedirs(os.path.dirname(old), mode=0o700)
    os.chmod(os.path.dirname(os.path.dirname(old)), 0o700)
    buf, _ = WriteBuffer.open(old, url=url, page_size=4096, base_txid=0)
    # A valid one-page database per transaction is not needed: recovery is checked on
    # the transaction count, not by SQLite.
    for i in range(rows):
        buf.append({1: bytes([i]) * 4096}, 1)
    buf.close()
    os.chmod(old, 0o644)  # as the old version created it
    return old


def test_buffer_at_the_old_default_location_is_moved(state: Path, caplog) -> None:
    url = "file:///nonexistent/replica"
    old = _legacy_buffer(url, 3)
    with caplog.at_level(logging.WARNING, "litevfs"):
        path = home.resolve_buffer_path(url)
    assert path == home.default_buffer_path(url)
    assert not os.path.exists(old) and os.path.exists(path)
    assert "moved the write buffer" in caplog.text and old in caplog.text
    buf, rec = WriteBuffer.open(path, url=url, page_size=4096, base_txid=0)
    assert rec.transactions == 3 and _mode(path) == 0o600
    buf.close()


def test_old_buffer_in_use_is_an_error(state: Path) -> None:
    url = "file:///nonexistent/replica"
    old = _legacy_buffer(url, 1)
    holder, _ = WriteBuffer.open(old, url=url, page_size=4096, base_txid=0)
    try:
        with pytest.raises(litevfs.BufferInUseError, match="old default location"):
            home.resolve_buffer_path(url)
    finally:
        holder.close()
    assert os.path.exists(old)


def test_old_buffer_in_an_unsafe_directory_is_pointed_to_not_adopted(state: Path,
                                                                     caplog) -> None:
    url = "file:///nonexistent/replica"
    old = _legacy_buffer(url, 1)
    os.chmod(os.path.dirname(old), 0o777)
    with caplog.at_level(logging.WARNING, "litevfs"):
        path = home.resolve_buffer_path(url)
    assert os.path.exists(old) and not os.path.exists(path)
    assert "not adopting" in caplog.text and "litevfs unsynced export" in caplog.text
