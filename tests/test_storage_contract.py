"""One contract, every backend: memory, file (Litestream's file layout) and S3 (the real
SeaweedFS server from the rig). Backend-specific facts live in test_storage_s3.py."""

from __future__ import annotations

import struct
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from litevfs.errors import AlreadyExistsError, NotFoundError, TransientStorageError
from litevfs.ltx.format import MAX_LEVEL, FileInfo
from litevfs.storage import StorageClient, open_storage
from litevfs.storage.memory import MemoryStorage

BACKENDS = [
    pytest.param("memory", id="memory"),
    pytest.param("file", id="file"),
    pytest.param("s3", id="s3", marks=pytest.mark.s3),  # stdlib fast reads
    pytest.param("s3-botocore", id="s3-botocore", marks=pytest.mark.s3),  # botocore reads
]

DATA = bytes(range(256)) * 40  # 10240 bytes, every offset distinguishable


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def storage(backend: str, request: pytest.FixtureRequest, tmp_path: Path
            ) -> Iterator[StorageClient]:
    if backend == "memory":
        st = open_storage(f"memory://contract-{uuid.uuid4().hex}")
    elif backend == "file":
        st = open_storage(f"file://{tmp_path}/replica")
    else:
        # Resolved lazily so memory/file runs never start SeaweedFS.
        st = open_storage(request.getfixturevalue("s3_url"),
                          fast_reads=backend == "s3")
        assert (st._fast is not None) == (backend == "s3")  # type: ignore[attr-defined]
    try:
        yield st
    finally:
        st.close()


def put_junk(storage: StorageClient, backend: str) -> None:
    """Objects next to the LTX files of level 0 that a listing must skip."""
    if backend == "memory":
        return  # the memory store has no raw key space
    s3 = backend.startswith("s3")
    level_dir = "0000" if s3 else "ltx/0"
    for name in ("notes.txt",
                 "0000000000000001-0000000000000001.ltx.tmp",
                 "000000000000000A-000000000000000A.ltx",  # uppercase hex: not Litestream's
                 "00000000000001-00000000000001.ltx",  # short
                 "sub/0000000000000003-0000000000000003.ltx"):  # nested
        storage.put_object(f"{level_dir}/{name}", b"junk")
    # A neighbouring level must not leak into level 0.
    other = "0001" if s3 else "ltx/1"
    storage.put_object(f"{other}/0000000000000004-0000000000000004.ltx", b"l1")


def ltx_bytes(timestamp_ms: int, size: int = 200) -> bytes:
    """Enough of an LTX header for the timestamp to be read (offset 32, big endian)."""
    head = b"LTX1" + b"\0" * 28 + struct.pack(">q", timestamp_ms)
    return head + b"\x01" * (size - len(head))


# --------------------------------------------------------------------------------------


def test_empty_replica_lists_nothing(storage: StorageClient) -> None:
    assert storage.list_level(0) == []
    assert storage.list_all() == {level: [] for level in range(MAX_LEVEL + 1)}


def test_list_order_sizes_and_name_filtering(storage: StorageClient, backend: str) -> None:
    written = [(5, 5), (1, 1), (3, 4), (2, 2), (0x10, 0x1F), (0xABC, 0xABC)]
    for lo, hi in written:
        storage.write_ltx(0, lo, hi, b"x" * (lo + 10))
    storage.write_ltx(9, 1, 0x1F, DATA)
    put_junk(storage, backend)

    infos = storage.list_level(0)
    assert [(i.min_txid, i.max_txid) for i in infos] == sorted(written)
    assert all(i.level == 0 for i in infos)
    assert [i.size for i in infos] == [lo + 10 for lo, _ in sorted(written)]
    assert all(i.created_at > 0 for i in infos)

    everything = storage.list_all()
    assert set(everything) == set(range(MAX_LEVEL + 1))
    assert everything[0] == infos
    assert [(i.level, i.min_txid, i.max_txid, i.size) for i in everything[9]] == [
        (9, 1, 0x1F, len(DATA))]
    # The neighbour level's file is listed there, and only there.
    expected_l1 = [] if backend == "memory" else [(4, 4)]
    assert [(i.min_txid, i.max_txid) for i in everything[1]] == expected_l1
    for level in range(2, 9):
        assert everything[level] == []


def test_write_returns_file_info_and_created_at(storage: StorageClient, backend: str) -> None:
    ts = 1767323045123  # 2026-01-02T03:04:05.123Z
    info = storage.write_ltx(2, 7, 9, DATA, timestamp_ms=ts)
    assert (info.level, info.min_txid, info.max_txid, info.size) == (2, 7, 9, len(DATA))
    assert info.created_at == pytest.approx(ts / 1000)
    (listed,) = storage.list_level(2)
    if backend.startswith("s3"):
        # LIST reports LastModified (upload time), as in Litestream.
        assert abs(listed.created_at - time.time()) < 300
    else:
        assert listed.created_at == pytest.approx(ts / 1000, abs=1e-3)


def test_timestamp_defaults_to_ltx_header(storage: StorageClient, backend: str) -> None:
    ts = 1700000000250
    info = storage.write_ltx(0, 1, 1, ltx_bytes(ts))
    assert info.created_at == pytest.approx(ts / 1000)
    if not backend.startswith("s3"):
        assert storage.list_level(0)[0].created_at == pytest.approx(ts / 1000, abs=1e-3)


@pytest.mark.parametrize("offset,length", [
    (0, 100),  # start
    (5000, 123),  # middle
    (len(DATA) - 50, 50),  # end
    (0, None),  # whole
    (10000, None),  # offset to end
    (0, len(DATA)),  # whole, explicit
    (7, 1),  # one byte
])
def test_read_range(storage: StorageClient, offset: int, length: int | None) -> None:
    info = storage.write_ltx(0, 1, 1, DATA)
    want = DATA[offset:] if length is None else DATA[offset:offset + length]
    assert storage.read_range(info, offset, length) == want


def test_read_range_uses_identity_not_listed_size(storage: StorageClient) -> None:
    storage.write_ltx(0, 1, 1, DATA)
    # Callers may hold a FileInfo without a size (e.g. built from a header).
    assert storage.read_range(FileInfo(0, 1, 1, 0), 10, 5) == DATA[10:15]


def test_read_past_end_is_an_error_not_a_short_answer(storage: StorageClient) -> None:
    info = storage.write_ltx(0, 1, 1, DATA)
    with pytest.raises(TransientStorageError):
        storage.read_range(info, len(DATA) - 10, 20)
    with pytest.raises(TransientStorageError):
        storage.read_range(info, len(DATA), None)
    with pytest.raises(TransientStorageError):
        storage.read_range(info, len(DATA) + 100, 1)
    assert storage.read_range(info, 5, 0) == b""
    with pytest.raises(ValueError):
        storage.read_range(info, -1, 5)


@pytest.mark.parametrize("length", [1, 16, 1000, len(DATA) - 1, len(DATA), len(DATA) + 1, 1 << 20])
def test_read_tail(storage: StorageClient, length: int) -> None:
    info = storage.write_ltx(0, 1, 1, DATA)
    assert storage.read_tail(info, length) == DATA[-length:]
    # Without a known size too (suffix range / stat, never the listed size).
    assert storage.read_tail(FileInfo(0, 1, 1, 0), length) == DATA[-length:]


def test_missing_file_is_not_found(storage: StorageClient) -> None:
    ghost = FileInfo(0, 42, 42, 100)
    with pytest.raises(NotFoundError):
        storage.read_range(ghost, 0, 10)
    with pytest.raises(NotFoundError):
        storage.read_range(ghost)
    with pytest.raises(NotFoundError):
        storage.read_tail(ghost, 10)
    # Another level holds a file with the same TXIDs: still not found at level 0.
    storage.write_ltx(1, 42, 42, b"elsewhere")
    with pytest.raises(NotFoundError):
        storage.read_range(ghost, 0, 4)


def test_conditional_create(storage: StorageClient) -> None:
    first = storage.write_ltx(0, 3, 3, b"first", if_absent=True)
    with pytest.raises(AlreadyExistsError):
        storage.write_ltx(0, 3, 3, b"second", if_absent=True)
    assert storage.read_range(first) == b"first"
    # Same TXIDs at another level are another key.
    storage.write_ltx(1, 3, 3, b"level one", if_absent=True)
    # Unconditional writes overwrite.
    storage.write_ltx(0, 3, 3, b"third")
    assert storage.read_range(first) == b"third"
    assert storage.list_level(0)[0].size == len(b"third")


def test_conditional_create_race_has_one_winner(storage: StorageClient) -> None:
    barrier = threading.Barrier(6)

    def attempt(n: int) -> bool:
        barrier.wait()
        try:
            storage.write_ltx(0, 8, 8, f"writer {n}".encode() * 50, if_absent=True)
            return True
        except AlreadyExistsError:
            return False

    with ThreadPoolExecutor(6) as pool:
        won = list(pool.map(attempt, range(6)))
    assert won.count(True) == 1
    winner = won.index(True)
    (info,) = storage.list_level(0)
    assert storage.read_range(info) == f"writer {winner}".encode() * 50


def test_delete(storage: StorageClient) -> None:
    infos = [storage.write_ltx(0, n, n, b"d") for n in range(1, 6)]
    storage.delete_ltx([infos[1], infos[3], FileInfo(0, 99, 99, 0), FileInfo(7, 1, 1, 0)])
    assert [i.min_txid for i in storage.list_level(0)] == [1, 3, 5]
    storage.delete_ltx([])  # nothing to do, no request
    storage.delete_ltx([FileInfo(0, 99, 99, 0)])  # only missing files
    storage.delete_ltx(iter(storage.list_level(0)))  # any iterable
    assert storage.list_level(0) == []
    with pytest.raises(NotFoundError):
        storage.read_range(infos[0])


def test_side_objects(storage: StorageClient) -> None:
    with pytest.raises(NotFoundError):
        storage.get_object("litevfs/head")
    storage.put_object("litevfs/head", b"v1")
    assert storage.get_object("litevfs/head") == b"v1"
    storage.put_object("litevfs/head", b"v2")
    assert storage.get_object("litevfs/head") == b"v2"
    with pytest.raises(AlreadyExistsError):
        storage.put_object("litevfs/head", b"v3", if_absent=True)
    assert storage.get_object("litevfs/head") == b"v2"
    storage.put_object("lock.json", b"{}", if_absent=True)
    assert storage.get_object("lock.json") == b"{}"
    storage.put_object("empty", b"")
    assert storage.get_object("empty") == b""
    # Side objects never show up as LTX files.
    assert all(v == [] for v in storage.list_all().values())
    storage.delete_object("lock.json")
    storage.delete_object("lock.json")  # missing is fine
    with pytest.raises(NotFoundError):
        storage.get_object("lock.json")


@pytest.mark.parametrize("name", ["", "/abs", "../escape", "a/../../b", "a//b", "./a", "a/.",
                                  "a\\b", "nul\0"])
def test_side_object_names_cannot_escape(storage: StorageClient, name: str) -> None:
    with pytest.raises(ValueError):
        storage.put_object(name, b"x")
    with pytest.raises(ValueError):
        storage.get_object(name)


def test_invalid_ltx_names_rejected(storage: StorageClient) -> None:
    for level, lo, hi in [(-1, 1, 1), (MAX_LEVEL + 1, 1, 1), (0, 0, 1), (0, 5, 4), (0, 1, 1 << 64)]:
        with pytest.raises(ValueError):
            storage.write_ltx(level, lo, hi, b"x")
    with pytest.raises(ValueError):
        storage.list_level(MAX_LEVEL + 1)


def test_bytes_like_payloads(storage: StorageClient) -> None:
    info = storage.write_ltx(0, 1, 1, bytearray(b"abc"))
    storage.write_ltx(0, 2, 2, memoryview(b"defg"))
    assert storage.read_range(info) == b"abc"
    assert [i.size for i in storage.list_level(0)] == [3, 4]


def test_read_many(storage: StorageClient) -> None:
    a = storage.write_ltx(0, 1, 1, DATA)
    b = storage.write_ltx(9, 1, 1, DATA[::-1])
    got = storage.read_many([(a, 0, 10), (b, 0, 10), (a, 100, None), (b, 5, 1)])
    assert got == [DATA[:10], DATA[::-1][:10], DATA[100:], DATA[::-1][5:6]]
    with pytest.raises(NotFoundError):
        storage.read_many([(a, 0, 1), (FileInfo(0, 5, 5, 0), 0, 1)])


def test_stats_count_requests_and_bytes(storage: StorageClient, backend: str) -> None:
    before = storage.stats.snapshot()
    info = storage.write_ltx(0, 1, 1, DATA)
    storage.put_object("side", b"12345")
    storage.list_level(0)
    storage.read_range(info, 0, 100)
    storage.read_tail(info, 50)
    storage.get_object("side")
    storage.delete_ltx([info])
    after = storage.stats.snapshot()
    delta = {k: after[k] - before[k] for k in after}
    assert delta == {
        "lists": 1, "gets": 3, "puts": 2, "deletes": 1,
        "bytes_read": 100 + 50 + 5, "bytes_written": len(DATA) + 5, "retries": 0,
    }
    storage.list_all()
    # S3: one ListObjectsV2 over the whole prefix; file: one directory walk.
    expected = MAX_LEVEL + 1 if backend == "memory" else 1
    assert storage.stats.lists == after["lists"] + expected


def test_many_files_paginate(storage: StorageClient, backend: str) -> None:
    n = 1003  # S3 lists at most 1000 keys per page
    with ThreadPoolExecutor(24) as pool:
        list(pool.map(lambda t: storage.write_ltx(0, t, t, b"p"), range(1, n + 1)))
    lists_before = storage.stats.lists
    infos = storage.list_level(0)
    assert [i.min_txid for i in infos] == list(range(1, n + 1))
    if backend.startswith("s3"):
        assert storage.stats.lists - lists_before == 2  # two pages
    deletes_before = storage.stats.deletes
    storage.delete_ltx(infos)
    assert storage.list_level(0) == []
    if backend.startswith("s3"):
        assert storage.stats.deletes - deletes_before == 2  # batches of 1000
    else:
        assert storage.stats.deletes - deletes_before == 1


def test_clients_of_one_location_share_objects(storage: StorageClient, backend: str,
                                               request: pytest.FixtureRequest,
                                               tmp_path: Path) -> None:
    if backend == "memory":
        assert isinstance(storage, MemoryStorage)
        other = open_storage(storage.url)
    elif backend == "file":
        other = open_storage(str(tmp_path / "replica"))  # a plain path is the file layout
    else:
        other = open_storage(request.getfixturevalue("s3_url"), fast_reads=backend == "s3")
    with other:
        storage.write_ltx(0, 1, 1, b"shared")
        assert [i.max_txid for i in other.list_level(0)] == [1]
        assert other.read_range(other.list_level(0)[0]) == b"shared"
        assert other.stats.puts == 0


def test_list_all_matches_list_level(storage: StorageClient, backend: str) -> None:
    """list_all (one listing on S3 and file) returns what per-level listings do, ignores
    side objects and other directories, and keeps (min, max) order."""
    for level, lo, hi in ((0, 5, 5), (0, 3, 3), (1, 1, 4), (9, 1, 5), (3, 2, 2)):
        storage.write_ltx(level, lo, hi, DATA[:10 + lo])
    storage.put_object("litevfs/head", b"x")
    storage.put_object("zzz", b"x")
    lists = storage.stats.lists
    levels = storage.list_all()
    if backend != "memory":
        assert storage.stats.lists - lists == 1
    assert sorted(levels) == list(range(MAX_LEVEL + 1))
    for level in range(MAX_LEVEL + 1):
        assert levels[level] == storage.list_level(level)
    assert [(i.min_txid, i.max_txid) for i in levels[0]] == [(3, 3), (5, 5)]


def test_list_all_big_listing_falls_back_per_level(storage: StorageClient, backend: str) -> None:
    if not backend.startswith("s3"):
        pytest.skip("S3 pagination only")
    storage.page_size = 5  # type: ignore[attr-defined]
    for t in range(1, 8):
        storage.write_ltx(0, t, t, b"p")
    for t in range(1, 4):
        storage.write_ltx(1, t, t, b"p")
    storage.write_ltx(9, 1, 7, b"s")
    lists = storage.stats.lists
    levels = storage.list_all()
    # First page (truncated inside L0), then levels 0..9 in parallel, L0 paginated twice.
    assert [i.min_txid for i in levels[0]] == list(range(1, 8))
    assert [i.min_txid for i in levels[1]] == [1, 2, 3]
    assert [(i.min_txid, i.max_txid) for i in levels[9]] == [(1, 7)]
    assert storage.stats.lists - lists == 1 + 11


# -- backend specifics: file ---------------------------------------------------------------


def test_file_layout_is_litestreams(tmp_path: Path) -> None:
    import os

    st = open_storage(f"file://{tmp_path}")
    st.write_ltx(0, 0x101, 0x101, b"l0", timestamp_ms=1767323045123)
    st.write_ltx(9, 1, 0x120, b"snap")
    st.put_object("litevfs/head", b"h")
    found = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert found == [
        "litevfs/head",
        "ltx/0/0000000000000101-0000000000000101.ltx",
        "ltx/9/0000000000000001-0000000000000120.ltx",
    ]  # no temp files left behind
    mtime = os.stat(tmp_path / "ltx/0/0000000000000101-0000000000000101.ltx").st_mtime
    assert mtime == pytest.approx(1767323045.123, abs=1e-3)
    assert (tmp_path / "ltx/0/0000000000000101-0000000000000101.ltx").stat().st_mode & 0o777 \
        == 0o644 & ~_umask()


def _umask() -> int:
    import os

    old = os.umask(0)
    os.umask(old)
    return old


def test_file_conditional_create_without_hard_links(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import errno
    import os

    def no_link(src: str, dst: str) -> None:
        raise OSError(errno.EPERM, "links not supported here")

    monkeypatch.setattr(os, "link", no_link)
    st = open_storage(str(tmp_path))
    st.write_ltx(0, 1, 1, b"first", if_absent=True)
    with pytest.raises(AlreadyExistsError):
        st.write_ltx(0, 1, 1, b"second", if_absent=True)
    assert st.read_range(FileInfo(0, 1, 1, 0)) == b"first"
    assert sorted(p.name for p in (tmp_path / "ltx/0").iterdir()) == [
        "0000000000000001-0000000000000001.ltx"]


def test_file_reads_litestream_written_tree(tmp_path: Path) -> None:
    level = tmp_path / "ltx" / "1"
    level.mkdir(parents=True)
    (level / "00000000000000e1-0000000000000120.ltx").write_bytes(DATA)
    (level / "00000000000000e1-0000000000000120.ltx.tmp").write_bytes(b"partial")
    (tmp_path / "ltx" / "0001").mkdir()  # S3-style name: not a file-layout level
    (tmp_path / "ltx" / "0001" / "0000000000000001-0000000000000001.ltx").write_bytes(b"x")
    st = open_storage(f"file://{tmp_path}")
    levels = st.list_all()
    assert [(i.level, i.min_txid, i.max_txid, i.size) for i in levels[1]] == [
        (1, 0xE1, 0x120, len(DATA))]
    assert sum(len(v) for v in levels.values()) == 1


# -- backend specifics: memory hooks ----------------------------------------------------------


def test_memory_fail_next_and_latency() -> None:
    st = open_storage(f"memory://hooks-{uuid.uuid4().hex}")
    assert isinstance(st, MemoryStorage)
    info = st.write_ltx(0, 1, 1, DATA)
    st.fail_next(2, ops=["read"])
    for _ in range(2):
        with pytest.raises(TransientStorageError, match="injected"):
            st.read_range(info, 0, 1)
    assert st.read_range(info, 0, 1) == DATA[:1]
    st.fail_next(1, NotFoundError("gone"), ops=["list"])
    st.read_range(info, 0, 1)  # other operations are not affected
    with pytest.raises(NotFoundError, match="gone"):
        st.list_level(0)
    assert st.list_level(0) == [info]
    # The hooks live on the shared store: another client of the name sees them too.
    other = open_storage(st.url)
    st.store.fail_next(1, ConnectionError)
    with pytest.raises(ConnectionError):
        other.get_object("x")
    with pytest.raises(ValueError):
        st.fail_next(1, ops=["nope"])
    st.store.latency = 0.05
    t0 = time.monotonic()
    st.list_level(0)
    assert time.monotonic() - t0 >= 0.05
    st.store.clear()
    assert st.list_level(0) == [] and st.store.latency == 0


def test_tagged_objects_and_compare_and_swap(storage: StorageClient) -> None:
    """The commit point's primitives (write/fence.py) on every backend: tags, a
    conditional read, create-only and replace-only-if-unchanged writes."""
    from litevfs.errors import PreconditionFailedError

    name = "litevfs/cas-probe"
    assert storage.get_object_if_changed(name, None) == (None, None, True)
    with pytest.raises(PreconditionFailedError):
        storage.put_object(name, b"x", if_match='"nope"')  # missing: no swap either
    tag1 = storage.put_object(name, b"one", if_absent=True)
    with pytest.raises(AlreadyExistsError):
        storage.put_object(name, b"other", if_absent=True)
    data, tag = storage.get_object_tagged(name)
    assert data == b"one" and (tag1 is None or tag1 == tag)
    assert storage.get_object_if_changed(name, tag) == (None, tag, False)
    tag2 = storage.put_object(name, b"two", if_match=tag)
    with pytest.raises(PreconditionFailedError):
        storage.put_object(name, b"three", if_match=tag)  # stale: refused, nothing written
    data, now = storage.get_object_tagged(name)
    assert data == b"two" and now != tag and (tag2 is None or tag2 == now)
    got, etag, changed = storage.get_object_if_changed(name, tag)
    assert changed and got == b"two" and etag == now
    storage.delete_object(name)
    with pytest.raises(NotFoundError):
        storage.get_object_tagged(name)


def test_server_time_is_close_to_ours(storage: StorageClient) -> None:
    storage.list_level(0)
    assert abs(storage.server_time() - time.time()) < 5


def test_compare_and_swap_race_has_one_winner(storage: StorageClient) -> None:
    from litevfs.errors import PreconditionFailedError

    name = "litevfs/cas-race"
    storage.put_object(name, b"base", if_absent=True)
    _, tag = storage.get_object_tagged(name)

    def swap(i: int) -> bool:
        try:
            storage.put_object(name, f"writer {i}".encode(), if_match=tag)
            return True
        except PreconditionFailedError:
            return False

    with ThreadPoolExecutor(8) as pool:
        wins = list(pool.map(swap, range(8)))
    assert wins.count(True) == 1
