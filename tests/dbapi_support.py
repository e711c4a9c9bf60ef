"""Fixtures shared by the DB-API, SQLAlchemy, Django, pandas and config-file tests: a
small database replicated by the real ``litestream replicate`` (read-only tests) and
fresh, empty replica prefixes for write mode, all on the session's SeaweedFS."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.rig.litestream import Litestream, S3Replica, wait_for_txid
from tests.rig.seaweed import SeaweedServer, s3_replica_url

SCHEMA = """
CREATE TABLE authors(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, born DATE);
CREATE TABLE books(id INTEGER PRIMARY KEY, author_id INTEGER NOT NULL REFERENCES authors(id),
                   title TEXT NOT NULL, price REAL, cover BLOB);
CREATE INDEX books_author ON books(author_id);
"""
AUTHORS = [(1, "Ada", "1815-12-10"), (2, "Grace", "1906-12-09"), (3, "Linus", "1969-12-28")]
BOOKS = [(i, 1 + i % 3, f"Book {i}", 9.5 + i, bytes([i % 256]) * (i % 7)) for i in range(1, 41)]


@dataclass
class LitestreamReplica:
    url: str          # s3://...?endpoint=... of the replica litestream wrote
    db_path: Path     # the primary database (the same content, for the stdlib side)
    config_path: Path  # the litestream.yml that replicated it
    server: SeaweedServer


def fill(con: sqlite3.Connection) -> None:
    con.executescript(SCHEMA)
    con.executemany("INSERT INTO authors VALUES (?, ?, ?)", AUTHORS)
    con.executemany("INSERT INTO books VALUES (?, ?, ?, ?, ?)", BOOKS)
    con.commit()


@pytest.fixture(scope="session")
def litestream_replica(seaweed: SeaweedServer,
                       tmp_path_factory: pytest.TempPathFactory) -> Iterator[LitestreamReplica]:
    """The SCHEMA database, replicated to S3 by the real ``litestream replicate`` (stopped
    once the commit is uploaded; treat it as read-only)."""
    work = tmp_path_factory.mktemp("dbapi-litestream")
    db = work / "app.db"
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode=WAL")
    fill(con)
    con.close()
    replica = S3Replica(seaweed, seaweed.warm_bucket(), "app")
    ls = Litestream(db, replica, workdir=work / "ls").start()
    try:
        wait_for_txid(replica, 1, timeout=30, proc=ls)
        ls.wait_caught_up(0)
    finally:
        ls.stop()
    yield LitestreamReplica(replica.url, db, ls.config_path, seaweed)


def fresh_url(seaweed: SeaweedServer, bucket: str) -> str:
    """A new, empty prefix in ``bucket``: write mode starts a new database there."""
    return s3_replica_url(bucket, f"db-{uuid.uuid4().hex[:12]}", seaweed.endpoint,
                          seaweed.region)


@pytest.fixture(scope="module")
def shared_bucket(seaweed: SeaweedServer) -> str:
    return seaweed.warm_bucket()


@pytest.fixture
def fresh_s3_url(seaweed: SeaweedServer, shared_bucket: str) -> str:
    return fresh_url(seaweed, shared_bucket)


def new_id() -> str:
    return uuid.uuid4().hex[:10]
