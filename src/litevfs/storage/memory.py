"""In-memory storage: process-wide named stores (``memory://name``) for tests.

Every client opened on the same name sees the same objects (like several processes
sharing one bucket) but keeps its own ``stats``. The store carries the test hooks:
``fail_next`` injects failures and ``latency`` simulates a round trip per request.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field

from ..errors import (
    AlreadyExistsError, NotFoundError, PreconditionFailedError, TransientStorageError,
)
from ..ltx.format import FileInfo, format_filename
from .base import (
    StorageClient, check_ltx_args, check_object_name, check_range, content_etag,
    ltx_timestamp_ms, slice_range,
)

#: Operation names accepted by ``fail_next(ops=...)``.
OPERATIONS = ("list", "read", "write", "delete", "get_object", "put_object")

ExcSpec = BaseException | type[BaseException] | Callable[[], BaseException]


@dataclass
class _Failure:
    remaining: int
    exc: ExcSpec
    ops: frozenset[str] | None

    def make(self) -> BaseException:
        if isinstance(self.exc, BaseException):
            return self.exc
        return self.exc()


@dataclass
class MemoryStore:
    """The shared state behind one ``memory://name``."""

    name: str
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # level -> (min, max) -> (data, created_at)
    ltx: dict[int, dict[tuple[int, int], tuple[bytes, float]]] = field(default_factory=dict)
    objects: dict[str, bytes] = field(default_factory=dict)
    latency: float = 0.0  # seconds slept per request, outside the lock
    _failures: list[_Failure] = field(default_factory=list, repr=False)

    def fail_next(self, n: int = 1, exc: ExcSpec | None = None,
                  ops: Collection[str] | None = None) -> None:
        """Make the next ``n`` requests (of the operations in ``ops``, default all) raise
        ``exc`` (an exception, a class, or a factory; default TransientStorageError)."""
        if ops is not None:
            unknown = set(ops) - set(OPERATIONS)
            if unknown:
                raise ValueError(f"unknown operations {sorted(unknown)}; known: {OPERATIONS}")
        spec: ExcSpec = exc if exc is not None else (
            lambda: TransientStorageError(f"injected failure in memory://{self.name}"))
        with self.lock:
            self._failures.append(_Failure(n, spec, frozenset(ops) if ops else None))

    def clear_failures(self) -> None:
        with self.lock:
            self._failures.clear()

    def clear(self) -> None:
        """Drop every object and hook (the name stays registered)."""
        with self.lock:
            self.ltx.clear()
            self.objects.clear()
            self._failures.clear()
            self.latency = 0.0

    def _enter(self, op: str) -> None:
        """Called at the start of each request: latency, then injected failures."""
        if self.latency > 0:
            time.sleep(self.latency)
        with self.lock:
            for f in self._failures:
                if f.remaining > 0 and (f.ops is None or op in f.ops):
                    f.remaining -= 1
                    exc = f.make()
                    break
            else:
                return
            self._failures = [f for f in self._failures if f.remaining > 0]
        raise exc


_stores: dict[str, MemoryStore] = {}
_stores_lock = threading.Lock()


def memory_store(name: str) -> MemoryStore:
    """The process-wide store for ``name`` (created on first use)."""
    with _stores_lock:
        store = _stores.get(name)
        if store is None:
            store = _stores[name] = MemoryStore(name)
        return store


def drop_memory_store(name: str) -> None:
    with _stores_lock:
        _stores.pop(name, None)


def reset_memory_stores() -> None:
    """Forget every named store (test isolation)."""
    with _stores_lock:
        _stores.clear()


_anonymous = 0


class MemoryStorage(StorageClient):
    """A client of one :class:`MemoryStore`. ``memory://`` with no name gets a private
    store of its own."""

    def __init__(self, name: str = "", store: MemoryStore | None = None) -> None:
        super().__init__()
        global _anonymous
        if store is None:
            if name:
                store = memory_store(name)
            else:
                with _stores_lock:
                    _anonymous += 1
                    store = MemoryStore(f"<anonymous {_anonymous}>")
        self.store = store
        self.url = f"memory://{name}"

    # Hooks, forwarded to the shared store.
    def fail_next(self, n: int = 1, exc: ExcSpec | None = None,
                  ops: Collection[str] | None = None) -> None:
        self.store.fail_next(n, exc, ops)

    def _what(self, level: int, min_txid: int, max_txid: int) -> str:
        return f"{self.url} L{level} {format_filename(min_txid, max_txid)}"

    def list_level(self, level: int) -> list[FileInfo]:
        check_ltx_args(level, 1, 1)
        self.stats.add(lists=1)
        self.store._enter("list")
        with self.store.lock:
            files = self.store.ltx.get(level, {})
            return [FileInfo(level, lo, hi, len(data), created)
                    for (lo, hi), (data, created) in sorted(files.items())]

    def list_all(self) -> dict[int, list[FileInfo]]:
        levels = super().list_all()
        with self.store.lock:  # side objects come with the listing, as from S3
            self.side_names = tuple(sorted(n for n in self.store.objects
                                           if n.startswith("litevfs/")))
        return levels

    def _get_ltx(self, info: FileInfo) -> bytes:
        with self.store.lock:
            entry = self.store.ltx.get(info.level, {}).get((info.min_txid, info.max_txid))
        if entry is None:
            raise NotFoundError(f"{self._what(info.level, info.min_txid, info.max_txid)} "
                                "does not exist")
        return entry[0]

    def read_range(self, info: FileInfo, offset: int = 0, length: int | None = None) -> bytes:
        check_range(offset, length)
        self.stats.add(gets=1)
        self.store._enter("read")
        data = self._get_ltx(info)
        out = slice_range(data, offset, length,
                          self._what(info.level, info.min_txid, info.max_txid))
        self.stats.add(bytes_read=len(out))
        return out

    def read_tail(self, info: FileInfo, length: int) -> bytes:
        check_range(0, length)
        self.stats.add(gets=1)
        self.store._enter("read")
        data = self._get_ltx(info)
        out = data[max(0, len(data) - length):] if length else b""
        self.stats.add(bytes_read=len(out))
        return out

    def write_ltx(
        self, level: int, min_txid: int, max_txid: int, data: bytes, *,
        if_absent: bool = False, timestamp_ms: int | None = None,
    ) -> FileInfo:
        check_ltx_args(level, min_txid, max_txid)
        blob = bytes(data)
        ts = ltx_timestamp_ms(blob) if timestamp_ms is None else timestamp_ms
        created = ts / 1000.0
        self.stats.add(puts=1)
        self.store._enter("write")
        with self.store.lock:
            files = self.store.ltx.setdefault(level, {})
            if if_absent and (min_txid, max_txid) in files:
                raise AlreadyExistsError(
                    f"{self._what(level, min_txid, max_txid)} already exists")
            files[(min_txid, max_txid)] = (blob, created)
        self.stats.add(bytes_written=len(blob))
        return FileInfo(level, min_txid, max_txid, len(blob), created)

    def delete_ltx(self, infos: Iterable[FileInfo]) -> None:
        keys = [(i.level, i.min_txid, i.max_txid) for i in infos]
        if not keys:
            return
        self.stats.add(deletes=1)
        self.store._enter("delete")
        with self.store.lock:
            for level, lo, hi in keys:
                self.store.ltx.get(level, {}).pop((lo, hi), None)

    def get_object(self, name: str) -> bytes:
        return self.get_object_tagged(name)[0]

    def get_object_tagged(self, name: str) -> tuple[bytes, str]:
        check_object_name(name)
        self.stats.add(gets=1)
        self.store._enter("get_object")
        with self.store.lock:
            data = self.store.objects.get(name)
        if data is None:
            raise NotFoundError(f"{self.url}/{name} does not exist")
        self.stats.add(bytes_read=len(data))
        return data, content_etag(data)

    def put_object(self, name: str, data: bytes, *, if_absent: bool = False,
                   if_match: str | None = None) -> str:
        check_object_name(name)
        blob = bytes(data)
        self.stats.add(puts=1)
        self.store._enter("put_object")
        with self.store.lock:
            old = self.store.objects.get(name)
            if if_absent and old is not None:
                raise AlreadyExistsError(f"{self.url}/{name} already exists")
            if if_match is not None and (old is None or content_etag(old) != if_match):
                raise PreconditionFailedError(f"{self.url}/{name} changed (If-Match)")
            self.store.objects[name] = blob
        self.stats.add(bytes_written=len(blob))
        return content_etag(blob)

    def delete_object(self, name: str) -> None:
        """Remove a side object (missing is fine). Not part of the abstract interface."""
        check_object_name(name)
        self.stats.add(deletes=1)
        self.store._enter("delete")
        with self.store.lock:
            self.store.objects.pop(name, None)


__all__ = [
    "MemoryStorage", "MemoryStore", "memory_store", "drop_memory_store",
    "reset_memory_stores", "OPERATIONS",
]
