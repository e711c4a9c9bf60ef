"""``PageCache.page_for(index, pgno)`` on both twins: the reader's fused hot path
(``index.lookup`` -> key ``(file_id << 32) | pgno`` -> ``get``), and parity of the
two twins on it, on mixed key types and on many keys (the compiled twin keeps
int keys in a C table, other keys in a dict)."""

from __future__ import annotations


import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.core_support import HYPO, entries, key


def page(n: int, fill: int = 0) -> bytes:
    return bytes([fill & 0xFF]) * n


def counters(c) -> tuple[int, int, int]:
    return c.hits, c.misses, c.evictions


# --------------------------------------------------------------------------- behaviour


def test_hit_miss_and_absent(core):
    ix = core.PageIndex()
    ix.merge(3, 10, *entries([1, 2, 5]))
    c = core.PageCache(10_000)
    v = page(100, 1)
    c.put(key(3, 1), v)
    assert c.page_for(ix, 1) is v  # the very object, as get returns it
    assert counters(c) == (1, 0, 0)
    assert c.page_for(ix, 2) is None  # mapped, not cached: a miss
    assert counters(c) == (1, 1, 0)
    for absent in (3, 4, 6, 1000):  # not in the index: None, counts nothing
        assert c.page_for(ix, absent) is None
    assert counters(c) == (1, 1, 0)
    # a key of another file for the same pgno is not this page
    c.put(key(4, 5), page(10))
    assert c.page_for(ix, 5) is None
    assert counters(c) == (1, 2, 0)


def test_empty_index_and_empty_cache(core):
    c = core.PageCache(100)
    assert c.page_for(core.PageIndex(), 1) is None
    assert counters(c) == (0, 0, 0)
    ix = core.PageIndex()
    ix.merge(1, 1, *entries([1]))
    assert c.page_for(ix, 1) is None and counters(c) == (0, 1, 0)
    z = core.PageCache(0)
    z.put(key(1, 1), b"")
    assert z.page_for(ix, 1) is None and counters(z) == (0, 1, 0)


def test_touches_recency_like_get(core):
    ix = core.PageIndex()
    ix.merge(2, 5, *entries([1, 2, 3, 4]))
    c = core.PageCache(300)
    for p in (1, 2, 3):
        c.put(key(2, p), page(100, p))
    assert c.page_for(ix, 1) == page(100, 1)  # 2 is now least recent
    c.put(key(2, 4), page(100, 4))
    assert [key(2, p) in c for p in (1, 2, 3, 4)] == [True, False, True, True]
    assert c.page_for(ix, 3) is not None  # order now 1, 4, 3 (oldest first)
    c.put(99, page(200))  # evicts 1 then 4
    assert [key(2, p) in c for p in (1, 3, 4)] == [False, True, False]
    assert counters(c) == (2, 0, 3)
    assert c.page_for(ix, 1) is None and c.page_for(ix, 4) is None
    assert counters(c) == (2, 2, 3)


def test_follows_the_index_to_the_newest_file(core):
    ix = core.PageIndex()
    ix.merge(1, 10, *entries([1, 2, 3]))
    c = core.PageCache(10_000)
    c.put(key(1, 2), page(10, 1))
    assert c.page_for(ix, 2) == page(10, 1)
    ix2 = ix.copy()
    ix2.merge(2, 20, *entries([2]))  # a newer file now holds page 2
    assert c.page_for(ix2, 2) is None  # the old file's page is not served
    c.put(key(2, 2), page(10, 2))
    assert c.page_for(ix2, 2) == page(10, 2)
    assert c.page_for(ix, 2) == page(10, 1)  # the older view still maps the older file
    ix.merge(0, 5, *entries([2]))  # an older file does not displace the newer one
    assert c.page_for(ix, 2) == page(10, 1)


def test_truncated_index(core):
    ix = core.PageIndex()
    ix.merge(1, 1, *entries(range(1, 11)))
    c = core.PageCache(10_000)
    for p in range(1, 11):
        c.put(key(1, p), page(10, p))
    ix.truncate(4)
    before = counters(c)
    for p in range(5, 12):
        assert c.page_for(ix, p) is None  # cached, but gone from the index
    assert counters(c) == before
    assert c.page_for(ix, 4) == page(10, 4)
    ix.truncate(0)
    assert c.page_for(ix, 1) is None and counters(c) == (before[0] + 1, before[1], 0)


@pytest.mark.parametrize("file_id", [0, 1, 0xFFFF_FFFF])
@pytest.mark.parametrize("pgno", [1, 2, 0xFFFF])
def test_key_extremes(core, file_id, pgno):
    ix = core.PageIndex()
    ix.merge(file_id, 1, *entries([pgno]))
    c = core.PageCache(100)
    c.put(key(file_id, pgno), page(5, 7))
    assert c.page_for(ix, pgno) == page(5, 7)
    assert counters(c) == (1, 0, 0)


def test_int_like_pgno(core):
    ix = core.PageIndex()
    ix.merge(1, 1, *entries([1]))
    c = core.PageCache(100)
    c.put(key(1, 1), page(5))

    class Idx:
        def __index__(self) -> int:
            return 1

    assert c.page_for(ix, True) == page(5)
    assert c.page_for(ix, Idx()) == page(5)
    assert c.hits == 2


@pytest.mark.parametrize("pgno", [0, -1, -(1 << 70), 1 << 32, 1 << 40, 1 << 64, 1 << 100, False])
def test_out_of_range_pgno_is_none(core, pgno):
    ix = core.PageIndex()
    ix.merge(1, 1, *entries([1, 2]))
    c = core.PageCache(100)
    c.put(key(1, 1), page(5))
    assert c.page_for(ix, pgno) is None
    assert counters(c) == (0, 0, 0)


@pytest.mark.parametrize("pgno, message", [
    (1.0, "'float' object cannot be interpreted as an integer"),
    ("1", "'str' object cannot be interpreted as an integer"),
    (None, "'NoneType' object cannot be interpreted as an integer"),
])
def test_rejects_non_integer_pgno(core, pgno, message):
    ix = core.PageIndex()
    ix.merge(1, 1, *entries([1]))
    c = core.PageCache(100)
    with pytest.raises(TypeError, match=message):
        c.page_for(ix, pgno)
    assert counters(c) == (0, 0, 0)


def test_rejects_other_index_types(core, impl):
    from litevfs import _pagecache_py

    c = core.PageCache(100)
    others = [None, {1: (1, 2, 3)}, c]
    if impl.name == "cython":  # the other twin's index is not this core's PageIndex
        others.append(_pagecache_py.PageIndex())
    for other in others:
        t = type(other)
        with pytest.raises(TypeError) as info:
            c.page_for(other, 1)
        assert str(info.value) == (
            f"index must be a PageIndex of the same core, not {t.__module__}.{t.__qualname__}")
    with pytest.raises(TypeError):  # the index is checked before the pgno
        c.page_for(None, "x")
    with pytest.raises(TypeError):
        c.page_for(core.PageIndex())  # type: ignore[call-arg]
    assert counters(c) == (0, 0, 0)


def test_subclassed_index_is_accepted(core):
    class Sub(core.PageIndex):
        pass

    ix = Sub()
    ix.merge(1, 1, *entries([3]))
    c = core.PageCache(100)
    c.put(key(1, 3), page(5))
    assert c.page_for(ix, 3) == page(5)


def test_finds_a_page_stored_under_an_equal_non_int_key(core):
    """Keys compare as in a dict: a page put under 2.0 or True is the page of int key 2 or 1."""
    ix = core.PageIndex()
    ix.merge(0, 1, *entries([1, 2]))
    c = core.PageCache(100)
    c.put(2.0, page(5, 2))
    c.put(True, page(5, 1))
    assert c.page_for(ix, 2) == page(5, 2)
    assert c.page_for(ix, 1) == page(5, 1)
    assert counters(c) == (2, 0, 0)


# --------------------------------------------------------------------------- models


@st.composite
def read_ops(draw):
    return draw(st.lists(st.one_of(
        st.tuples(st.just("merge"), st.integers(0, 3), st.lists(st.integers(1, 30), max_size=8)),
        st.tuples(st.just("truncate"), st.integers(0, 32)),
        st.tuples(st.just("put"), st.integers(0, 3), st.integers(1, 32), st.integers(0, 90)),
        st.tuples(st.just("read"), st.integers(-1, 33)),
        st.tuples(st.just("discard"), st.integers(0, 3), st.integers(1, 32)),
    ), max_size=60))


def apply_read_op(ix, c, op, fused: bool):
    kind = op[0]
    if kind == "merge":
        _, fid, pgnos = op
        if pgnos:
            ix.merge(fid, fid, *entries(pgnos))
    elif kind == "truncate":
        ix.truncate(op[1])
    elif kind == "put":
        _, fid, p, n = op
        c.put(key(fid, p), page(n, fid * 40 + p))
    elif kind == "discard":
        c.discard(key(op[1], op[2]))
    elif fused:
        return c.page_for(ix, op[1])
    else:  # what Reader.read_page did before page_for
        entry = ix.lookup(op[1])
        return None if entry is None else c.get(key(entry[0], op[1]))
    return "-"


def cache_state(c):
    return (len(c), c.nbytes, counters(c),
            [key(f, p) in c for f in range(4) for p in range(1, 33)])


@HYPO
@given(capacity=st.integers(0, 400), ops=read_ops())
def test_same_as_lookup_then_get(core, capacity, ops):
    """page_for == lookup + key + get: same pages, counters, recency and evictions."""
    ix_a, ix_b = core.PageIndex(), core.PageIndex()
    a, b = core.PageCache(capacity), core.PageCache(capacity)
    for op in ops:
        assert apply_read_op(ix_a, a, op, True) == apply_read_op(ix_b, b, op, False), op
        assert cache_state(a) == cache_state(b), op


def outcome(fn, *args):
    try:
        return ("returned", fn(*args))
    except Exception as exc:  # noqa: BLE001 - the exception *is* the outcome
        return ("raised", type(exc), str(exc))


@pytest.mark.compiled
@HYPO
@given(capacity=st.integers(0, 400), ops=read_ops(),
       odd=st.lists(st.sampled_from([0, -1, 1 << 64, -(1 << 70), True, 1.0, "1", None]),
                    max_size=4))
def test_twins_agree(twins, capacity, ops, odd):
    state = []
    for core in twins:
        ix, c = core.PageIndex(), core.PageCache(capacity)
        results = [apply_read_op(ix, c, op, True) for op in ops]
        results += [outcome(c.page_for, ix, p) for p in odd]
        results.append(outcome(c.page_for, None, 1))
        state.append((results, cache_state(c), repr(c)))
    assert state[0] == state[1]


# Keys of every kind the API accepts: dense ints, file-style ints, ints at the
# edges of the compiled twin's table (negative, 2**64 and beyond: dict keys),
# ints of equal hash (n and n + 2**61 - 1), and non-int keys equal to int keys.
M61 = (1 << 61) - 1
KEYS = [0, 1, 2, 3, 7, key(1, 1), key(1, 2), key(0xFFFF_FFFF, 0xFFFF_FFFF), (1 << 64) - 1,
        1 << 64, (1 << 64) + 1, -1, -2, 5, 5 + M61, 5 + 2 * M61, 1.0, 2.0, 5.0, True, False,
        float(1 << 64), "k", (1,), None, -1.0]


@pytest.mark.compiled
@HYPO
@given(capacity=st.integers(0, 300), ops=st.lists(st.one_of(
    st.tuples(st.just("put"), st.sampled_from(KEYS), st.integers(0, 60)),
    st.tuples(st.just("get"), st.sampled_from(KEYS)),
    st.tuples(st.just("contains"), st.sampled_from(KEYS)),
    st.tuples(st.just("discard"), st.sampled_from(KEYS)),
    st.tuples(st.just("clear")),
), max_size=60))
def test_twins_agree_on_mixed_keys(twins, capacity, ops):
    caches = [core.PageCache(capacity) for core in twins]
    for op in ops:
        got = []
        for c in caches:
            if op[0] == "put":
                got.append(outcome(c.put, op[1], page(op[2], len(repr(op[1])))))
            elif op[0] == "get":
                got.append(outcome(c.get, op[1]))
            elif op[0] == "contains":
                got.append(outcome(c.__contains__, op[1]))
            elif op[0] == "discard":
                got.append(outcome(c.discard, op[1]))
            else:
                got.append(outcome(c.clear))
            got[-1] = (got[-1], len(c), c.nbytes, counters(c), [k in c for k in KEYS], repr(c))
        assert got[0] == got[1], op


@pytest.mark.compiled
@HYPO
@given(data=st.data())
def test_twins_agree_on_many_keys(twins, data):
    """Thousands of int keys: table growth, deletions inside probe clusters, eviction order."""
    rnd_keys = data.draw(st.lists(st.one_of(
        st.integers(0, 5000), st.builds(key, st.integers(0, 3), st.integers(1, 3000))),
        min_size=200, max_size=3000))
    capacity = data.draw(st.sampled_from([0, 500, 20_000, 1 << 40]))
    caches = [core.PageCache(capacity) for core in twins]
    for i, k in enumerate(rnd_keys):
        for c in caches:
            if i % 5 == 4:
                c.discard(rnd_keys[i // 2])
            elif i % 7 == 6:
                c.get(rnd_keys[i // 3])
            else:
                c.put(k, page(i % 37, i))
    a, b = caches
    assert (len(a), a.nbytes, counters(a)) == (len(b), b.nbytes, counters(b))
    assert all((k in a) == (k in b) for k in rnd_keys)
    assert all(a.get(k) == b.get(k) for k in rnd_keys)
