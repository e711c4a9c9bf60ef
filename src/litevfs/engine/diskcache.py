"""Persistent page cache: how the read path uses it (the engine is ``diskstore.py``,
imported only when ``cache_dir`` is set, so a cold start without it pays nothing).

* page indexes: ``fetch_index_cached`` answers from the cache, else fetches and stores;
* pages: ``fetch_run_cached`` serves the frames of a run that the cache holds and
  fetches only the missing span with one ranged GET, storing what came back.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .._impl import cache_key
from ..storage.fetch import FileIndex

if TYPE_CHECKING:
    from ..ltx.format import FileInfo
    from .diskstore import DiskStore, ReplicaDiskCache

log = logging.getLogger("litevfs.diskcache")

_stores: dict[str, DiskStore] = {}
_stores_lock = threading.Lock()
_disabled: dict[str, str] = {}  # cache directory -> why it is off (said once per process)
_DB_NAME = "pages.sqlite3"  # diskstore.DB_NAME (not imported: an unusable cache costs nothing)


def unusable_reason(directory: str) -> str | None:
    """Why ``directory`` cannot hold the cache, from a few stats (microseconds), or
    None. Finding out from SQLite instead costs its retries (over a second)."""
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as exc:
        return f"cannot be created ({exc.strerror or exc})"
    if not os.path.isdir(directory):
        return "is not a directory"
    if not os.access(directory, os.R_OK | os.W_OK | os.X_OK):
        return "is read-only for this process (SQLite needs to create files in it)"
    for suffix in ("", "-wal", "-shm"):
        path = os.path.join(directory, _DB_NAME + suffix)
        if os.path.exists(path) and not os.access(path, os.R_OK | os.W_OK):
            return f"holds {_DB_NAME + suffix}, which is read-only for this process"
    return None


def disable(directory: str, reason: str) -> None:
    """Turn the cache in ``directory`` off for this process, warning once."""
    with _stores_lock:
        if directory in _disabled:
            return
        _disabled[directory] = reason
    log.warning("persistent page cache disabled: cache_dir %s %s; pages are read from "
                "object storage (set cache_dir to a writable directory)", directory, reason)


def disabled_status(config: Any) -> dict[str, Any] | None:
    """What ``stats()`` shows for a configured cache that is off, else None."""
    directory = getattr(config, "cache_dir", None)
    if not directory:
        return None
    directory = os.path.abspath(os.path.expanduser(directory))
    reason = _disabled.get(directory)
    return None if reason is None else {"enabled": False, "dir": directory, "reason": reason}


def open_disk_cache(config: Any, replica_id: str) -> ReplicaDiskCache | None:
    """The replica's disk cache when ``config.cache_dir`` is set, else None. A cache
    directory that cannot be used logs one warning per process and leaves the cache
    off (``stats()`` shows it disabled, with the reason)."""
    directory = getattr(config, "cache_dir", None)
    if not directory:
        return None
    directory = os.path.abspath(os.path.expanduser(directory))
    if directory in _disabled:
        return None
    store = _stores.get(directory)
    if store is None or store._closed:
        reason = unusable_reason(directory)
        if reason is not None:
            disable(directory, reason)
            return None
    import sqlite3  # the cache is opt-in (cache_dir): a cold open without it pays nothing

    from .diskstore import DiskStore, ReplicaDiskCache

    try:
        with _stores_lock:
            store = _stores.get(directory)
            if store is None or store._closed:
                store = _stores[directory] = DiskStore(
                    directory, getattr(config, "cache_dir_size", 1 << 30),
                    getattr(config, "cache_compress", False), on_unusable=disable)
    except (OSError, sqlite3.Error) as exc:
        disable(directory, f"cannot be used ({exc})")
        return None
    return ReplicaDiskCache(store, replica_id)


def fetch_index_cached(disk: ReplicaDiskCache | None, info: FileInfo, fetch: Any) -> Any:
    """``fetch(info)`` (a ``FileIndex``), answered from the disk cache when it holds
    this object's decoded index; a fetched index is stored for the next process."""
    if disk is not None:
        got = disk.get_index(info)
        if got is not None:
            header, pgnos, offsets, sizes = got
            if (header.min_txid, header.max_txid) == (info.min_txid, info.max_txid):
                return FileIndex(info, header, pgnos, offsets, sizes, None)
    fi = fetch(info)
    if disk is not None:
        disk.put_index(info, fi.header, fi.pgnos, fi.offsets, fi.sizes)
    return fi


def fetch_run_cached(disk: ReplicaDiskCache, info: FileInfo, file_id: int,
                     run: Sequence[tuple[int, int, int]], put: Callable[[int, bytes], None],
                     remote: Callable[[list[tuple[int, int, int]]], dict[int, bytes]],
                     ) -> dict[int, bytes]:
    """The reader's run of frames of ``info``: those in the disk cache from there (into
    the memory cache too, with ``put(key, page)``), the rest with ``remote(missing)``
    (one ranged GET over just the missing span), stored."""
    pages = disk.get_frames(info, run)
    for pgno, page in pages.items():
        put(cache_key(file_id, pgno), page)
    missing = [f for f in run if f[0] not in pages]
    if missing:
        fetched = remote(missing)
        disk.put_frames(info, missing, fetched)
        pages.update(fetched)
    return pages
