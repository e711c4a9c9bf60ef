"""Parity: the compiled and the pure twin, given the same input, return the same output
or raise the same exception class with the same message.

Inputs are random and malformed on purpose (random bytes, truncations, bit flips,
out-of-range and wrongly typed arguments). The hypothesis budget follows
``HYPOTHESIS_PROFILE``: ``ci`` is smaller and derandomized, ``fuzz`` runs 5000
examples per test (minutes).
"""

from __future__ import annotations

import os
from array import array

import lz4.block
import lz4.frame
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.compiled

settings.register_profile("litevfs-core-dev", max_examples=150, deadline=None)
settings.register_profile("litevfs-core-ci", max_examples=60, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
# HYPOTHESIS_PROFILE=fuzz: a long hunt for differences (minutes), not for the default run
settings.register_profile("litevfs-core-fuzz", max_examples=5000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
HYPO = settings.get_profile({"ci": "litevfs-core-ci", "fuzz": "litevfs-core-fuzz"}.get(
    os.environ.get("HYPOTHESIS_PROFILE", ""), "litevfs-core-dev"))


def normalize(value):
    if isinstance(value, array):
        return ("array", value.typecode, value.tolist())
    if isinstance(value, tuple):
        return tuple(normalize(v) for v in value)
    if isinstance(value, (set, frozenset)):
        return ("set", sorted(value))
    return value


def outcome(fn, *args, **kwargs):
    try:
        result = fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - the exception *is* the outcome
        return ("raised", type(exc), str(exc))
    return ("returned", normalize(result))


def same(twins, name, *args, **kwargs):
    compiled, pure = twins
    a = outcome(getattr(compiled, name), *args, **kwargs)
    b = outcome(getattr(pure, name), *args, **kwargs)
    assert a == b, (name, args, kwargs)
    event(f"{name}: {a[0]}" + (f" {a[1].__name__}: {a[2][:40]}" if a[0] == "raised" else ""))
    return a


# --------------------------------------------------------------------------- strategies


def uvarint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


@st.composite
def mutated(draw, base: bytes) -> bytes:
    """``base`` with a few bit flips, byte edits, insertions, deletions and a truncation."""
    data = bytearray(base)
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete"]))
        i = draw(st.integers(0, len(data)))
        if kind == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=4))
        elif i < len(data):
            if kind == "flip":
                data[i] ^= 1 << draw(st.integers(0, 7))
            elif kind == "set":
                data[i] = draw(st.sampled_from([0x00, 0x01, 0x7F, 0x80, 0xFF]))
            else:
                del data[i]
    if draw(st.booleans()):
        data = data[:draw(st.integers(0, len(data)))]
    return bytes(data)


int_args = st.one_of(
    st.integers(-3, 3), st.integers(0, 10_000), st.sampled_from([1 << 31, 1 << 32, 1 << 63, 1 << 64, 1 << 90]),
)
odd_args = st.sampled_from([None, 1.0, "1", True, False, -(1 << 70)])


def rarely(common, *odd):
    """Mostly ``common``; now and then one of ``odd``."""
    return st.one_of(*([common] * 4), *odd)


@st.composite
def index_bytes(draw) -> bytes:
    n = draw(st.integers(0, 20))
    pgnos = sorted(draw(st.sets(st.integers(1, 70_000), min_size=n, max_size=n)))
    if draw(st.booleans()):  # well-formed values
        offsets, sizes = st.integers(100, 1 << 33), st.integers(6, 70_000)
    else:
        offsets = st.one_of(st.integers(100, 1 << 33), st.integers(0, 120),
                            st.integers(100, (1 << 64) - 1))
        sizes = st.one_of(st.integers(6, 70_000), st.integers(0, 8),
                          st.integers(2**31 - 2, 2**31 + 2))
    body = b"".join(uvarint(p) + uvarint(draw(offsets)) + uvarint(draw(sizes)) for p in pgnos)
    body += b"\x00"
    return draw(st.one_of(st.just(body), mutated(body), st.binary(max_size=60)))


def buffers(data: bytes):
    """The same bytes as several buffer types (and one non-buffer)."""
    padded = bytes(x for b in data for x in (b, 0xAA))
    return st.sampled_from([
        data, bytearray(data), memoryview(data), memoryview(padded)[::2],
    ])


@st.composite
def frame_bytes(draw) -> tuple[bytes, int]:
    """A page frame of either encoding, intact, with a damaged payload, or damaged anywhere."""
    page_size = draw(st.sampled_from([512, 1024, 4096]))
    page = draw(st.one_of(st.just(bytes(page_size)),
                          st.binary(min_size=page_size, max_size=page_size),
                          st.just(b"ab" * (page_size // 2))))
    pgno = 0 if draw(st.integers(0, 9)) == 0 else draw(st.integers(1, 5))
    if draw(st.booleans()):
        payload = lz4.block.compress(page, store_size=False)
        header = pgno.to_bytes(4, "big") + b"\x00\x01" + len(payload).to_bytes(4, "big")
    else:
        flags = b"\x00\x02" if draw(st.integers(0, 9)) == 0 else b"\x00\x00"
        header = pgno.to_bytes(4, "big") + flags
        payload = lz4.frame.compress(
            page, block_size=lz4.frame.BLOCKSIZE_MAX64KB, block_linked=False,
            store_size=draw(st.booleans()), content_checksum=draw(st.booleans()),
            block_checksum=draw(st.booleans()))
    damage = draw(st.sampled_from(["none", "payload", "payload", "anywhere"]))
    if damage == "payload":
        frame = header + draw(mutated(payload))
    elif damage == "anywhere":
        frame = draw(mutated(header + payload))
    else:
        frame = header + payload
    return frame, page_size


# --------------------------------------------------------------------------- functions


@HYPO
@given(data=st.binary(max_size=200).flatmap(buffers),
       crc=st.one_of(st.integers(0, (1 << 64) - 1), int_args, odd_args))
def test_crc64(twins, data, crc):
    same(twins, "crc64", data)
    same(twins, "crc64", data, crc)


@HYPO
@given(data=st.one_of(st.none(), st.text(max_size=3), st.integers(), st.lists(st.integers(0, 255))))
def test_non_buffer_inputs(twins, data):
    same(twins, "crc64", data)
    same(twins, "decode_page_index", data)
    same(twins, "decode_page_frame", data, 4096)
    same(twins, "encode_page_frame", 1, data)


@HYPO
@given(data=index_bytes(), prefix=st.binary(max_size=3), kind=st.integers(0, 3))
def test_decode_page_index(twins, data, prefix, kind):
    whole = prefix + data
    buf = [whole, bytearray(whole), memoryview(whole), memoryview(whole + b"\x00")[:-1]][kind]
    same(twins, "decode_page_index", buf, len(prefix))


@HYPO
@given(data=index_bytes(), offset=st.one_of(int_args, odd_args))
def test_decode_page_index_arguments(twins, data, offset):
    same(twins, "decode_page_index", data, offset)
    same(twins, "decode_page_index", data=data, offset=offset)


@HYPO
@given(case=frame_bytes(), prefix=st.binary(max_size=3), kind=st.integers(0, 2),
       size_delta=st.one_of(st.none(), st.just(0), st.integers(-12, 12)))
def test_decode_page_frame(twins, case, prefix, kind, size_delta):
    frame, page_size = case
    whole = prefix + frame + b"tail"
    buf = [whole, bytearray(whole), memoryview(whole)][kind]
    size = -1 if size_delta is None else len(frame) + size_delta
    same(twins, "decode_page_frame", buf, page_size, len(prefix), size)


@HYPO
@given(case=frame_bytes(), page_size=st.one_of(
           st.sampled_from([0, 256, 512, 1000, 1024, 4096, 8192, 65536, 131072]), int_args, odd_args),
       offset=st.one_of(int_args, odd_args), size=st.one_of(int_args, odd_args))
def test_decode_page_frame_arguments(twins, case, page_size, offset, size):
    frame, _ = case
    same(twins, "decode_page_frame", frame, page_size, offset)
    same(twins, "decode_page_frame", frame, page_size, 0, size)
    same(twins, "decode_page_frame", frame, page_size, offset, size)


@HYPO
@given(pgno=st.one_of(st.integers(1, (1 << 32) - 1), int_args, odd_args),
       size=st.sampled_from([0, 100, 511, 512, 1024, 4096, 8192]),
       fill=st.sampled_from(["zeros", "random", "text"]),
       block=st.sampled_from([False, True, 0, 1, None, "", "yes"]),
       data=st.data())
def test_encode_page_frame(twins, pgno, size, fill, block, data):
    if fill == "zeros":
        page = bytes(size)
    elif fill == "random":
        page = data.draw(st.binary(min_size=size, max_size=size))
    else:
        page = (b"litevfs page " * (size // 13 + 1))[:size]
    page_buf = data.draw(buffers(page))
    result = same(twins, "encode_page_frame", pgno, page_buf, block)
    if result[0] == "returned":
        same(twins, "decode_page_frame", result[1], size)


# --------------------------------------------------------------------------- classes


def index_state(ix, top: int):
    return (len(ix), ix.max_pgno, ix.nbytes, sorted(ix.file_ids()),
            [ix.lookup(p) for p in range(-1, top + 2)], repr(ix))


small_ints = st.one_of(st.integers(0, 8), int_args)

index_ops = st.lists(st.one_of(
    st.tuples(st.just("merge"), small_ints, st.one_of(st.integers(0, 30), int_args),
              st.lists(st.one_of(st.integers(1, 90), st.integers(-1, 0), st.just(1 << 32)), max_size=12),
              st.lists(st.integers(100, 1 << 40), max_size=12),
              st.lists(st.one_of(st.integers(1, 5000), st.just(0)), max_size=12),
              st.sampled_from(["array", "list", "tuple"])),
    st.tuples(st.just("truncate"), st.one_of(st.integers(0, 95), int_args, odd_args)),
    st.tuples(st.just("lookup"), st.one_of(st.integers(-2, 95), int_args, odd_args)),
    st.tuples(st.just("copy")),
), max_size=25)


def apply_index_op(ix, op):
    if op[0] == "merge":
        _, fid, txid, pgnos, offs, sizes, kind = op
        n = min(len(pgnos), len(offs), len(sizes)) if kind == "array" else None
        if kind == "array":
            try:
                args = (array("I", pgnos[:n]), array("Q", offs[:n]), array("I", sizes[:n]))
            except OverflowError:
                args = (pgnos[:n], offs[:n], sizes[:n])
        elif kind == "tuple":
            args = (tuple(pgnos), tuple(offs), tuple(sizes))
        else:
            args = (pgnos, offs, sizes)
        return ix, outcome(ix.merge, fid, txid, *args)
    if op[0] == "truncate":
        return ix, outcome(ix.truncate, op[1])
    if op[0] == "lookup":
        return ix, outcome(ix.lookup, op[1])
    return ix.copy(), None


@HYPO
@given(ops=index_ops)
def test_page_index(twins, ops):
    compiled, pure = twins
    a, b = compiled.PageIndex(), pure.PageIndex()
    assert index_state(a, 95) == index_state(b, 95)
    for op in ops:
        a, ra = apply_index_op(a, op)
        b, rb = apply_index_op(b, op)
        assert ra == rb, op
        assert index_state(a, 95) == index_state(b, 95), op


def cache_state(c):
    return (len(c), c.capacity, c.nbytes, c.hits, c.misses, c.evictions,
            [k in c for k in range(-1, 12)], repr(c))


cache_ops = st.lists(st.one_of(
    st.tuples(st.just("put"), st.integers(-1, 10), st.integers(0, 150)),
    st.tuples(st.just("put_bad"), st.sampled_from([[1], {}]),
              st.sampled_from([b"x", bytearray(b"x"), "x", None, memoryview(b"x")])),
    st.tuples(st.just("get"), st.one_of(st.integers(-1, 11), st.sampled_from([1.0, True, "k", (1,)]))),
    st.tuples(st.just("discard"), st.one_of(st.integers(-1, 11), st.sampled_from([1.0, [1]]))),
    st.tuples(st.just("contains"), st.one_of(st.integers(-1, 11), st.sampled_from([[1]]))),
    st.tuples(st.just("clear")),
), max_size=50)


def apply_cache_op(c, op):
    if op[0] == "put":
        return outcome(c.put, op[1], bytes([op[1] & 0xFF]) * op[2])
    if op[0] == "put_bad":
        return (outcome(c.put, op[1], b"x"), outcome(c.put, 1, op[2]))
    if op[0] == "get":
        return outcome(c.get, op[1])
    if op[0] == "discard":
        return outcome(c.discard, op[1])
    if op[0] == "contains":
        return outcome(c.__contains__, op[1])
    return outcome(c.clear)


@HYPO
@given(capacity=st.one_of(st.integers(0, 600), int_args, odd_args), ops=cache_ops)
def test_page_cache(twins, capacity, ops):
    compiled, pure = twins
    made = (outcome(compiled.PageCache, capacity), outcome(pure.PageCache, capacity))
    if made[0][0] == "raised" or made[1][0] == "raised":
        assert made[0] == made[1]
        return
    a, b = compiled.PageCache(capacity), pure.PageCache(capacity)
    for op in ops:
        assert apply_cache_op(a, op) == apply_cache_op(b, op), op
        assert cache_state(a) == cache_state(b), op
