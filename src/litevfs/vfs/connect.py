"""Public entry points: ``connect`` and ``register``."""

from __future__ import annotations

import logging
import os
from types import ModuleType
from typing import Any

import apsw

from .. import _impl
from ..config import Config
from ..session import open_replica, release_replica
from .pragmas import register_functions
from .statements import install as install_planner
from .registry import _vfs_by_name as _registered_names
from .registry import file_of
from .registry import OPEN_TOKEN, LiteVFS
from .registry import register as _register_vfs
from .file import LiteFile

_hooked = False
# Named, not imported: the read-only member's class loads the write layer.
_LITEFILE_NAMES = (f"{LiteFile.__module__}.{LiteFile.__qualname__}",
                   "litevfs.vfs.member.MemberLiteFile")


def _vfs_name_for(impl: ModuleType) -> str:
    return "litevfs" if impl is _impl else f"litevfs-{impl.__name__.rsplit('.', 1)[-1]}"


def _add_functions_hook(con: apsw.Connection) -> None:
    """Give URI-opened connections of a litevfs VFS the litestream_* functions."""
    try:  # apsw names a Python file object's "VFS" after its class
        file_class = con.vfsname("main")
    except apsw.Error:
        return
    if file_class in _LITEFILE_NAMES or con.open_vfs in _registered_names:
        register_functions(con)
        try:
            install_planner(con, file_of(con))
        except LookupError:
            pass


def register(name: str = "litevfs", impl: ModuleType | None = None) -> LiteVFS:
    """Register the VFS so ``file:x.db?vfs=<name>&replica_url=...`` URIs open replicas.

    For opening by URI with apsw (every option is then a URI parameter); connections
    opened this way get the ``litestream_*`` SQL functions too. ``litevfs.connect``
    needs no ``register`` call. Returns the VFS object; registering again is harmless."""
    global _hooked
    vfs = _register_vfs(name, impl)
    if not _hooked:
        apsw.connection_hooks.append(_add_functions_hook)
        _hooked = True
    return vfs


def _apply_log_level(config: Config) -> None:
    if config.log_level is not None:
        logging.getLogger("litevfs").setLevel(config.log_level)


def connect(url: str | None = None, *, impl: ModuleType | None = None, _early: Any = None,
            **options: Any) -> apsw.Connection:
    """Open the replica at ``url`` (read-only, or writable with ``write=True``) and
    return an apsw connection.

    Options (see ``litevfs.config.FIELDS``) override URI parameters and the
    environment (``LITESTREAM_REPLICA_URL`` when ``url`` is None). Errors opening
    the replica (bucket, credentials, endpoint, empty replica) raise here, named.
    ``_early``: (config, storage, listing, ahead) from ``litevfs.connect``: the LIST in
    flight, and the index reads its thread sends when it answers (``openahead.py``).
    """
    impl = impl or _impl
    ahead = None
    if _early is not None:
        config, storage, listing, ahead = _early
    else:
        keywords = dict(options)
        if url is not None:
            keywords["replica_url"] = url
        config, storage, listing = Config.resolve(keywords, None, os.environ), None, None
    _apply_log_level(config)
    try:
        vfs = register(_vfs_name_for(impl), impl)
    except BaseException:
        if storage is not None:
            storage.close()
        raise
    replica = open_replica(config, impl, storage, listing, ahead)
    if config.write and (replica.writer is None or replica.writer.read_only):  # the replica was opened read-only first
        try:
            replica.attach_writer()
        except BaseException:
            release_replica(replica)
            raise
    writable = replica.writer is not None and not replica.writer.read_only
    token = vfs.prepare(replica)
    try:
        con = apsw.Connection(
            f"file:litevfs-{token}.db?vfs={vfs.vfs_name}&{OPEN_TOKEN}={token}",
            flags=(apsw.SQLITE_OPEN_READWRITE if writable else apsw.SQLITE_OPEN_READONLY)
            | apsw.SQLITE_OPEN_URI,
            vfs=vfs.vfs_name,
        )
    except BaseException:
        if vfs.unprepare(token) is not None:
            release_replica(replica)
        raise
    if writable:
        from .writeapi import prepare_connection  # write mode is opt-in: not on a read open

        prepare_connection(con)
    return con


def hydration_status(con: apsw.Connection) -> dict[str, Any]:
    """Background hydration of ``con``'s replica, as a dict: state ("off", "pending",
    "hydrating", "complete", "following": another process of the machine hydrates the
    persistent file and this one reads it, "failed", "closed"), pages_done/pages_total,
    percent, bytes_fetched, bytes_written, requests, txid, path, persistent,
    resumed_pages, local_reads, damaged_pages, take_overs, error. ``con`` comes from ``litevfs.connect(url, hydration=True)``
    (without hydration the state is "off"); poll it for progress, e.g. until
    ``status["state"] == "complete"``."""
    hydrator = file_of(con).replica.hydrator
    if hydrator is None:
        return {"state": "off", "pages_done": 0, "pages_total": 0, "percent": 0.0,
                "bytes_fetched": 0, "bytes_written": 0, "path": None}
    return hydrator.status()


def stats(con: apsw.Connection) -> dict[str, Any]:
    """Cost and health counters of ``con``'s replica (shared by every connection of the
    process to it): LIST/GET/PUT counts, bytes, memory/disk cache hits and misses,
    remote time, estimated request cost in USD; the same JSON as
    ``PRAGMA litevfs_stats``."""
    return file_of(con).replica.metrics.snapshot()
