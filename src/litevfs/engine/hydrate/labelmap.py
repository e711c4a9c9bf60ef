"""The labels of a persistent hydrated file, mapped so the machine's other processes can
read the file too: ``<path>.litevfs-labels``.

One process hydrates a persistent file (it holds the file's ``flock``); every other
process that opens the replica with the same ``hydration_path`` follows it
(``follower.py``): it serves a page from the file when the file holds the very version
its own pinned view names, and from the bucket or its cache otherwise.

Which version a page holds is named by the LTX object it came from, in a form every
process computes alike (:func:`file_ident`; in-process file ids differ between
processes). Layout, little endian, 8-byte words: a header (magic, page size, 6 spare
words), then per page number ``p`` three words at ``8 + 3p``: a sequence number (odd
while the entry changes: a seqlock), the object identity (0: nothing usable) and the
xxh3-64 of the page's bytes.

Safety does not rest on the labels being current: a follower checks the xxh3 of the
bytes it read against the label's, so bytes rewritten under it (a newer version, a
truncation, a crash mid-write) are a miss, never served. The owner still withdraws a
label before it overwrites a page and publishes it after, so such misses are rare.
The file only ever grows while it exists (a mapping of a shrunk file faults), and an
owner that starts withdraws every label before it publishes its own.
"""

from __future__ import annotations

import mmap
import os
import threading

import xxhash

SUFFIX = ".litevfs-labels"
MAGIC = 0x3130_4C42_4C56_4C4C  # "LLVLBL01" little endian
HEADER_WORDS = 8
MIN_PAGES = 4096  # entries of a new map; it grows by doubling


def labels_path(data_path: str) -> str:
    return data_path + SUFFIX


def file_ident(level: int, min_txid: int, max_txid: int, size: int) -> int:
    """The identity of an LTX object that every process computes alike (never 0)."""
    return xxhash.xxh3_64_intdigest(f"{level}:{min_txid}:{max_txid}:{size}".encode()) | 1


class LabelMap:
    """The mapped labels; the owner (``writable``) publishes, followers look up."""

    def __init__(self, path: str, fd: int, writable: bool) -> None:
        self.path = path
        self.fd = fd
        self.writable = writable
        self._lock = threading.Lock()
        self._maps: list[mmap.mmap] = []  # a follower keeps old mappings until close
        self._words: memoryview | None = None
        self.capacity = 0  # page numbers below this have an entry
        self.page_size = 0

    # -- opening -------------------------------------------------------------------------
    @classmethod
    def own(cls, data_path: str, page_size: int) -> LabelMap:
        """The owner's map: created if missing, every label withdrawn, header written."""
        path = labels_path(data_path)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        lm = cls(path, fd, True)
        try:
            size = os.fstat(fd).st_size
            want = (HEADER_WORDS + 3 * MIN_PAGES) * 8
            if size < want:
                os.ftruncate(fd, want)
            lm._remap()
            words = lm._words
            assert words is not None
            words[HEADER_WORDS:] = memoryview(bytes(len(words) * 8 - HEADER_WORDS * 8)).cast("Q")
            words[0], words[1] = MAGIC, page_size
            lm.page_size = page_size
        except BaseException:
            lm.close()
            raise
        return lm

    @classmethod
    def follow(cls, data_path: str) -> LabelMap | None:
        """A follower's read-only map, or None while the owner has not written one."""
        path = labels_path(data_path)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return None
        lm = cls(path, fd, False)
        try:
            if not lm._remap() or lm._words is None or lm._words[0] != MAGIC:
                lm.close()
                return None
            lm.page_size = int(lm._words[1])
        except (OSError, ValueError):
            lm.close()
            return None
        return lm

    def _remap(self) -> bool:
        size = os.fstat(self.fd).st_size
        entries = (size // 8 - HEADER_WORDS) // 3
        if entries <= self.capacity:
            return self._words is not None
        mm = mmap.mmap(self.fd, (HEADER_WORDS + 3 * entries) * 8,
                       prot=mmap.PROT_READ | (mmap.PROT_WRITE if self.writable else 0))
        self._maps.append(mm)
        self._words = memoryview(mm).cast("Q")
        self.capacity = entries
        return True

    def close(self) -> None:
        with self._lock:
            self._words = None
            for mm in self._maps:
                try:
                    mm.close()
                except BufferError:  # a lookup still holds a view: the GC unmaps it
                    pass
            self._maps = []
            if self.fd >= 0:
                os.close(self.fd)
                self.fd = -1

    # -- the owner -------------------------------------------------------------------------
    def ensure(self, pgno: int) -> None:
        """Room for page ``pgno`` (owner; the file grows, never shrinks)."""
        if pgno < self.capacity:
            return
        entries = max(MIN_PAGES, self.capacity)
        while entries <= pgno:
            entries *= 2
        os.ftruncate(self.fd, (HEADER_WORDS + 3 * entries) * 8)
        old = self._words
        self._remap()
        if old is not None:  # the owner writes only through the newest mapping
            old.release()

    def publish(self, pgno: int, ident: int, digest: int) -> None:
        """Page ``pgno`` of the data file holds the version of object ``ident``."""
        if pgno >= self.capacity:
            self.ensure(pgno)
        words, i = self._words, HEADER_WORDS + 3 * pgno
        if words is None:
            return
        seq = words[i]
        words[i] = seq | 1  # odd: changing
        words[i + 1] = ident
        words[i + 2] = digest
        words[i] = (seq | 1) + 1

    def withdraw(self, pgno: int) -> None:
        """Page ``pgno`` is about to be rewritten, or is gone."""
        words, i = self._words, HEADER_WORDS + 3 * pgno
        if words is None or pgno >= self.capacity or not words[i + 1]:
            return
        seq = words[i]
        words[i] = seq | 1
        words[i + 1] = 0
        words[i] = (seq | 1) + 1

    # -- followers ---------------------------------------------------------------------------
    def lookup(self, pgno: int) -> tuple[int, int, int]:
        """(sequence, identity, xxh3) of page ``pgno``; identity 0 when unusable."""
        if pgno >= self.capacity:
            with self._lock:
                if self.fd < 0 or not self._remap() or pgno >= self.capacity:
                    return 0, 0, 0
        words = self._words
        if words is None:
            return 0, 0, 0
        i = HEADER_WORDS + 3 * pgno
        seq = words[i]
        if seq & 1:
            return seq, 0, 0
        return seq, words[i + 1], words[i + 2]

    def sequence(self, pgno: int) -> int:
        words = self._words
        return -1 if words is None else words[HEADER_WORDS + 3 * pgno]
