"""Warm queries through the Python data stack: ``litevfs.dbapi2``, SQLAlchemy Core and
the ORM on a replica, side by side with the same code on the stdlib ``sqlite3`` over a
local file, in one process, interleaved over rounds (median), so noise hits all alike.

    python benchmarks/drivers.py [--rows 20000] [--queries 2000] [--fetches 50] [--rounds 9]

Two workloads: a warm point query (primary-key lookup, one row) and a 1,000-row fetch
(a primary-key range). The replica is written to in-memory storage by the test suite's
fake Litestream and read by the compiled core; after the warm-up every page is cached,
so storage plays no part in what is timed (cold starts: benchmarks/coldstart.py).
Prints one JSON line per (driver, workload) and a table with the ratios.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path[:0] = [str(Path(__file__).resolve().parents[1])]  # tests.vfs_support

import sqlalchemy as sa  # noqa: E402
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column  # noqa: E402

import litevfs._pagecache as compiled  # noqa: E402
from litevfs import dbapi2  # noqa: E402
from tests.vfs_support import FakeLitestream, unique_memory_url  # noqa: E402


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "items"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]
    price: Mapped[float]
    qty: Mapped[int]


def build(rows: int) -> tuple[Path, FakeLitestream]:
    db = Path(tempfile.mkdtemp(prefix="litevfs-drivers-")) / "primary.db"
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("PRAGMA journal_mode=DELETE")
    con.execute("CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                "price REAL NOT NULL, qty INTEGER NOT NULL)")
    con.execute("BEGIN")
    con.executemany("INSERT INTO items VALUES (?, ?, ?, ?)",
                    ((i, f"item {i:06d}", i * 0.25, i % 97) for i in range(1, rows + 1)))
    con.execute("COMMIT")
    con.close()
    ls = FakeLitestream(db, unique_memory_url("drivers"))
    ls.sync()
    return db, ls


POINT = "SELECT name, price, qty FROM items WHERE id = ?"
RANGE = "SELECT id, name, price, qty FROM items WHERE id BETWEEN ? AND ?"


def dbapi_ops(con: Any) -> dict[str, Callable[[int], Any]]:
    return {"point": lambda k: con.execute(POINT, (k,)).fetchone(),
            "fetch1000": lambda k: con.execute(RANGE, (k, k + 999)).fetchall()}


def core_ops(engine: sa.Engine) -> dict[str, Callable[[int], Any]]:
    conn = engine.connect()
    items = Item.__table__
    point = sa.select(items.c.name, items.c.price, items.c.qty).where(
        items.c.id == sa.bindparam("k"))
    rng = sa.select(items).where(items.c.id.between(sa.bindparam("a"), sa.bindparam("b")))
    return {"point": lambda k: conn.execute(point, {"k": k}).first(),
            "fetch1000": lambda k: conn.execute(rng, {"a": k, "b": k + 999}).all()}


def orm_ops(engine: sa.Engine) -> dict[str, Callable[[int], Any]]:
    session = Session(engine)
    point = sa.select(Item).where(Item.id == sa.bindparam("k"))
    rng = sa.select(Item).where(Item.id.between(sa.bindparam("a"), sa.bindparam("b")))

    def get(k: int) -> Any:
        item = session.scalars(point, {"k": k}).one()
        session.expunge_all()  # no identity-map shortcut: every query loads its object
        return item

    def fetch(k: int) -> Any:
        items = session.scalars(rng, {"a": k, "b": k + 999}).all()
        session.expunge_all()
        return items

    return {"point": get, "fetch1000": fetch}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=20_000)
    p.add_argument("--queries", type=int, default=2000)
    p.add_argument("--fetches", type=int, default=50)
    p.add_argument("--rounds", type=int, default=9)
    args = p.parse_args()
    db, ls = build(args.rows)
    url = ls.storage.url
    name = url[len("memory://"):]
    drivers: dict[str, dict[str, Callable[[int], Any]]] = {
        "sqlite3 (local file)": dbapi_ops(sqlite3.connect(db)),
        "dbapi2 (replica)": dbapi_ops(dbapi2.connect(url, impl=compiled, poll_interval=0)),
        "SQLAlchemy Core / sqlite3": core_ops(sa.create_engine(f"sqlite:///{db}")),
        "SQLAlchemy Core / dbapi2": core_ops(sa.create_engine(
            f"litevfs+memory://{name}?poll_interval=0", connect_args={"impl": compiled})),
        "SQLAlchemy ORM / sqlite3": orm_ops(sa.create_engine(f"sqlite:///{db}")),
        "SQLAlchemy ORM / dbapi2": orm_ops(sa.create_engine(
            f"litevfs+memory://{name}?poll_interval=0", connect_args={"impl": compiled})),
    }
    rng = random.Random(7)
    keys = {"point": rng.choices(range(1, args.rows + 1), k=args.queries),
            "fetch1000": rng.choices(range(1, args.rows - 1000), k=args.fetches)}
    for ops in drivers.values():  # warm-up: every page cached, every statement prepared
        for workload, fn in ops.items():
            for k in keys[workload][:200]:
                fn(k)
    samples: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.rounds):
        for workload in ("point", "fetch1000"):
            for driver, ops in drivers.items():
                fn, ks = ops[workload], keys[workload]
                t0 = time.perf_counter()
                for k in ks:
                    fn(k)
                samples.setdefault((driver, workload), []).append(
                    (time.perf_counter() - t0) / len(ks) * 1e6)
    result = {key: statistics.median(v) for key, v in samples.items()}
    for (driver, workload), us in result.items():
        print(json.dumps({"driver": driver, "workload": workload, "us_per_op": round(us, 2),
                          "rounds": args.rounds}))
    base = {w: result[("sqlite3 (local file)", w)] for w in ("point", "fetch1000")}
    lv = {w: result[("dbapi2 (replica)", w)] for w in ("point", "fetch1000")}
    print(f"\n| driver | point query µs | vs stdlib | 1,000-row fetch µs | vs stdlib |")
    print("| --- | --- | --- | --- | --- |")
    for driver in drivers:
        p_, f_ = result[(driver, "point")], result[(driver, "fetch1000")]
        ref = "sqlite3" if driver.endswith("sqlite3") or driver.startswith("sqlite3") else None
        basis = base if ref else lv
        label = "" if driver.startswith(("sqlite3", "dbapi2")) else (
            " (over its own driver)")
        print(f"| {driver} | {p_:.2f} | {p_ / base['point']:.2f}x | {f_:.0f} | "
              f"{f_ / base['fetch1000']:.2f}x |")
        del basis, label
    for stack in ("Core", "ORM"):
        for w in ("point", "fetch1000"):
            over_std = result[(f"SQLAlchemy {stack} / sqlite3", w)] - base[w]
            over_lv = result[(f"SQLAlchemy {stack} / dbapi2", w)] - lv[w]
            print(json.dumps({"overhead": f"SQLAlchemy {stack}", "workload": w,
                              "added_over_sqlite3_us": round(over_std, 2),
                              "added_over_dbapi2_us": round(over_lv, 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
