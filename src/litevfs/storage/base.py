"""The one storage interface every backend implements, plus request counters.

Keys follow Litestream's layout per backend (S3: ``<path>/<level %04x>/<min>-<max>.ltx``;
file: ``<path>/ltx/<level>/<min>-<max>.ltx``). Callers only ever name LTX files by
``FileInfo`` (level, min TXID, max TXID) and side objects by a relative name.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..ltx.format import MAX_LEVEL, FileInfo


@dataclass
class StorageStats:
    """Per-client request counters (thread-safe increments)."""

    lists: int = 0
    gets: int = 0
    puts: int = 0
    deletes: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    retries: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, n in counts.items():
                setattr(self, name, getattr(self, name) + n)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}


class StorageClient(ABC):
    """Abstract replica storage. Every method is safe to call from several threads."""

    #: The URL the client was opened with, credentials removed (safe to log).
    url: str

    def __init__(self) -> None:
        self.stats = StorageStats()

    @abstractmethod
    def list_level(self, level: int) -> list[FileInfo]:
        """Every LTX file of ``level`` with a strict name, sorted by (min, max) TXID."""

    def list_all(self) -> dict[int, list[FileInfo]]:
        """All levels 0..9. Backends with latency override this to list in parallel."""
        return {level: self.list_level(level) for level in range(MAX_LEVEL + 1)}

    @abstractmethod
    def read_range(self, info: FileInfo, offset: int = 0, length: int | None = None) -> bytes:
        """Bytes ``[offset, offset+length)`` of the file (to the end when ``length`` is
        None). Raises NotFoundError when the file is gone. A short answer is an error
        (retried), never returned."""

    @abstractmethod
    def read_tail(self, info: FileInfo, length: int) -> bytes:
        """The last ``length`` bytes of the file (the whole file when it is smaller)."""

    @abstractmethod
    def write_ltx(
        self, level: int, min_txid: int, max_txid: int, data: bytes, *,
        if_absent: bool = False, timestamp_ms: int | None = None,
    ) -> FileInfo:
        """Store an LTX file. With ``if_absent`` the create is conditional and raises
        AlreadyExistsError when the key exists already (nothing is overwritten)."""

    @abstractmethod
    def delete_ltx(self, infos: Iterable[FileInfo]) -> None:
        """Delete files; missing ones are ignored."""

    @abstractmethod
    def get_object(self, name: str) -> bytes:
        """A side object under the replica path (e.g. ``litevfs/head``); NotFoundError if absent."""

    @abstractmethod
    def put_object(self, name: str, data: bytes, *, if_absent: bool = False) -> None:
        """Store a side object under the replica path."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
