"""Fencing: a sync is acknowledged only once the head object records it.

The conditional create of ``<level 0>/<t>-<t>.ltx`` stops two writers from both
creating TXID t while that key exists, but retention deletes L0 keys once level 1
covers them. A writer paused longer than compaction + ``l0_retention`` (SIGSTOP, a
frozen VM, a stalled network) could then re-create a TXID another writer committed
long ago. So the commit point is a compare-and-swap of the head object (``head.py``)
from the tag this writer last saw: a writer that was paused for any length of time
finds the tag changed, and the head's runs say whether its file is part of the
history. ``commit_head`` raises ConflictError when it is not; the caller keeps the
buffer (nothing acknowledged is ever dropped).

Writers help each other: a commit that finds L0 files between the head's TXID and its
own (another writer's upload whose compare-and-swap has not happened yet, or never
will because it crashed) records their checksums first, so that writer, when it
looks, finds its file in the history instead of reporting a false conflict. The
compactor only compacts TXIDs the head has recorded (``committed_limit``), so a file
is never merged into level 1 before its commit point.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from ..errors import (
    AlreadyExistsError, ConflictError, NotFoundError, PreconditionFailedError, StorageError,
)
from ..engine.head import HEAD_NAME, Head, decode_head, encode_head
from ..ltx.format import FileInfo

if TYPE_CHECKING:
    from ..storage.base import StorageClient

log = logging.getLogger("litevfs.fence")

CAS_ATTEMPTS = 6
MAX_HELPED = 8  # other writers' dangling files recorded per commit (more: a foreign writer)


class HeadState:
    """What one writer knows of the head: the last version it read or wrote, and its tag
    (None: there is no head object yet, the next commit creates it)."""

    __slots__ = ("head", "etag", "writer_id", "sync_ms")

    def __init__(self, writer_id: str, head: Head | None = None, etag: str | None = None):
        self.writer_id = writer_id
        self.head = head
        self.etag = etag
        self.sync_ms = 0  # announced in the head: readers poll on this writer's schedule

    def load(self, storage: StorageClient) -> Head | None:
        """Read the head object (and its tag) from storage."""
        self.head, self.etag = read_head_tagged(storage)
        return self.head

    def adopt(self, data: bytes, etag: str | None) -> None:
        """The head as another process of this machine recorded it (its DONE record)."""
        try:
            head = decode_head(data)
        except ValueError:
            return
        if self.head is None or head.txid >= self.head.txid:
            self.head, self.etag = head, etag


def read_head_tagged(storage: StorageClient) -> tuple[Head | None, str | None]:
    """(head, tag); (None, None) when there is no head object. A head object that does not
    parse counts as TXID 0 with its tag, so the next commit replaces it."""
    try:
        data, etag = storage.get_object_tagged(HEAD_NAME)
    except NotFoundError:
        return None, None
    try:
        return decode_head(data), etag
    except ValueError as exc:
        log.warning("%s: unreadable head object (%s); the next commit replaces it",
                    storage.url, exc)
        return Head(0, 0, ()), etag


def file_checksum(data: bytes) -> int:
    """An LTX file's checksum: the last 8 bytes of its trailer."""
    return int.from_bytes(data[-8:], "big")


def _dangling(storage: StorageClient, head: Head, txid: int,
              levels: Mapping[int, Sequence[FileInfo]] | None) -> tuple[tuple[int, int], ...]:
    """Checksums of the single-TXID L0 files between the head and ``txid`` (exclusive),
    when there are few: another litevfs writer's uploads not yet recorded."""
    lo, hi = head.txid + 1, txid - 1
    if hi < lo or hi - lo + 1 > MAX_HELPED:
        return ()
    l0 = levels.get(0, ()) if levels is not None else storage.list_level(0)
    found = {f.min_txid: f for f in l0 if f.min_txid == f.max_txid and lo <= f.min_txid <= hi}
    if len(found) != hi - lo + 1:
        return ()  # not a run of L0 uploads (e.g. litestream wrote them): nothing to record
    helped = []
    for t in range(lo, hi + 1):
        try:
            helped.append((t, file_checksum(storage.read_tail(found[t], 16))))
        except StorageError:
            return ()
    return tuple(helped)


def commit_head(storage: StorageClient, state: HeadState, txid: int, checksum: int,
                levels: Mapping[int, Sequence[FileInfo]] | None = None) -> Head:
    """Record L0 file (txid, checksum) as committed: the sync's commit point.

    Raises ConflictError when another writer moved the head first and the history does
    not contain this file (a paused or stale writer: its TXID belongs to someone else).
    Transient storage errors are retried; the last one is raised (nothing acknowledged)."""
    delay = 0.05
    for attempt in range(CAS_ATTEMPTS):
        head = state.head or Head(0, 0, ())
        if head.txid >= txid:
            verdict = head.committed(txid, checksum, state.writer_id)
            if verdict:
                return head
            raise ConflictError(_lost_message(storage, head, txid, verdict))
        new = head.advanced(state.writer_id, txid, checksum,
                            _dangling(storage, head, txid, levels), state.sync_ms)
        try:
            etag = storage.put_object(HEAD_NAME, encode_head(new),
                                      if_absent=state.etag is None, if_match=state.etag)
        except (PreconditionFailedError, AlreadyExistsError):
            # Someone else moved the head (or our own earlier attempt landed and its
            # answer was lost): read it and decide from its runs.
            state.load(storage)
            continue
        except StorageError as exc:
            if attempt + 1 == CAS_ATTEMPTS:
                raise
            log.warning("recording TXID %016x in the head failed (attempt %d): %s; retrying",
                        txid, attempt + 1, exc)
            time.sleep(delay)
            delay *= 2
            continue
        if etag is None:  # the server did not say: read the tag back
            _, etag = read_head_tagged(storage)
        state.head, state.etag = new, etag
        return new
    raise StorageError(f"{storage.url}: the head object kept changing while recording TXID "
                       f"{txid:016x} ({CAS_ATTEMPTS} attempts)")


def _lost_message(storage: StorageClient, head: Head, txid: int, verdict: bool | None) -> str:
    if verdict is None:
        return (f"another writer advanced the replica to TXID {head.txid:016x} while this "
                f"writer was paused; whether its TXID {txid:016x} is part of the history "
                f"can no longer be told ({storage.url})")
    return (f"another writer committed TXID {txid:016x} first (the replica is at "
            f"{head.txid:016x}; this writer was paused or stale) ({storage.url})")


def committed_limit(storage: StorageClient) -> int | None:
    """The newest TXID a compactor may merge: the head's, or None (no limit) when the
    replica has no head object (written by ``litestream replicate``)."""
    head, _ = read_head_tagged(storage)
    return None if head is None else head.txid
