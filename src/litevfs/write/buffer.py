"""Crash-safe local buffer of committed-but-unsynced transactions.

One append-only file per replica. A fixed header names the replica, the page size
and the remote TXID the buffered transactions build on (``base_txid``). Then
records, each ending with an xxhash64 of its bytes:

* ``TX``:   pgnos + full pages of one committed transaction, and the database size
  (commit, in pages) after it. Appended with one ``write`` (optionally fsynced), so
  a process crash leaves either the whole record or a torn tail.
* ``SYNC``: written before an upload: the TXID about to be created, the buffer offset
  it covers and the LTX file checksum, so recovery can tell its own upload (which
  landed just before the crash) from another writer's file with the same TXID.

Recovery reads records until the first short or corrupt one and truncates the file
there (a torn tail is the uncommitted end of a transaction). After a successful
upload :meth:`WriteBuffer.reset` rewrites the file without the synced records
(temp file + rename, so a crash leaves the old or the new file, never a mix).

The pgno -> latest page map of everything buffered is kept in memory (the buffer
is drained every sync interval, so it stays small). Stdlib + xxhash only.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import struct
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field

import xxhash

from .._fsync import datasync
from ..errors import BufferInUseError, WriteBufferError

log = logging.getLogger("litevfs.writebuffer")

MAGIC = b"LVWBUF01"
_HEAD = struct.Struct(">8sIQH")  # magic, page size, base TXID, url length (then url, xxh64)
_REC = struct.Struct(">4sIIQ")  # kind, count, commit, txid/sequence
_U64 = struct.Struct(">Q")
_MARK = struct.Struct(">QQ")  # SYNC body: covered offset, LTX file checksum
KIND_TX, KIND_SYNC = b"TX01", b"SY01"
MAX_RECORD_PAGES = 1 << 24




def __getattr__(name: str) -> object:
    # The old name shadowed the builtin BufferError; kept importable (not defined in this
    # module's namespace, so code here never sees the shadow) for one deprecation cycle.
    if name == "BufferError":
        warnings.warn("litevfs.write.buffer.BufferError is deprecated: use "
                      "litevfs.WriteBufferError (or litevfs.BufferInUseError)",
                      DeprecationWarning, stacklevel=2)
        return WriteBufferError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True)
class SyncMark:
    txid: int
    covered: int  # buffer offset: every record before it is in that upload
    checksum: int  # LTX file checksum (trailer) of the upload


@dataclass
class Recovered:
    """What :meth:`WriteBuffer.open` found in an existing file."""

    transactions: int = 0
    dropped_bytes: int = 0  # torn or corrupt tail removed
    marks: list[SyncMark] = field(default_factory=list)


def _xxh(*parts: bytes | memoryview) -> int:
    h = xxhash.xxh64()
    for p in parts:
        h.update(p)
    return h.intdigest()


class WriteBuffer:
    """Append-only transaction log of one replica's unsynced writes.

    Not thread-safe on its own: the owner (the writer state) serialises calls.
    """

    def __init__(self, path: str, *, url: str, page_size: int, base_txid: int,
                 fsync: bool = False) -> None:
        self.path = path
        self.url = url
        self.page_size = page_size
        self.base_txid = base_txid
        self.fsync = fsync
        self.pages: dict[int, bytes] = {}  # pgno -> newest buffered page
        self.commit: int | None = None  # database size after the newest record
        self.floor: int | None = None  # smallest commit since base (a shrink happened)
        self.transactions = 0
        self.marks: list[SyncMark] = []
        self._fd = -1
        self._lock_fd = -1
        self.size = 0  # bytes in the file (header included)
        self.header_size = 0

    # -- open / recover ----------------------------------------------------------------
    @classmethod
    def open(cls, path: str, *, url: str, page_size: int, base_txid: int,
             fsync: bool = False) -> tuple[WriteBuffer, Recovered]:
        """Open (creating or recovering) the buffer at ``path``. An existing buffer keeps
        its own page size and base TXID; one of another replica is refused."""
        parent = os.path.dirname(os.path.abspath(path))
        buf = cls(path, url=url, page_size=page_size, base_txid=base_txid, fsync=fsync)
        try:
            os.makedirs(parent, mode=0o700, exist_ok=True)
            buf._lock()
            try:
                rec = buf._recover()
            except BaseException:
                buf.close()
                raise
        except OSError as exc:  # unwritable or missing path: name it and the option
            raise WriteBufferError(
                f"cannot use write buffer {path} (option buffer_path / LITEVFS_BUFFER_PATH): "
                f"{exc.strerror or exc}") from exc
        return buf, rec

    def _lock(self) -> None:
        # A second process on the same buffer would interleave records: refuse it.
        self._lock_fd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self._lock_fd)
            self._lock_fd = -1
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise BufferInUseError(
                    f"write buffer {self.path} is in use by another process "
                    "(one writer per buffer; give each writer its own buffer_path)") from None
            raise

    def _header(self) -> bytes:
        url = self.url.encode()
        head = _HEAD.pack(MAGIC, self.page_size, self.base_txid, len(url)) + url
        return head + _U64.pack(_xxh(head))

    def _recover(self) -> Recovered:
        rec = Recovered()
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            data = b""
        if len(data) < _HEAD.size:
            if data:
                log.warning("write buffer %s: %d-byte partial header dropped", self.path, len(data))
            self._rewrite(b"")
            return rec
        magic, page_size, base, url_len = _HEAD.unpack_from(data)
        end = _HEAD.size + url_len
        if magic != MAGIC or len(data) < end + 8 or _U64.unpack_from(data, end)[0] != _xxh(data[:end]):
            raise WriteBufferError(f"{self.path} is not a litevfs write buffer (bad header); "
                              "move it away to start a new one")
        url = data[_HEAD.size:end].decode()
        if url != self.url:
            raise WriteBufferError(f"write buffer {self.path} belongs to replica {url}, not {self.url}")
        self.page_size, self.base_txid = page_size, base
        self.header_size = pos = end + 8
        view = memoryview(data)
        while pos < len(data):
            nxt = self._parse(view, pos, rec)
            if nxt is None:
                break
            pos = nxt
        rec.dropped_bytes = len(data) - pos
        if rec.dropped_bytes:
            log.warning("write buffer %s: dropped a torn/corrupt tail of %d bytes at offset %d",
                        self.path, rec.dropped_bytes, pos)
        self._fd = os.open(self.path, os.O_RDWR)
        if os.fstat(self._fd).st_mode & 0o077:  # written by an older version (0644)
            os.fchmod(self._fd, 0o600)
        os.ftruncate(self._fd, pos)
        os.lseek(self._fd, pos, os.SEEK_SET)
        self.size = pos
        rec.transactions = self.transactions
        rec.marks = list(self.marks)
        return rec

    def _parse(self, view: memoryview, pos: int, rec: Recovered) -> int | None:
        """Apply the record at ``pos``; its end offset, or None if torn/corrupt."""
        parsed = parse_record(view, pos, self.page_size)
        if parsed is None:
            return None
        kind, end, payload = parsed
        if kind == KIND_TX:
            self._apply(*payload)
        else:
            self.marks.append(payload)
        return end

    def _apply(self, pages: Mapping[int, bytes], commit: int) -> None:
        for p in [p for p in self.pages if p > commit]:
            del self.pages[p]
        self.pages.update((p, d) for p, d in pages.items() if p <= commit)
        self.floor = commit if self.floor is None else min(self.floor, commit)
        self.commit = commit
        self.transactions += 1

    # -- writing -------------------------------------------------------------------------
    def append(self, pages: Mapping[int, bytes], commit: int) -> int:
        """Append one committed transaction; returns the buffer offset after it."""
        pgnos = sorted(pages)
        ps = self.page_size
        parts = [_REC.pack(KIND_TX, len(pgnos), commit, self.transactions + 1),
                 struct.pack(f">{len(pgnos)}I", *pgnos)]
        for p in pgnos:
            page = pages[p]
            if len(page) != ps:
                raise ValueError(f"page {p} has {len(page)} bytes, expected {ps}")
            parts.append(page)
        record = b"".join(parts)
        self._write(record + _U64.pack(xxhash.xxh64_intdigest(record)))
        self._apply(pages, commit)
        return self.size

    def mark_sync(self, txid: int, covered: int, checksum: int) -> None:
        record = _REC.pack(KIND_SYNC, 0, 0, txid) + _MARK.pack(covered, checksum)
        self._write(record + _U64.pack(xxhash.xxh64_intdigest(record)))
        self.marks.append(SyncMark(txid, covered, checksum))

    def _write(self, record: bytes) -> None:
        if self._fd < 0:
            raise WriteBufferError(f"write buffer {self.path} is closed")
        try:
            n = os.write(self._fd, record)
            if n != len(record):  # a short write leaves a torn tail: cut it off
                raise OSError(errno.EIO, f"short write ({n} of {len(record)} bytes)")
            if self.fsync:
                datasync(self._fd)  # fdatasync; F_FULLFSYNC on macOS
        except OSError:
            os.ftruncate(self._fd, self.size)
            os.lseek(self._fd, self.size, os.SEEK_SET)
            raise
        self.size += len(record)

    # -- after a sync --------------------------------------------------------------------
    def read_records(self, start: int) -> bytes:
        """Raw bytes of the records from ``start`` to the end."""
        return os.pread(self._fd, self.size - start, start) if self.size > start else b""

    def reset(self, covered: int, base_txid: int) -> None:
        """Drop every record before ``covered`` (uploaded as ``base_txid``): rewrite the
        file with the new base and the transactions after it (sync marks are dropped)."""
        tail = memoryview(self.read_records(covered))
        self.base_txid = base_txid
        self.pages, self.commit, self.floor, self.transactions = {}, None, None, 0
        self.marks = []
        keep, pos = [], 0
        while pos < len(tail):
            parsed = parse_record(tail, pos, self.page_size)
            if parsed is None:  # cannot happen: we wrote these bytes ourselves
                raise WriteBufferError(f"write buffer {self.path}: corrupt record at {covered + pos}")
            kind, end, payload = parsed
            if kind == KIND_TX:
                keep.append(tail[pos:end])
                self._apply(*payload)
            pos = end
        self._rewrite(b"".join(keep))

    def _rewrite(self, records: bytes) -> None:
        tmp = self.path + ".tmp"
        header = self._header()
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            data = header + records
            if os.write(fd, data) != len(data):
                raise OSError(errno.EIO, f"short write to {tmp}")
            if self.fsync:
                datasync(fd)
            os.replace(tmp, self.path)
        except BaseException:
            os.close(fd)
            raise
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = fd
        os.lseek(fd, 0, os.SEEK_END)
        self.header_size = len(header)
        self.size = len(data)

    def clear(self, base_txid: int) -> None:
        """Discard every buffered transaction (after an export, or on request)."""
        self.reset(self.size, base_txid)

    @property
    def empty(self) -> bool:
        return self.transactions == 0

    def close(self, *, remove: bool = False) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if remove:
            for p in (self.path, self.path + ".lock"):
                try:
                    os.unlink(p)
                except FileNotFoundError:
                    pass
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1


def parse_record(view: memoryview, pos: int, page_size: int
                 ) -> tuple[bytes, int, object] | None:
    """(kind, end offset, payload) of the record at ``pos``, or None when it is torn or
    corrupt. Payload: ``(pages, commit)`` for a transaction, a SyncMark for a mark."""
    if pos + _REC.size > len(view):
        return None
    kind, count, commit, txid = _REC.unpack_from(view, pos)
    if kind == KIND_TX:
        if count > MAX_RECORD_PAGES:
            return None
        body = count * (4 + page_size)
    elif kind == KIND_SYNC:
        body = _MARK.size
    else:
        return None
    end = pos + _REC.size + body
    if end + 8 > len(view) or _U64.unpack_from(view, end)[0] != _xxh(view[pos:end]):
        return None
    start = pos + _REC.size
    if kind == KIND_SYNC:
        covered, checksum = _MARK.unpack_from(view, start)
        return kind, end + 8, SyncMark(txid, covered, checksum)
    pgnos = struct.unpack_from(f">{count}I", view, start)
    off = start + 4 * count
    pages = {p: bytes(view[off + i * page_size:off + (i + 1) * page_size])
             for i, p in enumerate(pgnos)}
    return kind, end + 8, (pages, commit)


def read_buffer(path: str) -> tuple[dict, list[tuple[dict[int, bytes], int]]]:
    """Read a buffer file without locking it: (header info, [(pages, commit), ...]),
    stopping at a torn tail. For export/inspection of a buffer no process holds."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < _HEAD.size:
        raise WriteBufferError(f"{path} is not a litevfs write buffer (too short)")
    magic, page_size, base, url_len = _HEAD.unpack_from(data)
    end = _HEAD.size + url_len
    if magic != MAGIC or len(data) < end + 8 or _U64.unpack_from(data, end)[0] != _xxh(data[:end]):
        raise WriteBufferError(f"{path} is not a litevfs write buffer (bad header)")
    info = {"page_size": page_size, "base_txid": base, "url": data[_HEAD.size:end].decode()}
    out: list[tuple[dict[int, bytes], int]] = []
    pos, view = end + 8, memoryview(data)
    while True:
        parsed = parse_record(view, pos, page_size)
        if parsed is None:
            break
        kind, pos, payload = parsed
        if kind == KIND_TX:
            out.append(payload)  # type: ignore[arg-type]
    return info, out
