"""A database larger than 1 GiB: the lock page (the page holding byte 2^30) is never
stored in LTX files and must read correctly, as must every page after it.

Kept fast: 64 KiB pages (the lock page is page 16385), rows of mostly zero blobs so
the LTX file compresses to a few MB, pages streamed into the encoder one at a time.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import pytest

import litevfs
from litevfs.ltx.encoder import encode_file
from litevfs.ltx.format import lock_pgno
from litevfs.storage.memory import MemoryStorage, drop_memory_store
from tests.vfs_support import unique_memory_url

PAGE = 65536
ROWS = 1100  # ~1 MiB each: 1.1 GiB
CHECKS = ["SELECT count(*), sum(length(b)) FROM t",
          "SELECT id, hex(substr(b, -16)) FROM t WHERE id IN (1, 500, 1023, 1024, 1025, 1099)",
          "SELECT id, hex(tag) FROM t ORDER BY id DESC LIMIT 3",
          "PRAGMA integrity_check"]


@pytest.fixture(scope="module")
def big_replica(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list]]:
    work = tmp_path_factory.mktemp("big")
    db = work / "big.db"
    con = sqlite3.connect(db, isolation_level=None)
    con.execute(f"PRAGMA page_size={PAGE}")
    con.execute("PRAGMA journal_mode=OFF")
    con.execute("PRAGMA synchronous=OFF")
    con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, tag BLOB, b BLOB)")
    con.execute("BEGIN")
    for i in range(1, ROWS + 1):
        tail = i.to_bytes(4, "big") * 4
        con.execute("INSERT INTO t VALUES(?, randomblob(8), zeroblob(1048000) || ?)", (i, tail))
    con.execute("COMMIT")
    expected = [con.execute(q).fetchall() for q in CHECKS]
    con.close()
    size = db.stat().st_size
    commit = size // PAGE
    assert size > (1 << 30) + PAGE and commit > lock_pgno(PAGE)

    def pages():
        with open(db, "rb") as f:
            for pgno in range(1, commit + 1):
                page = f.read(PAGE)
                if pgno != lock_pgno(PAGE):
                    yield pgno, page

    data = encode_file(pages(), page_size=PAGE, commit=commit, min_txid=1, max_txid=1,
                       timestamp_ms=1_700_000_000_000)
    db.unlink()  # only the replica remains
    url = unique_memory_url("big")
    MemoryStorage(url.removeprefix("memory://")).write_ltx(0, 1, 1, data)
    del data
    yield url, expected
    drop_memory_store(url.removeprefix("memory://"))  # do not hold the file for the session


@pytest.mark.slow
def test_reads_past_the_lock_page(big_replica: tuple[str, list], core) -> None:
    url, expected = big_replica
    # The background CRC check of this 1.1 GiB file is not what is tested here (and costs
    # a CPU-minute on the pure twin): keep it to a trickle.
    con = litevfs.connect(url, impl=core, poll_interval=0, verify_bandwidth=1)
    try:
        assert [con.execute(q).fetchall() for q in CHECKS] == expected
        assert expected[-1] == [("ok",)]
        stats = litevfs.stats(con)
        assert stats["pages"] * PAGE > 1 << 30
        assert stats["index_bytes"] <= 8 << 20  # compact index
    finally:
        con.close()
