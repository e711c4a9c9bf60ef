"""Index reads sent by the LIST thread (openahead.py): adopted by the open, never sent
twice, harmless when the plan they guessed is not the one the open builds."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest

import litevfs
import litevfs.vfs.connect as api
from litevfs.errors import NotFoundError
from litevfs.ltx.format import FileInfo
from litevfs.engine.openahead import OpenAhead
from litevfs.storage.readsize import head_size_for, tail_size_for
from litevfs.storage.memory import MemoryStorage
from litevfs.vfs.registry import file_of
from tests.vfs_support import FakeLitestream, make_accounts_db, unique_memory_url

QUERY = "SELECT count(*), sum(balance) FROM accounts"


def _open_stats(con) -> tuple[int, dict]:
    replica = file_of(con).replica
    return replica.views.reads_adopted, replica.storage.stats.snapshot()


def test_reads_ahead_are_adopted_not_repeated(tmp_path: Path, core: ModuleType) -> None:
    url = unique_memory_url("ahead")
    make_accounts_db(tmp_path / "p.db", accounts=3000, blob_rows=30).close()
    ls = FakeLitestream(tmp_path / "p.db", url)
    ls.sync(level=9, full=True)
    with ls.db() as db:
        db.execute("UPDATE accounts SET balance = balance + 1 WHERE id = 7")
    ls.sync()
    # the regular path (no LIST ahead) and litevfs.connect's must send the same reads
    plain = api.connect(url, impl=core, poll_interval=0)
    try:
        assert _open_stats(plain)[0] == 0
        plain_stats = _open_stats(plain)[1]
        expected = plain.execute(QUERY).fetchall()
    finally:
        plain.close()
    con = litevfs.connect(url, impl=core, poll_interval=0)
    try:
        adopted, stats = _open_stats(con)
        assert adopted == 2  # the snapshot and the L0 file
        assert (stats["gets"], stats["lists"]) == (plain_stats["gets"], plain_stats["lists"])
        assert con.execute(QUERY).fetchall() == expected
    finally:
        con.close()


def test_against_s3_with_a_litevfs_written_replica(s3_url: str, core: ModuleType) -> None:
    con = litevfs.connect(s3_url, impl=core, write=True, poll_interval=0)
    con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    con.execute("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
                "WHERE i < 2000) INSERT INTO t(v) SELECT hex(randomblob(300)) FROM n")
    litevfs.sync(con, timeout=30)
    want = con.execute("SELECT count(*), sum(length(v)), max(v) FROM t").fetchall()
    con.close()
    con = litevfs.connect(s3_url, impl=core, poll_interval=0)
    try:
        adopted, stats = _open_stats(con)
        assert adopted >= 1
        assert con.execute("SELECT count(*), sum(length(v)), max(v) FROM t").fetchall() == want
        plan_files = len(file_of(con).replica.current.index.file_ids())
        # one LIST, then at most the tail and head read of each plan file (+ the head
        # object probe and the verifier's read of the shared verification record, both
        # in the background and so sent by now or not): nothing was read twice
        assert stats["lists"] == 1 and stats["gets"] <= 2 * plan_files + 2
    finally:
        con.close()


def test_a_plan_that_changed_is_not_adopted() -> None:
    storage = MemoryStorage(unique_memory_url("stale").removeprefix("memory://"))
    ahead = OpenAhead()
    ahead.start(storage, {})  # empty replica: no plan, no reads, no error
    assert ahead.started == 0
    info = FileInfo(9, 1, 1, 10_000_000, 0.0)
    assert ahead.take(info) is None
    gap = {0: [FileInfo(0, 5, 5, 100, 0.0)], 9: [FileInfo(9, 1, 2, 100, 0.0)]}
    ahead.start(storage, gap)  # a gap: the open reports it, the reads ahead do nothing
    assert ahead.started == 0


def test_missing_object_error_reaches_the_adopter() -> None:
    storage = MemoryStorage(unique_memory_url("gone").removeprefix("memory://"))
    info = FileInfo(9, 1, 1, 5_000_000, 0.0)
    ahead = OpenAhead()
    ahead.start(storage, {9: [info]})
    assert ahead.started == 1
    tail, head = ahead.take(info)
    assert ahead.take(info) is None  # taken once
    with pytest.raises(NotFoundError, match="does not exist"):
        tail.result(timeout=10)
    assert head is not None


def test_read_sizes() -> None:
    small = FileInfo(0, 1, 1, 20_000, 0.0)
    assert tail_size_for(small) == 32 * 1024 and head_size_for(small, 32 * 1024) == 0
    big = FileInfo(9, 1, 1, 200_000_000, 0.0)
    assert tail_size_for(big) == 200_000_000 // 96
    assert head_size_for(big, tail_size_for(big)) == 64 * 1024


def test_the_first_request_waits_for_no_heavy_import(tmp_path: Path) -> None:
    """What ``litevfs.connect`` runs before its LIST is on the wire (``_coldopen.start_open``)
    must not import the core, apsw, boto3 or the heavy stdlib modules (dataclasses,
    logging, concurrent.futures: ~10 ms together): a cold open's first request would
    wait for them. The LIST goes to a socket that never answers: the check runs while
    it is in flight (the request is on the wire when ``start_open`` returns)."""
    import os
    import subprocess
    import sys

    code = (
        "import socket, sys\n"
        "server = socket.socket()\n"
        "server.bind(('127.0.0.1', 0))\n"
        "server.listen(8)\n"
        "port = server.getsockname()[1]\n"
        "import litevfs\n"
        "from litevfs._coldopen import start_open\n"
        "early = start_open(f's3://b/p?endpoint=http://127.0.0.1:{port}"
        "&forcePathStyle=true', {'poll_interval': '1s', 'cache_size': '64MiB'})\n"
        "assert early is not None and early[1].request_sent.is_set()\n"
        "heavy = ('dataclasses', 'logging', 'concurrent.futures', 'typing', 'apsw', 'boto3',\n"
        "         'botocore', 'litevfs._pagecache', 'litevfs._pagecache_py', 'litevfs.vfs.connect')\n"
        "found = [m for m in heavy if m in sys.modules]\n"
        "assert not found, found\n"
    )
    env = dict(os.environ, AWS_EC2_METADATA_DISABLED="true", AWS_ACCESS_KEY_ID="k",
               AWS_SECRET_ACCESS_KEY="s")
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60,
                   cwd=tmp_path)


def test_the_shared_boot_set_is_read_next_to_the_list(tmp_path: Path, core: ModuleType) -> None:
    """boot_set=shared with no local state: the set's GET goes out with the open's LIST
    (not after the imports), so its frames travel with the index reads."""
    url = unique_memory_url("aheadboot")
    make_accounts_db(tmp_path / "p.db", accounts=3000, blob_rows=30).close()
    FakeLitestream(tmp_path / "p.db", url).sync()
    sql = "SELECT name, balance FROM accounts WHERE id = 1234"
    first = litevfs.connect(url, impl=core, poll_interval=0, boot_set="shared")
    try:
        want = first.execute(sql).fetchall()
        boot = litevfs.stats(first)["boot_set"]
        assert boot["read_with_list"] is True and boot["loaded"] == 0  # none stored yet
    finally:
        first.close()  # saves the set under <path>/litevfs/bootset
    assert MemoryStorage(url.removeprefix("memory://")).get_object("litevfs/bootset")
    con = litevfs.connect(url, impl=core, poll_interval=0, boot_set="shared", read_ahead=0)
    try:
        boot = litevfs.stats(con)["boot_set"]
        assert boot["read_with_list"] is True and boot["used"] > 0
        gets = litevfs.stats(con)["gets"]
        assert con.execute(sql).fetchall() == want
        assert litevfs.stats(con)["gets"] == gets  # the query's pages came with the open
    finally:
        con.close()
    plain = api.connect(url, impl=core, poll_interval=0, boot_set="shared")  # no LIST ahead
    try:
        assert litevfs.stats(plain)["boot_set"]["read_with_list"] is False
        assert plain.execute(sql).fetchall() == want
    finally:
        plain.close()
