"""Hypothesis fuzzing of every parser that reads bytes or text from outside (both twins):
LTX page index (varints), page frames, whole-file decoding and verification, the
write-buffer recovery, the hydration sidecar, replica URLs and options.

Every input must either parse or raise the module's own error (LTXFormatError,
ValueError subclasses, WriteBufferError, SidecarError, ConfigError): never another exception,
never a hang (a per-example deadline), never output larger than the input allows. The
compiled twin runs the same inputs, so a segfault would kill the run. Inputs are counted
in the reliability figures; ``HYPOTHESIS_PROFILE=fuzz`` runs 5,000 per test.
"""

from __future__ import annotations

import os
import zlib
from datetime import timedelta
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from litevfs.config import Config
from litevfs.errors import ConfigError, LTXFormatError
from litevfs.ltx.decoder import FileDecoder, locate_index
from litevfs.ltx.encoder import encode_file
from litevfs.ltx.format import Header
from litevfs.engine.hydrate.sidecar import MAGIC as SIDECAR_MAGIC
from litevfs.engine.hydrate.sidecar import Sidecar, SidecarError
from litevfs.storage.url import parse_replica_url, resolve_s3_config
from litevfs.errors import WriteBufferError
from litevfs.write.buffer import WriteBuffer, read_buffer
from tests.rig import report

FUZZ = settings(deadline=timedelta(seconds=5), max_examples=int(
    os.environ.get("LITEVFS_FUZZ_EXAMPLES", 0)) or settings().max_examples * 4,
    suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large])
PAGE_SIZES = st.sampled_from([512, 1024, 4096, 65536])


def _count() -> None:
    report.record("fuzz_inputs")


def _valid_file(seed: int, encoding: str = "frame") -> bytes:
    import random

    rng = random.Random(seed)
    pages = sorted({rng.randrange(1, 40): rng.randbytes(8) * 64 for _ in range(6)}.items())
    return encode_file(pages, page_size=512, commit=max(p for p, _ in pages) + rng.randrange(3),
                       min_txid=3, max_txid=3, timestamp_ms=1, encoding=encoding)


VALID = [_valid_file(s, e) for s in range(4) for e in ("frame", "block")]


def _mutate(data: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    out = bytearray(data)
    for pos, val in edits:
        out[pos % len(out)] = val
    if cut is not None:
        out = out[:cut % (len(out) + 1)]
    return bytes(out)


@FUZZ
@given(data=st.binary(max_size=2048), offset=st.integers(0, 64))
def test_page_index_decoder(core: ModuleType, data: bytes, offset: int) -> None:
    _count()
    try:
        pgnos, offsets, sizes, end = core.decode_page_index(data, offset)
    except (LTXFormatError, ValueError):
        return
    # Every entry costs at least three bytes: output is bounded by the input.
    assert len(pgnos) == len(offsets) == len(sizes) <= max(0, len(data) - offset) // 3 + 1
    assert offset < end <= len(data)


@FUZZ
@given(data=st.binary(max_size=4096), page_size=PAGE_SIZES, offset=st.integers(0, 32),
       size=st.integers(-1, 5000))
def test_page_frame_decoder(core: ModuleType, data: bytes, page_size: int, offset: int,
                            size: int) -> None:
    _count()
    try:
        pgno, flags, page, frame_len = core.decode_page_frame(data, page_size, offset, size)
    except (LTXFormatError, ValueError):
        return
    assert len(page) == page_size and 0 < frame_len <= len(data) - offset and pgno > 0


@FUZZ
@given(which=st.integers(0, len(VALID) - 1),
       edits=st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), max_size=6),
       cut=st.one_of(st.none(), st.integers(0, 1 << 20)))
def test_whole_file_decoder_and_verification(core: ModuleType, which: int,
                                             edits: list[tuple[int, int]],
                                             cut: int | None) -> None:
    _count()
    original = VALID[which]
    data = _mutate(original, edits, cut)
    try:
        pages = list(FileDecoder(data, impl=core).pages(verify=True))
    except LTXFormatError:
        return
    # Accepted only if the content is the original's (the CRC-64 covers every page).
    assert pages == list(FileDecoder(original, impl=core).pages(verify=True))


@FUZZ
@given(data=st.binary(min_size=0, max_size=300), size=st.integers(0, 1 << 40))
def test_header_and_index_location(data: bytes, size: int) -> None:
    _count()
    try:
        Header.unpack(data).validate()
    except LTXFormatError:
        pass
    try:
        loc = locate_index(data, size)
    except LTXFormatError:
        return
    assert 0 < loc.start < loc.end <= size


@FUZZ
@given(edits=st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), max_size=8),
       cut=st.one_of(st.none(), st.integers(0, 1 << 16)),
       tail=st.binary(max_size=64))
def test_write_buffer_recovery(tmp_path_factory: pytest.TempPathFactory,
                               edits: list[tuple[int, int]], cut: int | None,
                               tail: bytes) -> None:
    """A buffer file damaged anywhere after its header recovers a prefix of its
    transactions (never an exception other than WriteBufferError, never a foreign page)."""
    _count()
    path = str(tmp_path_factory.mktemp("wb") / "buf")
    buf, _ = WriteBuffer.open(path, url="memory://fuzz", page_size=512, base_txid=0)
    written = [({1: b"a" * 512, 3: b"b" * 512}, 3), ({2: b"c" * 512}, 3), ({5: b"d" * 512}, 5)]
    for pages, commit in written:
        buf.append(pages, commit)
    buf.close()
    raw = Path(path).read_bytes()
    head = len(raw) - sum(28 + len(p) * 516 for p, _ in written)  # keep the header
    body = _mutate(raw[head:], edits, cut) if raw[head:] else b""
    Path(path).write_bytes(raw[:head] + body + tail)
    try:
        _info, records = read_buffer(path)
    except WriteBufferError:
        return
    assert records == written[:len(records)]
    try:
        buf, _rec = WriteBuffer.open(path, url="memory://fuzz", page_size=512, base_txid=0)
    except WriteBufferError:
        return
    buf.close(remove=True)


@FUZZ
@given(data=st.binary(max_size=512))
def test_write_buffer_random_file(tmp_path_factory: pytest.TempPathFactory,
                                  data: bytes) -> None:
    _count()
    path = tmp_path_factory.mktemp("wbr") / "buf"
    path.write_bytes(data)
    try:
        read_buffer(str(path))
    except WriteBufferError:
        pass


_JSON_VALUES = st.one_of(st.integers(-(1 << 70), 1 << 70), st.text(max_size=8), st.none(),
                         st.floats(allow_nan=True), st.booleans())


@FUZZ
@given(meta=st.dictionaries(st.sampled_from(["version", "replica", "page_size", "txid",
                                             "commit", "post_apply_checksum", "bitmap_len"]),
                            _JSON_VALUES),
       bitmap=st.binary(max_size=64), raw=st.binary(max_size=128), sign=st.booleans())
def test_sidecar_decode(meta: dict, bitmap: bytes, raw: bytes, sign: bool) -> None:
    """Random sidecars, most with a valid CRC so the JSON and bitmap checks are reached."""
    import json

    _count()
    body = raw if not sign else SIDECAR_MAGIC + json.dumps(meta).encode() + b"\n" + bitmap
    data = body + zlib.crc32(body).to_bytes(4, "big")
    try:
        sc = Sidecar.decode(data)
    except SidecarError:
        return
    sc.has(12345)
    assert len(sc.pages()) <= 8 * len(sc.bitmap)


_URL_PIECES = st.sampled_from([
    "s3://", "file://", "memory://", "gs://", "bucket", "/", "?", "&", "=", "endpoint",
    "region", "forcePathStyle", "skipVerify", "true", "http://127.0.0.1:9", "%", "%zz",
    "sseCustomerKey", "..", "#", " ", "\x00", "é", "concurrency", "-1", "99999999999999",
])


@FUZZ
@given(pieces=st.lists(_URL_PIECES, max_size=12), extra=st.text(max_size=12))
def test_replica_url_parsing(pieces: list[str], extra: str) -> None:
    _count()
    url = "".join(pieces) + extra
    try:
        parsed = parse_replica_url(url)
        if parsed.scheme == "s3":
            resolve_s3_config(parsed, {}, {"AWS_EC2_METADATA_DISABLED": "true"})
    except ConfigError:
        return


@FUZZ
@given(options=st.dictionaries(
    st.sampled_from(["poll_interval", "cache_size", "verify", "verify_max_size", "write",
                     "compaction_levels", "log_level", "fetch_retries", "boot_set", "nope"]),
    st.text(max_size=12), max_size=4))
def test_option_parsing(options: dict[str, str]) -> None:
    _count()
    try:
        Config.resolve(options, {"replica_url": "memory://x"}, {})
    except ConfigError:
        pass


def test_fuzz_profile_is_documented() -> None:
    assert "fuzz" in Path(__file__).read_text()
    assert os.environ.get("HYPOTHESIS_PROFILE", "dev") in ("dev", "ci", "fuzz")
