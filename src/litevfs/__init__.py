"""litevfs: open SQLite databases straight from Litestream replicas in object storage.

``litevfs.IMPLEMENTATION`` says which core is active ("cython" or "python").
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
    "open_storage",
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


def connect(url: str | None = None, *, impl: Any = None, **options: Any) -> Any:
    """Open the replica at ``url`` (read-only, or writable with ``write=True``) and
    return an apsw connection; see :func:`litevfs.vfs.connect.connect`.

    The open's one LIST is sent first, before apsw and the VFS machinery are
    imported, so those imports (tens of ms) overlap its round trip. The LIST is still
    issued after this call began, so the view it decides is as fresh as ever."""
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
    **_LAZY_ERRORS,
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'litevfs' has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(module, __name__), name)
