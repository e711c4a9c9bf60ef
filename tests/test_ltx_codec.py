"""LTX encode/decode round trips, checksums and malformed input, on both core twins."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from litevfs.errors import ChecksumMismatchError, LTXFormatError
from litevfs.ltx import decode_file, encode_file
from litevfs.ltx.checksum import database_checksum
from litevfs.ltx.decoder import FileDecoder
from litevfs.ltx.format import CHECKSUM_FLAG, HEADER_SIZE, Header, lock_pgno, parse_txid

PAGE_SIZES = [512, 1024, 4096, 65536]


def _page(pgno: int, page_size: int, salt: int = 0) -> bytes:
    seed = struct.pack(">II", pgno, salt)
    return (seed * (page_size // len(seed) + 1))[:page_size]


def test_crc_check_value(core):
    assert core.crc64(b"123456789") == 0xB90956C775A41001


def test_database_checksum_vector(core):
    pages = [(i, bytes([i]) * 512) for i in (1, 2, 3)]
    assert database_checksum(pages, 512, core.crc64) == 0xEFFFFFFFECD99000


@pytest.mark.parametrize("encoding", ["frame", "block"])
@pytest.mark.parametrize("page_size", PAGE_SIZES)
def test_snapshot_round_trip(core, page_size, encoding):
    pages = [(p, _page(p, page_size)) for p in range(1, 6)]
    data = encode_file(pages, page_size=page_size, commit=5, min_txid=1, max_txid=7,
                       timestamp_ms=1234, encoding=encoding, impl=core)
    out = decode_file(data, impl=core)
    assert out.pages == pages
    h = out.header
    assert (h.page_size, h.commit, h.min_txid, h.max_txid, h.timestamp) == (page_size, 5, 1, 7, 1234)
    assert h.no_checksum and out.trailer.post_apply_checksum == 0
    assert out.trailer.file_checksum & CHECKSUM_FLAG


def test_checksummed_snapshot_verifies_database_checksum(core):
    pages = [(p, _page(p, 1024)) for p in range(1, 4)]
    data = encode_file(pages, page_size=1024, commit=3, min_txid=1, max_txid=1,
                       checksums=True, impl=core)
    out = decode_file(data, impl=core)
    assert out.trailer.post_apply_checksum == database_checksum(pages, 1024, core.crc64)
    assert not out.header.no_checksum


def test_mixed_encodings_decode_alike(core):
    pages = [(p, _page(p, 4096, 3)) for p in (2, 9, 10)]
    kw = dict(page_size=4096, commit=10, min_txid=5, max_txid=5, impl=core)
    a = decode_file(encode_file(pages, encoding="frame", **kw), impl=core)
    b = decode_file(encode_file(pages, encoding="block", **kw), impl=core)
    assert a.pages == b.pages == pages


def test_lock_page_never_stored(core):
    ps = 65536
    lock = lock_pgno(ps)
    assert lock == 16385
    with pytest.raises(LTXFormatError, match="lock page"):
        encode_file([(lock, bytes(ps))], page_size=ps, commit=lock, min_txid=2, max_txid=2, impl=core)
    pages = [(lock - 1, bytes(ps)), (lock + 1, b"\1" * ps)]
    out = decode_file(encode_file(pages, page_size=ps, commit=lock + 1, min_txid=2,
                                  max_txid=2, impl=core), impl=core)
    assert [p for p, _ in out.pages] == [lock - 1, lock + 1]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    page_size=st.sampled_from(PAGE_SIZES[:3]),
    pgnos=st.sets(st.integers(min_value=1, max_value=300), min_size=0, max_size=20),
    encoding=st.sampled_from(["frame", "block"]),
    salt=st.integers(0, 2**32 - 1),
)
def test_round_trip_property(core, page_size, pgnos, encoding, salt):
    pgnos = sorted(pgnos)
    commit = max(pgnos, default=0) + 1
    pages = [(p, _page(p, page_size, salt)) for p in pgnos]
    data = encode_file(pages, page_size=page_size, commit=commit, min_txid=2, max_txid=3,
                       encoding=encoding, impl=core)
    assert decode_file(data, impl=core).pages == pages


def _good(core, encoding="frame"):
    pages = [(p, _page(p, 1024)) for p in range(1, 4)]
    return bytearray(encode_file(pages, page_size=1024, commit=3, min_txid=1, max_txid=1,
                                 encoding=encoding, impl=core))


@pytest.mark.parametrize("mutate,match", [
    (lambda d: d.__setitem__(slice(0, 4), b"XTL1"), "bad magic"),
    (lambda d: d.__delitem__(slice(len(d) - 40, len(d))), "page index|truncated|invalid|checksum"),
    (lambda d: d.__setitem__(slice(8, 12), struct.pack(">I", 1000)), "page size"),
    (lambda d: d.__setitem__(slice(0, len(d)), d[:50]), "truncated|too small"),
])
def test_malformed_structure(core, mutate, match):
    data = _good(core)
    mutate(data)
    with pytest.raises(LTXFormatError, match=match):
        decode_file(bytes(data), impl=core)


@pytest.mark.parametrize("encoding", ["frame", "block"])
def test_bit_flip_in_page_payload_is_detected(core, encoding):
    data = _good(core, encoding)
    # Flip a bit in the last byte of the first frame's payload.
    dec = FileDecoder(bytes(data), impl=core)
    pos = dec.offsets[0] + dec.sizes[0] - 1
    data[pos] ^= 0x01
    with pytest.raises(LTXFormatError):
        decode_file(bytes(data), impl=core)


def test_checksum_mismatch_named(core):
    data = _good(core)
    data[HEADER_SIZE - 1] ^= 0xFF  # reserved header byte: structure stays valid
    with pytest.raises(ChecksumMismatchError, match="file checksum mismatch"):
        decode_file(bytes(data), impl=core)
    assert len(decode_file(bytes(data), verify=False, impl=core).pages) == 3


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_corruption_never_crashes(core, data):
    buf = _good(core, data.draw(st.sampled_from(["frame", "block"])))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(buf) - 1))
        buf[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(buf)))
    try:
        decode_file(bytes(buf[:cut] if data.draw(st.booleans()) else buf), impl=core)
    except LTXFormatError:
        pass


def test_header_validation_messages():
    with pytest.raises(LTXFormatError, match="min TXID"):
        Header(2, 4096, 1, 5, 4).validate()
    with pytest.raises(LTXFormatError, match="flags"):
        Header(0x10, 4096, 1, 1, 1).validate()


def test_parse_txid_forms():
    assert parse_txid("42") == 42
    assert parse_txid("000000000000002a") == 42
    assert parse_txid("0x2a") == 42
    with pytest.raises(ValueError, match="TXID"):
        parse_txid("zz")


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_twins_agree_on_corrupt_files(data):
    """Both twins decode a corrupted file to the same pages or the same error."""
    import litevfs._pagecache as compiled
    import litevfs._pagecache_py as pure

    buf = bytearray(encode_file([(p, _page(p, 512)) for p in (1, 2, 3)], page_size=512, commit=3,
                                min_txid=1, max_txid=2, encoding=data.draw(st.sampled_from(["frame", "block"])),
                                impl=pure))
    for _ in range(data.draw(st.integers(1, 3))):
        buf[data.draw(st.integers(0, len(buf) - 1))] = data.draw(st.integers(0, 255))
    buf = bytes(buf[: data.draw(st.integers(0, len(buf)))])
    outcomes = []
    for core in (compiled, pure):
        try:
            outcomes.append(("ok", decode_file(buf, impl=core).pages))
        except LTXFormatError as exc:
            outcomes.append((type(exc), str(exc)))
    assert outcomes[0] == outcomes[1]
