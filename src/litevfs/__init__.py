"""litevfs: open SQLite databases straight from Litestream replicas in object storage.

Read a replica (``connect``), write to it as its one writer (``connect(write=True)``,
``sync``), hydrate a local copy in the background (``hydration_status``), or restore
it to a file (``restore(open_storage(url), path)``)::

    import litevfs

    con = litevfs.connect("s3://bucket/db?endpoint=http://127.0.0.1:9000&forcePathStyle=true")
    con.execute("SELECT count(*) FROM users").fetchone()

Every error raised on purpose is a ``LiteVFSError``. ``litevfs.IMPLEMENTATION`` says
which core is active ("cython" or "python").

``import litevfs`` imports almost nothing: a cold open's first request (the LIST)
goes out before the core, apsw and the VFS machinery load.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: importing typing costs ~5 ms on the open's path
if TYPE_CHECKING:
    import os
    from types import ModuleType
    from typing import Any, Unpack

    import apsw

    from .options import ConnectOptions

from ._version import __version__
from .errors import (
    AccessDeniedError, AlreadyExistsError, BucketNotFoundError, BufferInUseError,
    ChecksumMismatchError, ConfigError, ConflictError, EmptyReplicaError,
    EndpointUnreachableError, LiteVFSError,
    LTXFormatError, NonContiguousError, NotFoundError, PreconditionFailedError, RestoreError,
    StorageError, TransientStorageError, TxNotAvailableError, WriteBufferError,
)

# Public errors defined next to the code that raises them, exported lazily (importing
# their modules here would slow ``import litevfs`` down): name -> module.
_LAZY_ERRORS = {
    "CorruptFileError": ".engine.verify",
    "PageFetchError": ".engine.reader",
    "FileMissingError": ".engine.reader",
    "TimeTravelError": ".engine.timetravel",
    "HydrationDiskError": ".engine.hydrate.localcopy",
    "SyncTimeout": ".write.syncer",
    "WriteDisabledError": ".write.writer",
    "LockBusy": ".write.writer",
}

__all__ = [
    "IMPLEMENTATION", "__version__", "connect", "register", "restore", "calc_restore_plan",
    "open_storage", "ConnectOptions",
    "sync", "write_status", "export_unsynced", "discard_unsynced",
    "hydration_status", "stats",
    "AccessDeniedError", "AlreadyExistsError", "BucketNotFoundError", "BufferInUseError",
    "ChecksumMismatchError", "ConfigError", "ConflictError", "EmptyReplicaError",
    "EndpointUnreachableError",
    "LiteVFSError", "LTXFormatError", "NonContiguousError", "NotFoundError",
    "PreconditionFailedError", "RestoreError", "StorageError", "TransientStorageError",
    "TxNotAvailableError", "WriteBufferError",
    *_LAZY_ERRORS,
]


def connect(url: str | None = None, *, impl: ModuleType | None = None,
            config: str | os.PathLike[str] | None = None, db: str | None = None,
            **options: Unpack[ConnectOptions]) -> apsw.Connection:
    """Open the replica at ``url`` and return an ``apsw.Connection`` to it.

    ``url``: ``s3://bucket/path?endpoint=...``, ``file:///dir`` or ``memory://name``
    (see the README's "Replica URLs"); None reads ``LITESTREAM_REPLICA_URL``.
    ``options`` are the keywords of ``litevfs.config.FIELDS`` (the README's Options
    table), each also a URI parameter and an environment variable, e.g.
    ``write=True`` (be the replica's one writer: commits land in a local buffer and
    are uploaded every ``sync_interval``), ``hydration=True`` (download a local copy
    in the background), ``poll_interval``, ``cache_size``, ``cache_dir``. A keyword
    wins over the environment.

    The connection is read-only unless ``write=True``, and has Litestream's SQL
    functions and PRAGMAs (``litestream_txid()``, ``litestream_lag()``, time travel).
    All connections of the process to one URL share one replica state (index, page
    cache, poller, writer).

    Raises ``ConfigError`` for an unknown option or a malformed value, a
    ``StorageError`` (``BucketNotFoundError``, ``AccessDeniedError``,
    ``EndpointUnreachableError``, ...) when storage refuses the open, and
    ``EmptyReplicaError`` when a read-only open found no LTX file (at once, or after
    ``wait_for_replica``). ``impl`` picks a core twin (tests).

    ``config="litestream.yml", db="/data/app.db"`` read the replica URL and credentials
    from Litestream's configuration file instead of ``url`` (``$VAR`` expanded as
    ``litestream replicate`` expands it; ``config`` defaults to ``$LITESTREAM_CONFIG``
    when only ``db`` is given). Keywords given here win over the file's credentials.

    The open's one LIST is sent first, before apsw and the VFS machinery are
    imported, so those imports (tens of ms) overlap its round trip. The LIST is still
    issued after this call began, so the view it decides is as fresh as ever."""
    if config is not None or db is not None:
        from .storage.lsconfig import replica_from_config  # PyYAML: only when asked for

        url, options = replica_from_config(config, db, url, options)
    from ._coldopen import start_open  # light: config, storage and the open-ahead only

    early = start_open(url, options)
    from .vfs import connect as api  # apsw, the core, the engine: while the LIST is out

    return api.connect(url, impl=impl, _early=early, **options)


# Public names that load their module on first use: `import litevfs` stays cheap.
_LAZY = {
    "IMPLEMENTATION": "._impl",  # picking the core imports it: not before it is asked for
    "register": ".vfs.connect", "hydration_status": ".vfs.connect", "stats": ".vfs.connect",
    "sync": ".vfs.writeapi", "write_status": ".vfs.writeapi",
    "export_unsynced": ".vfs.writeapi", "discard_unsynced": ".vfs.writeapi",
    "open_storage": ".storage", "calc_restore_plan": ".engine.plan",
    "restore": ".engine.restore",
    "ConnectOptions": ".options",
    **_LAZY_ERRORS,
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'litevfs' has no attribute {name!r}")
    from importlib import import_module  # the lazy facade: loaded on first attribute

    return getattr(import_module(module, __name__), name)
