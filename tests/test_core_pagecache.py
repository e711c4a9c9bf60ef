"""``PageCache`` on both twins: byte-bounded LRU semantics and counters."""

from __future__ import annotations

import os
from collections import OrderedDict

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

HYPO = settings(
    max_examples=25 if os.environ.get("HYPOTHESIS_PROFILE") == "ci" else 60,
    deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def page(n: int, fill: int = 0) -> bytes:
    return bytes([fill & 0xFF]) * n


def test_empty(core):
    c = core.PageCache(1000)
    assert (len(c), c.capacity, c.nbytes, c.hits, c.misses, c.evictions) == (0, 1000, 0, 0, 0, 0)
    assert c.get(1) is None
    assert c.misses == 1
    assert 1 not in c


def test_hit_returns_the_same_object(core):
    c = core.PageCache(1000)
    v = page(100, 1)
    c.put(1, v)
    assert c.get(1) is v
    assert (c.hits, c.misses, len(c), c.nbytes) == (1, 0, 1, 100)
    assert 1 in c


def test_lru_eviction_order(core):
    c = core.PageCache(300)
    for k in (1, 2, 3):
        c.put(k, page(100, k))
    c.get(1)  # 2 is now least recent
    c.put(4, page(100, 4))
    assert 2 not in c and {1, 3, 4} <= {k for k in (1, 2, 3, 4) if k in c}
    assert c.evictions == 1
    c.put(5, page(200, 5))  # evicts 3 then 1
    assert [k in c for k in (1, 3, 4, 5)] == [False, False, True, True]
    assert c.evictions == 3
    assert c.nbytes == 300


def test_contains_and_len_do_not_touch_recency_or_counters(core):
    c = core.PageCache(200)
    c.put(1, page(100))
    c.put(2, page(100))
    assert 1 in c and len(c) == 2
    c.put(3, page(100))  # 1 is still least recent
    assert 1 not in c and 2 in c
    assert (c.hits, c.misses) == (0, 0)


def test_replace(core):
    c = core.PageCache(1000)
    c.put(1, page(100))
    c.put(2, page(100))
    c.put(1, page(300, 7))  # replacing makes the key most recent
    assert (len(c), c.nbytes) == (2, 400)
    assert c.get(1) == page(300, 7)
    c2 = core.PageCache(400)
    c2.put(1, page(100))
    c2.put(2, page(100))
    c2.put(1, page(200))
    c2.put(3, page(200))  # evicts 2, the least recent
    assert [k in c2 for k in (1, 2, 3)] == [True, False, True]


def test_value_larger_than_capacity_is_not_stored(core):
    c = core.PageCache(100)
    c.put(1, page(50))
    c.put(2, page(101))
    assert 2 not in c and 1 in c and c.evictions == 0
    # replacing with an oversized value drops the stale entry
    c.put(1, page(101))
    assert 1 not in c and c.nbytes == 0 and len(c) == 0
    c.put(3, page(100))  # exactly the capacity fits
    assert c.get(3) == page(100)


def test_zero_capacity_caches_nothing(core):
    c = core.PageCache(0)
    c.put(1, b"")
    c.put(2, page(1))
    assert len(c) == 0 and c.nbytes == 0 and c.get(1) is None


def test_empty_values(core):
    c = core.PageCache(10)
    c.put(1, b"")
    assert c.get(1) == b"" and c.nbytes == 0 and c.hits == 1


def test_discard_and_clear(core):
    c = core.PageCache(1000)
    for k in range(5):
        c.put(k, page(100, k))
    c.discard(2)
    c.discard(99)  # absent: no error
    assert (len(c), c.nbytes, 2 in c) == (4, 400, False)
    c.get(0)
    c.get(2)
    c.clear()
    assert (len(c), c.nbytes) == (0, 0)
    assert (c.hits, c.misses, c.evictions) == (1, 1, 0)  # counters survive clear()
    c.put(1, page(100))
    assert c.get(1) == page(100)


def test_rejects_bad_arguments(core):
    with pytest.raises(ValueError, match="capacity must be between 0 and 2\\*\\*63-1, got -1"):
        core.PageCache(-1)
    with pytest.raises(ValueError, match="capacity must be"):
        core.PageCache(1 << 63)
    with pytest.raises(TypeError):
        core.PageCache(1.5)
    c = core.PageCache(100)
    with pytest.raises(TypeError, match="PageCache values must be bytes, not 'bytearray'"):
        c.put(1, bytearray(10))
    with pytest.raises(TypeError, match="unhashable"):
        c.put([1], b"x")
    with pytest.raises(TypeError, match="unhashable"):
        c.get([1])
    assert c.capacity == 100 and len(c) == 0


def test_properties_are_read_only(core):
    c = core.PageCache(10)
    with pytest.raises(AttributeError):
        c.capacity = 5  # type: ignore[misc]


def test_no_pickle_or_copy(core):
    import copy
    import pickle

    c = core.PageCache(10)
    for fn in (pickle.dumps, copy.copy, copy.deepcopy):
        with pytest.raises(TypeError, match="PageCache cannot be pickled or copied"):
            fn(c)


def test_large_capacity_and_many_entries(core):
    c = core.PageCache((1 << 63) - 1)
    for k in range(5000):
        c.put(k, page(10, k))
    assert len(c) == 5000 and c.nbytes == 50_000
    for k in range(0, 5000, 2):
        c.discard(k)
    for k in range(5000, 7500):  # free slots are reused
        c.put(k, page(10, k))
    assert len(c) == 5000
    kept = [*range(1, 5000, 2), *range(5000, 7500)]
    assert all(c.get(k) == page(10, k) for k in kept)


def test_constant_size_churn(core):
    c = core.PageCache(4096 * 64)
    for k in range(2000):
        c.put(k, page(4096, k))
        assert c.get(k - 10) is not None or k < 10
    assert len(c) == 64
    assert c.evictions == 2000 - 64


@st.composite
def cache_ops(draw):
    return draw(st.lists(st.one_of(
        st.tuples(st.just("put"), st.integers(0, 12), st.integers(0, 120)),
        st.tuples(st.just("get"), st.integers(0, 12)),
        st.tuples(st.just("discard"), st.integers(0, 12)),
        st.tuples(st.just("clear")),
    ), max_size=60))


@HYPO
@given(capacity=st.integers(0, 400), ops=cache_ops())
def test_against_ordered_dict_model(core, capacity, ops):
    c = core.PageCache(capacity)
    model: OrderedDict[int, bytes] = OrderedDict()
    hits = misses = evictions = 0
    for op in ops:
        if op[0] == "put":
            _, key, n = op
            value = page(n, key)
            model.pop(key, None)
            if 0 < capacity and n <= capacity:
                while sum(map(len, model.values())) + n > capacity:
                    model.popitem(last=False)
                    evictions += 1
                model[key] = value
            c.put(key, value)
        elif op[0] == "get":
            key = op[1]
            got = c.get(key)
            if key in model:
                hits += 1
                model.move_to_end(key)
                assert got == model[key]
            else:
                misses += 1
                assert got is None
        elif op[0] == "discard":
            model.pop(op[1], None)
            c.discard(op[1])
        else:
            model.clear()
            c.clear()
        assert len(c) == len(model)
        assert c.nbytes == sum(map(len, model.values())) <= capacity
        assert (c.hits, c.misses, c.evictions) == (hits, misses, evictions)
        assert all((k in c) == (k in model) for k in range(13))
