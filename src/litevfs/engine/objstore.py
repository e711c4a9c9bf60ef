"""The machine's store of whole small LTX objects, shared by the processes of a replica.

Without it, every process of a machine reads each new LTX object from the bucket
itself (a small object is fetched whole and CRC-checked before any of its pages is
served, ``verify.py``), so a machine's data requests grow with its processes although
the polling is shared. With it, an object is fetched once per machine:

* the process that uploads an L0 file puts the exact bytes it uploaded here once the
  upload is the replica's (after the commit point);
* a process that needs pages of an object of at most ``MAX_OBJECT`` bytes reads it from
  here; when it is missing it takes the object's lock (``flock``: the kernel releases it
  when the holder dies, kill -9 included), looks again, fetches the whole object with
  one GET, checks it and puts it here; processes waiting for the lock then read it.

Only an object's own bytes are ever stored (never pages rebuilt from the shared log:
README, "Crash of a process"), and nothing read from here is trusted: the reader
checks the size, the header against what its view knows of the object, the trailer's
file checksum when it is known, and the CRC-64 over the whole file; a file that fails
is removed and the object is read from the bucket instead. Files are named by the
object's identity (level, TXID range, size), written to a temporary name and renamed,
and the store keeps at most ``MAX_BYTES`` (oldest first out). It lives next to the
buffer's coordination files (``P.objects/``) and is removed with them by the last
process to leave.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from .._files import makedirs
from ..errors import LTXFormatError
from ..ltx.format import CHECKSUM_FLAG, HEADER_SIZE, TRAILER_SIZE, FileInfo, Header, Trailer

log = logging.getLogger("litevfs.objstore")

# Objects up to this size are shared whole. It is verify_max_size's default: objects
# that small are fetched whole anyway (to check them before serving), so storing them
# costs no extra request; larger ones are read by ranges and never whole.
MAX_OBJECT = 4 * 1024 * 1024
# The store's bound: new L0 files keep arriving and retention deletes them from the
# bucket, so old entries are only dead weight; 64 MiB holds minutes of small commits.
MAX_BYTES = 64 * 1024 * 1024
MAX_FILES = 4096  # and at most this many entries (a directory scan stays cheap)
EVICT_EVERY = 32  # puts between two looks at the store's size (a scan is a stat per file)
LOCK_WAIT_S = 10.0  # a live holder fetches one object: past this, fetch it ourselves
TMP_AGE_S = 60.0  # a temporary file this old was left by a killed writer
SUFFIX = ".ltx"


def store_dir(buffer_path: str) -> str:
    """The store of the replica whose write buffer is ``buffer_path``."""
    return buffer_path + ".objects"


def object_name(info: FileInfo) -> str:
    return f"{info.level:02x}-{info.min_txid:016x}-{info.max_txid:016x}-{info.size}{SUFFIX}"


def check_bytes(info: FileInfo, data: bytes, header: Header | None = None,
                file_checksum: int | None = None) -> None:
    """Cheap identity checks of ``data`` as the object ``info`` (the CRC-64 is the
    caller's, with the decode): size, header (against ``header`` when known), trailer
    (against ``file_checksum`` when known). Raises LTXFormatError."""
    if len(data) != info.size:
        raise LTXFormatError(f"{len(data)} bytes, the object has {info.size}")
    if len(data) < HEADER_SIZE + TRAILER_SIZE:
        raise LTXFormatError("too short for an LTX file")
    got = Header.unpack(data[:HEADER_SIZE])
    got.validate()
    if (got.min_txid, got.max_txid) != (info.min_txid, info.max_txid):
        raise LTXFormatError("header TXID range does not match the object")
    if header is not None and got != header:
        raise LTXFormatError("header differs from the object's (another object of that name)")
    trailer = Trailer.unpack(data[-TRAILER_SIZE:])
    if not trailer.file_checksum & CHECKSUM_FLAG:
        raise LTXFormatError("trailer has no file checksum")
    if file_checksum is not None and trailer.file_checksum != file_checksum:
        raise LTXFormatError("file checksum differs from the object's (another object of "
                             "that name)")


class ObjectStore:
    """This process's handle on one replica's shared object store (a directory)."""

    def __init__(self, directory: str) -> None:
        self.dir = directory
        self._puts = 0
        self._mutex = threading.Lock()
        self.hits = 0  # objects read from here
        self.stored = 0  # objects this process put here
        self.rejected = 0  # files found damaged or of another object (removed)
        self.lock_timeouts = 0

    def path(self, info: FileInfo) -> str:
        return os.path.join(self.dir, object_name(info))

    # -- reading -------------------------------------------------------------------------
    def get(self, info: FileInfo) -> bytes | None:
        """The stored bytes of ``info`` (unchecked but for their size), or None."""
        try:
            fd = os.open(self.path(info), os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return None
        try:
            with os.fdopen(fd, "rb") as f:
                data = f.read(info.size + 1)
        except OSError:
            return None
        if len(data) != info.size:
            self.reject(info, f"{len(data)} bytes, the object has {info.size}")
            return None
        return data

    def reject(self, info: FileInfo, why: str) -> None:
        """A stored copy of ``info`` is not the object: remove it (never served)."""
        with self._mutex:
            self.rejected += 1
        log.info("object store %s: discarding %s: %s", self.dir, object_name(info), why)
        try:
            os.unlink(self.path(info))
        except OSError:
            pass

    # -- writing -------------------------------------------------------------------------
    def put(self, info: FileInfo, data: bytes, *, replace: bool = True) -> bool:
        """Store ``data`` (the object's exact, checked bytes) as ``info``; best effort
        (a full disk or a removed directory only costs the others a GET). ``replace``
        False: keep a copy already there (readers check it anyway)."""
        if info.size > MAX_OBJECT or len(data) != info.size:
            return False
        final = self.path(info)
        if not replace and os.path.exists(final):
            return False
        tmp = f"{final}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            makedirs(self.dir, 0o700)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
            finally:
                os.close(fd)
            os.rename(tmp, final)  # no fsync: a copy lost in a crash is fetched again
        except OSError as exc:
            log.debug("object store %s: not storing %s: %s", self.dir, object_name(info), exc)
            try:
                os.unlink(tmp)
            except OSError:
                pass
            return False
        with self._mutex:
            self.stored += 1
            self._puts += 1
            scan = self._puts % EVICT_EVERY == 1
        if scan:
            self.evict()
        return True

    @contextmanager
    def fetching(self, info: FileInfo, wait: float = LOCK_WAIT_S) -> Iterator[bool]:
        """Hold the object's lock while fetching it (one GET per machine); yields False
        when it could not be had within ``wait`` seconds (the caller fetches anyway)."""
        fd = -1
        try:
            makedirs(self.dir, 0o700)
            fd = os.open(self.path(info) + ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW,
                         0o600)
        except OSError as exc:
            log.debug("object store %s: no lock for %s: %s", self.dir, object_name(info), exc)
        held = fd >= 0 and _flock_wait(fd, wait)
        if fd >= 0 and not held:
            with self._mutex:
                self.lock_timeouts += 1
        try:
            yield held
        finally:
            if fd >= 0:
                os.close(fd)  # releases the flock

    # -- bounds --------------------------------------------------------------------------
    def evict(self, max_bytes: int = MAX_BYTES, max_files: int = MAX_FILES) -> int:
        """Remove the oldest objects beyond the bounds, and temporary files killed
        writers left. Returns the number of objects removed."""
        entries = []
        now = time.time()
        try:
            names = os.listdir(self.dir)
        except OSError:
            return 0
        for name in names:
            full = os.path.join(self.dir, name)
            try:
                st = os.stat(full)
            except OSError:
                continue
            if name.endswith(".tmp"):
                if now - st.st_mtime > TMP_AGE_S:
                    _unlink(full)
            elif name.endswith(SUFFIX):
                entries.append((st.st_mtime, st.st_size, full))
        total = sum(e[1] for e in entries)
        entries.sort()
        removed = 0
        for _mtime, size, full in entries:
            if total <= max_bytes and len(entries) - removed <= max_files:
                break
            _unlink(full)
            _unlink(full + ".lock")
            total -= size
            removed += 1
        return removed

    def stats(self) -> dict[str, int]:
        return {"hits": self.hits, "stored": self.stored, "rejected": self.rejected,
                "lock_timeouts": self.lock_timeouts}


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _flock_wait(fd: int, wait: float) -> bool:
    deadline = time.monotonic() + wait
    delay = 0.0005
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                return False
        if time.monotonic() >= deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.005)


def remove_store(directory: str) -> None:
    """Delete the store (the last process of the machine leaves)."""
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        _unlink(os.path.join(directory, name))
    try:
        os.rmdir(directory)
    except OSError:
        pass
