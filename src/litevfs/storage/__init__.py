"""Storage backends behind one interface, chosen by replica URL.

``open_storage`` does no network I/O and imports boto3 only for ``s3://`` URLs (and
even then lazily, when the first request needs the client).
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: importing typing costs ~5 ms on the open's path
if TYPE_CHECKING:
    from typing import Any

from .._pending import Pending, run_on_thread
from ..errors import ConfigError
from .base import StorageClient, StorageStats
from .url import ReplicaURL, merge_options, parse_replica_url

# Credential options a connection may carry (see ``litevfs.config.FIELDS``).
CREDENTIAL_OPTIONS = ("access_key_id", "secret_access_key", "session_token", "profile",
                      "anonymous")

__all__ = ["StorageClient", "StorageStats", "open_storage", "parse_replica_url", "ReplicaURL",
           "start_listing", "empty_replica_message", "open_storage_for"]


def open_storage(url: str, **options: Any) -> StorageClient:
    """Open replica storage for ``url``:

    * ``s3://bucket/path?endpoint=...&region=...&forcePathStyle=true`` (Litestream's query
      options, camelCase or kebab-case; keyword arguments override them, in any spelling,
      plus keyword-only ``access_key_id``, ``secret_access_key``, ``session_token``,
      ``profile`` (an AWS profile), ``anonymous`` (unsigned requests),
      ``connect_timeout``, ``read_timeout``, ``max_pool_connections``, ``retry``,
      ``probe_conditional_writes``);
    * ``file:///abs/dir`` or a plain directory path (Litestream's file layout);
    * ``memory://name`` (a process-wide in-memory store, for tests).

    Unknown schemes and options raise ConfigError naming them.
    """
    parsed = parse_replica_url(url)
    if parsed.scheme == "s3":
        from .s3.client import S3Storage  # boto3 stays unimported until the client is needed

        return S3Storage.from_url(parsed, **options)
    # file:// and memory:// take no options; merge_options names any that were given.
    merge_options(parsed, options, {}, {})
    # Each backend loads only when used: the file and memory ones pull in dataclasses,
    # secrets and inspect (~30 ms), which an S3 open must not wait for before its LIST.
    if parsed.scheme == "file":
        from .file import FileStorage

        return FileStorage(parsed.path)
    if parsed.scheme == "memory":
        from .memory import MemoryStorage

        return MemoryStorage(parsed.path)
    raise ConfigError(f"unsupported replica URL scheme {parsed.scheme!r}")  # pragma: no cover


def open_storage_for(config: Any) -> StorageClient:
    """``open_storage`` for a resolved ``litevfs.config.Config``: its storage options
    (the S3 timeouts) applied where the backend has them."""
    url = config.replica_url
    # Per-connection credentials (``Config``'s keyword-only S3 options); the endpoint and
    # region are in the URL already (``config.with_url_options``).
    credentials = {name: getattr(config, name, None) for name in CREDENTIAL_OPTIONS}
    credentials = {k: v for k, v in credentials.items() if v}
    if parse_replica_url(url).scheme != "s3":
        if credentials:
            raise ConfigError(f"option {next(iter(credentials))!r} applies to s3:// replica "
                              f"URLs only, not {url.split('?', 1)[0]!r}")
        return open_storage(url)
    return open_storage(url, connect_timeout=config.connect_timeout,
                        read_timeout=config.read_timeout, **credentials)


def empty_replica_message(storage: StorageClient, waited: float = 0.0, *,
                          hint: bool = True) -> str:
    """One line for "this replica has no LTX files": why (when the backend can tell),
    how long the open waited, and (``hint``) how to make an open wait."""
    reason = storage.empty_reason()
    text = f"replica {storage.url} has no LTX files" + (f" ({reason})" if reason else "")
    if waited > 0:
        return f"{text}; waited {waited:g}s: is litestream replicating to this path?"
    text += ": is litestream replicating to this path?"
    return text + (" (wait_for_replica=30s waits for the first file)" if hint else "")


def start_listing(storage: StorageClient, then: Any = None) -> Pending:
    """``storage.list_all()`` on a daemon thread, started now; its error (if any) is
    re-raised by ``result()`` in the caller's thread. ``then(levels)`` runs on that
    thread with the answer before the result is handed over (it must not raise)."""
    def run() -> Any:
        levels = storage.list_all()
        if then is not None:
            then(levels)
        return levels

    return run_on_thread(run, name="litevfs-list")
