"""Django's own SQLite backend over ``litevfs.dbapi2``::

    DATABASES = {
        "default": {
            "ENGINE": "litevfs.django",
            "NAME": "s3://bucket/db?endpoint=http://127.0.0.1:9000&region=us-east-1",
            "OPTIONS": {"write": True},  # litevfs options; credentials too (or the AWS_* env)
        },
    }

``NAME`` is a replica URL (``s3://``, ``file://``, ``memory://``) or a local path; with
``OPTIONS: {"config": "/etc/litestream.yml", "db": "/data/app.db"}`` the replica comes
from Litestream's configuration file (``NAME`` is then only a label). Everything else
(SQL, schema editing, migrations, introspection, features) is Django's SQLite backend:
only the connection and the cursor class change, because the stock backend calls
``sqlite3.connect`` and builds ``sqlite3.Cursor`` objects directly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from itertools import tee
from typing import Any

from django.db.backends.sqlite3 import base as sqlite_base
from django.db.backends.sqlite3._functions import register as register_functions

from .. import dbapi2 as Database
from ..vfs.dbapi import is_replica

_QMARK = sqlite_base.FORMAT_QMARK_REGEX


class CursorWrapper(Database.Cursor):
    """Django writes ``%s`` (format) and ``%(name)s`` (pyformat) placeholders; SQLite
    takes ``?`` and ``:name``. The same conversion as Django's SQLite cursor (whose
    class derives from the stdlib cursor, so it cannot serve this connection)."""

    def execute(self, query: str, params: Any = None) -> Any:
        if params is None:
            return super().execute(query)
        names = list(params) if isinstance(params, Mapping) else None
        return super().execute(self.convert_query(query, param_names=names), params)

    def executemany(self, query: str, param_list: Iterable[Any]) -> Any:
        peek, param_list = tee(iter(param_list))
        first = next(peek, None)
        names = list(first) if first and isinstance(first, Mapping) else None
        return super().executemany(self.convert_query(query, param_names=names), param_list)

    @staticmethod
    def convert_query(query: str, *, param_names: list[str] | None = None) -> str:
        if param_names is None:
            return _QMARK.sub("?", query).replace("%%", "%")
        return query % {name: f":{name}" for name in param_names}


class DatabaseWrapper(sqlite_base.DatabaseWrapper):
    display_name = "SQLite (litevfs replica)"
    Database = Database

    def get_connection_params(self) -> dict[str, Any]:
        params: dict[str, Any] = super().get_connection_params()
        name = params["database"]
        if "config" in params or "db" in params:
            params["database"] = None  # the replica comes from the config file
            params.pop("uri", None)
        elif is_replica(name, False):
            params.pop("uri", None)  # file:///dir is a replica URL here, not a SQLite URI
        return params

    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        conn = Database.connect(**conn_params)
        register_functions(conn)
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA legacy_alter_table = OFF")
        for command in self.init_commands:
            if command := command.strip():
                conn.execute(command)
        return conn

    def create_cursor(self, name: str | None = None) -> Any:
        return self.connection.cursor(factory=CursorWrapper)
