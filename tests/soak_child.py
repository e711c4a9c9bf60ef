"""A soak-test child process (see test_soak.py): a reader, a hydrating reader or a
litevfs writer, running until a deadline and printing one JSON line of results.

    python soak_child.py reader URL SECONDS [hydrate]
    python soak_child.py writer URL SECONDS BUFFER_PATH
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import time

import apsw

import litevfs

ACCOUNTS, INITIAL_BALANCE = 100, 1000  # tests/rig/dbgen.py's invariant
W_ACCOUNTS, W_BALANCE = 50, 100


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _peak_rss_kib() -> int:
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the forking parent
    # (the pytest process), which would report the parent's peak as ours.
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


_POOL_THREAD = re.compile(r"^litevfs-(io|s3|get|hydrate)_\d+$")


def _probe() -> dict[str, int]:
    # Thread pools start workers on demand up to their fixed maximum (the hydrator's grows
    # when polls bring changed pages after completion): count them apart from the rest,
    # where any growth would be a leak.
    names = [t.name for t in threading.enumerate()]
    pool = sum(1 for n in names if _POOL_THREAD.match(n))
    # Sockets apart from other descriptors: the S3 connection pools keep up to their
    # maximum of idle keep-alive connections, more when the machine is busy and requests
    # overlap; any other descriptor that grows would be a leak.
    fds = sockets = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # closed meanwhile (the listing's own descriptor)
        if target.startswith("socket:"):
            sockets += 1
        else:
            fds += 1
    return {"rss_kib": _rss_kib(), "fds": fds, "sockets": sockets,
            "threads": len(names) - pool, "pool_threads": pool}


def reader(url: str, seconds: float, hydrate: bool) -> dict:
    opts: dict = {"poll_interval": 0.2, "cache_size": "8MiB"}
    if hydrate:
        opts["hydration"] = True
    con = litevfs.connect(url, **opts)
    deadline = time.monotonic() + seconds
    warm_at = time.monotonic() + min(10.0, seconds / 4)
    out = {"transactions": 0, "violations": 0, "ioerrors": 0, "errors": [], "warm": None}
    while time.monotonic() < deadline:
        try:
            con.execute("BEGIN")
            (count, total), = con.execute("SELECT count(*), sum(balance) FROM accounts")
            (items,), = con.execute("SELECT count(*) FROM items")
            (again,), = con.execute("SELECT sum(balance) FROM accounts WHERE id % 2 = 0")
            (odd,), = con.execute("SELECT sum(balance) FROM accounts WHERE id % 2 = 1")
            con.execute("COMMIT")
        except apsw.IOError as exc:
            out["ioerrors"] += 1
            out["errors"] = (out["errors"] + [str(exc)])[-3:]
            try:
                con.execute("ROLLBACK")
            except apsw.Error:
                pass
            continue
        out["transactions"] += 1
        # one snapshot per read transaction: the halves must add up to the total
        if (count, total) != (ACCOUNTS, ACCOUNTS * INITIAL_BALANCE) or again + odd != total \
                or items < 0:
            out["violations"] += 1
        if out["warm"] is None and time.monotonic() >= warm_at:
            out["warm"] = _probe()
        time.sleep(0.005)
    out["end"] = _probe()
    out["peak_rss_kib"] = _peak_rss_kib()
    if hydrate:
        out["hydration"] = litevfs.hydration_status(con)["state"]
    con.close()
    return out


def writer(url: str, seconds: float, buffer_path: str) -> dict:
    con = litevfs.connect(url, write=True, sync_interval=0.2, compaction_levels="2s,10s",
                          snapshot_interval="20s", l0_retention="5s", buffer_path=buffer_path)
    con.execute("CREATE TABLE IF NOT EXISTS acct(id INTEGER PRIMARY KEY, bal INTEGER)")
    if con.execute("SELECT count(*) FROM acct").fetchall()[0][0] == 0:
        with con:
            con.executemany("INSERT INTO acct VALUES (?, ?)",
                            [(i, W_BALANCE) for i in range(W_ACCOUNTS)])
    deadline = time.monotonic() + seconds
    warm_at = time.monotonic() + min(10.0, seconds / 4)
    out = {"transactions": 0, "violations": 0, "warm": None}
    i = 0
    while time.monotonic() < deadline:
        i += 1
        with con:
            a, b = i % W_ACCOUNTS, (i * 7 + 3) % W_ACCOUNTS
            con.execute("UPDATE acct SET bal = bal - 1 WHERE id = ?", (a,))
            con.execute("UPDATE acct SET bal = bal + 1 WHERE id = ?", (b,))
        out["transactions"] += 1
        if i % 10 == 0:
            (n, total), = con.execute("SELECT count(*), sum(bal) FROM acct")
            if (n, total) != (W_ACCOUNTS, W_ACCOUNTS * W_BALANCE):
                out["violations"] += 1
        if out["warm"] is None and time.monotonic() >= warm_at:
            out["warm"] = _probe()
        time.sleep(0.01)
    litevfs.sync(con)
    out["end"] = _probe()
    out["peak_rss_kib"] = _peak_rss_kib()
    con.close()
    return out


if __name__ == "__main__":
    kind, url, secs = sys.argv[1], sys.argv[2], float(sys.argv[3])
    if kind == "reader":
        result = reader(url, secs, len(sys.argv) > 4 and sys.argv[4] == "hydrate")
    else:
        result = writer(url, secs, sys.argv[4])
    print(json.dumps(result), flush=True)
