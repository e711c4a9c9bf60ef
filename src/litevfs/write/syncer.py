"""Upload buffered transactions: ``sync_once()`` turns every page dirtied since the
last sync into one L0 LTX file; :class:`Syncer` is the thin thread around it.

One sync:

1. Cut: under the writer lock, the dirty layer becomes the frozen layer (merged with
   a previous frozen layer whose upload failed) and the buffer offset is noted.
   Commits continue meanwhile into a new dirty layer.
2. Position check: LIST every level; if the remote went past our base TXID another
   writer won: conflict, nothing is uploaded.
3. Encode (legacy LZ4 frames: every Litestream 0.5.x reads them) TXID = base + 1,
   commit = size at the cut, pages > commit and the lock page never included.
4. A SYNC mark (TXID, offset, file checksum) is appended to the buffer, then the
   conditional create (``If-None-Match: *``). If the key exists, its checksum tells
   our own earlier attempt (response lost, or crash after upload) from another
   writer's file (conflict). Transient failures are retried with backoff; the buffer
   and the frozen layer stay until an upload succeeds.
5. The commit point: the head object records the file by compare-and-swap
   (``fence.py``). A writer that was paused while another took over is refused here
   (ConflictError, buffer kept), however long the pause, and its stray file is removed.
6. The view containing the new file is published (index entries from our encoder,
   pages into the shared cache), then the frozen layer is dropped and the buffer is
   rewritten without the synced records.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from .._worker import Worker
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
from .._impl import cache_key
from .buffer import SyncMark
from .writer import Local

if TYPE_CHECKING:
    from ..storage.base import StorageClient
    from .writer import Writer

log = logging.getLogger("litevfs.syncer")

UPLOAD_ATTEMPTS = 4
_U64_MASK = (1 << 64) - 1


class SyncTimeout(LiteVFSError, TimeoutError):
    """The sync did not finish within the caller's timeout (nothing is lost)."""


def _cut(writer: Writer) -> tuple[Local, int, int] | None:
    """Freeze the dirty layer. Returns (local, buffer offset covered, base TXID)."""
    with writer.lock:
        local = writer.local
        if local.empty:
            return None
        if local.dirty_commit is not None:
            frozen = dict(local.frozen) if local.frozen is not None else {}
            if local.frozen_commit is not None and local.dirty_commit < local.frozen_commit:
                frozen = {p: d for p, d in frozen.items() if p <= local.dirty_commit}
            frozen.update(local.dirty)
            floor = local.floor
            local = Local({}, frozen, None, None, local.dirty_commit, floor, local.gen)
            writer.local = local
        return local, writer.buffer.size, writer.base_txid


def remote_levels(writer: Writer) -> dict[int, list[FileInfo]]:
    """Every level's files (S3 lists every level in one request)."""
    return writer.state.storage.list_all()


def max_txid(levels: dict[int, list[FileInfo]]) -> int:
    """The newest TXID any file holds; torn objects (uploads cut short) hold none."""
    return max((f.max_txid for files in levels.values() for f in files if not is_torn(f)),
               default=0)


def encode_frozen(writer: Writer, local: Local, txid: int) -> bytes:
    commit = local.frozen_commit
    assert commit is not None and local.frozen is not None
    frozen = local.frozen
    lock = writer.lock_pgno
    # Pages past the smallest size since the base view were cut off by a truncate; any
    # not rewritten since are zeros, as they would be in a real file.
    floor = 0 if txid == 1 else (local.frozen_floor or commit)
    zero = bytes(writer.page_size)
    pages = [(p, d) for p, d in sorted(frozen.items()) if p <= commit and p != lock]
    missing = [p for p in range(floor + 1, commit + 1) if p not in frozen and p != lock]
    if missing:
        pages = sorted(pages + [(p, zero) for p in missing])
    return encode_file(pages, page_size=writer.page_size, commit=commit, min_txid=txid,
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


def sync_once(writer: Writer) -> int:
    """Upload what is buffered; returns the TXID that now holds every local commit
    made before the call (the current position when nothing was dirty)."""
    with writer.sync_lock:
        if writer.conflict is not None:
            raise writer.conflict
        cut = _cut(writer)
        if cut is None:
            return writer.base_txid
        local, covered, base = cut
        levels = remote_levels(writer)
        remote = max_txid(levels)
        if remote > base:
            raise writer.set_conflict(
                f"the replica advanced to TXID {remote:016x} but this writer's buffer builds "
                f"on {base:016x}: another writer committed")
        txid = base + 1
        data = encode_frozen(writer, local, txid)
        checksum = file_checksum(data)
        with writer.lock:
            writer.buffer.mark_sync(txid, covered, checksum)
        info, earlier = _upload(writer, txid, data, checksum)
        landed = checksum if earlier is None else earlier.checksum
        try:
            commit_head(writer.state.storage, writer.head_state, txid, landed, levels)
        except ConflictError as exc:
            _remove_stray(writer, info, landed)
            raise writer.set_conflict(str(exc)) from None
        if earlier is None:
            _install(writer, info, data, local)
        else:  # an earlier attempt landed (it covered less): re-read it like a poll
            covered = earlier.covered
            writer.views.replan()
        with writer.lock:
            writer.base_txid = txid
            writer.buffer.reset(covered, txid)
            # Everything committed after the covered offset is dirty again (normally
            # exactly the dirty layer; more when an earlier, smaller attempt landed).
            writer.local = writer._local_from_buffer(writer.local.gen + (earlier is not None))
        writer.last_error = None
        log.debug("synced TXID %016x (%d bytes)", txid, len(data))
        return txid


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


def _install(writer: Writer, info: FileInfo, data: bytes, local: Local) -> None:
    """Publish the view with our new file and seed the cache with its pages."""
    state = writer.state
    current = state.current
    fi = local_file_index(info, data, state.impl)
    hydrator = writer.hydrator
    if hydrator is not None and local.frozen is not None:
        # Before publishing: the hydrator then finds our pages local, never downloads them.
        frozen = local.frozen
        hydrator.offer_pages(state.file_id(info), info.max_txid,
                             [(p, frozen[p]) for p in sorted(fi.pgnos) if p in frozen])
    if current.txid == info.max_txid - 1:
        view = writer.views.extend_view(current, [fi])
        state.publish(view)
    elif current.txid < info.max_txid:
        writer.views.replan()
    fid = state.file_id(info)
    put = state.cache.put
    assert local.frozen is not None
    for pgno in fi.pgnos:
        page = local.frozen.get(pgno)
        if page is not None:
            put(cache_key(fid, pgno), page)


def sync_now(writer: Writer, timeout: float | None = None) -> int:
    """``sync_once`` that waits at most ``timeout`` seconds for a sync in progress."""
    if timeout is not None:
        if not writer.sync_lock.acquire(timeout=timeout):
            raise SyncTimeout(f"a sync to {writer.replica.storage.url} is still running "
                              f"after {timeout:g}s (nothing is lost: it goes on in the "
                              "background)")
        writer.sync_lock.release()
    return sync_once(writer)


def recover(writer: Writer) -> None:
    """After opening a buffer that holds transactions: decide whether the remote is
    where the buffer expects it, or our last upload landed before a crash, or another
    writer got there first (conflict: writes refused, buffer kept). A landed upload is
    recognised by the head object's history (which outlives retention of the L0 key),
    else by the L0 file's checksum; one whose commit point never happened is completed."""
    buf = writer.buffer
    remote = writer.state.current.txid
    if buf.empty:
        if buf.base_txid != remote:
            buf.clear(remote)
        writer.base_txid = remote
        if remote:
            writer.page_size = writer.state.current.page_size
        return
    base = buf.base_txid
    if remote > base:
        landed = _landed_mark(writer, base + 1)
        if landed is not None:
            log.info("our upload of TXID %016x landed before the crash", base + 1)
            buf.reset(landed.covered, base + 1)
            writer.base_txid = base = base + 1
            writer.local = writer._local_from_buffer(writer.local.gen + 1)
            if buf.empty:
                return recover(writer)
    if remote != base:
        writer.set_conflict(
            f"the replica is at TXID {remote:016x} but the recovered buffer builds on "
            f"{base:016x}")


def _landed_mark(writer: Writer, txid: int) -> SyncMark | None:
    """The sync mark of ours whose upload of ``txid`` is part of the replica's history."""
    marks = [m for m in writer.buffer.marks if m.txid == txid]
    if not marks:
        return None
    state = writer.head_state
    head = state.head
    if head is not None and head.txid >= txid:
        for m in marks:
            if head.committed(txid, m.checksum):
                return m
    storage = writer.state.storage
    info = next((f for f in storage.list_level(0)
                 if (f.min_txid, f.max_txid) == (txid, txid)), None)
    if info is None:
        return None
    theirs = file_checksum(storage.read_tail(info, 16))
    mine = [m for m in marks if m.checksum == theirs]
    if not mine:
        return None
    if head is None or head.txid < txid:
        # Crashed between the upload and its commit point: complete it now.
        try:
            commit_head(storage, state, txid, theirs)
        except ConflictError:
            return None
    elif not head.committed(txid, theirs):
        return None  # the head names another file for this TXID: not ours after all
    return mine[-1]


class Syncer(Worker):
    """Calls :func:`sync_once` every ``sync_interval``; backs off after failures."""

    stop_timeout = 60.0  # an upload in progress may take a while

    def __init__(self, writer: Writer, interval: float) -> None:
        super().__init__(f"litevfs-sync {writer.config.replica_url}")
        self.writer = writer
        self.interval = interval
        self.first_wait = interval
        self.failures = 0

    def start(self) -> None:
        if self.interval > 0:
            super().start()

    def sync(self, timeout: float | None = None) -> int:
        """:func:`sync_now` for this writer (``Writer.sync``, ``PRAGMA litevfs_sync``)."""
        return sync_now(self.writer, timeout)

    def step(self) -> float:
        sync_once(self.writer)
        self.failures = 0
        return self.interval

    def on_error(self, exc: Exception) -> float:
        if isinstance(exc, ConflictError):
            return self.interval  # nothing is uploaded until discard_unsynced (cheap: no request)
        self.failures += 1  # storage down: keep the buffer, retry later
        self.writer.last_error = exc
        log.warning("sync of %s failed (%d in a row): %s",
                    self.writer.config.replica_url, self.failures, exc)
        return self.interval * min(2 ** self.failures, 30)
