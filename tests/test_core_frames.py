"""Page frames on both twins: ``encode_page_frame`` / ``decode_page_frame``, both LZ4 encodings."""

from __future__ import annotations

import os
import random
import tracemalloc

import lz4.block
import lz4.frame
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from litevfs.errors import LTXFormatError

HYPO = settings(
    max_examples=25 if os.environ.get("HYPOTHESIS_PROFILE") == "ci" else 60,
    deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture],
)
PAGE_SIZES = [512, 1024, 4096, 65536]


def make_page(size: int, seed: int = 0) -> bytes:
    """Half random, half zeros: compressible but not trivially."""
    rnd = random.Random(seed)
    half = size // 2
    return rnd.randbytes(half) + bytes(size - half)


def legacy_frame(pgno: int, page: bytes, **kw) -> bytes:
    opts = dict(block_size=lz4.frame.BLOCKSIZE_MAX64KB, block_linked=False,
                content_checksum=True, store_size=False)
    opts.update(kw)
    return pgno.to_bytes(4, "big") + b"\x00\x00" + lz4.frame.compress(page, **opts)


def block_frame(pgno: int, page: bytes) -> bytes:
    payload = lz4.block.compress(page, store_size=False)
    return pgno.to_bytes(4, "big") + b"\x00\x01" + len(payload).to_bytes(4, "big") + payload


# --------------------------------------------------------------------------- encode


@pytest.mark.parametrize("page_size", PAGE_SIZES)
@pytest.mark.parametrize("block", [False, True])
def test_round_trip(core, page_size, block):
    page = make_page(page_size, page_size)
    frame = core.encode_page_frame(42, page, block)
    flags = 1 if block else 0
    assert core.decode_page_frame(frame, page_size) == (42, flags, page, len(frame))
    assert core.decode_page_frame(frame, page_size, 0, len(frame)) == (42, flags, page, len(frame))


@pytest.mark.parametrize("block", [False, True])
@pytest.mark.parametrize("kind", ["zeros", "random"])
def test_round_trip_extremes(core, block, kind):
    page = bytes(4096) if kind == "zeros" else os.urandom(4096)  # random: stored uncompressed
    frame = core.encode_page_frame((1 << 32) - 1, page, block=block)
    assert core.decode_page_frame(frame, 4096)[:3] == ((1 << 32) - 1, int(block), page)


def test_block_encoding_layout(core):
    page = make_page(4096, 1)
    frame = core.encode_page_frame(7, page, block=True)
    assert frame == block_frame(7, page)
    assert frame[:6] == b"\x00\x00\x00\x07\x00\x01"
    assert int.from_bytes(frame[6:10], "big") == len(frame) - 10


def test_legacy_encoding_layout(core):
    page = make_page(4096, 2)
    frame = core.encode_page_frame(7, page)
    assert frame == legacy_frame(7, page)
    assert frame[:6] == b"\x00\x00\x00\x07\x00\x00"
    # LZ4 frame magic, FLG 0x64 (v1, independent blocks, content checksum), BD 0x40 (64 KiB)
    assert frame[6:12] == b"\x04\x22\x4d\x18\x64\x40"
    assert lz4.frame.decompress(frame[6:]) == page


def test_encode_accepts_buffers(core):
    page = make_page(1024, 3)
    want = core.encode_page_frame(1, page, True)
    assert core.encode_page_frame(1, bytearray(page), True) == want
    assert core.encode_page_frame(1, memoryview(page), True) == want
    assert core.encode_page_frame(pgno=1, page=page, block=True) == want


@pytest.mark.parametrize("pgno", [0, -1, 1 << 32])
def test_encode_rejects_bad_pgno(core, pgno):
    with pytest.raises(ValueError, match=f"page number {pgno} out of range"):
        core.encode_page_frame(pgno, bytes(512))


@pytest.mark.parametrize("n", [0, 100, 511, 513, 3000, 131072])
def test_encode_rejects_bad_page_size(core, n):
    with pytest.raises(ValueError, match=f"invalid page size {n}"):
        core.encode_page_frame(1, bytes(n))


def test_encode_rejects_non_buffer(core):
    with pytest.raises(TypeError, match="page must be a bytes-like object, not 'str'"):
        core.encode_page_frame(1, "x" * 512)


# --------------------------------------------------------------------------- decode


@pytest.mark.parametrize("block", [False, True])
def test_decode_inside_a_larger_buffer(core, block):
    pages = [make_page(4096, i) for i in range(3)]
    frames = [core.encode_page_frame(i + 1, p, block) for i, p in enumerate(pages)]
    data = bytearray(b"H" * 100 + b"".join(frames) + bytes(6) + b"index...")
    pos = 100
    for i, frame in enumerate(frames):
        assert core.decode_page_frame(data, 4096, pos) == (i + 1, int(block), pages[i], len(frame))
        assert core.decode_page_frame(memoryview(data), 4096, pos, len(frame))[2] == pages[i]
        pos += len(frame)
    with pytest.raises(LTXFormatError, match=r"unexpected end-of-pages header \(page number 0\)"):
        core.decode_page_frame(data, 4096, pos)
    data.extend(b"x")  # no buffer export leaked


def test_legacy_frame_variants(core):
    """Frames from other LZ4 writers: content size, block checksums, no content checksum."""
    page = make_page(4096, 4)
    for kw in ({"store_size": True}, {"block_checksum": True}, {"content_checksum": False},
               {"block_size": lz4.frame.BLOCKSIZE_MAX4MB, "block_linked": True},
               {"compression_level": 9}):
        frame = legacy_frame(3, page, **kw)
        assert core.decode_page_frame(frame, 4096) == (3, 0, page, len(frame)), kw
        assert core.decode_page_frame(frame + b"tail", 4096) == (3, 0, page, len(frame)), kw


@pytest.mark.parametrize("page_size", [0, 256, 1000, 4097, 131072, -4096])
def test_invalid_page_size(core, page_size):
    frame = core.encode_page_frame(1, bytes(4096))
    with pytest.raises(LTXFormatError, match=f"^invalid page size {page_size}$"):
        core.decode_page_frame(frame, page_size)


def test_pgno_zero(core):
    with pytest.raises(LTXFormatError, match="unexpected end-of-pages header"):
        core.decode_page_frame(bytes(6), 4096)
    with pytest.raises(LTXFormatError, match="unexpected end-of-pages header"):
        core.decode_page_frame(bytes(6), 4096, 0, 6)
    with pytest.raises(LTXFormatError, match="page frame has page number 0"):
        core.decode_page_frame(b"\x00\x00\x00\x00\x00\x01" + bytes(20), 4096)


@pytest.mark.parametrize("flags", [0x0002, 0x0003, 0x8000, 0xFFFF])
def test_unknown_flags(core, flags):
    data = b"\x00\x00\x00\x09" + flags.to_bytes(2, "big") + bytes(20)
    with pytest.raises(LTXFormatError, match=f"page 9: invalid page frame flags 0x{flags:04x}"):
        core.decode_page_frame(data, 4096)


@pytest.mark.parametrize("n", range(6))
def test_truncated_header(core, n):
    with pytest.raises(LTXFormatError, match="^truncated page frame header$"):
        core.decode_page_frame(b"\x00\x00\x00\x01\x00\x01"[:n], 4096)


def test_truncated_size_prefix(core):
    for n in range(6, 10):
        with pytest.raises(LTXFormatError, match="page 1: truncated page frame size prefix"):
            core.decode_page_frame(block_frame(1, bytes(512))[:n], 512)


@pytest.mark.parametrize("block", [False, True])
def test_truncated_payload(core, block):
    frame = core.encode_page_frame(5, make_page(4096, 5), block)
    for cut in (len(frame) - 1, len(frame) - 4, 12, 10):
        with pytest.raises(LTXFormatError, match="page 5: truncated page frame"):
            core.decode_page_frame(frame[:cut], 4096)


def test_hostile_size_prefix_allocates_nothing(core):
    data = b"\x00\x00\x00\x01\x00\x01\xff\xff\xff\xff" + bytes(100)
    tracemalloc.start()
    try:
        with pytest.raises(LTXFormatError, match="page 1: truncated page frame"):
            core.decode_page_frame(data, 65536)
        with pytest.raises(LTXFormatError, match="does not match the frame size 110"):
            core.decode_page_frame(data, 65536, 0, 110)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 100_000


def test_hostile_legacy_block_length(core):
    header = lz4.frame.compress(b"x" * 512, store_size=False)[:7]
    data = b"\x00\x00\x00\x01\x00\x00" + header + b"\xff\xff\xff\x7f" + bytes(50)
    with pytest.raises(LTXFormatError, match="page 1: truncated page frame"):
        core.decode_page_frame(data, 512)


def test_decompression_bomb_is_capped(core):
    """A legacy frame of 64 KiB of zeros read as a 512-byte page: no 64 KiB output."""
    frame = core.encode_page_frame(1, bytes(65536))
    tracemalloc.start()
    try:
        with pytest.raises(LTXFormatError, match="page 1: page decompresses to more than 512 bytes"):
            core.decode_page_frame(frame, 512)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 32_000
    with pytest.raises(LTXFormatError, match="page 1: corrupt LZ4 block"):
        core.decode_page_frame(core.encode_page_frame(1, bytes(65536), True), 512)


@pytest.mark.parametrize("block", [False, True])
def test_page_smaller_than_page_size(core, block):
    frame = core.encode_page_frame(8, make_page(4096, 8), block)
    with pytest.raises(LTXFormatError,
                       match="page 8: page decompresses to 4096 bytes, expected 8192"):
        core.decode_page_frame(frame, 8192)


@pytest.mark.parametrize("block", [False, True])
def test_size_mismatch(core, block):
    frame = core.encode_page_frame(2, make_page(1024, 2), block)
    padded = frame + bytes(16)
    n = len(frame)
    with pytest.raises(LTXFormatError,
                       match=f"page 2: frame length {n} does not match the frame size {n + 3}"):
        core.decode_page_frame(padded, 1024, 0, n + 3)
    short = n - 3
    message = (f"frame length {n} does not match the frame size {short}" if block
               else f"LZ4 frame runs past the frame size {short}")
    with pytest.raises(LTXFormatError, match=f"page 2: {message}"):
        core.decode_page_frame(padded, 1024, 0, short)


def test_size_argument_checks(core):
    frame = core.encode_page_frame(1, bytes(512))
    with pytest.raises(ValueError, match="size must be -1 or >= 0, got -2"):
        core.decode_page_frame(frame, 512, 0, -2)
    for size in range(6):
        with pytest.raises(LTXFormatError, match=f"page frame size {size} is smaller than"):
            core.decode_page_frame(frame, 512, 0, size)
    for size in (len(frame) + 1, 1 << 40, 1 << 80):
        with pytest.raises(LTXFormatError, match="^truncated page frame$"):
            core.decode_page_frame(frame, 512, 0, size)
    with pytest.raises(LTXFormatError, match="^truncated page frame$"):
        core.decode_page_frame(frame, 512, 1, len(frame))


def test_offset_argument(core):
    frame = core.encode_page_frame(1, bytes(512))
    with pytest.raises(ValueError, match="offset must be >= 0, got -1"):
        core.decode_page_frame(frame, 512, -1)
    with pytest.raises(LTXFormatError, match="^truncated page frame header$"):
        core.decode_page_frame(frame, 512, len(frame))
    with pytest.raises(LTXFormatError, match="^truncated page frame header$"):
        core.decode_page_frame(frame, 512, 1 << 70)


def test_bad_lz4_magic(core):
    frame = bytearray(core.encode_page_frame(1, bytes(512)))
    frame[6] ^= 0xFF
    with pytest.raises(LTXFormatError, match="page 1: bad LZ4 frame magic"):
        core.decode_page_frame(frame, 512)


def test_corrupt_content_checksum(core):
    frame = bytearray(core.encode_page_frame(1, make_page(512, 9)))
    frame[-1] ^= 0x01
    with pytest.raises(LTXFormatError, match="page 1: corrupt LZ4 frame"):
        core.decode_page_frame(frame, 512)


def test_corrupt_block_payload(core):
    frame = bytearray(core.encode_page_frame(1, bytes(4096), True))
    frame[10] = 0xFF  # the first token now claims a huge literal run
    with pytest.raises(LTXFormatError, match="page 1: corrupt LZ4 block"):
        core.decode_page_frame(frame, 4096)


def test_rejects_non_buffers(core):
    with pytest.raises(TypeError, match="data must be a bytes-like object, not 'NoneType'"):
        core.decode_page_frame(None, 4096)


def test_result_types(core):
    pgno, flags, page, frame_len = core.decode_page_frame(core.encode_page_frame(3, bytes(512)), 512)
    assert (type(pgno), type(flags), type(page), type(frame_len)) == (int, int, bytes, int)


# --------------------------------------------------------------------------- fuzz


@st.composite
def damaged_frames(draw):
    page_size = draw(st.sampled_from([512, 1024, 4096]))
    page = draw(st.one_of(st.just(bytes(page_size)), st.binary(min_size=page_size, max_size=page_size)))
    frame = bytearray(block_frame(draw(st.integers(1, 9)), page) if draw(st.booleans())
                      else legacy_frame(draw(st.integers(1, 9)), page))
    for _ in range(draw(st.integers(0, 3))):
        i = draw(st.integers(0, len(frame) - 1))
        frame[i] ^= 1 << draw(st.integers(0, 7))
    frame = frame[:draw(st.integers(0, len(frame) + 2))]
    size = draw(st.one_of(st.just(-1), st.integers(0, len(frame) + 2)))
    return bytes(frame), page_size, size


@HYPO
@given(case=damaged_frames())
def test_damaged_frames_raise_only_format_errors(core, case):
    data, page_size, size = case
    try:
        pgno, flags, page, frame_len = core.decode_page_frame(data, page_size, 0, size)
    except LTXFormatError:
        return
    assert len(page) == page_size and 0 < frame_len <= len(data) and flags in (0, 1) and pgno


@HYPO
@given(data=st.binary(max_size=300), page_size=st.sampled_from([512, 4096]),
       offset=st.integers(0, 20), size=st.integers(-1, 320))
def test_random_bytes_raise_only_format_errors(core, data, page_size, offset, size):
    try:
        core.decode_page_frame(b"\x00\x00\x00\x01" + data, page_size, offset, size)
    except LTXFormatError:
        pass


def test_constants_agree_with_ltx_format():
    from litevfs import _pagecache_py as pure
    from litevfs.ltx import format as fmt

    names = ("HEADER_SIZE", "PAGE_HEADER_SIZE", "SIZE_PREFIX", "PAGE_FLAG_SIZE",
             "MIN_PAGE_SIZE", "MAX_PAGE_SIZE")
    assert [getattr(pure, n) for n in names] == [getattr(fmt, n) for n in names]
