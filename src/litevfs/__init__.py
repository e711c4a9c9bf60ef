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
    from typing import Any

from ._version import __version__
from .engine.restore import restore  # eager: the submodule of the same name must not shadow it
from .errors import (
    AccessDeniedError, AlreadyExistsError, BucketNotFoundError, ChecksumMismatchError,
    ConfigError, ConflictError, EndpointUnreachableError, LiteVFSError, LTXFormatError,
    NonContiguousError, NotFoundError, RestoreError, StorageError, TransientStorageError,
    TxNotAvailableError,
)

__all__ = [
    "IMPLEMENTATION", "__version__", "connect", "register", "restore", "open_storage",
    "sync", "write_status", "export_unsynced", "discard_unsynced",
    "hydration_status", "stats",
    "AccessDeniedError", "AlreadyExistsError", "BucketNotFoundError", "ChecksumMismatchError",
    "ConfigError", "ConflictError", "EndpointUnreachableError", "LiteVFSError", "LTXFormatError",
    "NonContiguousError", "NotFoundError", "RestoreError", "StorageError",
    "TransientStorageError", "TxNotAvailableError",
]


def connect(url: str | None = None, *, impl: Any = None, **options: Any) -> Any:
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
    ``TxNotAvailableError`` when a read-only open found no LTX file within
    ``open_timeout``. ``impl`` picks a core twin (tests).

    The open's one LIST is sent first, before apsw and the VFS machinery are
    imported, so those imports (tens of ms) overlap its round trip. The LIST is still
    issued after this call began, so the view it decides is as fresh as ever."""
    early = _start_open(url, options)
    from .vfs import connect as api

    return api.connect(url, impl=impl, _early=early, **options)


def _start_open(url: str | None, options: dict[str, Any]) -> Any:
    """(config, storage, listing future, index reads ahead) with the open's LIST in
    flight, or None when the replica is already open in this process or the options
    do not resolve (the regular path then reports the error)."""
    import os
    import sys

    try:
        from .config import Config

        keywords = dict(options)
        if url is not None:
            keywords["replica_url"] = url
        config = Config.resolve(keywords, None, os.environ)
        replica_mod = sys.modules.get(f"{__name__}.engine.replica")
        if replica_mod is not None and any(
                key[0] == config.replica_url for key in replica_mod._registry):
            return None  # shared with an open replica: no LIST needed
        from .engine.openahead import OpenAhead
        from .storage import open_storage, start_listing

        storage = open_storage(config.replica_url)
    except Exception:  # noqa: BLE001 - api.connect raises it, named
        return None
    try:
        # The LIST's thread sends the plan's index reads as soon as it answers (they
        # would otherwise wait for the imports below); a persistent cache may hold the
        # indexes already, so with one the open reads them the usual way.
        ahead = OpenAhead() if config.cache_dir is None else None
        listing = start_listing(storage, None if ahead is None else
                                lambda levels: ahead.start(storage, levels))
        wait_sent = getattr(storage, "wait_sent", None)
        if wait_sent is not None:  # let the LIST thread write its request first
            wait_sent(0.05)
        preconnect = getattr(storage, "preconnect", None)
        if preconnect is not None:  # ready for the index reads once the LIST answers
            preconnect(2)
        return config, storage, listing, ahead
    except BaseException:
        storage.close()
        raise


def __getattr__(name: str) -> Any:
    # apsw and boto3 load only when used: `import litevfs` stays cheap.
    if name == "IMPLEMENTATION":  # picking the core imports it: not before it is asked for
        from ._impl import IMPLEMENTATION

        return IMPLEMENTATION
    if name in ("register", "hydration_status", "stats"):
        from .vfs import connect as api

        return getattr(api, name)
    if name in ("sync", "write_status", "export_unsynced", "discard_unsynced"):
        from .vfs import writeapi

        return getattr(writeapi, name)
    if name == "open_storage":
        from .storage import open_storage

        return open_storage
    raise AttributeError(f"module 'litevfs' has no attribute {name!r}")
