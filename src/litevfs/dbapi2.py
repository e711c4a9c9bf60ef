"""``litevfs.dbapi2``: the stdlib ``sqlite3`` interface (PEP 249) on Litestream replicas.

Swap the import and the code written for ``sqlite3`` runs on a replica::

    from litevfs import dbapi2 as sqlite3

    con = sqlite3.connect("s3://bucket/db?endpoint=http://127.0.0.1:9000")
    con.row_factory = sqlite3.Row
    for row in con.execute("SELECT id, name FROM users WHERE id > ?", (10,)):
        print(row["name"])

``connect(database, timeout=5.0, detect_types=0, isolation_level="",
check_same_thread=True, factory=Connection, cached_statements=128, uri=False, *,
autocommit=LEGACY_TRANSACTION_CONTROL, **litevfs_options)``: ``database`` is a replica
URL (``s3://``, ``file://``, ``memory://``; read-only unless ``write=True``), or a local
path, ``:memory:`` or (with ``uri=True``) a ``file:`` URI, which open a plain SQLite
database as ``sqlite3`` would. ``config="litestream.yml", db="/data/app.db"`` take the
replica from Litestream's configuration file instead. The litevfs options (``write``,
``poll_interval``, the per-connection credentials ``access_key_id``... and the rest of
the README's Options table) apply to replicas. The README's "Use it from..." section
lists every deliberate difference from ``sqlite3``.
"""

from __future__ import annotations

from . import connect as _litevfs_connect
from .vfs import dbapi as _dbapi
from .vfs.dbapi import (  # noqa: F401 - the module's public surface
    LEGACY_TRANSACTION_CONTROL, PARSE_COLNAMES, PARSE_DECLTYPES, Binary, Blob,
    ConflictError, Connection, Cursor, DatabaseError, DataError, Date, DateFromTicks,
    EmptyReplicaError, Error, IntegrityError, InterfaceError, InternalError,
    NotSupportedError, OperationalError, PrepareProtocol, ProgrammingError, Row,
    StorageError, Time, TimeFromTicks, Timestamp, TimestampFromTicks, Warning, adapt,
    adapters, apilevel, complete_statement, converters, enable_callback_tracebacks,
    paramstyle, register_adapter, register_converter, sqlite_version, sqlite_version_info,
    threadsafety,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    import os
    from types import ModuleType
    from typing import Any

    from typing import Unpack

    from .options import ConnectOptions

# The SQLITE_* constants, as the stdlib module has them.
globals().update({k: v for k, v in vars(_dbapi).items() if k.startswith("SQLITE_")})


def connect(database: str | os.PathLike[str] | None = None, timeout: float = 5.0,
            detect_types: int = 0, isolation_level: str | None = "",
            check_same_thread: bool = True, factory: type[Connection] | None = None,
            cached_statements: int = 128, uri: bool = False, *,
            autocommit: bool | int = LEGACY_TRANSACTION_CONTROL,
            impl: ModuleType | None = None, config: str | None = None,
            db: str | None = None, **options: Unpack[ConnectOptions]) -> Connection:
    """Open ``database`` as ``sqlite3.connect`` does; a replica URL (or ``config``/``db``
    naming one in Litestream's configuration file) opens the replica with
    ``litevfs.connect`` and the litevfs ``options``. ``impl`` picks a core twin (tests)."""
    cls = factory or Connection
    if not (isinstance(cls, type) and issubclass(cls, Connection)):
        raise TypeError("factory must be a subclass of litevfs.dbapi2.Connection")
    return cls(database, timeout, detect_types, isolation_level, check_same_thread, None,
               cached_statements, uri, autocommit=autocommit, impl=impl, config=config,
               db=db, _opener=_litevfs_connect, **options)


def __getattr__(name: str) -> Any:
    if name in ("version", "version_info"):  # the stdlib's (deprecated in 3.12)
        import sqlite3

        return getattr(sqlite3, name)
    raise AttributeError(f"module 'litevfs.dbapi2' has no attribute {name!r}")
