"""Verification once per object, not once per process: the resumable streamed check,
the byte budget tied to what the queries read, and the record of verified objects (and
of unfinished checks) under the replica prefix that other processes and machines use."""

from __future__ import annotations

import json
import random
from pathlib import Path
from types import ModuleType

import pytest

import litevfs
from litevfs.engine.verified import RECORD_NAME, SharedRecord, object_key, record_verified
from litevfs.engine.verify import StreamCheck
from litevfs.errors import StorageError
from litevfs.ltx.encoder import encode_file
from litevfs.ltx.format import FileInfo
from litevfs.session import open_replicas
from litevfs.storage.memory import MemoryStorage, memory_store
from litevfs.vfs.registry import file_of
from tests.vfs_support import FakeLitestream, make_accounts_db, unique_memory_url


def _ltx(core: ModuleType, pages: int = 300, seed: int = 1, encoding: str = "frame") -> bytes:
    rng = random.Random(seed)
    data = [(p, rng.randbytes(2048) + bytes(2048)) for p in range(1, pages + 1)]
    return encode_file(data, page_size=4096, commit=pages, min_txid=1, max_txid=1,
                       timestamp_ms=1, encoding=encoding)


def _run(check: StreamCheck, data: bytes, chunk: int, pieces: int | None = None) -> int:
    n = 0
    while not check.done and (pieces is None or n < pieces):
        offset, length = check.next_range(chunk)
        check.feed(data[offset:offset + length])
        n += 1
    return n


@pytest.mark.parametrize("encoding", ["frame", "block"])
@pytest.mark.parametrize("chunk", [1, 5000, 65536, 10**9])
def test_stream_check_any_piece_size(core: ModuleType, chunk: int, encoding: str) -> None:
    data = _ltx(core, encoding=encoding)
    info = FileInfo(0, 1, 1, len(data), 0.0)
    check = StreamCheck(info, core)
    _run(check, data, chunk)
    assert check.done and check.error is None and check.hashed == 300 * 4096


def test_stream_check_resumes_from_its_state(core: ModuleType) -> None:
    """A check stopped after a few pieces goes on from (offset, crc) alone: another
    process can finish what this one started."""
    data = _ltx(core)
    info = FileInfo(0, 1, 1, len(data), 0.0)
    first = StreamCheck(info, core)
    _run(first, data, 20_000, pieces=4)
    assert not first.done and 0 < first.pos < len(data)
    second = StreamCheck(info, core, first.state)
    _run(second, data, 20_000)
    assert second.done and second.error is None


@pytest.mark.parametrize("where", [0.2, 0.5, 0.9, 0.999])
def test_stream_check_finds_damage_anywhere(core: ModuleType, where: float) -> None:
    data = bytearray(_ltx(core))
    data[int(len(data) * where)] ^= 0x04
    info = FileInfo(0, 1, 1, len(data), 0.0)
    check = StreamCheck(info, core)
    _run(check, bytes(data), 30_000)
    assert check.done and check.error is not None


def test_stream_check_bounds_hashing_per_piece(core: ModuleType) -> None:
    """Highly compressible pages: a piece stops after max_hashed bytes of CRC work."""
    data = encode_file([(p, bytes(4096)) for p in range(1, 2001)], page_size=4096,
                       commit=2000, min_txid=1, max_txid=1, timestamp_ms=1)
    info = FileInfo(0, 1, 1, len(data), 0.0)
    check = StreamCheck(info, core)
    pieces = 0
    while not check.done:
        before = check.hashed
        offset, length = check.next_range(10**9)
        check.feed(data[offset:offset + length], max_hashed=64 * 4096)
        assert check.hashed - before <= 64 * 4096
        pieces += 1
    assert check.error is None and pieces >= 2000 // 64


# -- the shared record -------------------------------------------------------------------


def test_shared_record_merges_and_survives_garbage() -> None:
    storage = MemoryStorage(unique_memory_url("rec").removeprefix("memory://"))
    a, b = FileInfo(9, 1, 10, 5 << 20, 100.0), FileInfo(1, 11, 20, 6 << 20, 200.0)
    assert record_verified(storage, [a])
    other = SharedRecord(storage)
    other.load()
    assert other.is_verified(a) and not other.is_verified(b)
    other.add_progress(b, (12345, 0xABC, 4096, 77))
    assert other.save()
    third = SharedRecord(storage)
    third.load()
    assert third.is_verified(a) and third.progress(b) == (12345, 0xABC, 4096, 77)
    third.add_verified(b)  # finishing b drops its progress entry
    assert third.save()
    doc = json.loads(storage.get_object(RECORD_NAME))
    assert sorted(doc["verified"]) == sorted([object_key(a), object_key(b)])
    assert doc["progress"] == {}
    storage.put_object(RECORD_NAME, b"not json")
    garbage = SharedRecord(storage)
    garbage.load()  # unreadable: empty, never an error
    assert not garbage.is_verified(a)


def test_a_reader_without_write_permission_only_loses_the_sharing() -> None:
    class ReadOnly(MemoryStorage):
        def put_object(self, *a, **kw):  # type: ignore[override]
            raise StorageError("AccessDenied")

    record = SharedRecord(ReadOnly(unique_memory_url("ro").removeprefix("memory://")))
    record.load()
    record.add_verified(FileInfo(9, 1, 1, 1 << 30, 1.0))
    assert record.save() is False and record.write is False
    assert record.save() is True  # not tried again


# -- the verifier ------------------------------------------------------------------------


def _replica(tmp_path: Path) -> tuple[str, dict]:
    url = unique_memory_url("vshared")
    make_accounts_db(tmp_path / "p.db", accounts=3000, blob_rows=60, blob_size=6000).close()
    FakeLitestream(tmp_path / "p.db", url).sync()
    return url, {"poll_interval": 0, "boot_set": "off", "verify_max_size": 0}


def _big(url: str) -> FileInfo:
    store = memory_store(url.removeprefix("memory://"))
    key = min(store.ltx[0])
    data, created = store.ltx[0][key]
    return FileInfo(0, key[0], key[1], len(data), created)


def _verifier(con):
    return file_of(con).replica.verifier


def _settle(verifier, timeout: float = 10.0) -> None:
    """Until the background check is done or waits for the queries' budget."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not verifier.waiting_budget:
        if verifier.wait_idle(0.05):
            return


def _query_then_settle(con):  # type: ignore[no-untyped-def]
    """Some queries' reads (the verification budget), then the check until it rests."""
    verifier = _verifier(con)
    verifier._not_before = 0
    con.execute("SELECT sum(length(data)) FROM blobs WHERE id % 7 = 1").fetchall()
    verifier.wake()
    _settle(verifier)
    return verifier


def test_background_reads_at_most_a_share_of_what_queries_read(tmp_path: Path,
                                                               core: ModuleType) -> None:
    url, opts = _replica(tmp_path)
    con = litevfs.connect(url, impl=core, verify_bandwidth="1GiB", verify_share=0.5, **opts)
    try:
        verifier = _verifier(con)
        verifier._not_before = 0  # no start delay in a test
        con.execute("SELECT balance FROM accounts WHERE id = 7").fetchall()
        _settle(verifier)
        reader = file_of(con).replica.reader
        assert verifier.bytes_read <= 0.5 * reader.bytes_fetched
        assert verifier.files_verified == 0  # a point query does not pay for 1 file
        # a query reading much more lets the check go on, and finish
        con.execute("SELECT sum(length(data)) FROM blobs").fetchall()
        con.execute("SELECT sum(balance), max(name) FROM accounts").fetchall()
        verifier.wake()
        _settle(verifier)
        assert verifier.bytes_read <= 0.5 * reader.bytes_fetched
    finally:
        con.close()


def test_unfinished_checks_go_on_in_the_next_process(tmp_path: Path, core: ModuleType) -> None:
    """Each process spends a little; the record under the replica prefix keeps where the
    check stopped, so together they finish it, and then nobody checks it again."""
    url, opts = _replica(tmp_path)
    big = _big(url)
    storage = MemoryStorage(url.removeprefix("memory://"))
    offsets = []
    for _ in range(200):
        con = litevfs.connect(url, impl=core, verify_bandwidth="1GiB", verify_share=0.2,
                              **opts)
        try:
            verifier = _query_then_settle(con)
            done = verifier.files_verified + verifier.files_remembered
        finally:
            con.close()
        record = SharedRecord(storage)
        record.load()
        if done:
            break
        progress = record.progress(big)
        assert progress is not None
        offsets.append(progress[0])
    assert done and record.is_verified(big)
    assert len(offsets) >= 2 and offsets == sorted(offsets)  # each one went further
    con = litevfs.connect(url, impl=core, verify_bandwidth="1GiB", **opts)
    try:
        verifier = _verifier(con)
        verifier._not_before = 0
        con.execute("SELECT count(*) FROM accounts").fetchall()
        assert verifier.wait_idle(5)
        assert verifier.files_remembered == 1 and verifier.bytes_read == 0
    finally:
        con.close()


def test_damage_after_a_saved_offset_is_still_found(tmp_path: Path, core: ModuleType) -> None:
    url, opts = _replica(tmp_path)
    big = _big(url)
    storage = MemoryStorage(url.removeprefix("memory://"))
    data = memory_store(url.removeprefix("memory://")).ltx[0][(big.min_txid, big.max_txid)][0]
    check = StreamCheck(big, core)
    _run(check, data, 64 * 1024, pieces=2)
    record = SharedRecord(storage)
    record.add_progress(big, check.state)
    assert record.save()
    bad = bytearray(data)
    bad[len(bad) * 3 // 4] ^= 0x01
    store = memory_store(url.removeprefix("memory://"))
    key = (big.min_txid, big.max_txid)
    store.ltx[0][key] = (bytes(bad), store.ltx[0][key][1])
    con = litevfs.connect(url, impl=core, verify_bandwidth=0, **opts)
    try:
        verifier = _verifier(con)
        verifier._not_before = 0
        try:
            con.execute("SELECT count(*) FROM accounts").fetchall()
        except Exception:  # noqa: BLE001 - the damaged page may be one it reads
            pass
        assert verifier.wait_idle(10)
        assert verifier.failed
    finally:
        con.close()
    assert not open_replicas()


def test_progress_is_shared_without_a_close(tmp_path: Path, core: ModuleType,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Processes that exit without closing their connections still leave their progress:
    the check saves it to the shared record while it waits for budget."""
    from litevfs.engine import verify

    monkeypatch.setattr(verify, "SHARE_EVERY", 0.0)
    url, opts = _replica(tmp_path)
    big = _big(url)
    storage = MemoryStorage(url.removeprefix("memory://"))
    con = litevfs.connect(url, impl=core, verify_bandwidth="1GiB", verify_share=0.2, **opts)
    try:
        verifier = _query_then_settle(con)
        assert verifier.waiting_budget and verifier.files_verified == 0
        record = SharedRecord(storage)  # read while the connection is still open
        record.load()
        progress = record.progress(big)
        assert progress is not None and progress[0] > 0
    finally:
        con.close()
