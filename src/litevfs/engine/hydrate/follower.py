"""Reading a persistent hydrated file that another process of the machine hydrates.

The owner (the process holding the file's ``flock``) downloads and publishes which
version each page holds (``labelmap.py``). A follower reads a page from the file when
the label names the object its own pinned view maps the page to, the bytes it read
hash to the label's xxh3 and the label did not change meanwhile; anything else is a
miss, served the usual way (cache, bucket). So every process on the machine reads one
download, and each keeps its own snapshot isolation.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

import xxhash

from .labelmap import LabelMap

RETRY_ATTACH_S = 1.0  # no labels yet (the owner is starting): look again this often


class SharedCopy:
    """A follower's read-only view of the file at ``path``. ``ident_of`` gives the
    object identity (``labelmap.file_ident``) of an in-process file id."""

    def __init__(self, path: str, ident_of: Callable[[int], int]) -> None:
        self.path = path
        self.ident_of = ident_of
        self.fd = -1
        self.labels: LabelMap | None = None
        self.local_reads = 0
        self.misses = 0
        self._next_attach = 0.0
        self._lock = threading.Lock()

    def _attach(self) -> LabelMap | None:
        labels = self.labels
        if labels is not None:
            return labels
        now = time.monotonic()
        if now < self._next_attach:
            return None
        with self._lock:
            if self.labels is None:
                self._next_attach = now + RETRY_ATTACH_S
                try:
                    fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW)
                except OSError:
                    return None
                labels = LabelMap.follow(self.path)
                if labels is None or not labels.page_size:
                    os.close(fd)
                    if labels is not None:
                        labels.close()
                    return None
                self.fd, self.labels = fd, labels
            return self.labels

    def read(self, pgno: int, file_id: int) -> bytes | None:
        """Page ``pgno`` from the shared file if it holds the version in ``file_id``."""
        labels = self._attach()
        if labels is None:
            return None
        seq, ident, digest = labels.lookup(pgno)
        if not ident or ident != self.ident_of(file_id):
            self.misses += 1
            return None
        size = labels.page_size
        try:
            page = os.pread(self.fd, size, (pgno - 1) * size)
        except OSError:
            return None
        if len(page) != size or labels.sequence(pgno) != seq \
                or xxhash.xxh3_64_intdigest(page) != digest:
            self.misses += 1  # rewritten or truncated meanwhile: the usual path
            return None
        self.local_reads += 1
        return page

    def has(self, pgno: int, file_id: int) -> bool:
        labels = self._attach()
        if labels is None:
            return False
        _seq, ident, _digest = labels.lookup(pgno)
        return bool(ident) and ident == self.ident_of(file_id)

    def close(self) -> None:
        with self._lock:
            if self.labels is not None:
                self.labels.close()
                self.labels = None
            if self.fd >= 0:
                os.close(self.fd)
                self.fd = -1

