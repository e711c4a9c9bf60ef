"""A read-only open as a member of the machine's shared state (``write/member.py``), in
one process on a local-directory replica: what it creates and removes, its refusals,
its promotion to a writer, and the fallback when the buffer home is unusable. The
multi-process behaviour (visibility, one poller, kill -9) is in test_multiprocess_s3.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import litevfs
from litevfs.session import open_replicas
from litevfs.write.home import default_buffer_path


@pytest.fixture
def replica(tmp_path: Path, core) -> str:
    url = f"file://{tmp_path / 'replica'}"
    con = litevfs.connect(url, write=True, impl=core, sync_interval=0)
    con.execute("CREATE TABLE t(x)")
    con.execute("INSERT INTO t VALUES (1)")
    litevfs.sync(con, timeout=30)
    con.close()
    return url


def test_reader_alone_creates_no_log_and_leaves_nothing(replica, core):
    path = default_buffer_path(replica)
    assert not os.path.exists(path)  # the writer closed cleanly: all removed
    con = litevfs.connect(replica, impl=core)
    assert con.execute("SELECT count(*) FROM t").fetchall() == [(1,)]
    status = litevfs.write_status(con)  # waits for the join (on a thread: no log here)
    assert not os.path.exists(path)  # no write buffer, only the coordination files
    assert os.path.exists(path + ".shm") and os.path.exists(path + ".lock")
    assert status["read_only"] and not status["enabled"] and status["pending_transactions"] == 0
    with pytest.raises(litevfs.LiteVFSError, match="not in write mode"):
        litevfs.sync(con)
    with pytest.raises(Exception, match="readonly"):
        con.execute("INSERT INTO t VALUES (2)")
    con.close()
    leftovers = [n for n in os.listdir(os.path.dirname(path))
                 if n.startswith(os.path.basename(path))]
    assert leftovers == []


def test_read_only_then_write_in_one_process_promotes_the_member(replica, core):
    reader = litevfs.connect(replica, impl=core)
    writer = litevfs.connect(replica, write=True, impl=core, sync_interval=0)
    assert len(open_replicas()) == 1
    writer.execute("INSERT INTO t VALUES (2)")
    assert reader.execute("SELECT count(*) FROM t").fetchall() == [(2,)]  # unsynced, seen
    with pytest.raises(Exception, match="readonly"):
        reader.execute("INSERT INTO t VALUES (3)")  # its connection stays read-only
    assert litevfs.sync(writer, timeout=30) == 2
    writer.close()
    reader.close()
    assert not os.path.exists(default_buffer_path(replica))


def test_unusable_buffer_home_reads_alone(replica, core, tmp_path, monkeypatch):
    home = tmp_path / "open-home"
    home.mkdir()
    home.chmod(0o777)  # others could plant files: refused (home.py), the reader reads alone
    monkeypatch.setenv("XDG_STATE_HOME", str(home))
    try:
        (home / "litevfs").mkdir(mode=0o777)
        (home / "litevfs").chmod(0o777)
        con = litevfs.connect(replica, impl=core)
        assert con.execute("SELECT count(*) FROM t").fetchall() == [(1,)]
        replica_ = open_replicas()[0]
        replica_.wait_joined()  # tried, refused: this process reads alone
        assert replica_.joining.done.is_set() and replica_.writer is None
        assert con.execute("SELECT count(*) FROM t").fetchall() == [(1,)]
        con.close()
    finally:
        home.chmod(0o700)


def test_a_connection_opened_while_the_member_joins_becomes_the_members(replica, core):
    from litevfs.vfs.member import MemberLiteFile
    from litevfs.vfs.registry import file_of

    con = litevfs.connect(replica, impl=core)  # no log on the machine: joins on a thread
    assert con.execute("SELECT count(*) FROM t").fetchall() == [(1,)]
    litevfs.write_status(con)  # the join is done
    assert con.execute("SELECT count(*) FROM t").fetchall() == [(1,)]
    assert type(file_of(con)) is MemberLiteFile  # from its next read transaction on
    con.close()
