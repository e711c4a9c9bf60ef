"""The crash-safe write buffer: one append-only log per replica per machine, shared by
every process that writes the replica (``shared.py`` coordinates them).

A fixed header names the replica, the page size, the TXID the log builds on
(``base_txid``), the sequence number before its first transaction (``seq0``), the
log's generation and the machine's writer id (the head object's runs name it). Then
records, each ending with an xxhash64 of its bytes:

* ``TX``:   pgnos + full pages of one committed transaction, the database size
  (commit, in pages) after it, and its sequence number (one more than the last: the
  machine-wide commit order). Appended with one write under the WRITER lock, so a
  crash leaves the whole record or a torn tail that the next appender cuts off.
* ``SYNC``: written before an upload: the TXID about to be created, the sequence
  number of the last transaction it holds and the LTX file checksum, so whoever syncs
  next can tell a landed upload (the head's history or the L0 file says so) from a
  rival's file with the same TXID.
* ``DONE``: written after the commit point (the head's compare-and-swap): TXID,
  covered sequence number, the file's size, header and page index, and the head as
  recorded. Every process extends its view with it without a request to the bucket,
  and drops the covered pages from memory (they are in the cache from then on).
* ``CONFLICT``: another writer advanced the replica: the message every process raises.

Only the committed end (``P.shm``) is ever read, so a half-written record is never seen.
When the synced prefix grows, the syncer rewrites the log (temp file + rename, under
WRITER): the new generation keeps the unsynced transactions and the last DONE records,
so a process that slept through one rewrite still extends its view locally.

Each process keeps its own index of the log (``WriteBuffer``): the newest unsynced
version of each page, caught up incrementally (``catch_up``) at the start of every
read transaction by comparing one mapped word. Stdlib + xxhash only.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import struct
import time
import warnings
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import NamedTuple

import xxhash

from .._fsync import datasync
from ..errors import BufferInUseError, WriteBufferError
from ..ltx.format import FileInfo
from .shared import GEN_MASK, INIT, SharedFiles, pack_state

log = logging.getLogger("litevfs.writebuffer")

MAGIC_V1 = b"LVWBUF01"  # one process per buffer; marks cover byte offsets
MAGIC = b"LVWBUF02"
_HEAD1 = struct.Struct(">8sIQH")  # magic, page size, base TXID, url length (then url, xxh64)
_HEAD = struct.Struct(">8sIQQQ16sH")  # + seq0, generation, writer id
_REC = struct.Struct(">4sIIQ")  # kind, count/length, commit/flags, seq/txid
_U64 = struct.Struct(">Q")
_STATE = struct.Struct("<Q")  # the mapped state word (shared.py)
_MARK = struct.Struct(">QQ")  # SYNC body: covered seq (v1: offset), LTX file checksum
_DONE = struct.Struct(">QQQdHIII")  # covered, checksum, size, created_at, 4 lengths
KIND_TX, KIND_SYNC, KIND_DONE, KIND_CONFLICT = b"TX01", b"SY01", b"DN01", b"CF01"
MAX_RECORD_PAGES = 1 << 24
MAX_META = 1 << 28
DONE_HAS_INDEX = 1
KEEP_DONES = 32  # DONE records carried into a new generation
MAX_HEADER = _HEAD.size + 65536 + 8
_REUSE_MAX = 2 << 20  # catch-up reads go through a buffer of at most this size the index keeps
_preadv = getattr(os, "preadv", None)
_copy_file_range = getattr(os, "copy_file_range", None)
_new_tuple = tuple.__new__  # a TxRef without its __new__'s Python frame (catch-up, per record)


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
    covered: int  # sequence number of the last transaction in that upload
    checksum: int  # LTX file checksum (trailer) of the upload


@dataclass(frozen=True)
class Done:
    """A sync's commit point as the log records it."""

    txid: int
    covered: int  # sequence number of the last transaction the file holds
    checksum: int
    info: FileInfo | None  # None: no index recorded (followers re-plan from the bucket)
    header: bytes = b""  # the LTX header
    index: bytes = b""  # the LTX page index section
    head: bytes = b""  # the head object as recorded
    etag: str = ""
    raw: bytes = b""  # the record itself (carried into the next generation)


class TxRef(NamedTuple):
    seq: int
    commit: int
    start: int  # record offsets in the current generation
    end: int


@dataclass
class Recovered:
    """What :meth:`WriteBuffer.open` found in an existing file."""

    transactions: int = 0
    dropped_bytes: int = 0  # torn or corrupt tail removed
    marks: list[SyncMark] = field(default_factory=list)


@dataclass
class Changes:
    """What a catch-up applied, in log order (the writer turns it into views and reader
    snapshots): ``("tx", commit)`` and ``("done", Done, dropped pages, commit, floor)``."""

    events: list[tuple] = field(default_factory=list)
    jumped: int | None = None  # base moved without a DONE (discard, rebase): re-plan
    conflict: str | None = None
    generation: bool = False

    def __bool__(self) -> bool:
        return bool(self.events or self.jumped is not None or self.conflict
                    or self.generation)


_NOTHING = Changes()


def _new_writer_id() -> str:
    return os.urandom(8).hex()  # secrets.token_hex(8) without importing secrets (~2 ms)


def _xxh(*parts: bytes | memoryview) -> int:
    h = xxhash.xxh64()
    for p in parts:
        h.update(p)
    return h.intdigest()


class Header(NamedTuple):
    page_size: int
    base_txid: int
    seq0: int
    gen: int
    writer_id: str
    url: str
    size: int


def encode_header(h: Header) -> bytes:
    url = h.url.encode()
    head = _HEAD.pack(MAGIC, h.page_size, h.base_txid, h.seq0, h.gen,
                      h.writer_id.encode().ljust(16, b"\0")[:16], len(url)) + url
    return head + _U64.pack(_xxh(head))


def parse_header(data: bytes | memoryview, path: str) -> Header:
    """The header of a v2 log; WriteBufferError when it is not one."""
    if len(data) < _HEAD.size:
        raise WriteBufferError(f"{path} is not a litevfs write buffer (too short)")
    magic, page_size, base, seq0, gen, wid, url_len = _HEAD.unpack_from(data)
    end = _HEAD.size + url_len
    if magic != MAGIC or len(data) < end + 8 or _U64.unpack_from(data, end)[0] != _xxh(
            data[:end]):
        raise WriteBufferError(f"{path} is not a litevfs write buffer (bad header); "
                               "move it away to start a new one")
    return Header(page_size, base, seq0, gen, bytes(wid).rstrip(b"\0").decode("ascii", "replace"),
                  bytes(data[_HEAD.size:end]).decode("utf-8", "replace"), end + 8)


def encode_tx(pages: Mapping[int, bytes], commit: int, seq: int, page_size: int) -> bytes:
    pgnos = sorted(pages)
    parts = [_REC.pack(KIND_TX, len(pgnos), commit, seq), struct.pack(f">{len(pgnos)}I", *pgnos)]
    for p in pgnos:
        page = pages[p]
        if len(page) != page_size:
            raise ValueError(f"page {p} has {len(page)} bytes, expected {page_size}")
        parts.append(page)
    record = b"".join(parts)
    return record + _U64.pack(xxhash.xxh64_intdigest(record))


def _meta(kind: bytes, flags: int, txid: int, body: bytes) -> bytes:
    record = _REC.pack(kind, len(body), flags, txid) + body
    return record + _U64.pack(xxhash.xxh64_intdigest(record))


def encode_mark(mark: SyncMark) -> bytes:
    record = _REC.pack(KIND_SYNC, 0, 0, mark.txid) + _MARK.pack(mark.covered, mark.checksum)
    return record + _U64.pack(xxhash.xxh64_intdigest(record))


def encode_done(done: Done) -> bytes:
    info = done.info
    etag = done.etag.encode()
    body = _DONE.pack(done.covered, done.checksum, info.size if info else 0,
                      float(info.created_at) if info else 0.0, len(etag), len(done.head),
                      len(done.header), len(done.index))
    body += etag + done.head + done.header + done.index
    return _meta(KIND_DONE, DONE_HAS_INDEX if info is not None else 0, done.txid, body)


def encode_conflict(message: str) -> bytes:
    return _meta(KIND_CONFLICT, 0, 0, message.encode())


_PGNOS: dict[int, struct.Struct] = {}


def _pgnos(count: int) -> struct.Struct:
    st = _PGNOS.get(count)
    if st is None:
        st = _PGNOS[count] = struct.Struct(f">{count}I")
    return st


def parse_record(view: memoryview, pos: int, page_size: int, verify: bool = True
                 ) -> tuple[bytes, int, object] | None:
    """(kind, end offset, payload) of the record at ``pos``, or None when it is torn or
    corrupt. Payload: ``(pages, commit, seq)`` for a transaction (pages copied out of
    ``view``), a SyncMark, a Done, or the conflict message. ``verify=False``: skip the
    checksum (a record inside the committed end of a live log, complete by construction;
    recovery always checks)."""
    if pos + _REC.size > len(view):
        return None
    kind, count, commit, seq = _REC.unpack_from(view, pos)
    if kind == KIND_TX:
        if count > MAX_RECORD_PAGES:
            return None
        body = count * (4 + page_size)
    elif kind == KIND_SYNC:
        body = _MARK.size
    elif kind in (KIND_DONE, KIND_CONFLICT):
        if count > MAX_META:
            return None
        body = count
    else:
        return None
    end = pos + _REC.size + body
    if end + 8 > len(view) or (verify and _U64.unpack_from(view, end)[0] != _xxh(view[pos:end])):
        return None
    start = pos + _REC.size
    if kind == KIND_SYNC:
        covered, checksum = _MARK.unpack_from(view, start)
        return kind, end + 8, SyncMark(seq, covered, checksum)
    if kind == KIND_CONFLICT:
        return kind, end + 8, bytes(view[start:end]).decode("utf-8", "replace")
    if kind == KIND_DONE:
        done = _parse_done(view, start, end, commit, seq, bytes(view[pos:end + 8]))
        return (kind, end + 8, done) if done is not None else None
    pgnos = _pgnos(count).unpack_from(view, start) if count < 4096 else struct.unpack_from(
        f">{count}I", view, start)
    off = start + 4 * count
    pages = {p: view[off + i * page_size:off + (i + 1) * page_size].tobytes()
             for i, p in enumerate(pgnos)}
    return kind, end + 8, (pages, commit, seq)


def _copy_range(src: int, dst: int, start: int, stop: int, out: int, name: str) -> None:
    """Copy bytes [start, stop) of ``src`` to offset ``out`` of ``dst``: in the kernel
    (``copy_file_range``) when it can, else through a bounded buffer."""
    while start < stop:
        n = 0
        if _copy_file_range is not None:
            try:
                n = _copy_file_range(src, dst, stop - start, start, out)
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
                    raise
        if n <= 0:
            chunk = os.pread(src, min(stop - start, _REUSE_MAX), start)
            if not chunk or os.pwrite(dst, chunk, out) != len(chunk):
                raise OSError(errno.EIO, f"short copy into {name}")
            n = len(chunk)
        start += n
        out += n


def _record_size(view: memoryview, pos: int, page_size: int) -> int | None:
    """The size of the record whose header is at ``pos``; None for an unknown kind."""
    kind, count, _flags, _seq = _REC.unpack_from(view, pos)
    if kind == KIND_TX:
        return _REC.size + count * (4 + page_size) + 8
    if kind == KIND_SYNC:
        return _REC.size + _MARK.size + 8
    if kind in (KIND_DONE, KIND_CONFLICT):
        return _REC.size + count + 8
    return None


def _checked_tx(view: memoryview, pos: int, page_size: int
                ) -> tuple[tuple[int, ...], int, int] | None:
    """(pgnos, offset of its first page, commit) of the TX record at ``pos``, its
    checksum checked; None when there is none or it is corrupt."""
    if pos + _REC.size > len(view):
        return None
    kind, count, commit, _seq = _REC.unpack_from(view, pos)
    if kind != KIND_TX or count > MAX_RECORD_PAGES:
        return None
    body = pos + _REC.size
    end = body + count * (4 + page_size)
    if end + 8 > len(view) or _U64.unpack_from(view, end)[0] != _xxh(view[pos:end]):
        return None
    pgnos = _pgnos(count).unpack_from(view, body) if count < 4096 else struct.unpack_from(
        f">{count}I", view, body)
    return pgnos, body + 4 * count, commit


def _parse_done(view: memoryview, start: int, end: int, flags: int, txid: int,
                raw: bytes) -> Done | None:
    if end - start < _DONE.size:
        return None
    covered, checksum, size, created, le, lh, lx, li = _DONE.unpack_from(view, start)
    p = start + _DONE.size
    if p + le + lh + lx + li != end:
        return None
    etag = bytes(view[p:p + le]).decode("utf-8", "replace")
    p += le
    head = bytes(view[p:p + lh])
    p += lh
    header = bytes(view[p:p + lx])
    p += lx
    index = bytes(view[p:p + li])
    info = FileInfo(0, txid, txid, size, created) if flags & DONE_HAS_INDEX else None
    return Done(txid, covered, checksum, info, header, index, head, etag, raw)


def _convert_v1(data: bytes, path: str) -> bytes:
    """A buffer of an older version (one process; marks cover byte offsets) as a v2 log."""
    magic, page_size, base, url_len = _HEAD1.unpack_from(data)
    end = _HEAD1.size + url_len
    if len(data) < end + 8 or _U64.unpack_from(data, end)[0] != _xxh(data[:end]):
        raise WriteBufferError(f"{path} is not a litevfs write buffer (bad header); "
                               "move it away to start a new one")
    url = data[_HEAD1.size:end].decode("utf-8", "replace")
    pos, view, seq = end + 8, memoryview(data), 0
    out = []
    tx_ends: list[int] = []
    while pos < len(data):
        if pos + _REC.size > len(data):
            break
        kind = bytes(view[pos:pos + 4])
        if kind == KIND_TX:
            parsed = parse_record(view, pos, page_size)
            if parsed is None:
                break
            _, nxt, (pages, commit, _old) = parsed  # type: ignore[misc]
            seq += 1
            out.append(encode_tx(pages, commit, seq, page_size))
            tx_ends.append(nxt)
        elif kind == KIND_SYNC:
            parsed = parse_record(view, pos, page_size)
            if parsed is None:
                break
            _, nxt, mark = parsed
            covered = sum(1 for e in tx_ends if e <= mark.covered)  # type: ignore[union-attr]
            out.append(encode_mark(SyncMark(mark.txid, covered, mark.checksum)))  # type: ignore[union-attr]
        else:
            break
        pos = nxt
    header = Header(page_size, base, 0, 1, _new_writer_id(), url, 0)
    return encode_header(header) + b"".join(out)


class WriteBuffer:
    """This process's handle on the shared log of one replica, and its index of it.

    Not thread-safe on its own: the owner (the writer state) serialises calls. Appends
    need the cross-process WRITER lock (``shared.WriterGate``) and a caught-up index.
    """

    def __init__(self, path: str, *, url: str, page_size: int, base_txid: int,
                 fsync: bool = False) -> None:
        self.path = path
        self.url = url
        self.page_size = page_size
        self.base_txid = base_txid  # the synced position: the last DONE (or the header's)
        self.fsync = fsync
        self.files: SharedFiles | None = None
        self.writer_id = ""
        self.gen = 0
        self.seq0 = 0
        self.header_size = 0
        self._fd = -1
        self.pos = 0  # offset up to which this index is caught up
        self._seen = -1  # the shared state word the index matches
        # The index: the newest unsynced version of each page, and which commit wrote it.
        self.pages: dict[int, bytes] = {}
        self.page_seq: dict[int, int] = {}
        self.txs: list[TxRef] = []  # unsynced transactions, in order
        self.commit: int | None = None  # database size after the newest unsynced record
        self.floor: int | None = None  # smallest commit among them (a shrink happened)
        self.synced_seq = 0
        self.last_seq = 0
        self.marks: list[SyncMark] = []
        self.dones: deque[Done] = deque(maxlen=KEEP_DONES)
        self.conflict: str | None = None
        self._cow = False  # the pages dict is pinned by readers: copy before changing it
        self._switching = False
        self._new_header: Header | None = None
        self._rbuf: bytearray | None = None  # the reused read buffer (_reading)

    # -- open / recover ----------------------------------------------------------------
    @classmethod
    def open(cls, path: str, *, url: str, page_size: int, base_txid: int,
             fsync: bool = False, follow: bool = False) -> tuple[WriteBuffer, Recovered]:
        """Open (creating or recovering) the log at ``path`` and join the processes using
        it. An existing log keeps its own page size and base TXID; one of another
        replica is refused. ``follow`` (a read-only member): never create the log; until
        a writer does, the index stays empty (``catch_up`` finds it once published)."""
        parent = os.path.dirname(os.path.abspath(path))
        buf = cls(path, url=url, page_size=page_size, base_txid=base_txid, fsync=fsync)
        try:
            os.makedirs(parent, mode=0o700, exist_ok=True)
            buf.files = SharedFiles.open(path)
            try:
                rec = buf._join(follow)
            finally:
                if buf.files is not None:
                    buf.files.release_init()
        except OSError as exc:  # unwritable or missing path: name it and the option
            buf.close()
            raise WriteBufferError(
                f"cannot use write buffer {path} (option buffer_path / LITEVFS_BUFFER_PATH): "
                f"{exc.strerror or exc}") from exc
        except BaseException:
            buf.close()
            raise
        return buf, rec

    def _join(self, follow: bool = False) -> Recovered:
        rec = Recovered()
        assert self.files is not None
        exists = os.path.exists(self.path)
        if follow and not exists:  # no log (yet): nothing to index, nothing created
            self._seen = self.files.state_word()
            self._header_url = self.url
            return rec
        if self.files.alone or not exists:
            rec.dropped_bytes = self._recover_alone()
        self.catch_up()
        if self.url != self._header_url:
            raise WriteBufferError(
                f"write buffer {self.path} belongs to replica {self._header_url}, not {self.url}")
        rec.transactions = self.transactions
        rec.marks = list(self.marks)
        return rec

    def _recover_alone(self) -> int:
        """Nobody else uses the log: check it, cut a torn tail, publish its end."""
        path = self.path
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            data = b""
        if len(data) >= 8 and data[:8] == MAGIC_V1:
            data = _convert_v1(data, path)
            self._write_file(data)
            log.info("write buffer %s converted to the shared format", path)
        if len(data) < _HEAD.size:
            if data:
                log.warning("write buffer %s: %d-byte partial header dropped", path, len(data))
            header = Header(self.page_size, self.base_txid, 0, 1, _new_writer_id(),
                            self.url, 0)
            data = encode_header(header)
            self._write_file(data)
        header = parse_header(data, path)
        view = memoryview(data)
        pos = header.size
        while pos < len(data):
            parsed = parse_record(view, pos, header.page_size)
            if parsed is None:
                break
            pos = parsed[1]
        dropped = len(data) - pos
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW)
        try:
            if os.fstat(fd).st_mode & 0o077:  # written by an older version (0644)
                os.fchmod(fd, 0o600)
            if dropped:
                log.warning("write buffer %s: dropped a torn/corrupt tail of %d bytes at "
                            "offset %d", path, dropped, pos)
                os.ftruncate(fd, pos)
        finally:
            os.close(fd)
        assert self.files is not None
        self.files.set_rewriting(False)
        self.files.publish(header.gen, pos)
        return dropped

    def ensure_log(self) -> None:
        """A member that joined without a log (``follow``) starts writing: create it
        (INIT held, as a first opener does) and index it."""
        files = self.files
        assert files is not None
        with files.holding(INIT, 30.0, "opening it"):
            if not os.path.exists(self.path):
                self._recover_alone()
            self.catch_up()

    def _write_file(self, data: bytes, runs: Sequence[tuple[int, int]] = ()) -> None:
        """A new log file: ``data``, then the byte ranges ``runs`` of the current one,
        copied by the kernel where it can (a rewrite holds the machine's write lock)."""
        tmp = self.path + ".tmp"
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            if os.write(fd, data) != len(data):
                raise OSError(errno.EIO, f"short write to {tmp}")
            out = len(data)
            for start, stop in runs:
                _copy_range(self._fd, fd, start, stop, out, tmp)
                out += stop - start
            if self.fsync:
                datasync(fd)
            os.replace(tmp, self.path)
        finally:
            os.close(fd)

    # -- catching up -------------------------------------------------------------------
    def fresh(self) -> bool:
        """Is the index at the log's committed end? (One read of the mapped word.)"""
        files = self.files
        mm = files.mm if files is not None else None
        if mm is None:
            raise WriteBufferError(f"write buffer {self.path} is closed")
        return _STATE.unpack_from(mm, 8)[0] == self._seen

    def catch_up(self, *, cow: bool = False) -> Changes:
        """Apply what other processes appended since the last call. ``cow``: readers
        hold the current pages dict (it is copied before the first change)."""
        files = self.files
        if files is None:
            raise WriteBufferError(f"write buffer {self.path} is closed")
        word = files.state_word()
        if word == self._seen:
            return _NOTHING
        gen, end = files.state()
        changes = Changes()
        self._cow = cow
        if self._fd >= 0 and gen == self.gen & GEN_MASK:
            if end > self.pos:
                self._read(self._fd, self.pos, end, changes, strict=True)
            elif end < self.pos:
                raise WriteBufferError(f"write buffer {self.path}: the log shrank under "
                                       "this process (was it replaced by hand?)")
        else:
            self._switch(changes)
        self._seen = pack_state(self.gen, self.pos)
        return changes

    @contextmanager
    def _reading(self, fd: int, start: int, stop: int) -> Iterator[memoryview]:
        """The log's bytes [start, stop), read into a buffer this index keeps (a fresh
        multi-megabyte read costs more in page faults than in copying), or a new one for
        a read bigger than ``_REUSE_MAX``. The kept buffer is this reader's until the
        block ends (another read meanwhile gets its own); nothing may keep the view."""
        n = stop - start
        buf = None
        if n <= _REUSE_MAX and _preadv is not None:
            buf, self._rbuf = self._rbuf, None
            if buf is None or len(buf) < n:
                buf = bytearray(max(n, 1 << 16, 2 * len(buf) if buf is not None else 0))
            view = memoryview(buf)[:_preadv(fd, [memoryview(buf)[:n]], start)]
        else:
            view = memoryview(os.pread(fd, n, start))
        try:
            yield view
        finally:
            view.release()
            if buf is not None:
                self._rbuf = buf

    def _read(self, fd: int, start: int, stop: int, changes: Changes, *, strict: bool) -> None:
        """Index the log's records in [start, stop): in chunks of up to ``_REUSE_MAX``
        bytes (a new generation can be tens of megabytes), or one record's size when a
        record is bigger."""
        pos, need = start, 0
        while pos < stop:
            want = min(stop - pos, max(_REUSE_MAX, need))
            with self._reading(fd, pos, pos + want) as view:
                final = len(view) < want or pos + want >= stop
                reached, need = self._index(view, pos, changes, strict=strict, final=final)
                torn = not need and reached < len(view)  # a torn tail (strict=False)
            pos += reached
            if final or torn:
                break
        self.pos = pos

    def _index(self, view: memoryview, start: int, changes: Changes, *, strict: bool,
               final: bool = True) -> tuple[int, int]:
        """Apply the records of ``view`` (the log from offset ``start``): (bytes used, and
        when ``view`` is not the last chunk and ends inside a record, that record's size;
        else 0)."""
        pos, n = 0, len(view)
        # The common record by far is another process's transaction, read by every other
        # process: a run of them is applied inline (no checksum inside the committed end),
        # and only the newest version of each page is copied out, once, at the end of the
        # run (a page rewritten by every commit, like page 1, costs one copy, not one per
        # record). Everything else goes through parse_record / _apply_record.
        fast = strict and not self._switching and self._new_header is None
        ps, rec_size, unpack = self.page_size, _REC.size, _REC.unpack_from
        events = changes.events
        newest: dict[int, tuple[int, int]] = {}  # pgno -> (seq, offset in view) of the run
        try:
            while pos < n:
                if not final:
                    size = _record_size(view, pos, ps) if pos + rec_size <= n else rec_size
                    if size is not None and pos + size > n:
                        return pos, size  # the rest of it is in the next chunk
                if fast:
                    reached = self._run(view, pos, start, events, newest)
                    if reached != pos:
                        pos = reached
                        continue
                if strict and pos + rec_size <= n:
                    kind, count, commit, seq = unpack(view, pos)
                    body = pos + rec_size
                    end = body + count * (4 + ps)
                    if kind == KIND_TX and count < 4096 and end + 8 <= n:
                        if seq <= self.last_seq and self._new_header is None:
                            # Applied already (a new generation carries it over): only
                            # its place, no pages.
                            if self._switching and seq > self.synced_seq:
                                self.txs.append(TxRef(seq, commit, start + pos,
                                                      start + end + 8))
                            pos = end + 8
                            continue
                if newest:
                    self._put_newest(view, newest)
                parsed = parse_record(view, pos, ps, verify=not strict)
                if parsed is None:
                    if strict:
                        raise WriteBufferError(
                            f"write buffer {self.path}: corrupt record at offset "
                            f"{start + pos} inside the committed log")
                    break
                kind, end, payload = parsed
                self._apply_record(kind, payload, start + pos, start + end, changes)
                pos = end
        finally:
            if newest:
                self._put_newest(view, newest)
        return pos, 0

    def _run(self, view: memoryview, pos: int, start: int, events: list,
             newest: dict[int, tuple[int, int]]) -> int:
        """Apply the run of new TX records at ``pos`` (other processes' commits, inside
        the committed end: no checksum): the newest (seq, offset) of each page goes to
        ``newest``. Returns where the run stops (a record of another kind, or one that
        does not end inside ``view``)."""
        n, ps, rec_size, unpack = len(view), self.page_size, _REC.size, _REC.unpack_from
        last_seq, current, floor = self.last_seq, self.commit, self.floor
        add_tx, add_event = self.txs.append, events.append
        try:
            while pos + rec_size <= n:
                kind, count, commit, seq = unpack(view, pos)
                body = pos + rec_size
                end = body + count * (4 + ps)
                if kind != KIND_TX or count >= 4096 or seq <= last_seq or end + 8 > n:
                    break
                if current is not None and commit < current:  # a shrink
                    self._shrink(commit)
                    for p in [p for p in newest if p > commit]:
                        del newest[p]
                off = body + 4 * count
                for p in _pgnos(count).unpack_from(view, body):
                    if p <= commit:
                        newest[p] = (seq, off)
                    off += ps
                if floor is None or commit < floor:
                    floor = commit
                current, last_seq = commit, seq
                add_tx(_new_tuple(TxRef, (seq, commit, start + pos, start + end + 8)))
                add_event(("tx", commit))
                pos = end + 8
        finally:
            self.last_seq, self.commit, self.floor = last_seq, current, floor
        return pos

    def _shrink(self, commit: int) -> None:
        """A transaction shrank the database to ``commit`` pages: pages past it go."""
        target = self._own_pages()
        page_seq = self.page_seq
        for p in [p for p in target if p > commit]:
            del target[p]
            page_seq.pop(p, None)

    def _put_newest(self, view: memoryview, newest: dict[int, tuple[int, int]]) -> None:
        target = self._own_pages()
        page_seq, ps = self.page_seq, self.page_size
        for p, (seq, off) in newest.items():
            target[p] = view[off:off + ps].tobytes()
            page_seq[p] = seq
        newest.clear()

    def _switch(self, changes: Changes) -> None:
        """The log was rewritten (or this is the first read): finish the old generation
        (its end is final), then index the new one, skipping what is applied already."""
        assert self.files is not None
        if self._fd >= 0:
            size = os.fstat(self._fd).st_size
            if size > self.pos:
                self._read(self._fd, self.pos, size, changes, strict=False)
            os.close(self._fd)
            self._fd = -1
        for _attempt in range(1000):
            gen, end = self.files.state()
            fd = os.open(self.path, os.O_RDWR | os.O_NOFOLLOW)
            try:
                header = parse_header(os.pread(fd, MAX_HEADER, 0), self.path)
            except BaseException:
                os.close(fd)
                raise
            if header.gen & GEN_MASK == gen:
                break
            os.close(fd)  # renamed, its end not published yet: a moment
            time.sleep(0.001)
        else:
            raise WriteBufferError(f"write buffer {self.path}: its generation does not "
                                   "match the shared state (a rewrite crashed?)")
        first = self.gen == 0
        self._fd = fd
        self.gen, self.seq0, self.writer_id = header.gen, header.seq0, header.writer_id
        self._header_url = header.url
        self.header_size = header.size
        if header.page_size != self.page_size and (first or not self.txs):
            self.page_size = header.page_size
        if first:
            self.base_txid, self.synced_seq, self.last_seq = header.base_txid, header.seq0, \
                header.seq0
        self.conflict = None  # a rewrite never carries one (a discard clears it)
        self.marks = []
        self.dones.clear()
        self.txs = []
        self._switching = True
        self._new_header = header
        try:
            self._read(fd, header.size, end, changes, strict=True)
            self._settle_header(changes)
        finally:
            self._switching = False
            self._new_header = None
        self._recompute()
        changes.generation = True

    def _settle_header(self, changes: Changes) -> None:
        """After the DONE records a new generation carries over: if this index is still
        behind the generation's base (it missed a generation, or the log was discarded
        or rebased), jump there."""
        header = self._new_header
        if header is None:
            return
        self._new_header = None
        if header.base_txid != self.base_txid or self.synced_seq < header.seq0:
            self._jump(header.base_txid, header.seq0, changes)

    # -- applying records --------------------------------------------------------------
    def _own_pages(self) -> dict[int, bytes]:
        if self._cow:
            self.pages = dict(self.pages)
            self._cow = False
        return self.pages

    def _apply_record(self, kind: bytes, payload: object, start: int, end: int,
                      changes: Changes) -> None:
        header = self._new_header
        if header is not None and not (kind == KIND_DONE and payload.txid <= header.base_txid):  # type: ignore[union-attr]
            self._settle_header(changes)
        if kind == KIND_TX:
            pages, commit, seq = payload  # type: ignore[misc]
            if seq <= self.last_seq:
                if self._switching and seq > self.synced_seq:
                    self.txs.append(TxRef(seq, commit, start, end))
                return
            self._apply_tx(pages, commit, seq, start, end)
            changes.events.append(("tx", commit))
        elif kind == KIND_SYNC:
            mark = payload
            assert isinstance(mark, SyncMark)
            if mark.txid > self.base_txid and mark not in self.marks:
                self.marks.append(mark)
        elif kind == KIND_DONE:
            done = payload
            assert isinstance(done, Done)
            self.dones.append(done)
            if done.txid > self.base_txid:
                changes.events.append(("done", *self._apply_done(done)))
        elif kind == KIND_CONFLICT:
            self.conflict = changes.conflict = str(payload)

    def _apply_tx(self, pages: Mapping[int, bytes], commit: int, seq: int, start: int,
                  end: int) -> None:
        if self.commit is not None and commit < self.commit:
            self._shrink(commit)
        target = self._own_pages()
        page_seq = self.page_seq
        for p, d in pages.items():
            if p <= commit:
                target[p] = d
                page_seq[p] = seq
        self.floor = commit if self.floor is None else min(self.floor, commit)
        self.commit = commit
        self.last_seq = seq
        self.txs.append(TxRef(seq, commit, start, end))

    def _drop_upto(self, seq: int) -> tuple[dict[int, bytes], int | None, int | None]:
        """Remove every page whose newest version is from a transaction <= ``seq``:
        (those pages, the commit and floor of the dropped transactions)."""
        target = self._own_pages()
        dropped = {}
        for p, s in list(self.page_seq.items()):
            if s <= seq:
                dropped[p] = target.pop(p)
                del self.page_seq[p]
        gone = [t for t in self.txs if t.seq <= seq]
        self.txs = [t for t in self.txs if t.seq > seq]
        self._recompute()
        commit = gone[-1].commit if gone else None
        floor = min((t.commit for t in gone), default=None)
        return dropped, commit, floor

    def _recompute(self) -> None:
        txs = self.txs
        self.commit = txs[-1].commit if txs else None
        self.floor = min((t.commit for t in txs), default=None)

    def _apply_done(self, done: Done) -> tuple[Done, dict[int, bytes], int, int]:
        dropped, commit, floor = self._drop_upto(done.covered)
        self.synced_seq = max(self.synced_seq, done.covered)
        self.last_seq = max(self.last_seq, done.covered)
        self.base_txid = done.txid
        self.marks = [m for m in self.marks if m.txid > done.txid]
        c = commit if commit is not None else 0
        return done, dropped, c, floor if floor is not None else c

    def _jump(self, txid: int, seq: int, changes: Changes) -> None:
        """The base moved to ``txid`` with every transaction up to ``seq`` synced or
        discarded (a rewrite this process partly missed, a discard, a rebase)."""
        self._drop_upto(seq)
        self.synced_seq = max(self.synced_seq, seq)
        self.last_seq = max(self.last_seq, seq)
        self.base_txid = txid
        self.marks = [m for m in self.marks if m.txid > txid]
        changes.jumped = txid

    # -- appending (WRITER held, index caught up) -------------------------------------------
    def repair(self) -> bool:
        """With WRITER held: finish what a crashed rewrite left (renamed but not
        published). True when the state changed."""
        files = self.files
        assert files is not None
        if not files.rewriting():
            return False
        try:
            with open(self.path, "rb") as f:
                data = f.read()
            header = parse_header(data, self.path)
        except (OSError, WriteBufferError):
            files.set_rewriting(False)
            return False
        gen, _end = files.state()
        if header.gen & GEN_MASK != gen:
            view, pos = memoryview(data), header.size
            while pos < len(data):
                parsed = parse_record(view, pos, header.page_size)
                if parsed is None:
                    break
                pos = parsed[1]
            files.publish(header.gen, pos)
            log.warning("write buffer %s: completed a rewrite interrupted by a crash",
                        self.path)
        files.set_rewriting(False)
        return True

    def _append(self, record: bytes) -> tuple[int, int]:
        files = self.files
        if files is None or self._fd < 0:
            raise WriteBufferError(f"write buffer {self.path} is closed")
        word, claimed, _rewriting = files.head3()
        if word != self._seen:
            raise WriteBufferError(f"write buffer {self.path}: append without the write "
                                   "lock or on a stale index (internal error)")
        start = self.pos
        if claimed > start:  # a crashed append left bytes past the end
            os.ftruncate(self._fd, start)
        end = start + len(record)
        files.claim(end)
        try:
            n = os.pwrite(self._fd, record, start)
            if n != len(record):
                raise OSError(errno.EIO, f"short write ({n} of {len(record)} bytes)")
            if self.fsync:
                datasync(self._fd)  # fdatasync; F_FULLFSYNC on macOS
        except OSError:
            try:
                os.ftruncate(self._fd, start)
            except OSError:
                pass
            files.claim(start)
            raise
        self.pos = end
        self._seen = files.publish(self.gen, end)
        return start, end

    def append(self, pages: Mapping[int, bytes], commit: int) -> int:
        """Append one committed transaction; returns its sequence number."""
        seq = self.last_seq + 1
        record = encode_tx(pages, commit, seq, self.page_size)
        start, end = self._append(record)
        self._cow = False  # the caller excludes readers (in-process EXCLUSIVE lock)
        self._apply_tx(pages, commit, seq, start, end)
        return seq

    def mark_sync(self, txid: int, covered: int, checksum: int) -> None:
        mark = SyncMark(txid, covered, checksum)
        self._append(encode_mark(mark))
        self.marks.append(mark)

    def append_done(self, done: Done) -> tuple[Done, dict[int, bytes], int, int]:
        raw = encode_done(done)
        done = Done(done.txid, done.covered, done.checksum, done.info, done.header,
                    done.index, done.head, done.etag, raw)
        self._append(raw)
        self._cow = True
        self.dones.append(done)
        return self._apply_done(done)

    def append_conflict(self, message: str) -> None:
        self._append(encode_conflict(message))
        self.conflict = message

    def unsynced(self, upto: int) -> list[tuple[dict[int, bytes], int]]:
        """The unsynced transactions with sequence numbers <= ``upto``, read back from
        the log: [(pages, commit)] in order."""
        refs = [t for t in self.txs if t.seq <= upto]
        if not refs:
            return []
        data = os.pread(self._fd, refs[-1].end - refs[0].start, refs[0].start)
        view, base = memoryview(data), refs[0].start
        out = []
        for ref in refs:
            parsed = parse_record(view, ref.start - base, self.page_size)
            if parsed is None or parsed[0] != KIND_TX:
                raise WriteBufferError(f"write buffer {self.path}: unreadable transaction at "
                                       f"offset {ref.start}")
            pages, commit, _seq = parsed[2]  # type: ignore[misc]
            out.append((pages, commit))
        return out

    def unsynced_merged(self, upto: int) -> tuple[dict[int, bytes], int, int]:
        """What a sync uploads: the unsynced transactions with sequence numbers <= ``upto``,
        read back from the log (each record's checksum checked) and merged in order: the
        newest version of each page (pages past a shrink dropped), the commit after the
        last one and the smallest commit among them. Read in chunks through the reused
        read buffer, and only the pages that survive are copied out (a second of commits
        can be a hundred megabytes of page versions, mostly of the same few pages)."""
        refs = [t for t in self.txs if t.seq <= upto]
        merged: dict[int, bytes] = {}
        commit = floor = 0
        ps, i = self.page_size, 0
        while i < len(refs):
            j = i + 1
            while j < len(refs) and refs[j].end - refs[i].start <= _REUSE_MAX:
                j += 1
            base = refs[i].start
            with self._reading(self._fd, base, refs[j - 1].end) as view:
                newest: dict[int, int] = {}  # pgno -> offset in view, this chunk
                for ref in refs[i:j]:
                    tx = _checked_tx(view, ref.start - base, ps)
                    if tx is None:
                        raise WriteBufferError(f"write buffer {self.path}: unreadable "
                                               f"transaction at offset {ref.start}")
                    pgnos, off, c = tx
                    if ref is not refs[0] and c < commit:  # a shrink: pages past it go
                        for p in [p for p in merged if p > c]:
                            del merged[p]
                        for p in [p for p in newest if p > c]:
                            del newest[p]
                    for p in pgnos:
                        if p <= c:
                            newest[p] = off
                        off += ps
                    floor = c if ref is refs[0] else min(floor, c)
                    commit = c
                for p, off in newest.items():
                    merged[p] = view[off:off + ps].tobytes()
            i = j
        return merged, commit, floor

    def rewrite(self, *, base_txid: int | None = None, discard: bool = False,
                page_size: int | None = None) -> None:
        """Start a new generation (WRITER held, index caught up): the unsynced
        transactions and the last DONE records, or (``discard``) nothing, on
        ``base_txid``. Call ``catch_up`` afterwards to switch to it."""
        files = self.files
        assert files is not None
        if files.state_word() != self._seen:
            raise WriteBufferError(f"write buffer {self.path}: rewrite on a stale index")
        files.set_rewriting(True)
        try:
            if files.claimed() > self.pos:
                os.ftruncate(self._fd, self.pos)  # the old generation ends clean
            header = Header(page_size or self.page_size,
                            self.base_txid if base_txid is None else base_txid,
                            self.last_seq if discard else self.synced_seq, self.gen + 1,
                            self.writer_id or _new_writer_id(), self.url, 0)
            parts = [encode_header(header)]
            runs: list[tuple[int, int]] = []  # the unsynced TX records, contiguous runs
            if not discard:
                parts += [d.raw for d in self.dones if d.raw]
                for t in self.txs:
                    if runs and runs[-1][1] == t.start:
                        runs[-1] = (runs[-1][0], t.end)
                    else:
                        runs.append((t.start, t.end))
            head = b"".join(parts)
            self._write_file(head, runs)
            files.publish(header.gen, len(head) + sum(b - a for a, b in runs))
        finally:
            files.set_rewriting(False)

    def clear(self, base_txid: int, page_size: int | None = None) -> Changes:
        """Discard every buffered transaction (after an export, or on request): a new
        generation on ``base_txid``. WRITER held; returns what switching to it changed."""
        self.rewrite(base_txid=base_txid, discard=True, page_size=page_size)
        return self.catch_up(cow=True)

    # -- state -------------------------------------------------------------------------
    @property
    def transactions(self) -> int:
        return len(self.txs)

    @property
    def empty(self) -> bool:
        return not self.txs

    @property
    def size(self) -> int:
        return self.pos

    @property
    def synced_bytes(self) -> int:
        """Bytes before the first unsynced transaction (what a rewrite would drop)."""
        first = self.txs[0].start if self.txs else self.pos
        return first - self.header_size

    def close(self, *, remove: bool = False, force: bool = False) -> None:
        """Leave the log. ``remove``: delete it when this is the last process and
        nothing is unsynced (``force``: whatever it holds)."""
        files = self.files
        if files is not None and remove and not files.inherited and files.mm is not None:
            try:
                with files.holding(INIT, 10.0, "closing it"):
                    if files.last_one():
                        self.catch_up(cow=True)
                        if force or (self.empty and self.conflict is None):
                            for p in (self.path, self.path + ".tmp"):
                                try:
                                    os.unlink(p)
                                except FileNotFoundError:
                                    pass
                            files.close(remove=True)
            except (OSError, WriteBufferError) as exc:
                log.warning("write buffer %s: not removed: %s", self.path, exc)
        self.files = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if files is not None:
            files.close()

    def forget_after_fork(self) -> None:
        """In a forked child: never touch the parent's log through these descriptors."""
        if self._fd >= 0:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = -1
        self.files = None

    _header_url = ""


def read_buffer(path: str) -> tuple[dict, list[tuple[dict[int, bytes], int]]]:
    """Read a buffer file without joining it: (header info, [(pages, commit), ...]) of
    the unsynced transactions, stopping at a torn tail; ``base_txid`` is the TXID they
    build on (the last recorded sync). For export/inspection."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) >= 8 and data[:8] == MAGIC_V1:
        if len(data) < _HEAD1.size:
            raise WriteBufferError(f"{path} is not a litevfs write buffer (too short)")
        data = _convert_v1(data, path)
    header = parse_header(data, path)
    base, covered = header.base_txid, header.seq0
    txns: list[tuple[int, dict[int, bytes], int]] = []
    pos, view = header.size, memoryview(data)
    while True:
        parsed = parse_record(view, pos, header.page_size)
        if parsed is None:
            break
        kind, pos, payload = parsed
        if kind == KIND_TX:
            pages, commit, seq = payload  # type: ignore[misc]
            txns.append((seq, pages, commit))
        elif kind == KIND_DONE and payload.txid > base:  # type: ignore[union-attr]
            base, covered = payload.txid, max(covered, payload.covered)  # type: ignore[union-attr]
    info = {"page_size": header.page_size, "base_txid": base, "url": header.url}
    return info, [(pages, commit) for seq, pages, commit in txns if seq > covered]


def buffer_in_use(path: str) -> bool:
    """Does any process hold the buffer at ``path``? (Without joining it.)"""
    try:
        fd = os.open(path + ".lock", os.O_RDWR | os.O_NOFOLLOW)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


__all__ = ["BufferInUseError", "Done", "Recovered", "SyncMark", "WriteBuffer", "read_buffer"]
