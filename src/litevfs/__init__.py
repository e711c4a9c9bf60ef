"""litevfs: open SQLite databases straight from Litestream replicas in object storage.

``litevfs.IMPLEMENTATION`` says which core is active ("cython" or "python").
"""

from __future__ import annotations

from typing import Any

from ._impl import IMPLEMENTATION
from ._version import __version__
from .restore import restore  # eager: the submodule of the same name must not shadow it
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


def __getattr__(name: str) -> Any:
    # apsw and boto3 load only when used: `import litevfs` stays cheap.
    if name in ("connect", "register", "hydration_status", "stats"):
        from . import api

        return getattr(api, name)
    if name in ("sync", "write_status", "export_unsynced", "discard_unsynced"):
        from . import writeapi

        return getattr(writeapi, name)
    if name == "open_storage":
        from .storage import open_storage

        return open_storage
    raise AttributeError(f"module 'litevfs' has no attribute {name!r}")
