"""Streaming restore: the LTX stream decoder equals the whole-file decoder for any
split of the bytes, refuses every damaged file, and ``restore`` writes as it downloads
with memory bounded by its read-ahead, whatever the database size (both core twins)."""

from __future__ import annotations

import os
import random
import tracemalloc
from pathlib import Path
from types import ModuleType

import pytest

from litevfs.engine.restore import restore
from litevfs.errors import LTXFormatError, TxNotAvailableError
from litevfs.ltx.decoder import decode_file
from litevfs.ltx.encoder import encode_file
from litevfs.ltx.stream import StreamDecoder
from litevfs.storage.file import FileStorage

PS = 4096


def _pages(n: int, seed: int, *, compressible: bool = True) -> list[tuple[int, bytes]]:
    rng = random.Random(seed)
    out = []
    for pgno in range(1, n + 1):
        if compressible:
            page = bytes([pgno % 251]) * (PS // 2) + rng.randbytes(PS // 2)
        else:
            page = rng.randbytes(PS)
        out.append((pgno, page))
    return out


def _snapshot(n: int, encoding: str, core: ModuleType, seed: int = 1, checksums: bool = True,
              compressible: bool = True) -> bytes:
    return encode_file(_pages(n, seed, compressible=compressible), page_size=PS, commit=n,
                       min_txid=1, max_txid=1, timestamp_ms=1000, encoding=encoding,
                       checksums=checksums, impl=core)


def _stream(data: bytes, pieces: list[int], core: ModuleType) -> list[tuple[int, bytes]]:
    dec = StreamDecoder(len(data), impl=core, expect_txids=None)
    out, pos = [], 0
    for n in pieces:
        out += dec.feed(data[pos:pos + n])
        pos += n
    out += dec.feed(data[pos:])
    dec.finish()
    return out


@pytest.mark.parametrize("encoding", ["frame", "block"])
@pytest.mark.parametrize("checksums", [True, False])
def test_stream_equals_whole_file_decoder_for_any_split(core: ModuleType, encoding: str,
                                                        checksums: bool) -> None:
    data = _snapshot(40, encoding, core, checksums=checksums)
    want = decode_file(data, impl=core).pages
    rng = random.Random(7)
    for piece in (1, 7, 100, 4095, 4096, 10_000, len(data)):
        assert _stream(data, [piece] * (len(data) // piece), core) == want
    for _ in range(5):
        cuts = sorted(rng.sample(range(1, len(data)), 12))
        pieces = [b - a for a, b in zip([0, *cuts], cuts)]
        assert _stream(data, pieces, core) == want


def test_every_damaged_byte_is_refused(core: ModuleType) -> None:
    data = _snapshot(6, "block", core)
    rng = random.Random(3)
    positions = sorted(set(rng.sample(range(len(data)), 60)) | {0, 50, len(data) - 1})
    for pos in positions:
        bad = bytearray(data)
        bad[pos] ^= 0x5A
        with pytest.raises(LTXFormatError):
            _stream(bytes(bad), [997] * (len(data) // 997), core)
    with pytest.raises(LTXFormatError, match="short"):
        dec = StreamDecoder(len(data) + 1, impl=core)
        dec.feed(data)
        dec.finish()


def test_header_must_match_name_and_page_size(core: ModuleType) -> None:
    data = _snapshot(2, "frame", core)
    with pytest.raises(LTXFormatError, match="does not match the file name"):
        StreamDecoder(len(data), impl=core, expect_txids=(1, 2)).feed(data)
    with pytest.raises(LTXFormatError, match="page size"):
        StreamDecoder(len(data), impl=core, expect_page_size=1024).feed(data)


def _replica(tmp_path: Path, core: ModuleType, n: int, **kw) -> FileStorage:
    st = FileStorage(str(tmp_path / "replica"))
    st.write_ltx(9, 1, 1, _snapshot(n, "block", core, **kw))
    # Two later transactions rewrite a few pages and grow the database.
    for txid, pgnos in ((2, [1, 3, n + 1]), (3, [2, n + 2])):
        commit = n + (txid - 1)
        pages = [(p, bytes([txid]) * PS) for p in pgnos]
        st.write_ltx(0, txid, txid, encode_file(pages, page_size=PS, commit=commit,
                                                min_txid=txid, max_txid=txid,
                                                timestamp_ms=1000 * txid, impl=core))
    return st


def test_restore_streams_with_tiny_chunks_and_equals_whole_file_apply(
        tmp_path: Path, core: ModuleType) -> None:
    st = _replica(tmp_path, core, 50)
    want = restore(st, tmp_path / "big-chunks.db", impl=core)
    seen = []
    got = restore(st, tmp_path / "tiny-chunks.db", impl=core, chunk_size=777, workers=3,
                  read_ahead=5000, progress=lambda *a: seen.append(a))
    assert (tmp_path / "tiny-chunks.db").read_bytes() == (tmp_path / "big-chunks.db").read_bytes()
    assert got.txid == want.txid == 3 and got.commit == 52 and got.files == 3
    data = (tmp_path / "tiny-chunks.db").read_bytes()
    assert data[:PS] == bytes([2]) * PS and data[PS:2 * PS] == bytes([3]) * PS
    assert len(data) == 52 * PS
    # Progress counts bytes, ends at the total, files done last.
    total = sum(f.size for lvl in st.list_all().values() for f in lvl)
    assert seen[-1] == (total, total, 3, 3)
    assert [s[0] for s in seen] == sorted(s[0] for s in seen)


def test_restore_memory_is_bounded_by_the_read_ahead(tmp_path: Path) -> None:
    # The bound comes from the pipeline (restore.py, stream.py), not from the core's
    # frame decoder: one run with the selected core (tracemalloc slows the pure one 50x).
    from litevfs import _impl as core

    n = 2048  # an 8 MiB database of incompressible pages (one 8 MiB snapshot object)
    st = _replica(tmp_path, core, n, compressible=False)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        restore(st, tmp_path / "out.db", impl=core, chunk_size=256 * 1024,
                read_ahead=1024 * 1024, workers=2)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert os.path.getsize(tmp_path / "out.db") == (n + 2) * PS
    assert peak < 3 * 1024 * 1024, peak  # the whole snapshot was held before (8 MiB+)


def test_damaged_file_leaves_nothing_behind(tmp_path: Path, core: ModuleType) -> None:
    st = _replica(tmp_path, core, 20)
    path = st.ltx_path(0, 3, 3)
    data = bytearray(Path(path).read_bytes())
    data[-30] ^= 1  # inside the page index
    Path(path).write_bytes(bytes(data))
    with pytest.raises(LTXFormatError, match="level 0 file 0000000000000003"):
        restore(st, tmp_path / "out.db", impl=core, chunk_size=1000)
    assert sorted(os.listdir(tmp_path)) == ["replica"]


def test_restore_never_replaces_an_existing_file(tmp_path: Path, core: ModuleType) -> None:
    st = _replica(tmp_path, core, 5)
    out = tmp_path / "out.db"
    out.write_text("mine")
    with pytest.raises(FileExistsError):
        restore(st, out, impl=core)
    assert out.read_text() == "mine"


def test_timestamp_before_the_first_file_says_so(tmp_path: Path, core: ModuleType) -> None:
    st = _replica(tmp_path, core, 5)
    with pytest.raises(TxNotAvailableError, match=r"no backup files available before 1970-01-01T00:00:00\.5Z"):
        restore(st, tmp_path / "out.db", impl=core, timestamp=0.5)
    got = restore(st, tmp_path / "at2.db", impl=core, timestamp=2.5)
    assert got.txid == 2


def test_empty_or_missing_replica_says_why(tmp_path: Path, core: ModuleType) -> None:
    with pytest.raises(TxNotAvailableError, match="does not exist"):
        restore(FileStorage(str(tmp_path / "nope")), tmp_path / "out.db", impl=core)
