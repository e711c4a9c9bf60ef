"""The hydrated file and what each of its pages holds.

For every page the local copy records which LTX file (file id) its bytes came from,
and the TXID as of which they are the newest version. A read uses the local copy only
when that file id equals the one the reader's pinned view maps the page to (file ids
name immutable content), so snapshot isolation holds while the copy fills in, while
new views are published and under time travel.

Writers never overwrite a page a reader may be copying: a per-page generation counter
is odd while the page is rewritten (a seqlock); a reader checks it before and after
its ``pread`` and falls back to the normal path on a change.

Every page written carries its xxh3-64 checksum (kept here and in the sidecar), checked
on every local read: a file damaged or overwritten under us (or between runs) is a
miss, the page is dropped from the copy and downloaded again, never served.

A persistent file is shared with the machine's other processes: its owner also
publishes each page's label in a mapped file (``labelmap.py``) that they follow
(``follower.py``).
"""

from __future__ import annotations

import atexit
import fcntl
import os
import shutil
import tempfile
import logging
import threading
from array import array
from collections.abc import Callable

import xxhash

from ...errors import LiteVFSError
from .labelmap import LabelMap
from .plan import page_spans

log = logging.getLogger("litevfs.hydrator")


class HydrationDiskError(LiteVFSError):
    """The local file cannot be used (disk full, unwritable path, in use elsewhere)."""


class HydrationInUseError(HydrationDiskError):
    """Another process hydrates this persistent file (it holds the file's lock)."""


class LocalCopy:
    """The local file (temporary, or persistent at ``path``) and its per-page labels.

    ``have[p]`` = file id + 1 of page p's local bytes (0: none or unknown), ``txids[p]``
    = TXID they are the newest version at (0: none), ``gen[p]`` odd while p is being
    rewritten. Callers that relabel pages hold ``lock``."""

    def __init__(self, path: str | None) -> None:
        self.persistent = path is not None
        self.path: str | None = os.path.abspath(path) if path else None
        self.page_size = 0
        self.fd = -1
        self.have = array("I")
        self.txids = array("Q")
        self.gen = array("I")
        self.sums = array("Q")  # per pgno: xxh3-64 of the page as written (0: none)
        self.lock = threading.Lock()
        self.bytes_written = 0
        self.local_reads = 0
        self.damaged = 0  # pages whose bytes no longer matched their checksum
        self._tmpdir: str | None = None
        self.ident_of: Callable[[int], int] | None = None  # set: labels are published
        self.labels: LabelMap | None = None

    # -- file --------------------------------------------------------------------------
    def open(self) -> None:
        """Create (or adopt) the file and lock it against other processes."""
        if self.fd >= 0:
            return
        try:
            if self.path is None:
                self._tmpdir = tempfile.mkdtemp(prefix="litevfs-hydration-")
                self.path = os.path.join(self._tmpdir, "hydration.db")
                atexit.register(self.remove_temp)
            else:
                os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise HydrationDiskError(f"cannot create hydration file {self.path}: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            raise HydrationInUseError(
                f"hydration file {self.path} is in use by another process: {exc}") from exc
        self.fd = fd

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        self.have, self.txids, self.gen = array("I"), array("Q"), array("I")
        self.sums = array("Q")
        if self.labels is not None:  # kept on disk: followers go on reading the file
            self.labels.close()
            self.labels = None
        if fd >= 0:
            os.close(fd)  # also releases the flock
        if not self.persistent:
            self.remove_temp()
            atexit.unregister(self.remove_temp)

    def remove_temp(self) -> None:
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def size(self) -> int:
        try:
            return os.fstat(self.fd).st_size
        except OSError as exc:
            raise HydrationDiskError(f"cannot stat {self.path}: {exc}") from exc

    def resize(self, nbytes: int) -> None:
        try:
            if os.fstat(self.fd).st_size != nbytes:
                os.ftruncate(self.fd, nbytes)
        except OSError as exc:
            raise HydrationDiskError(f"cannot resize {self.path}: {exc}") from exc

    def fsync(self) -> None:
        os.fsync(self.fd)

    # -- labels ------------------------------------------------------------------------
    def grow(self, n: int) -> None:
        """Make the per-page arrays hold page numbers up to ``n`` (caller holds the lock)."""
        extra = n + 1 - len(self.have)
        if extra > 0:
            self.have.frombytes(bytes(4 * extra))
            self.txids.frombytes(bytes(8 * extra))
            self.gen.frombytes(bytes(4 * extra))
            self.sums.frombytes(bytes(8 * extra))

    def drop_beyond(self, commit: int) -> None:
        """Pages past a shrunk database's end are gone (caller holds the lock)."""
        have, txids, gen = self.have, self.txids, self.gen
        for p in range(commit + 1, len(have)):
            if have[p] or txids[p]:
                gen[p] += 1
                have[p] = 0
                txids[p] = 0
                gen[p] += 1
                self.unlabel(p)

    # -- pages -------------------------------------------------------------------------
    def read(self, pgno: int, file_id: int) -> bytes | None:
        """The local copy of ``pgno`` if it is the version in ``file_id``, else None."""
        have, gen = self.have, self.gen
        if pgno >= len(have):
            return None
        g = gen[pgno]
        if g & 1 or have[pgno] != file_id + 1:
            return None
        size = self.page_size
        try:
            page = os.pread(self.fd, size, (pgno - 1) * size)
        except OSError:
            return None
        if len(page) != size or gen[pgno] != g:  # short (truncated) or rewritten meanwhile
            return None
        if xxhash.xxh3_64_intdigest(page) != self.sums[pgno]:
            self._drop_damaged(pgno, g)
            return None
        self.local_reads += 1
        return page

    def _drop_damaged(self, pgno: int, g: int) -> None:
        """The local bytes of ``pgno`` are not what was written: forget them (the hydrator
        sees ``damaged`` grow and downloads the page again)."""
        with self.lock:
            if self.gen[pgno] == g and self.have[pgno]:
                self.have[pgno] = 0
                self.txids[pgno] = 0
                self.damaged += 1
                self.unlabel(pgno)

    def has(self, pgno: int, file_id: int) -> bool:
        have = self.have
        return pgno < len(have) and have[pgno] == file_id + 1

    def store(self, file_id: int, txid: int, pages: list[tuple[int, bytes]]) -> int:
        """Write ``pages`` (pgno-sorted): the versions held by ``file_id``, each the newest
        as of ``txid``. Returns the number of pages written."""
        if self.fd < 0:
            return 0
        ps = self.page_size
        mine: list[tuple[int, bytes]] = []
        shared = self.ident_of is not None  # persistent: other processes read the labels
        with self.lock:
            if pages:
                self.grow(pages[-1][0])
            have, gen = self.have, self.gen
            for pgno, page in pages:
                if gen[pgno] & 1 or len(page) != ps:
                    continue  # another writer has it; the next plan fixes it up
                gen[pgno] += 1
                have[pgno] = 0
                self.txids[pgno] = 0
                if shared:
                    self.unlabel(pgno)
                mine.append((pgno, page))
        sums = [xxhash.xxh3_64_intdigest(page) for _, page in mine]
        written = 0
        try:
            for first, chunk in page_spans(mine):
                buf = b"".join(chunk) if len(chunk) > 1 else chunk[0]
                pos, view = (first - 1) * ps, memoryview(buf)
                while view:
                    n = os.pwrite(self.fd, view, pos)
                    if n <= 0:
                        raise OSError(28, "no space left on device (short write)")
                    view, pos = view[n:], pos + n
                written += len(buf)
        except OSError as exc:
            with self.lock:
                for pgno, _ in mine:
                    self.gen[pgno] += 1
            raise HydrationDiskError(f"writing {self.path} failed: {exc}") from exc
        with self.lock:
            have, txids, gen, page_sums = self.have, self.txids, self.gen, self.sums
            for (pgno, _), digest in zip(mine, sums):
                have[pgno] = file_id + 1
                txids[pgno] = txid
                page_sums[pgno] = digest
                gen[pgno] += 1
                if shared:
                    self.label(pgno, file_id)
            self.bytes_written += written
        return len(mine)

    # -- labels for the machine's other processes (persistent files) ----------------------
    def _label_map(self) -> LabelMap | None:
        if self.ident_of is None or not self.page_size or self.path is None:
            return None
        if self.labels is None:
            try:
                self.labels = LabelMap.own(self.path, self.page_size)
            except OSError as exc:  # other processes just do not share the file
                log.warning("hydration file %s: labels for other processes not written: %s",
                            self.path, exc)
                self.ident_of = None
                return None
        return self.labels

    def label(self, pgno: int, file_id: int) -> None:
        """Page ``pgno``'s bytes are the version in ``file_id`` (caller holds the lock)."""
        labels = self.labels if self.labels is not None else self._label_map()
        if labels is not None and self.ident_of is not None:
            labels.publish(pgno, self.ident_of(file_id), self.sums[pgno])

    def unlabel(self, pgno: int) -> None:
        if self.labels is not None:
            self.labels.withdraw(pgno)

    def label_present(self) -> int:
        """Publish every page the copy holds (after a resume). Caller holds the lock."""
        if self._label_map() is None:
            return 0
        have, n = self.have, 0
        for p in range(1, len(have)):
            if have[p]:
                self.label(p, have[p] - 1)
                n += 1
        return n
