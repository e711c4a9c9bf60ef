"""The one storage interface every backend implements, plus request counters.

Keys follow Litestream's layout per backend (S3: ``<path>/<level %04x>/<min>-<max>.ltx``;
file: ``<path>/ltx/<level>/<min>-<max>.ltx``). Callers only ever name LTX files by
``FileInfo`` (level, min TXID, max TXID) and side objects by a relative name.
"""

from __future__ import annotations

import hashlib
import struct
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence

from ..errors import TransientStorageError
from ..ltx.format import MAGIC, MAX_LEVEL, FileInfo


class StorageStats:
    """Per-client request counters (thread-safe increments)."""

    COUNTERS = ("lists", "gets", "puts", "deletes", "bytes_read", "bytes_written", "retries")
    __slots__ = (*COUNTERS, "_lock")

    def __init__(self, **counts: int) -> None:
        for name in self.COUNTERS:
            setattr(self, name, counts.pop(name, 0))
        if counts:
            raise TypeError(f"unknown counters: {', '.join(sorted(counts))}")
        self._lock = threading.Lock()

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, n in counts.items():
                setattr(self, name, getattr(self, name) + n)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {name: getattr(self, name) for name in self.COUNTERS}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StorageStats):
            return NotImplemented
        return self.snapshot() == other.snapshot()

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return "StorageStats(" + ", ".join(f"{k}={v}" for k, v in self.snapshot().items()) + ")"


class StorageClient(ABC):
    """Abstract replica storage. Every method is safe to call from several threads."""

    #: The URL the client was opened with, credentials removed (safe to log).
    url: str
    #: Names of the side objects under ``litevfs/`` that the latest ``list_all`` returned
    #: along with the LTX files (the S3 listing covers the whole prefix), or None when it
    #: did not reach them. Index hints travel this way (``engine/indexhint.py``).
    side_names: tuple[str, ...] | None = None

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
    def get_object_tagged(self, name: str) -> tuple[bytes, str]:
        """A side object and its entity tag (what ``put_object(if_match=...)`` compares);
        NotFoundError if absent."""

    def get_object_if_changed(self, name: str, etag: str | None
                              ) -> tuple[bytes | None, str | None, bool]:
        """A conditional read: ``(data, etag, changed)``. ``changed`` is False when the
        object still has ``etag`` (then data is None); a missing object is
        ``(None, None, True)``. Backends with latency override this to send the tag
        (``If-None-Match``) so an unchanged object costs no body."""
        try:
            data, tag = self.get_object_tagged(name)
        except FileNotFoundError:
            return None, None, True
        return (None, etag, False) if tag == etag else (data, tag, True)

    @abstractmethod
    def put_object(self, name: str, data: bytes, *, if_absent: bool = False,
                   if_match: str | None = None) -> str | None:
        """Store a side object under the replica path; returns its new entity tag (None
        when the server did not say). ``if_absent``: create only (AlreadyExistsError when
        it exists). ``if_match``: replace only while the object still has that tag
        (PreconditionFailedError otherwise, also when it is missing): a compare-and-swap."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    def server_time(self) -> float:
        """The storage's current time (seconds since the epoch), the clock its
        ``created_at`` times come from. Backends whose clock is not this machine's
        (object storage) estimate it from their answers, so retention and compaction
        schedules hold even when the local clock is off. Default: the local clock."""
        return time.time()

    def preconnect(self, n: int = 2) -> None:  # noqa: B027 - optional hook
        """Open up to ``n`` connections in the background so the first requests skip
        their handshakes (backends with connections override this)."""

    def wait_sent(self, timeout: float) -> None:  # noqa: B027 - optional hook
        """Wait (at most ``timeout``) until a request started on another thread is on the
        wire: a caller about to do CPU-bound work (imports) calls this first, so the
        request thread does not wait for the GIL before sending. No-op by default."""

    def empty_reason(self) -> str | None:
        """Why a listing found no files, when the backend can tell more than "none
        under this path" (e.g. the directory does not exist). No I/O beyond a stat."""
        return None

    @abstractmethod
    def delete_object(self, name: str) -> None:
        """Remove a side object; a missing one is fine."""

    # Optional helpers (backends with latency override them to run in parallel).

    def read_many(
        self, requests: Sequence[tuple[FileInfo, int, int | None]],
    ) -> list[bytes]:
        """``read_range`` for each ``(info, offset, length)``, results in request order.
        The first failure is raised."""
        return [self.read_range(info, offset, length) for info, offset, length in requests]

    def __enter__(self) -> StorageClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# Helpers shared by the backends, so that every backend answers edge cases alike.

_MAX_TXID = (1 << 64) - 1


def check_ltx_args(level: int, min_txid: int, max_txid: int) -> None:
    """Reject what Litestream could never name: bad level, zero or reversed TXIDs."""
    if not 0 <= level <= MAX_LEVEL:
        raise ValueError(f"LTX level {level} out of range 0..{MAX_LEVEL}")
    if not 1 <= min_txid <= max_txid <= _MAX_TXID:
        raise ValueError(f"invalid LTX TXID range {min_txid}..{max_txid}")


def check_range(offset: int, length: int | None) -> None:
    if offset < 0:
        raise ValueError(f"negative read offset {offset}")
    if length is not None and length < 0:
        raise ValueError(f"negative read length {length}")


def check_object_name(name: str) -> str:
    """A side-object name relative to the replica path: no absolute names, no ``..``,
    no empty components (the file backend must never leave its root; the S3 backend
    applies the same rule so names mean the same thing everywhere)."""
    if (not isinstance(name, str) or not name or name.startswith("/")
            or "\\" in name or "\0" in name):
        raise ValueError(f"invalid object name {name!r}")
    parts = name.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"invalid object name {name!r}: empty, '.' or '..' component")
    return name


def slice_range(data: bytes, offset: int, length: int | None, what: str) -> bytes:
    """The requested bytes of a whole object held in memory, with the short-read rule:
    asking for bytes past the end is an error, never a shorter answer."""
    check_range(offset, length)
    end = len(data) if length is None else offset + length
    if length == 0:
        return b""
    if offset >= len(data) or end > len(data):
        raise TransientStorageError(short_read_message(what, offset, length, len(data)))
    return bytes(data[offset:end])


def short_read_message(what: str, offset: int, length: int | None, size: int | None) -> str:
    want = f"bytes {offset}.." + ("end" if length is None else str(offset + length - 1))
    have = "" if size is None else f" (object is {size} bytes)"
    return f"short read of {what}: asked for {want}{have}"


_MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}


def parse_http_date(text: str) -> float | None:
    """Seconds since the epoch of an HTTP ``Date`` (``Fri, 04 Dec 2026 22:03:21 GMT``),
    None when it is not one. By hand: ``email.utils`` costs ~30 ms to import."""
    try:
        _, day, month, year, hms, zone = text.split()
        if zone != "GMT":
            return None
        y, m, d = int(year), _MONTHS[month], int(day)
        hh, mm, ss = (int(x) for x in hms.split(":"))
    except (ValueError, KeyError):
        return None
    # Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    days = era * 146097 + doe - 719468
    return days * 86400.0 + hh * 3600 + mm * 60 + ss


class ServerClock:
    """The offset between a server's clock and ours, from the ``Date`` of its answers
    (one-second resolution: enough for compaction and retention schedules)."""

    __slots__ = ("offset", "samples")

    def __init__(self) -> None:
        self.offset: float | None = None
        self.samples = 0

    def note(self, date: str | None) -> None:
        server = parse_http_date(date) if date else None
        if server is None:
            return
        # The Date is truncated to the second: +0.5 s is its expected value. The newest
        # answer wins: a clock stepped by NTP is followed at once.
        self.offset = server + 0.5 - time.time()
        self.samples += 1

    def now(self) -> float:
        return time.time() + (self.offset or 0.0)


def content_etag(data: bytes) -> str:
    """The entity tag the file and memory backends give an object: its MD5, quoted, as
    S3 gives a single-part upload (so tags look alike everywhere)."""
    return '"' + hashlib.md5(data, usedforsecurity=False).hexdigest() + '"'


_TIMESTAMP = struct.Struct(">q")


def ltx_timestamp_ms(data: bytes | bytearray | memoryview) -> int:
    """The LTX header timestamp (ms since the epoch) when ``data`` starts with an LTX
    header, else the current time: what Litestream stores as the file's timestamp."""
    if len(data) >= 40 and bytes(data[:4]) == MAGIC:
        ts = _TIMESTAMP.unpack_from(data, 32)[0]
        if ts > 0:
            return int(ts)
    return int(time.time() * 1000)
