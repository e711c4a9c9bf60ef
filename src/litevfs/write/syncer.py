"""Upload buffered transactions: ``sync_once()`` turns every transaction committed since
the last sync (by any process of the machine: they share the log) into one L0 LTX file;
:class:`Syncer` is the thin thread around it, and elects the process that syncs.

One sync, holding the machine's SYNC lock (one upload at a time; released by the
kernel if the process dies):

1. Catch up with the log; finish what a predecessor left: a SYNC mark without DONE
   whose upload landed (the head's history or the L0 file's checksum says so) gets
   its DONE (and its commit point, if the crash came before it).
2. Cut: the unsynced transactions up to the newest, read back from the log. Commits
   continue meanwhile, in every process.
3. Position check: LIST every level; if the remote went past our base TXID another
   writer won: conflict, recorded in the log, nothing is uploaded.
4. Encode (legacy LZ4 frames: every Litestream 0.5.x reads them) TXID = base + 1,
   commit = size at the cut, pages > commit and the lock page never included.
5. A SYNC mark (TXID, last sequence number, file checksum) is appended to the log,
   then the conditional create (``If-None-Match: *``). If the key exists, its checksum
   tells an earlier attempt of this machine (response lost, or a crashed syncer) from
   another writer's file (conflict). Transient failures are retried with backoff.
6. The commit point: the head object records the file by compare-and-swap
   (``fence.py``). A writer that was paused while another took over is refused here
   (ConflictError, log kept), however long the pause, and its stray file is removed.
7. A DONE record (TXID, covered sequence number, the file's header and page index, the
   head) is appended: every process publishes the view with the new file from it (no
   request) before dropping the synced pages, and ``sync()`` callers anywhere see their
   commits durable. When the synced prefix is large the log is rewritten.

The syncing process is elected by the DUTY lock (``Syncer``): it syncs every
``sync_interval``, compacts and polls the bucket; the others try to take the lock
every half interval, so one takes over within an interval when it exits or dies. An
explicit ``litevfs.sync()`` in any process uploads itself, in its SYNC turn.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from .._worker import Worker
from ..engine.head import encode_head
from ..errors import (
    AlreadyExistsError, ConflictError, LiteVFSError, LTXFormatError, NotFoundError,
    StorageError,
)
from .fence import commit_head, file_checksum
from ..ltx.decoder import locate_index
from ..ltx.encoder import encode_file
from ..ltx.format import (
    CHECKSUM_FLAG, ENCODING_FRAME, HEADER_SIZE, TRAILER_SIZE, FileInfo, Header, Trailer,
)
from ..engine.plan import is_torn
from ..storage.fetch import FileIndex
from .buffer import Done, SyncMark
from .shared import DUTY
from .writer import SyncTimeout  # noqa: F401 - exported from here (litevfs.SyncTimeout)

if TYPE_CHECKING:
    from ..storage.base import StorageClient
    from .writer import Writer

log = logging.getLogger("litevfs.syncer")

UPLOAD_ATTEMPTS = 4
REWRITE_BYTES = 1 << 20  # rewrite the log once this much of it is synced
TURN_TIMEOUT = 30.0  # the periodic sync waits this long for another process's sync
_U64_MASK = (1 << 64) - 1


def remote_levels(writer: Writer) -> dict[int, list[FileInfo]]:
    """Every level's files (S3 lists every level in one request)."""
    return writer.state.storage.list_all()


def max_txid(levels: dict[int, list[FileInfo]]) -> int:
    """The newest TXID any file holds; torn objects (uploads cut short) hold none."""
    return max((f.max_txid for files in levels.values() for f in files if not is_torn(f)),
               default=0)


def encode_upload(writer: Writer, pages: dict[int, bytes], commit: int, floor: int,
                  txid: int) -> bytes:
    lock = writer.lock_pgno
    # Pages past the smallest size since the base view were cut off by a truncate; any
    # not rewritten since are zeros, as they would be in a real file.
    floor = 0 if txid == 1 else floor
    zero = bytes(writer.page_size)
    out = [(p, d) for p, d in sorted(pages.items()) if p <= commit and p != lock]
    missing = [p for p in range(floor + 1, commit + 1) if p not in pages and p != lock]
    if missing:
        out = sorted(out + [(p, zero) for p in missing])
    return encode_file(out, page_size=writer.page_size, commit=commit, min_txid=txid,
                       max_txid=txid, timestamp_ms=int(time.time() * 1000),
                       encoding=ENCODING_FRAME, impl=writer.state.impl)


def local_file_index(info: FileInfo, data: bytes, impl) -> FileIndex:
    """The index of a file we just encoded (no need to read it back)."""
    loc = locate_index(data[-64:] if len(data) > 64 else data, len(data))
    pgnos, offsets, sizes, _ = impl.decode_page_index(data, loc.start)
    return FileIndex(info, Header.unpack(data[:HEADER_SIZE]), pgnos, offsets, sizes, None)


def _not_an_upload(storage: StorageClient, info: FileInfo | None) -> str | None:
    """Why the listed object ``info`` cannot be anyone's complete upload (empty, cut
    short, no LTX header or trailer), or None when it may be (a rival's, or our own; or
    it is not listed yet, which proves nothing)."""
    if info is None:
        return None
    if is_torn(info):
        return f"a torn object of {info.size} bytes (an upload cut short)"
    try:
        header = Header.unpack(storage.read_range(info, 0, HEADER_SIZE))
        header.validate()
        trailer = Trailer.unpack(storage.read_tail(info, TRAILER_SIZE))
    except NotFoundError:
        return None  # gone meanwhile: the next attempt finds out
    except LTXFormatError as exc:
        return f"an object that is not an LTX file ({exc})"
    if (header.min_txid, header.max_txid) != (info.min_txid, info.max_txid) or \
            not trailer.file_checksum & CHECKSUM_FLAG:
        return "an object that is not this TXID's LTX file"
    return None


def _upload(writer: Writer, txid: int, data: bytes, checksum: int
            ) -> tuple[FileInfo, SyncMark | None]:
    """Conditional create with retries. Returns (info, the mark of the earlier attempt
    that is already there, or None when this attempt created it)."""
    storage = writer.state.storage
    delay = 0.1
    for attempt in range(UPLOAD_ATTEMPTS):
        try:
            return storage.write_ltx(0, txid, txid, data, if_absent=True), None
        except AlreadyExistsError:
            listed = next((f for f in storage.list_level(0)
                           if (f.min_txid, f.max_txid) == (txid, txid)), None)
            info = listed or FileInfo(0, txid, txid, 0, 0.0)
            damage = _not_an_upload(storage, listed)
            if damage is not None:
                # Provably no commit (every complete upload is a valid LTX file and the
                # commit point comes after it): remove it and create ours.
                log.warning("%s: TXID %016x holds %s; replacing it", storage.url, txid, damage)
                storage.delete_ltx([info])
                continue
            try:
                remote = file_checksum(storage.read_tail(info, 16))
            except NotFoundError:  # "exists" but cannot be read: not evidence of a rival
                writer.last_error = StorageError(f"TXID {txid:016x}: 412 for a missing key")
                if attempt + 1 == UPLOAD_ATTEMPTS:
                    raise writer.last_error from None
                time.sleep(delay)
                delay *= 2
                continue
            mine = [m for m in writer.buffer.marks if m.txid == txid and m.checksum == remote]
            if remote == checksum:  # this very attempt landed; only its response was lost
                return info, None
            if mine:
                log.info("TXID %016x already uploaded by an earlier attempt of ours", txid)
                return info, mine[-1]
            raise writer.set_conflict(
                f"another writer created TXID {txid:016x} first ({storage.url})") from None
        except StorageError as exc:
            writer.last_error = exc
            if attempt + 1 == UPLOAD_ATTEMPTS:
                raise
            log.warning("upload of TXID %016x failed (attempt %d): %s; retrying",
                        txid, attempt + 1, exc)
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")


def sync_once(writer: Writer, timeout: float | None = None) -> int:
    """Upload what is buffered (by any process of the machine); returns the TXID that
    now holds every commit made before the call (the current position when nothing
    was unsynced). ``timeout``: how long to wait for another process's sync."""
    with writer.sync_turn(timeout):
        return _sync_turn(writer)


def _sync_turn(writer: Writer) -> int:
    writer.refresh()
    if writer.conflict is not None:
        raise writer.conflict
    _settle_pending(writer)
    buf = writer.buffer
    with writer.lock:
        if buf.empty:
            return buf.base_txid
        upto, base = buf.last_seq, buf.base_txid
        pages, commit, floor = buf.unsynced_merged(upto)
    levels = remote_levels(writer)
    remote = max_txid(levels)
    if remote > base:
        raise writer.set_conflict(
            f"the replica advanced to TXID {remote:016x} but this writer's buffer builds "
            f"on {base:016x}: another writer committed")
    txid = base + 1
    data = encode_upload(writer, pages, commit, floor, txid)
    checksum = file_checksum(data)
    with writer.appending():
        buf.mark_sync(txid, upto, checksum)
    info, earlier = _upload(writer, txid, data, checksum)
    landed = checksum if earlier is None else earlier.checksum
    storage = writer.state.storage
    try:
        commit_head(storage, writer.head_state, txid, landed, levels)
    except ConflictError as exc:
        _remove_stray(writer, info, landed)
        raise writer.set_conflict(str(exc)) from None
    if earlier is None:
        # The machine's other processes read the new file from the store, not the bucket:
        # these are the object's exact bytes, stored before the DONE record announces it.
        writer.objects.put(info, data)
        writer.record_done(_done_for(writer, txid, upto, checksum, info, data), exact=pages)
    else:  # an earlier attempt landed (it covered less): the rest goes up next time
        writer.record_done(_done_for(writer, txid, earlier.covered, earlier.checksum))
    writer.last_error = None
    if buf.synced_bytes >= REWRITE_BYTES:
        writer.rewrite_log()
    log.debug("synced TXID %016x (%d bytes)", txid, len(data))
    return txid


def _done_for(writer: Writer, txid: int, covered: int, checksum: int,
              info: FileInfo | None = None, data: bytes | None = None) -> Done:
    """The DONE record of an upload: with the file's header and index when we have its
    bytes (other processes extend their views from it), else without (they re-plan)."""
    head = writer.head_state
    head_bytes = encode_head(head.head) if head.head is not None else b""
    if info is None or data is None:
        return Done(txid, covered, checksum, None, head=head_bytes, etag=head.etag or "")
    loc = locate_index(data[-64:] if len(data) > 64 else data, len(data))
    return Done(txid, covered, checksum, info, data[:HEADER_SIZE], data[loc.start:loc.end],
                head_bytes, head.etag or "")


def _settle_pending(writer: Writer) -> None:
    """A sync that started (SYNC mark) but has no DONE: the process doing it died. If
    its upload landed, record it (completing its commit point if needed)."""
    buf = writer.buffer
    while True:
        txid = buf.base_txid + 1
        marks = [m for m in buf.marks if m.txid == txid]
        if not marks:
            return
        landed = _landed_mark(writer, txid, marks)
        if landed is None:
            return  # never landed: this sync uploads the TXID again (the marks stay)
        log.info("%s: the upload of TXID %016x by a process that stopped landed; "
                 "recording it", writer.name, txid)
        writer.record_done(_done_for(writer, txid, landed.covered, landed.checksum))


def _remove_stray(writer: Writer, info: FileInfo, checksum: int) -> None:
    """A fenced-out upload is not part of the history: delete it (best effort, and only
    when the head names another file for its TXID and the object is still ours)."""
    state = writer.head_state
    head = state.head
    if head is None or head.committed(info.max_txid, checksum, state.writer_id) is not False:
        return
    if head.run_of(info.max_txid) is None:
        return  # not recorded as anyone's: leave it (a foreign writer may build on it)
    storage = writer.state.storage
    try:
        if file_checksum(storage.read_tail(info, 16)) == checksum:
            storage.delete_ltx([info])
            log.warning("removed this writer's stray upload %s (TXID %016x belongs to "
                        "another writer)", info.name, info.max_txid)
    except StorageError as exc:
        log.warning("could not remove stray upload %s: %s", info.name, exc)


def sync_now(writer: Writer, timeout: float | None = None) -> int:
    """``sync_once`` until every commit of this process is in the bucket (an earlier,
    smaller attempt that landed leaves the rest for one more round)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    txid = sync_once(writer, timeout)
    for _ in range(8):
        buf = writer.buffer
        if writer.my_seq <= buf.synced_seq or buf.empty:
            break
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        txid = sync_once(writer, left)
    return txid


def recover(writer: Writer) -> None:
    """At open, in the machine's SYNC turn: finish a sync a stopped process left, then
    decide whether the remote is where the log expects it (an empty log just moves to
    the remote's position) or another writer got there first (conflict: writes
    refused, log kept)."""
    with writer.sync_turn(60.0):
        writer.refresh()
        if writer.conflict is not None:
            return
        writer.head_state.load(writer.state.storage)
        _settle_pending(writer)
        buf = writer.buffer
        view = writer.state.current
        remote = view.txid
        if buf.empty:
            if buf.base_txid != remote or (remote and view.page_size != buf.page_size):
                writer.rebase(remote, view.page_size if remote else None)
            return
        if remote != buf.base_txid:
            writer.set_conflict(
                f"the replica is at TXID {remote:016x} but the recovered buffer builds on "
                f"{buf.base_txid:016x}")


def _landed_mark(writer: Writer, txid: int, marks: list[SyncMark]) -> SyncMark | None:
    """The sync mark of ours whose upload of ``txid`` is part of the replica's history."""
    state = writer.head_state
    storage = writer.state.storage
    head = state.load(storage)
    if head is not None and head.txid >= txid:
        for m in marks:
            if head.committed(txid, m.checksum):
                return m
    info = next((f for f in storage.list_level(0)
                 if (f.min_txid, f.max_txid) == (txid, txid)), None)
    if info is None or is_torn(info):
        return None
    theirs = file_checksum(storage.read_tail(info, 16))
    mine = [m for m in marks if m.checksum == theirs]
    if not mine:
        return None
    if head is None or head.txid < txid:
        # Stopped between the upload and its commit point: complete it now.
        try:
            commit_head(storage, state, txid, theirs)
        except ConflictError:
            return None
    elif not head.committed(txid, theirs):
        return None  # the head names another file for this TXID: not ours after all
    return mine[-1]


class Syncer(Worker):
    """The DUTY election and, while this process has the duty, :func:`sync_once` every
    ``sync_interval`` (backing off after failures). ``on_duty``: called once elected
    (the session starts compaction)."""

    stop_timeout = 60.0  # an upload in progress may take a while

    def __init__(self, writer: Writer, interval: float,
                 on_duty: Callable[[], None] | None = None) -> None:
        super().__init__(f"litevfs-sync {writer.name}")
        self.writer = writer
        self.interval = interval
        self.check = min(interval / 2, 0.5) if interval > 0 else 0.5
        self.first_wait = 0.0
        self.failures = 0
        self.duty = False
        self.on_duty = on_duty

    def sync(self, timeout: float | None = None) -> int:
        """:func:`sync_now` for this writer (``Writer.sync``, ``PRAGMA litevfs_sync``)."""
        return sync_now(self.writer, timeout)

    def elect(self) -> bool:
        """Take the duty if nobody has it (the holder died or left)."""
        if not self.duty and self.writer.files.lock(DUTY):
            self.duty = True
            log.info("%s: this process (pid %d) now syncs the machine's commits",
                     self.writer.name, self.writer.files.pid)
            if self.on_duty is not None:
                self.on_duty()
        return self.duty

    def step(self) -> float:
        if not self.elect():
            return self.check
        if self.interval <= 0:
            return self.check
        sync_once(self.writer, TURN_TIMEOUT)
        self.failures = 0
        return self.interval

    def stop(self) -> None:
        super().stop()
        if self.duty:
            self.duty = False
            self.writer.files.unlock(DUTY)

    def on_error(self, exc: Exception) -> float:
        if isinstance(exc, ConflictError):
            return self.interval or self.check  # nothing is uploaded until discard_unsynced
        self.failures += 1  # storage down: keep the buffer, retry later
        self.writer.last_error = exc
        log.warning("sync of %s failed (%d in a row): %s",
                    self.writer.name, self.failures, exc)
        return (self.interval or self.check) * min(2 ** self.failures, 30)
