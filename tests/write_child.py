"""Child processes for the write-mode tests (run as ``python tests/write_child.py``).

* ``writer URL BUFFER FIRST COUNT``: (BUFFER ``-``: the default path) one INSERT per transaction (ids FIRST..), printing
  ``committed <id>`` after each COMMIT returns; ``--wait`` reads a line from stdin
  first; ``--sync`` calls litevfs.sync at the end and prints ``synced <txid>`` or
  ``conflict <message>``; then closes and prints ``closed`` (or ``close-error``).
* ``litestream-vfs SQL``: Litestream's own VFS extension (env LITESTREAM_REPLICA_URL)
  loaded into apsw; prints the rows as JSON.
* ``reader URL``: read-only litevfs; prints ``count <n> <monotonic>`` whenever
  ``SELECT count(*) FROM t`` changes, until stdin closes.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1])]  # tests.rig; litevfs is the installed one


def writer(url: str, buffer: str, first: int, count: int, wait: bool, sync: bool,
           interval: str) -> None:
    import litevfs

    con = litevfs.connect(url, write=True, buffer_path=None if buffer == "-" else buffer,
                          sync_interval=interval,
                          poll_interval="200ms")
    con.execute("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v TEXT)")
    if first == 0:  # continue after the recovered rows (a commit may have returned
        first = con.execute("SELECT coalesce(max(id), 0) + 1 FROM t").fetchone()[0]
    print("ready", flush=True)  # ...in the killed process without being printed)
    if wait:
        sys.stdin.readline()
    for i in range(first, first + count):
        con.execute("INSERT INTO t(id, v) VALUES (?, ?)", (i, f"row {i} " + "x" * 200))
        print(f"committed {i}", flush=True)
    if sync:
        try:
            print(f"synced {litevfs.sync(con, timeout=30)}", flush=True)
        except litevfs.ConflictError as exc:
            print(f"conflict {exc}", flush=True)
    try:
        con.close()
        print("closed", flush=True)
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        print(f"close-error {type(exc).__name__}: {exc}", flush=True)


def campaign(url: str, buffer: str, prefix: str) -> None:
    """A writer for the failover campaign: INSERT a unique tag per transaction, sync
    every 5 and print ``acked <n>`` once the tags since the previous line up to n are
    durable (sync returned). After a conflict (another writer took over) the tags since
    the last ack, never acknowledged, are discarded (``dropped <n>``) and the writer goes
    on from the replica's state."""
    import litevfs

    con = litevfs.connect(url, write=True, buffer_path=buffer, sync_interval="300ms",
                          poll_interval="200ms", wait_for_replica=0)
    con.execute("CREATE TABLE IF NOT EXISTS c(seq INTEGER PRIMARY KEY, tag TEXT)")
    status = litevfs.write_status(con)
    if status["conflict"]:
        print(f"discarded {litevfs.discard_unsynced(con)}", flush=True)
    print("ready", flush=True)
    n = 0
    while True:
        n += 1
        try:
            con.execute("INSERT INTO c(tag) VALUES (?)", (f"{prefix}-{n}",))
        except Exception as exc:  # noqa: BLE001 - a conflict refuses writes
            litevfs.discard_unsynced(con)  # tags after the last ack, up to n, are gone
            print(f"dropped {n} refused {type(exc).__name__}", flush=True)
            continue
        if n % 5 == 0:
            try:
                txid = litevfs.sync(con, timeout=30)
                print(f"acked {n} {txid} {time.time():.3f}", flush=True)
            except litevfs.ConflictError:
                litevfs.discard_unsynced(con)
                print(f"dropped {n} conflict", flush=True)
            except Exception as exc:  # noqa: BLE001 - storage trouble: nothing acked
                print(f"error {type(exc).__name__}", flush=True)


def litestream_vfs(sql: str) -> None:
    import apsw
    import litestream_vfs

    loader = apsw.Connection(":memory:")
    loader.enable_load_extension(True)
    loader.load_extension(litestream_vfs.loadable_path())
    con = apsw.Connection("file:replica.db?vfs=litestream",
                          flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI)
    print(json.dumps(con.execute(sql).fetchall()), flush=True)


def reader(url: str) -> None:
    import litevfs

    con = litevfs.connect(url, poll_interval="200ms")
    done = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    last = None
    while not done.is_set():
        try:
            n = con.execute("SELECT count(*) FROM t").fetchone()[0]
        except Exception:  # noqa: BLE001 - table not there yet
            n = -1
        if n != last:
            print(f"count {n} {time.monotonic()}", flush=True)
            last = n
        time.sleep(0.02)


if __name__ == "__main__":
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    mode, *rest = sys.argv[1:]
    if mode == "writer":
        flags = {a for a in rest if a.startswith("--")}
        pos = [a for a in rest if not a.startswith("--")]
        interval = next((a.split("=", 1)[1] for a in flags if a.startswith("--interval=")), "1s")
        writer(pos[0], pos[1], int(pos[2]), int(pos[3]), "--wait" in flags, "--sync" in flags,
               interval)
    elif mode == "campaign":
        campaign(rest[0], rest[1], rest[2])
    elif mode == "litestream-vfs":
        litestream_vfs(rest[0])
    elif mode == "reader":
        reader(rest[0])
    else:
        raise SystemExit(f"unknown mode {mode}")
