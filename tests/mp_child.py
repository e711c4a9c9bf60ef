"""Child processes for the multi-process tests (``python tests/mp_child.py MODE ...``).

The bank: ``acct`` holds ACCOUNTS rows whose balances always sum to TOTAL; every write
transaction moves money between two accounts, inserts a unique key ``w<wid>-<n>`` into
``log`` and sets ``ctr[wid] = n``, so in any consistent snapshot ``count(log where w)``
equals ``ctr.n`` for every writer and the sum is TOTAL.

* ``init URL``: create the schema (write mode) and sync it.
* ``bank URL WID SECONDS [--interval=D]``: write transactions for SECONDS, printing
  ``c <n>`` after each COMMIT returned and ``duty`` once this process is the one that
  syncs; every few commits a read transaction checks the invariants (``violation ...``).
  Then ``litevfs.sync`` (``synced <txid>``), close, ``done <n>``. ``--stop=PATH``: also
  stop once that file exists.
* ``repl URL``: one JSON command per stdin line (``["exec", sql, params]``,
  ``["sync"]``, ``["status"]``, ``["export", path]``, ``["discard"]``), one JSON answer
  per line: ``{"ok": result}`` or ``{"error": class, "message": text}``.
* ``fork URL``: opens a write connection, commits, forks; the child must be refused the
  inherited connection, opens its own, sees the parent's commit and adds one.
* ``check URL SECONDS [--read-only]``: read transactions on a write-mode (or read-only)
  connection (both share the machine's unsynced state): prints ``checks <n> violations
  <m>``.

``repl`` takes ``--interval=D`` (the sync interval) and ``--read-only`` (a read-only
process; ``["requests"]`` answers the bucket requests it sent, ``["fetches"]`` its
whole-object GETs and object-store counts; ``MP_POLL`` sets its poll interval).
"""

from __future__ import annotations

import os
import random
import sys
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1])]

ACCOUNTS = 20
TOTAL = ACCOUNTS * 1000


def _connect(url: str, interval: str = "300ms", read_only: bool = False):
    import litevfs

    if read_only:  # a read-only process: it joins the machine's shared state as a reader
        return litevfs.connect(url, poll_interval=os.environ.get("MP_POLL", "200ms"),
                               poll_max_interval=os.environ.get("MP_POLL", "200ms"))
    con = litevfs.connect(url, write=True, sync_interval=interval, poll_interval="200ms",
                          wait_for_replica=0)
    con.set_busy_timeout(30000)
    return con


def init(url: str) -> None:
    import litevfs

    con = _connect(url)
    with con:
        con.execute("CREATE TABLE acct(id INTEGER PRIMARY KEY, bal INTEGER NOT NULL)")
        con.executemany("INSERT INTO acct VALUES (?, 1000)", [(i,) for i in range(ACCOUNTS)])
        con.execute("CREATE TABLE log(k TEXT PRIMARY KEY, w INTEGER NOT NULL)")
        con.execute("CREATE INDEX log_w ON log(w)")
        con.execute("CREATE TABLE ctr(w INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
    print(f"synced {litevfs.sync(con, timeout=60)}", flush=True)
    con.close()


def violations(con) -> list[str]:
    """The invariants, checked in one read transaction."""
    out = []
    with con:  # BEGIN ... COMMIT: one snapshot
        total, n = con.execute("SELECT sum(bal), count(*) FROM acct").fetchone()
        if (total, n) != (TOTAL, ACCOUNTS):
            out.append(f"sum {total} count {n}")
        for w, c in con.execute("SELECT w, n FROM ctr").fetchall():
            got = con.execute("SELECT count(*) FROM log WHERE w = ?", (w,)).fetchone()[0]
            if got != c:
                out.append(f"writer {w}: ctr {c} but {got} keys")
    return out


def bank(url: str, wid: int, seconds: float, interval: str, stop: str) -> None:
    import litevfs

    con = _connect(url, interval)
    rng = random.Random(wid)
    n = 0
    duty = False
    print("ready", flush=True)
    end = time.monotonic() + seconds
    while time.monotonic() < end and not (stop and os.path.exists(stop)):
        a, b = rng.randrange(ACCOUNTS), rng.randrange(ACCOUNTS)
        amount = rng.randrange(1, 50)
        n += 1
        con.execute("BEGIN IMMEDIATE")
        try:
            con.execute("UPDATE acct SET bal = bal - ? WHERE id = ?", (amount, a))
            con.execute("UPDATE acct SET bal = bal + ? WHERE id = ?", (amount, b))
            con.execute("INSERT INTO log(k, w) VALUES (?, ?)", (f"w{wid}-{n}", wid))
            con.execute("INSERT OR REPLACE INTO ctr(w, n) VALUES (?, ?)", (wid, n))
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        print(f"c {n}", flush=True)
        if n % 7 == 0:
            for v in violations(con):
                print(f"violation {v}", flush=True)
        if not duty and litevfs.write_status(con)["syncing"]:
            duty = True
            print(f"duty {os.getpid()}", flush=True)
    print(f"synced {litevfs.sync(con, timeout=120)}", flush=True)
    con.close()
    print(f"done {n}", flush=True)


def check(url: str, seconds: float, read_only: bool = False) -> None:
    con = _connect(url, read_only=read_only)
    checks = bad = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        problems = violations(con)
        checks += 1
        bad += len(problems)
        for p in problems:
            print(f"violation {p}", flush=True)
    con.close()
    print(f"checks {checks} violations {bad}", flush=True)


def repl(url: str, interval: str = "300ms", read_only: bool = False) -> None:
    import json

    import litevfs

    con = _connect(url, interval, read_only)
    print(json.dumps({"ok": "ready"}), flush=True)
    for line in sys.stdin:
        cmd, *args = json.loads(line)
        try:
            if cmd == "exec":
                result = con.execute(args[0], args[1] if len(args) > 1 else ()).fetchall()
            elif cmd == "sync":
                result = litevfs.sync(con, timeout=60)
            elif cmd == "status":
                result = litevfs.write_status(con)
            elif cmd == "requests":  # bucket requests this process sent so far
                stats = litevfs.stats(con)
                result = sum(int(stats.get(k, 0) or 0) for k in ("lists", "gets", "puts",
                                                                 "deletes"))
            elif cmd == "fetches":  # whole-object GETs, and the shared object store's counts
                ver = litevfs.stats(con)["verification"]
                result = {"whole": ver["whole_fetches"], "store": ver["object_store"]}
            elif cmd == "export":
                result = litevfs.export_unsynced(con, args[0])
            elif cmd == "discard":
                result = litevfs.discard_unsynced(con)
            elif cmd == "quit":
                break
            else:
                raise ValueError(cmd)
            print(json.dumps({"ok": result}), flush=True)
        except Exception as exc:  # noqa: BLE001 - reported to the parent
            print(json.dumps({"error": type(exc).__name__, "message": str(exc)}), flush=True)
    try:
        con.close()
        print(json.dumps({"ok": "closed"}), flush=True)
    except Exception as exc:  # noqa: BLE001
        print(json.dumps({"error": type(exc).__name__, "message": str(exc)}), flush=True)


def fork(url: str) -> None:
    import litevfs

    con = _connect(url)
    con.execute("CREATE TABLE IF NOT EXISTS f(id INTEGER PRIMARY KEY, who TEXT)")
    con.execute("INSERT INTO f(who) VALUES ('parent')")
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            try:
                con.execute("SELECT count(*) FROM f").fetchone()
                print("child: inherited connection was usable", flush=True)
                code = 1
            except Exception as exc:  # noqa: BLE001
                print(f"child refused: {exc}", flush=True)
            own = _connect(url)
            seen = own.execute("SELECT who FROM f ORDER BY id").fetchall()
            print(f"child sees {seen}", flush=True)
            own.execute("INSERT INTO f(who) VALUES ('child')")
            print(f"child synced {litevfs.sync(own, timeout=60)}", flush=True)
            own.close()
        except BaseException as exc:  # noqa: BLE001
            print(f"child error {type(exc).__name__}: {exc}", flush=True)
            code = 1
        sys.stdout.flush()
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    print(f"child exit {os.waitstatus_to_exitcode(status)}", flush=True)
    print(f"parent sees {con.execute('SELECT who FROM f ORDER BY id').fetchall()}", flush=True)
    print(f"parent synced {litevfs.sync(con, timeout=60)}", flush=True)
    con.close()


if __name__ == "__main__":
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    mode, *rest = sys.argv[1:]
    flags = {a.split("=", 1)[0]: (a.split("=", 1) + [""])[1] for a in rest if a.startswith("--")}
    pos = [a for a in rest if not a.startswith("--")]
    if mode == "init":
        init(pos[0])
    elif mode == "bank":
        bank(pos[0], int(pos[1]), float(pos[2]), flags.get("--interval") or "300ms",
             flags.get("--stop", ""))
    elif mode == "repl":
        repl(pos[0], flags.get("--interval") or "300ms", "--read-only" in flags)
    elif mode == "fork":
        fork(pos[0])
    elif mode == "check":
        check(pos[0], float(pos[1]), "--read-only" in flags)
    else:
        raise SystemExit(f"unknown mode {mode}")
