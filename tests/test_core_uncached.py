"""``PageCache.uncached(index, pgnos, skip)`` on both twins: the batch lookup of
prefetch planning (which of a scan's next pages are mapped, not cached and not in
flight), a probe that never changes the LRU or its counters; and twin parity."""

from __future__ import annotations


import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.core_support import HYPO, entries, key


def as_lists(result) -> list[list[int]]:
    return [list(a) for a in result]


def test_mapped_uncached_pages_in_order(core):
    ix = core.PageIndex()
    ix.merge(3, 10, *entries([1, 2, 5, 6, 9]))
    ix.merge(7, 20, *entries([6], base=50_000, size=123))  # newer version of page 6
    c = core.PageCache(1 << 20)
    c.put(key(3, 2), b"x" * 10)
    c.put(key(3, 6), b"stale")  # an older file's copy of page 6 is not page 6 now
    before = (c.hits, c.misses, c.evictions, len(c))
    pg, fid, off, size = c.uncached(ix, [9, 4, 1, 2, 6, 0, -3, 1 << 40, 5])
    assert (pg.typecode, fid.typecode, off.typecode, size.typecode) == ("I", "I", "Q", "I")
    assert list(pg) == [9, 1, 6, 5]  # 4, 0, -3, 2**40 unmapped; 2 cached
    assert list(fid) == [3, 3, 7, 3]
    assert list(off) == [1000 + 4 * 4000, 1000, 50_000, 1000 + 2 * 4000]
    assert list(size) == [4000, 4000, 123, 4000]
    assert (c.hits, c.misses, c.evictions, len(c)) == before  # a probe counts nothing


def test_skip_and_recency(core):
    ix = core.PageIndex()
    ix.merge(1, 5, *entries(range(1, 11)))
    c = core.PageCache(30)
    for p in (1, 2, 3):
        c.put(key(1, p), b"0123456789")
    in_flight = {key(1, 4): object(), key(1, 7): object()}
    assert list(c.uncached(ix, range(1, 11), in_flight)[0]) == [5, 6, 8, 9, 10]
    assert list(c.uncached(ix, (), in_flight)[0]) == []
    # the probe did not refresh page 1: it is still the oldest and goes first
    c.put(key(1, 8), b"0123456789")
    assert key(1, 1) not in c and key(1, 2) in c


def test_equal_non_int_key_counts_as_cached(core):
    ix = core.PageIndex()
    ix.merge(0, 1, *entries([1, 2]))
    c = core.PageCache(100)
    c.put(1.0, b"a")  # equal to key(0, 1) == 1, as a dict would see it
    assert list(c.uncached(ix, [1, 2])[0]) == [2]


@pytest.mark.parametrize("bad, kind", [([1, "2"], TypeError), ([1.5], TypeError), (7, TypeError)])
def test_bad_arguments(core, bad, kind):
    ix = core.PageIndex()
    ix.merge(0, 1, *entries([1, 2]))
    with pytest.raises(kind):
        core.PageCache(100).uncached(ix, bad)
    with pytest.raises(TypeError, match="PageIndex"):
        core.PageCache(100).uncached({}, [1])


@pytest.mark.compiled
@HYPO
@given(merges=st.lists(st.tuples(st.integers(0, 5), st.lists(st.integers(1, 80), max_size=30)),
                       max_size=4, unique_by=lambda m: m[0]),  # one TXID per file id
       cached=st.lists(st.tuples(st.integers(0, 5), st.integers(1, 80)), max_size=40),
       skip=st.lists(st.tuples(st.integers(0, 5), st.integers(1, 80)), max_size=10),
       probe=st.lists(st.one_of(st.integers(-5, 90), st.just(1 << 64), st.just(True)),
                      max_size=60),
       truncate=st.one_of(st.none(), st.integers(0, 90)))
def test_twins_agree_and_match_lookup(twins, merges, cached, skip, probe, truncate):
    results = []
    for core in twins:
        ix = core.PageIndex()
        for txid, (fid, pgnos) in enumerate(merges, 1):
            ix.merge(fid, txid, *entries(sorted(set(pgnos))))
        if truncate is not None:
            ix.truncate(truncate)
        c = core.PageCache(1 << 20)
        for fid, p in cached:
            c.put(key(fid, p), b"p")
        skipped = {key(f, p) for f, p in skip}
        got = as_lists(c.uncached(ix, probe, skipped))
        # the same answer as the reader's old loop: lookup, key, `in cache`, `in skip`
        want: list[list[int]] = [[], [], [], []]
        for p in probe:
            entry = ix.lookup(p)
            if entry is None or key(entry[0], p) in c or key(entry[0], p) in skipped:
                continue
            for column, value in zip(want, (p, *entry)):
                column.append(int(value))
        assert got == want
        results.append((got, c.hits, c.misses, len(c)))
    assert results[0] == results[1]
