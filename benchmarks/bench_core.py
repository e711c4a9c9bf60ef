"""Micro-benchmarks of the core twins: compiled (``litevfs._pagecache``) vs pure
(``litevfs._pagecache_py``).

Prints one JSON line per measurement, ``{"bench", "impl", "value", "unit"}``,
then a table with the compiled/pure ratio (> 1 means compiled is faster).

    python benchmarks/bench_core.py                 # both twins, ~5-10 s
    python benchmarks/bench_core.py --impl cython   # one twin
    python benchmarks/bench_core.py --quick         # fewer repeats

Inputs are built once and shared: a 262,144-entry page index with realistic
offsets/sizes for 4 KiB pages (about 2.5 MB), 4 KiB pages that look like SQLite
b-tree pages (text cells plus free space) encoded both ways, a 4 MiB buffer
for CRC-64. ``read_path_hit`` is ``PageCache.page_for`` (the reader's fused index
lookup + cache get) on cache hits; ``read_path_hit_unfused`` is the same read as
the reader did it before (``lookup``, ``cache_key``, ``get`` from Python).
"""

from __future__ import annotations

import argparse
import importlib
import json
import random
import statistics
import sys
import time
from array import array
from collections.abc import Callable
from types import ModuleType

PAGE_SIZE = 4096
N_PAGES = 262_144
MB = 1_000_000

# name -> (unit, higher_is_better)
UNITS: dict[str, tuple[str, bool]] = {}


def uvarint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def build_index(n: int = N_PAGES) -> bytes:
    rnd = random.Random(1)
    out, offset = bytearray(), 100
    for pgno in range(1, n + 1):
        size = 10 + rnd.randint(1200, 4100)  # header + size prefix + compressed 4 KiB page
        out += uvarint(pgno) + uvarint(offset) + uvarint(size)
        offset += size
    out += b"\x00"
    return bytes(out)


def build_pages(n: int) -> list[bytes]:
    rnd = random.Random(2)
    words = [bytes(rnd.choices(b"abcdefghijklmnopqrstuvwxyz", k=rnd.randint(3, 10)))
             for _ in range(500)]
    pages = []
    for _ in range(n):
        used = rnd.randint(1500, 4000)
        cells = b" ".join(rnd.choices(words, k=used // 5))[:used]
        pages.append(cells + bytes(PAGE_SIZE - len(cells)))
    return pages


def cache_key(file_id: int, pgno: int) -> int:
    """As ``litevfs._impl.cache_key``."""
    return (file_id << 32) | pgno


def timeit(fn: Callable[[], object], repeat: int) -> float:
    """Median wall time of ``fn()`` in seconds (one warm-up call first)."""
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter_ns()
        fn()
        times.append(time.perf_counter_ns() - t0)
    return statistics.median(times) / 1e9


class Runner:
    def __init__(self, quick: bool) -> None:
        self.quick = quick
        self.results: dict[tuple[str, str], float] = {}

    def record(self, bench: str, impl: str, value: float, unit: str, higher_is_better: bool) -> None:
        UNITS[bench] = (unit, higher_is_better)
        self.results[(bench, impl)] = value
        print(json.dumps({"bench": bench, "impl": impl, "value": round(value, 3), "unit": unit}),
              flush=True)

    def reps(self, impl: str, fast: int, slow: int) -> int:
        n = fast if impl == "cython" else slow
        return max(1, n // 3) if self.quick else n


def bench_impl(core: ModuleType, impl: str, run: Runner, data: dict) -> None:
    # page-index decode: whole 262,144-entry index
    index = data["index"]
    t = timeit(lambda: core.decode_page_index(index), run.reps(impl, 30, 3))
    run.record("index_decode_262144", impl, t * 1e3, "ms", False)
    run.record("index_decode_rate", impl, len(index) / t / MB, "MB/s", True)

    # page-frame decode, both encodings
    for kind in ("block", "frame"):
        frames: list[bytes] = data[kind]
        blob = b"".join(frames)
        spans, pos = [], 0
        for f in frames:
            spans.append((pos, len(f)))
            pos += len(f)

        def decode(blob=blob, spans=spans) -> None:
            for off, size in spans:
                core.decode_page_frame(blob, PAGE_SIZE, off, size)

        t = timeit(decode, run.reps(impl, 9, 5))
        run.record(f"frame_decode_{kind}", impl, len(frames) * PAGE_SIZE / t / MB, "MB/s", True)

    # CRC-64 over a 4 MiB buffer (1 MiB for the pure twin, which is slow)
    buf = data["crc"] if impl == "cython" else data["crc"][: 1 << 20]
    t = timeit(lambda: core.crc64(buf), run.reps(impl, 30, 3))
    run.record("crc64", impl, len(buf) / t / MB, "MB/s", True)
    page = data["pages"][0]  # one call per 4 KiB page, as page checksums do
    t = timeit(lambda: [core.crc64(page) for _ in range(1000)], run.reps(impl, 30, 3)) / 1000
    run.record("crc64_page_4k", impl, t * 1e9, "ns/call", False)

    # PageIndex: merge a snapshot of 262,144 pages, then lookups
    pgnos, offsets, sizes, _ = data["decoded"]

    def merge() -> object:
        ix = core.PageIndex()
        ix.merge(1, 10, pgnos, offsets, sizes)
        return ix

    t = timeit(merge, run.reps(impl, 30, 3))
    run.record("pageindex_merge_262144", impl, t * 1e3, "ms", False)
    ix = merge()
    inc = data["incremental"]
    t = timeit(lambda: ix.copy().merge(2, 11, *inc), run.reps(impl, 30, 3))
    run.record("pageindex_copy_merge_1000", impl, t * 1e3, "ms", False)
    probes = data["probes"]
    lookup = ix.lookup

    def lookups() -> None:
        for p in probes:
            lookup(p)

    t = timeit(lookups, run.reps(impl, 9, 5))
    run.record("pageindex_lookup", impl, t / len(probes) * 1e9, "ns/op", False)

    # PageCache: get hit, get miss, put with eviction
    cache = core.PageCache(4096 * 1024)
    pages = data["pages"]
    for k in range(1024):
        cache.put(k, pages[k % len(pages)])
    keys = [random.Random(3).randrange(1024) for _ in range(100_000)]
    get = cache.get

    def hits() -> None:
        for k in keys:
            get(k)

    t = timeit(hits, run.reps(impl, 9, 5))
    run.record("pagecache_get_hit", impl, t / len(keys) * 1e9, "ns/op", False)
    misses = [k + 10_000 for k in keys]

    def miss() -> None:
        for k in misses:
            get(k)

    t = timeit(miss, run.reps(impl, 9, 5))
    run.record("pagecache_get_miss", impl, t / len(keys) * 1e9, "ns/op", False)
    put = cache.put
    value = pages[0]

    def churn() -> None:
        for k in misses:
            put(k, value)

    t = timeit(churn, run.reps(impl, 9, 5))
    run.record("pagecache_put_evict", impl, t / len(keys) * 1e9, "ns/op", False)

    # The read path of every SQLite page read (Reader.read_page), cache hits: the
    # 262,144-page index above, a 4 MiB cache holding the 1,024 probed pages.
    cached, read_probes = data["read_cached"], data["read_probes"]
    cache = core.PageCache(4096 * 1024)
    for i, p in enumerate(cached):
        cache.put(cache_key(1, p), pages[i % len(pages)])
    page_for = cache.page_for

    def fused() -> None:
        for p in read_probes:
            page_for(ix, p)

    t = timeit(fused, run.reps(impl, 9, 5))
    run.record("read_path_hit", impl, t / len(read_probes) * 1e9, "ns/op", False)
    get = cache.get

    def unfused() -> None:  # as Reader.read_page did before page_for
        for p in read_probes:
            entry = lookup(p)
            file_id, _offset, _size = entry
            get(cache_key(file_id, p))

    t = timeit(unfused, run.reps(impl, 9, 5))
    run.record("read_path_hit_unfused", impl, t / len(read_probes) * 1e9, "ns/op", False)
    assert cache.misses == 0 and cache.hits > 0, "the read-path benchmarks must only hit"

    # Prefetch planning (Reader.prefetch): which of a scan's next 512 pages are mapped,
    # not cached and not in flight; half of each batch is cached.
    batches = data["prefetch_batches"]
    pcache = core.PageCache(1 << 30)
    for batch in batches:
        for p in batch[::2]:
            pcache.put(cache_key(1, p), b"p")
    inflight: dict[int, object] = {}
    uncached = pcache.uncached
    n_pages = sum(len(b) for b in batches)

    def batched() -> None:
        for batch in batches:
            uncached(ix, batch, inflight)

    t = timeit(batched, run.reps(impl, 9, 3))
    run.record("prefetch_lookup", impl, t / n_pages * 1e9, "ns/page", False)

    def looped() -> None:  # as Reader.prefetch did before uncached()
        for batch in batches:
            out = []
            for p in batch:
                entry = lookup(p)
                if entry is None:
                    continue
                k = cache_key(entry[0], p)
                if k in inflight or k in pcache:
                    continue
                out.append((p, entry[1], entry[2]))

    t = timeit(looped, run.reps(impl, 9, 3))
    run.record("prefetch_lookup_loop", impl, t / n_pages * 1e9, "ns/page", False)
    run.record("pageindex_nbytes_262144", impl, ix.nbytes / (1 << 20), "MiB", False)


def build_inputs(core: ModuleType) -> dict:
    import lz4.block
    import lz4.frame

    pages = build_pages(256)
    block = []
    frame = []
    for i, p in enumerate(pages, 1):
        payload = lz4.block.compress(p, store_size=False)
        block.append(i.to_bytes(4, "big") + b"\x00\x01" + len(payload).to_bytes(4, "big") + payload)
        frame.append(i.to_bytes(4, "big") + b"\x00\x00" + lz4.frame.compress(
            p, block_size=lz4.frame.BLOCKSIZE_MAX64KB, block_linked=False,
            content_checksum=True, store_size=False))
    index = build_index()
    rnd = random.Random(4)
    inc_pgnos = array("I", sorted(rnd.sample(range(1, N_PAGES + 1), 1000)))
    read_rnd = random.Random(6)
    read_cached = read_rnd.sample(range(1, N_PAGES + 1), 1024)
    pre_rnd = random.Random(8)
    return {
        "prefetch_batches": [sorted(pre_rnd.sample(range(1, N_PAGES + 1), 512))
                             for _ in range(200)],
        "read_cached": read_cached,
        "read_probes": [read_rnd.choice(read_cached) for _ in range(100_000)],
        "index": index,
        "decoded": core.decode_page_index(index),
        "incremental": (inc_pgnos, array("Q", [100] * 1000), array("I", [2000] * 1000)),
        "probes": [rnd.randint(1, N_PAGES) for _ in range(100_000)],
        "pages": pages,
        "block": block,
        "frame": frame,
        "crc": random.Random(5).randbytes(4 << 20),
    }


def table(run: Runner, impls: list[str]) -> None:
    print()
    head = f"{'benchmark':<28}{'unit':>9}" + "".join(f"{i:>12}" for i in impls)
    if len(impls) == 2:
        head += f"{'ratio':>10}"
    print(head)
    print("-" * len(head))
    for bench, (unit, higher) in UNITS.items():
        vals = [run.results.get((bench, i)) for i in impls]
        line = f"{bench:<28}{unit:>9}" + "".join(
            f"{v:>12.1f}" if v is not None else f"{'-':>12}" for v in vals)
        if len(impls) == 2 and None not in vals and bench != "pageindex_nbytes_262144":
            c, p = vals
            ratio = (c / p) if higher else (p / c)
            line += f"{ratio:>9.1f}x"
        print(line)
    if len(impls) == 2:
        print("ratio = compiled speed / pure speed (higher is better for compiled)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--impl", choices=["cython", "python", "both"], default="both")
    ap.add_argument("--quick", action="store_true", help="fewer repeats")
    args = ap.parse_args(argv)
    impls = ["cython", "python"] if args.impl == "both" else [args.impl]
    modules = {
        "cython": "litevfs._pagecache",
        "python": "litevfs._pagecache_py",
    }
    loaded = {i: importlib.import_module(modules[i]) for i in impls}
    data = build_inputs(loaded[impls[-1]])
    run = Runner(args.quick)
    for impl in impls:
        bench_impl(loaded[impl], impl, run, data)
    table(run, impls)
    return 0


if __name__ == "__main__":
    sys.exit(main())
