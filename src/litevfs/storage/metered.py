"""Wall time spent waiting on object storage: a decorator around any storage client.

``MeteredStorage`` implements the whole ``StorageClient`` interface by forwarding to
the client it wraps, timing each call (the outermost one only, per thread: a
``list_all`` that lists level by level counts once) into a :class:`RemoteTimer`. The
engine is handed the metered client; the backend never knows it is measured.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from ..ltx.format import FileInfo
from .base import StorageClient, StorageStats

T = TypeVar("T")


class RemoteTimer:
    """Wall time spent inside storage calls, summed over threads."""

    def __init__(self) -> None:
        self.ns = 0
        self.calls = 0
        self._local = threading.local()
        self._lock = threading.Lock()

    def time(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        local = self._local
        if getattr(local, "depth", 0):
            return fn(*args, **kwargs)
        local.depth = 1
        start = time.perf_counter_ns()
        try:
            return fn(*args, **kwargs)
        finally:
            local.depth = 0
            elapsed = time.perf_counter_ns() - start
            with self._lock:
                self.ns += elapsed
                self.calls += 1


class MeteredStorage(StorageClient):
    """``inner`` with every request timed by ``timer``. Backend-specific attributes
    (test hooks such as ``fail_next``) are reached through to ``inner``."""

    def __init__(self, inner: StorageClient, timer: RemoteTimer) -> None:
        # No super().__init__(): the counters are the inner client's own.
        self.inner = inner
        self.timer = timer
        self.url = inner.url

    @property
    def stats(self) -> StorageStats:  # type: ignore[override]
        return self.inner.stats

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    @property
    def side_names(self) -> tuple[str, ...] | None:  # type: ignore[override]
        return self.inner.side_names

    def list_level(self, level: int) -> list[FileInfo]:
        return self.timer.time(self.inner.list_level, level)

    def list_all(self) -> dict[int, list[FileInfo]]:
        return self.timer.time(self.inner.list_all)

    def read_range(self, info: FileInfo, offset: int = 0, length: int | None = None) -> bytes:
        return self.timer.time(self.inner.read_range, info, offset, length)

    def read_tail(self, info: FileInfo, length: int) -> bytes:
        return self.timer.time(self.inner.read_tail, info, length)

    def read_many(self, requests: Sequence[tuple[FileInfo, int, int | None]]) -> list[bytes]:
        return self.timer.time(self.inner.read_many, requests)

    def write_ltx(self, level: int, min_txid: int, max_txid: int, data: bytes, *,
                  if_absent: bool = False, timestamp_ms: int | None = None) -> FileInfo:
        return self.timer.time(self.inner.write_ltx, level, min_txid, max_txid, data,
                               if_absent=if_absent, timestamp_ms=timestamp_ms)

    def delete_ltx(self, infos: Iterable[FileInfo]) -> None:
        self.timer.time(self.inner.delete_ltx, infos)

    def get_object(self, name: str) -> bytes:
        return self.timer.time(self.inner.get_object, name)

    def get_object_tagged(self, name: str) -> tuple[bytes, str]:
        return self.timer.time(self.inner.get_object_tagged, name)

    def get_object_if_changed(self, name: str, etag: str | None
                              ) -> tuple[bytes | None, str | None, bool]:
        return self.timer.time(self.inner.get_object_if_changed, name, etag)

    def put_object(self, name: str, data: bytes, *, if_absent: bool = False,
                   if_match: str | None = None) -> str | None:
        return self.timer.time(self.inner.put_object, name, data, if_absent=if_absent,
                               if_match=if_match)

    def delete_object(self, name: str) -> None:
        self.timer.time(self.inner.delete_object, name)

    def server_time(self) -> float:
        return self.inner.server_time()

    def empty_reason(self) -> str | None:
        return self.inner.empty_reason()

    def preconnect(self, n: int = 2) -> None:
        self.inner.preconnect(n)

    def wait_sent(self, timeout: float) -> None:
        self.inner.wait_sent(timeout)

    def close(self) -> None:
        self.inner.close()
