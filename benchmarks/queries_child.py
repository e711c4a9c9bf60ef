"""One reader process of ``queries.py``: open, run one query shape, report phases.

    python queries_child.py '{"reader": "litevfs-cython", "url": ..., "sql": ..., ...}' SPAWNED_AT

Phases go to stdout as JSON lines; after each the child waits for a line on stdin, so
the parent can cut the proxy's request timeline at the phase boundary. Lean on
purpose: what it imports before the open counts in every reader's time.
"""

import json
import sys
import time

from coldstart_child import open_litestream, peak_rss_mb, phase  # the same protocol; as lean


def traced_local(path):
    """apsw on the local file through a VFS that records the pages SQLite reads."""
    import apsw

    pages = set()

    class File(apsw.VFSFile):
        def xRead(self, amount, offset):
            if amount >= 512:
                pages.add(offset // 4096 + 1)
            return super().xRead(amount, offset)

    class Tracing(apsw.VFS):
        def __init__(self):
            super().__init__("tracing", base="")

        def xOpen(self, name, flags):
            return File("", name, flags)

    vfs = Tracing()
    con = apsw.Connection(path, flags=apsw.SQLITE_OPEN_READONLY, vfs="tracing")
    return con, pages, vfs


def main(spec, spawned_at):
    reader = spec["reader"]
    t0 = time.perf_counter()
    pages = None
    import apsw

    if reader == "litestream":
        con = open_litestream(spec["extension"])
    elif reader == "local":
        con = apsw.Connection(spec["local_db"], flags=apsw.SQLITE_OPEN_READONLY)
    elif reader == "local-traced":
        con, pages, _vfs = traced_local(spec["local_db"])
    else:
        import litevfs

        want = reader.split("-")[1]
        if litevfs.IMPLEMENTATION != want:  # never mislabel
            raise SystemExit(f"{reader}: the installed litevfs core is "
                             f"{litevfs.IMPLEMENTATION!r}")
        con = litevfs.connect(spec["url"], **spec.get("options", {}))
    t_open = time.perf_counter()
    phase("open", startup_s=time.time() - spawned_at - (t_open - t0), open_s=t_open - t0)

    params = spec.get("params") or [[]]
    t1 = time.perf_counter()
    rows = 0
    times = []
    for p in params:
        s = time.perf_counter()
        rows += len(con.execute(spec["sql"], p).fetchall())
        times.append(time.perf_counter() - s)
    t_end = time.perf_counter()
    phase("query", query_s=t_end - t1, wall_s=time.time() - spawned_at, rows=rows,
          query_times=times if len(times) > 1 else None)
    extra = {"peak_rss_mb": peak_rss_mb()}
    if pages is not None:
        extra["pages"] = sorted(pages)
    if reader.startswith("litevfs"):
        try:
            from litevfs.session import open_replicas
        except ImportError:  # an older install (baseline runs)
            from litevfs.replica import open_replicas
        (replica,) = open_replicas()
        try:
            extra["stats"] = replica.metrics.snapshot()
        except AttributeError:
            extra["stats"] = None
    phase("done", **extra)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]), float(sys.argv[2]))
