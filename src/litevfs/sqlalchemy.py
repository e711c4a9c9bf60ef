"""SQLAlchemy dialect: SQLAlchemy's own pysqlite dialect over ``litevfs.dbapi2``.

Registered by entry point (``pyproject.toml``), so no import is needed::

    create_engine("litevfs+s3://bucket/path/db?endpoint=http://127.0.0.1:9000&region=us-east-1")
    create_engine("litevfs+s3://bucket/db?write=true&sync_interval=1s")   # the one writer
    create_engine("litevfs+file:///var/replicas/app")                      # file:// replica
    create_engine("sqlite+litevfs:///?replica=s3%3A%2F%2Fbucket%2Fdb%3Fendpoint%3D...")
    create_engine("sqlite+litevfs:///?config=/etc/litestream.yml&db=/data/app.db")

The URL's host and path are the replica's bucket and key prefix; its query holds the
replica URL's own options (``endpoint``, ``region``, ``forcePathStyle``, ...), the
litevfs options (``write``, ``poll_interval``, ...; the README's Options table) and
sqlite3's (``timeout``, ``detect_types``...). Credentials go in ``user:password@`` (the
access key id and secret: SQLAlchemy masks the password in every repr) or in
``connect_args``; never in the query. The dialect's ``name`` stays ``sqlite``: SQL,
reflection and types are SQLite's.

Pooling: a ``QueuePool``. Every connection of a process to one replica shares its state
(index, page cache, poller, writer), so a pooled connection costs an apsw handle, not an
open; the replica closes (final sync in write mode) when the last connection does, e.g.
at ``engine.dispose()``. NullPool would reopen the replica for every checkout.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from sqlalchemy import pool
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.engine import URL

from .config import FIELDS_BY_NAME, KEYWORD_ONLY

# sqlite3.connect's own parameters and their types (as SQLAlchemy's pysqlite reads them).
_SQLITE3_ARGS = {"timeout": float, "detect_types": int, "check_same_thread": bool,
                 "cached_statements": int, "uri": bool, "isolation_level": str}
_TRUE = ("1", "true", "yes", "on")


def _coerce(value: Any, kind: type) -> Any:
    if kind is bool:
        return str(value).strip().lower() in _TRUE
    return kind(value)


class LiteVFSDialect(SQLiteDialect_pysqlite):
    """SQLite through ``litevfs.dbapi2`` (replicas via the litevfs VFS)."""

    driver = "litevfs"
    supports_statement_cache = True
    scheme = ""  # "s3" / "file" / "memory" for litevfs+<scheme>://; "" for sqlite+litevfs

    @classmethod
    def import_dbapi(cls) -> Any:
        from . import dbapi2  # SQLAlchemy asks for the driver when an engine is made

        return dbapi2

    @classmethod
    def get_pool_class(cls, url: URL) -> type[pool.Pool]:
        if cls.scheme or "replica" in url.query or "config" in url.query:
            return pool.QueuePool
        return super().get_pool_class(url)

    def create_connect_args(self, url: URL) -> tuple[list[Any], dict[str, Any]]:
        query = dict(url.query)
        kwargs: dict[str, Any] = {}
        for key, kind in _SQLITE3_ARGS.items():
            if key in query:
                kwargs[key] = _coerce(query.pop(key), kind)
        secrets = sorted(KEYWORD_ONLY & set(query))
        if secrets:
            raise ValueError(f"{secrets[0]!r} does not belong in an engine URL (URLs end up "
                             "in logs): put the key id and secret in user:password@ or in "
                             "connect_args")
        for key in list(query):
            if key in FIELDS_BY_NAME or key in ("config", "db"):
                kwargs[key] = query.pop(key)
        if url.username:
            kwargs["access_key_id"] = url.username
        if url.password:
            kwargs["secret_access_key"] = str(url.password)
        if self.scheme:
            kwargs.setdefault("check_same_thread", False)
            return [self._replica_url(url, query)], kwargs
        replica = query.pop("replica", None)
        if replica is not None or "config" in kwargs or "db" in kwargs:
            if query:
                raise ValueError(f"unknown option {next(iter(query))!r} in the engine URL")
            kwargs.setdefault("check_same_thread", False)
            return [replica], kwargs
        # sqlite+litevfs:///local.db: a plain local database, as sqlite:/// would open it
        if query:
            raise ValueError(f"unknown option {next(iter(query))!r} in the engine URL")
        database = url.database or ":memory:"
        if database != ":memory:":
            kwargs.setdefault("check_same_thread", False)
        return [database], kwargs

    def _replica_url(self, url: URL, replica_query: dict[str, Any]) -> str:
        host = url.host or ""
        if url.port:
            host += f":{url.port}"
        path = url.database or ""
        query = "&".join(f"{quote(k, safe='')}={quote(str(v), safe=':/')}"
                         for k, v in replica_query.items())
        if self.scheme == "file":
            text = f"file:///{path.lstrip('/')}"
        else:  # as written: litevfs+memory://name is memory://name, not memory://name/
            text = f"{self.scheme}://{host}" + (f"/{path}" if path else "")
        return text + (f"?{query}" if query else "")


class LiteVFSDialect_s3(LiteVFSDialect):  # noqa: N801 - SQLAlchemy's naming
    scheme = "s3"
    supports_statement_cache = True  # SQLAlchemy asks every subclass


class LiteVFSDialect_file(LiteVFSDialect):  # noqa: N801
    scheme = "file"
    supports_statement_cache = True  # SQLAlchemy asks every subclass


class LiteVFSDialect_memory(LiteVFSDialect):  # noqa: N801
    scheme = "memory"
    supports_statement_cache = True  # SQLAlchemy asks every subclass


dialect = LiteVFSDialect
