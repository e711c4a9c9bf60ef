"""CRC-64/GO-ISO on both twins: check values, Go ``crc64.Update`` chaining, buffer types."""

from __future__ import annotations

import array
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

CHECK = 0xB90956C775A41001  # CRC-64/GO-ISO("123456789")
FLAG = 1 << 63
MASK = (1 << 64) - 1

HYPO = settings(
    max_examples=25 if os.environ.get("HYPOTHESIS_PROFILE") == "ci" else 60,
    deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def reference_crc(data: bytes, crc: int = 0) -> int:
    """Bit-at-a-time CRC-64/ISO (reflected poly 0xD800000000000000), independent of the twins."""
    crc ^= MASK
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xD800000000000000 if crc & 1 else crc >> 1
    return crc ^ MASK


def test_check_value(core):
    assert core.crc64(b"123456789") == CHECK
    assert reference_crc(b"123456789") == CHECK


def test_empty_input_is_identity(core):
    assert core.crc64(b"") == 0
    assert core.crc64(b"", 12345) == 12345
    assert core.crc64(b"", MASK) == MASK


def test_update_semantics_chain(core):
    data = os.urandom(1000)
    whole = core.crc64(data)
    for cut in (0, 1, 7, 8, 9, 500, 999, 1000):
        assert core.crc64(data[cut:], core.crc64(data[:cut])) == whole


@pytest.mark.parametrize("n", list(range(0, 20)) + [63, 64, 65, 4096, 4100])
def test_every_tail_length_matches_reference(core, n):
    data = bytes((i * 151 + 7) & 0xFF for i in range(n))
    assert core.crc64(data) == reference_crc(data)
    assert core.crc64(data, 0xDEADBEEF) == reference_crc(data, 0xDEADBEEF)


def test_large_buffer_matches_chunked(core):
    # >= 64 KiB takes the compiled twin's nogil path
    data = os.urandom(200_000)
    chunked = 0
    for i in range(0, len(data), 4096):
        chunked = core.crc64(data[i:i + 4096], chunked)
    assert core.crc64(data) == chunked
    assert core.crc64(data[:1000]) == reference_crc(data[:1000])


def test_ltx_database_checksum_vector(core):
    """ltx ltx_test.go: three 512-byte pages of 0x01, 0x02, 0x03 -> 0xEFFFFFFFECD99000."""
    total = 0
    for pgno, fill in ((1, 1), (2, 2), (3, 3)):
        total ^= FLAG | core.crc64(pgno.to_bytes(4, "big") + bytes([fill]) * 512)
    assert FLAG | total == 0xEFFFFFFFECD99000


def test_buffer_types(core):
    data = bytes(range(256)) * 3
    want = core.crc64(data)
    assert core.crc64(bytearray(data)) == want
    assert core.crc64(memoryview(data)) == want
    assert core.crc64(memoryview(data)[10:20]) == core.crc64(data[10:20])
    # a non-contiguous view hashes its logical bytes
    assert core.crc64(memoryview(data)[::2]) == core.crc64(data[::2])
    # a typed buffer hashes its raw bytes
    words = array.array("I", range(100))
    assert core.crc64(words) == core.crc64(words.tobytes())
    assert core.crc64(memoryview(data).cast("B", (3, 256))) == want


@pytest.mark.parametrize("bad", ["abc", 123, None, [1, 2, 3]])
def test_rejects_non_buffers(core, bad):
    with pytest.raises(TypeError, match="data must be a bytes-like object"):
        core.crc64(bad)


@pytest.mark.parametrize("crc", [-1, 1 << 64, 1 << 100])
def test_rejects_out_of_range_crc(core, crc):
    with pytest.raises(ValueError, match="crc must be an unsigned 64-bit integer"):
        core.crc64(b"x", crc)


def test_rejects_non_int_crc(core):
    with pytest.raises(TypeError):
        core.crc64(b"x", 1.5)


def test_keyword_arguments(core):
    assert core.crc64(data=b"123456789", crc=0) == CHECK


def test_locked_bytearray_is_released(core):
    buf = bytearray(b"abc")
    core.crc64(buf)
    buf.extend(b"def")  # would raise BufferError if an export leaked
    assert core.crc64(buf) == reference_crc(b"abcdef")


@HYPO
@given(data=st.binary(max_size=300), crc=st.integers(0, MASK), cut=st.integers(0, 300))
def test_matches_reference(core, data, crc, cut):
    assert core.crc64(data, crc) == reference_crc(data, crc)
    cut = min(cut, len(data))
    assert core.crc64(data[cut:], core.crc64(data[:cut], crc)) == core.crc64(data, crc)
