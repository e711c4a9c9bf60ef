"""One cold start, in a fresh process, for ``coldstart.py`` and ``coldstart_matrix.py``:
open, query, report phases on stdout (one JSON line per phase, waiting
for a line on stdin after each so the parent can read its request counters).

    python coldstart_child.py '{"child": "litevfs-cython", "url": ..., "ids": [...], ...}' SPAWNED_AT

Kept apart from the harness and lean on purpose: everything this file imports before
the reader opens counts in every reader's cold start (argparse, subprocess, tempfile
and friends cost ~20 ms at start-up and belong to neither reader).
"""

import json
import sys
import time

POINT_SQL = "SELECT id, k, v FROM kv WHERE id = ?"
COUNT_SQL = "SELECT COUNT(*) FROM items"
# A full scan of the table b-tree (COUNT(*) alone reads the smaller covering index):
# every leaf and the payloads' overflow chains.
SCAN_SQL = "SELECT count(*), sum(length(payload)), max(note) FROM items"


def phase(name, **data):
    print(json.dumps({"phase": name, **data}), flush=True)
    sys.stdin.readline()


def peak_rss_mb():
    """VmHWM: unlike ru_maxrss it is not inherited from the parent across exec."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def open_litestream(extension):
    """Litestream's VFS (its loadable extension) on the replica LITESTREAM_REPLICA_URL names."""
    import apsw

    loader = apsw.Connection(":memory:")
    loader.enable_load_extension(True)
    loader.load_extension(extension)
    return apsw.Connection("file:replica.db?vfs=litestream",
                           flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI)


def main(spec, spawned_at):
    t_main = time.time()
    reader, ids = spec["child"], spec["ids"]
    t0 = time.perf_counter()
    import apsw

    if reader == "litestream":
        con = open_litestream(spec["extension"])
    elif reader == "local":
        con = apsw.Connection(spec["local_db"], flags=apsw.SQLITE_OPEN_READONLY)
    else:
        import litevfs

        if litevfs.IMPLEMENTATION != reader.removeprefix("litevfs-"):  # never mislabel
            raise SystemExit(f"{reader}: the installed litevfs core is "
                             f"{litevfs.IMPLEMENTATION!r}; build the extension first")
        con = litevfs.connect(spec["url"], poll_interval="1s", cache_size="256MiB")
    t_open = time.perf_counter()
    cold = {"startup_s": t_main - spawned_at, "import_open_s": t_open - t0}
    phase("open", **cold)

    t1 = time.perf_counter()
    row = con.execute(POINT_SQL, (ids[0],)).fetchone()
    t_first = time.perf_counter()
    assert row is not None and row[0] == ids[0], row
    phase("first", first_query_s=t_first - t1,
          cold_start_s=cold["startup_s"] + cold["import_open_s"] + (t_first - t1))

    def timed_points():
        out = []
        for i in ids[1:]:
            s = time.perf_counter()
            con.execute(POINT_SQL, (i,)).fetchone()
            out.append(time.perf_counter() - s)
        return out

    cold_points = timed_points()
    warm_points = timed_points()
    phase("points", points_cold=cold_points, points_warm=warm_points)
    if spec["count"]:
        s = time.perf_counter()
        n = con.execute(COUNT_SQL).fetchone()[0]
        phase("count", count_s=time.perf_counter() - s, count_rows=n)
    if spec.get("scan"):
        s = time.perf_counter()
        n = con.execute(SCAN_SQL).fetchone()[0]
        phase("scan", scan_s=time.perf_counter() - s, scan_rows=n)
    if spec["idle_s"]:  # idle polling cost: the parent counts requests during this phase
        if reader.startswith("litevfs"):
            # The one-time background CRC check of the snapshot is not polling: let it
            # finish first (its GETs land in the "settle" phase, reported apart).
            s = time.perf_counter()
            (replica,) = open_replicas()
            replica.verifier.wait_idle(300)
            phase("settle", settle_s=time.perf_counter() - s)
        time.sleep(spec["idle_s"])
        phase("idle", idle_s=spec["idle_s"])
    extra = {"peak_rss_mb": peak_rss_mb()}
    if reader.startswith("litevfs"):
        (replica,) = open_replicas()
        extra.update(impl=replica.impl.__name__, storage=replica.storage.stats.snapshot(),
                     cache_hits=replica.cache.hits, cache_misses=replica.cache.misses)
    phase("done", **extra)


def open_replicas() -> list:
    """The process's open replicas (``litevfs.session``; ``litevfs.replica`` before the
    layered layout, so a baseline install from an older commit runs this child too)."""
    try:
        from litevfs.session import open_replicas as found
    except ImportError:
        from litevfs.replica import open_replicas as found  # type: ignore[no-redef]
    return found()


if __name__ == "__main__":
    main(json.loads(sys.argv[1]), float(sys.argv[2]))
