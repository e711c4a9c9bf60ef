"""Page indexes kept for the machine (engine/machineindex.py): the next process's open
reads no index a process of the machine already read, and a stored index that is
corrupt, torn, of another object or in a directory others can write is never used."""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import ModuleType

import pytest

import litevfs
import litevfs.vfs.connect as api
from litevfs.engine import machineindex
from litevfs.storage.memory import MemoryStorage
from litevfs.vfs.registry import file_of
from tests.vfs_support import FakeLitestream, make_accounts_db, unique_memory_url

QUERY = "SELECT count(*), sum(balance), max(name) FROM accounts"


@pytest.fixture
def tails(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every tail read (the index read) sent to the in-memory backend: level of each."""
    seen: list[int] = []
    real = MemoryStorage.read_tail

    def read_tail(self, info, length):  # type: ignore[no-untyped-def]
        seen.append(info.level)
        return real(self, info, length)

    monkeypatch.setattr(MemoryStorage, "read_tail", read_tail)
    monkeypatch.setattr(machineindex, "MIN_OBJECT", 64 * 1024)  # the test's snapshot counts
    return seen


def _replica(tmp_path: Path) -> tuple[str, FakeLitestream]:
    url = unique_memory_url("machidx")
    make_accounts_db(tmp_path / "p.db", accounts=3000, blob_rows=60).close()
    ls = FakeLitestream(tmp_path / "p.db", url)
    info = ls.sync(level=9, full=True)
    assert info.size >= 64 * 1024
    return url, ls


def _machine(con) -> machineindex.MachineIndexes:  # type: ignore[no-untyped-def]
    machine = file_of(con).replica.views.machine
    assert machine is not None
    return machine


def _run(url: str, core: ModuleType, *, early: bool = True) -> tuple[list, dict]:
    opener = litevfs.connect if early else api.connect
    con = opener(url, impl=core, poll_interval=0)
    try:
        rows = con.execute(QUERY).fetchall()
        machine = _machine(con)
        deadline = time.monotonic() + 5
        while machine.stored == 0 and machine.hits == 0 and time.monotonic() < deadline:
            time.sleep(0.01)  # the index is written off the open's path
        return rows, dict(machine.stats())
    finally:
        con.close()


def _stored_files(directory: str) -> list[Path]:
    return sorted(Path(directory).glob("*.idx"))


@pytest.mark.parametrize("early", [True, False], ids=["list-ahead", "regular"])
def test_a_second_open_reads_no_index(tmp_path: Path, core: ModuleType, tails: list[int],
                                      early: bool) -> None:
    url, _ = _replica(tmp_path)
    rows1, first = _run(url, core, early=early)
    assert first["stored"] == 1 and first["hits"] == 0 and tails == [9]
    assert len(_stored_files(first["dir"])) == 1
    tails.clear()
    rows2, second = _run(url, core, early=early)
    assert rows2 == rows1
    assert second["hits"] == 1 and second["rejected"] == 0
    assert tails == []  # no index read at all: the machine had it


def _corrupt_flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x40
    path.write_bytes(bytes(data))


def _corrupt_truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-100])


def _corrupt_header(path: Path) -> None:
    """A well-formed entry (checksum recomputed) whose LTX header is not the object's:
    only the open's head read can tell."""
    import xxhash

    data = bytearray(path.read_bytes())
    head = len(machineindex.MAGIC) + 8
    blob = bytearray(data[head:])
    blob[16 + 39] ^= 0x01  # the LTX header's timestamp (bytes 32..39), after the blob's head
    data[head:] = blob
    data[len(machineindex.MAGIC):head] = xxhash.xxh3_64_intdigest(bytes(blob)).to_bytes(8, "big")
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [_corrupt_flip, _corrupt_truncate, _corrupt_header],
                         ids=["flipped-byte", "truncated", "other-header"])
def test_a_damaged_index_is_never_used(tmp_path: Path, core: ModuleType, tails: list[int],
                                       damage) -> None:  # type: ignore[no-untyped-def]
    url, _ = _replica(tmp_path)
    rows1, first = _run(url, core)
    (path,) = _stored_files(first["dir"])
    damage(path)
    tails.clear()
    rows2, second = _run(url, core)
    assert rows2 == rows1
    assert second["hits"] == 0 and second["rejected"] == 1
    assert tails == [9]  # read from the bucket instead
    rows3, third = _run(url, core)  # and stored again, whole
    assert rows3 == rows1 and third["hits"] == 1


def test_an_index_of_another_object_is_never_used(tmp_path: Path, core: ModuleType,
                                                  tails: list[int]) -> None:
    url, ls = _replica(tmp_path)
    _, first = _run(url, core)
    (old,) = _stored_files(first["dir"])
    with ls.db() as db:
        db.execute("UPDATE accounts SET balance = balance + 1")
    newer = ls.sync(level=9, full=True)  # a new snapshot: the plan's only file now
    fake = machineindex.MachineIndexes(first["dir"]).path(newer)
    os.link(old, fake)  # the old snapshot's index under the new one's name
    tails.clear()
    rows, second = _run(url, core)
    want = api.connect(url, impl=core, poll_interval=0)
    try:
        assert rows == want.execute(QUERY).fetchall()
    finally:
        want.close()
    assert second["hits"] == 0 and second["rejected"] == 1 and tails == [9]


def test_a_directory_others_can_write_is_not_used(tmp_path: Path, core: ModuleType,
                                                  tails: list[int]) -> None:
    url, _ = _replica(tmp_path)
    rows1, first = _run(url, core)
    os.chmod(first["dir"], 0o777)
    try:
        tails.clear()
        rows2, second = _run(url, core)
        assert rows2 == rows1 and second["hits"] == 0 and tails == [9]
    finally:
        os.chmod(first["dir"], 0o700)


def test_only_the_newest_indexes_are_kept(tmp_path: Path, core: ModuleType,
                                          tails: list[int]) -> None:
    url, ls = _replica(tmp_path)
    directory = ""
    for i in range(machineindex.KEEP + 3):
        with ls.db() as db:
            db.execute("UPDATE accounts SET balance = balance + 1 WHERE id = ?", (i + 1,))
        ls.sync(level=9, full=True)
        _, stats = _run(url, core)
        directory = stats["dir"]
    assert len(_stored_files(directory)) == machineindex.KEEP


_CHILD = """
import json, sys
import litevfs
con = litevfs.connect(sys.argv[1], poll_interval=0)
rows = con.execute("SELECT count(*), sum(length(b)), hex(max(b)) FROM t").fetchall()
print(json.dumps({"rows": [list(r) for r in rows], "core": litevfs.IMPLEMENTATION,
                  "machine": litevfs.stats(con)["machine_indexes"]}))
con.close()  # at once: the index is still kept (written before the interpreter exits)
"""


@pytest.mark.s3
@pytest.mark.litestream
@pytest.mark.slow
def test_processes_share_indexes_of_a_litestream_replica(
        tmp_path: Path, core: ModuleType, seaweed, s3_bucket: str,  # type: ignore[no-untyped-def]
        litestream_factory, latency_proxy) -> None:
    """Real litestream writes a snapshot bigger than MIN_OBJECT; a first process reads its
    index from SeaweedFS, a second process on the machine reads none (fewer bytes from
    the server), and both see the same rows."""
    import json
    import sqlite3
    import subprocess
    import sys

    from tests.rig.litestream import S3Replica
    from tests.rig.seaweed import s3_replica_url

    db = tmp_path / "primary.db"
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB)")
    with con:  # incompressible: the snapshot stays above MIN_OBJECT
        con.executemany("INSERT INTO t(b) VALUES (randomblob(3000))", [()] * 2000)
    con.close()
    ls = litestream_factory(db, S3Replica(seaweed, s3_bucket))
    ls.wait_for_txid(1, timeout=60)
    ls.wait_caught_up()
    proxy = latency_proxy(seaweed.port, 0.0)
    url = s3_replica_url(s3_bucket, "db", proxy.endpoint, seaweed.region)
    env = {**seaweed.env(), "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    if core.__name__.endswith("_py"):
        env["LITEVFS_NO_EXTENSIONS"] = "1"
    runs = []
    for _ in range(2):
        before = proxy.bytes_down
        out = subprocess.run([sys.executable, "-c", _CHILD, url], env=env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        runs.append((json.loads(out.stdout.splitlines()[-1]), proxy.bytes_down - before))
    (first, first_bytes), (second, second_bytes) = runs
    assert first["core"] == second["core"] == ("python" if "_py" in core.__name__ else "cython")
    assert second["rows"] == first["rows"] and first["rows"][0][0] == 2000
    assert first["machine"]["hits"] == 0
    assert second["machine"]["hits"] == 1 and second["machine"]["rejected"] == 0
    assert second_bytes < first_bytes - 32 * 1024  # the index read (>= 32 KiB) was not sent
