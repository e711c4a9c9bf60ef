"""``decode_page_index`` on both twins: uvarint triples up to the 0 terminator."""

from __future__ import annotations

import functools
import os
import tracemalloc
from array import array

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from litevfs.errors import LTXFormatError

HYPO = settings(
    max_examples=25 if os.environ.get("HYPOTHESIS_PROFILE") == "ci" else 60,
    deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def uvarint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def encode_index(entries) -> bytes:
    return b"".join(uvarint(p) + uvarint(o) + uvarint(s) for p, o, s in entries) + b"\x00"


def realistic_entries(n: int, first: int = 1):
    """4 KiB pages: frames of 1.5-4.1 KB laid out back to back after the header."""
    entries, offset = [], 100
    for pgno in range(first, first + n):
        size = 1500 + (pgno * 37) % 2600
        entries.append((pgno, offset, size))
        offset += size
    return entries


def as_tuples(result):
    pgnos, offsets, sizes, _ = result
    return list(zip(pgnos, offsets, sizes))


def test_empty_index(core):
    pgnos, offsets, sizes, end = core.decode_page_index(b"\x00")
    assert (len(pgnos), len(offsets), len(sizes), end) == (0, 0, 0, 1)


def test_result_types(core):
    pgnos, offsets, sizes, end = core.decode_page_index(encode_index([(1, 100, 50)]))
    assert isinstance(pgnos, array) and pgnos.typecode == "I"
    assert isinstance(offsets, array) and offsets.typecode == "Q"
    assert isinstance(sizes, array) and sizes.typecode == "I"
    assert type(end) is int


def test_round_trip_small(core):
    entries = [(1, 100, 4106), (2, 4206, 6), (5, 9999, 123456), (1000, 1 << 40, 2**31)]
    data = encode_index(entries)
    result = core.decode_page_index(data)
    assert as_tuples(result) == entries
    assert result[3] == len(data)


@functools.cache
def big_index() -> tuple[list, bytes]:
    entries = realistic_entries(262_144)
    return entries, encode_index(entries)


def test_round_trip_262144_entries(core):
    entries, data = big_index()
    pgnos, offsets, sizes, end = core.decode_page_index(data)
    assert end == len(data)
    assert len(pgnos) == 262_144
    assert pgnos[0] == 1 and pgnos[-1] == 262_144
    assert (pgnos[1000], offsets[1000], sizes[1000]) == entries[1000]
    assert list(offsets[-3:]) == [e[1] for e in entries[-3:]]


def test_offset_and_trailing_bytes(core):
    body = encode_index([(3, 100, 10), (4, 110, 10)])
    data = b"junk!" + body + b"\x00\x00\x00\x00\x00\x00\x01\x02trailer"
    pgnos, offsets, sizes, end = core.decode_page_index(data, 5)
    assert list(pgnos) == [3, 4]
    assert end == 5 + len(body)
    assert core.decode_page_index(data, offset=5)[3] == end


def test_buffer_types(core):
    data = encode_index(realistic_entries(50))
    want = as_tuples(core.decode_page_index(data))
    assert as_tuples(core.decode_page_index(bytearray(data))) == want
    assert as_tuples(core.decode_page_index(memoryview(data))) == want
    padded = bytes(x for b in data for x in (b, 0xEE))
    assert as_tuples(core.decode_page_index(memoryview(padded)[::2])) == want


def test_non_minimal_varints_are_accepted(core):
    # Go's binary.Uvarint accepts redundant continuation groups
    data = b"\x81\x00" + b"\xe4\x80\x00" + b"\x86\x00" + b"\x80\x00"
    pgnos, offsets, sizes, end = core.decode_page_index(data)
    assert (list(pgnos), list(offsets), list(sizes), end) == ([1], [100], [6], len(data))


def test_ten_byte_varint_max_u64(core):
    data = uvarint(7) + uvarint((1 << 64) - 1) + uvarint(6) + b"\x00"
    assert uvarint((1 << 64) - 1) == b"\xff" * 9 + b"\x01"
    assert list(core.decode_page_index(data)[1]) == [(1 << 64) - 1]


@pytest.mark.parametrize("data", [
    b"", b"\x01", b"\x01\x64", b"\x01\x64\x06", b"\x80", b"\x01\xe4",
    encode_index([(1, 100, 10)])[:-1],
])
def test_truncated(core, data):
    with pytest.raises(LTXFormatError, match="^truncated page index$"):
        core.decode_page_index(data)


@pytest.mark.parametrize("varint", [
    b"\xff" * 9 + b"\x02",  # tenth byte carries more than bit 63
    b"\xff" * 9 + b"\x80\x00",  # eleven bytes
    b"\x80" * 10 + b"\x00",
])
def test_varint_overflow(core, varint):
    with pytest.raises(LTXFormatError, match="varint at offset 0 overflows 64 bits"):
        core.decode_page_index(varint + b"\x00")
    with pytest.raises(LTXFormatError, match="varint at offset 1 overflows 64 bits"):
        core.decode_page_index(b"\x01" + varint + b"\x00")


def test_overflow_wins_over_later_truncation_but_not_earlier(core):
    # the data ends inside the varint before its tenth byte: truncated
    with pytest.raises(LTXFormatError, match="^truncated page index$"):
        core.decode_page_index(b"\xff" * 5)


def test_pgno_out_of_range(core):
    with pytest.raises(LTXFormatError, match=f"page number {1 << 32} out of range"):
        core.decode_page_index(encode_index([(1 << 32, 100, 10)]))
    entries = [((1 << 32) - 1, 100, 10)]
    assert as_tuples(core.decode_page_index(encode_index(entries))) == entries


@pytest.mark.parametrize("entries, message", [
    ([(2, 100, 10), (2, 110, 10)], "not sorted: page 2 after page 2"),
    ([(5, 100, 10), (3, 110, 10)], "not sorted: page 3 after page 5"),
])
def test_not_ascending(core, entries, message):
    with pytest.raises(LTXFormatError, match=message):
        core.decode_page_index(encode_index(entries))


def test_offset_inside_header(core):
    with pytest.raises(LTXFormatError, match="page 1: frame offset 99 is inside the LTX header"):
        core.decode_page_index(encode_index([(1, 99, 10)]))
    with pytest.raises(LTXFormatError, match="frame offset 0 is inside"):
        core.decode_page_index(encode_index([(1, 0, 10)]))


def test_frame_size_limits(core):
    with pytest.raises(LTXFormatError, match="page 1: frame size 5 is smaller than a page header"):
        core.decode_page_index(encode_index([(1, 100, 5)]))
    with pytest.raises(LTXFormatError, match=r"page 1: frame size 2147483649 exceeds 2\*\*31"):
        core.decode_page_index(encode_index([(1, 100, 2**31 + 1)]))
    with pytest.raises(LTXFormatError, match="exceeds"):
        core.decode_page_index(encode_index([(1, 100, (1 << 64) - 1)]))


def test_checks_run_in_entry_order(core):
    # a bad pgno is reported before the (also bad) offset of the same entry
    with pytest.raises(LTXFormatError, match="not sorted"):
        core.decode_page_index(encode_index([(4, 100, 10), (4, 1, 1)]))
    with pytest.raises(LTXFormatError, match="offset"):
        core.decode_page_index(encode_index([(4, 1, 1)]))


def test_offset_argument(core):
    with pytest.raises(ValueError, match="offset must be >= 0, got -1"):
        core.decode_page_index(b"\x00", -1)
    with pytest.raises(LTXFormatError, match="^truncated page index$"):
        core.decode_page_index(b"\x00", 1)
    with pytest.raises(LTXFormatError, match="^truncated page index$"):
        core.decode_page_index(b"\x00", 1 << 80)
    with pytest.raises(TypeError):
        core.decode_page_index(b"\x00", 0.0)


def test_rejects_non_buffers(core):
    with pytest.raises(TypeError, match="data must be a bytes-like object, not 'str'"):
        core.decode_page_index("\x00")


def test_allocation_is_bounded_by_input(core):
    """Minimal 3-byte entries are the densest input: memory stays O(len(data))."""
    data = encode_index([(p, 100, 6) for p in range(1, 128)])  # warm-up
    dense = bytearray()
    pgno = 1
    while len(dense) < 600_000:
        dense += uvarint(pgno) + b"\x64\x06"
        pgno += 1
    dense += b"\x00"
    tracemalloc.start()
    try:
        core.decode_page_index(data)
        tracemalloc.reset_peak()
        result = core.decode_page_index(dense)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(result[0]) == pgno - 1
    # 16 bytes of output per 5-byte entry here, plus geometric growth slack
    assert peak < 8 * len(dense)


def test_garbage_after_huge_claims_does_not_allocate(core):
    # a "count" hidden in the data means nothing: only real entries are stored
    data = encode_index([(1, 100, 2**31)]) + os.urandom(1000)
    assert len(core.decode_page_index(data)[0]) == 1


@st.composite
def index_entries(draw):
    n = draw(st.integers(0, 40))
    pgnos = sorted(draw(st.sets(st.integers(1, (1 << 32) - 1), min_size=n, max_size=n)))
    return [(p, draw(st.integers(100, (1 << 64) - 1)), draw(st.integers(6, 2**31))) for p in pgnos]


@HYPO
@given(entries=index_entries(), prefix=st.binary(max_size=8), suffix=st.binary(max_size=8))
def test_round_trip_property(core, entries, prefix, suffix):
    body = encode_index(entries)
    result = core.decode_page_index(prefix + body + suffix, len(prefix))
    assert as_tuples(result) == entries
    assert result[3] == len(prefix) + len(body)


@HYPO
@given(data=st.binary(max_size=200), offset=st.integers(0, 210))
def test_random_bytes_never_crash(core, data, offset):
    try:
        pgnos, offsets, sizes, end = core.decode_page_index(data, offset)
    except LTXFormatError:
        return
    assert offset < end <= len(data)
    assert data[end - 1] == 0
    assert list(pgnos) == sorted(set(pgnos))
