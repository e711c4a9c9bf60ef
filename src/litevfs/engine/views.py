"""Building views: page indexes of LTX files fetched (in parallel, from the disk cache,
or adopted from the open's reads ahead) and merged into a :class:`~.state.View`.

``ViewBuilder`` is the one place views are made: the first view of an open (which
waits for nothing and lists again when a file of its plan vanished), the poller's
extensions, re-plans after compaction deleted a file, and time travel. Small files
that came back whole with their index read are verified and seed the caches.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace

from .._pending import Pending
from ..errors import (
    BucketNotFoundError, EmptyReplicaError, LTXFormatError, NotFoundError, TxNotAvailableError,
)
from ..ltx.decoder import decode_file
from ..ltx.format import HEADER_SIZE, FileInfo, is_valid_page_size, lock_pgno
from ..storage import empty_replica_message
from ..storage.fetch import FileIndex, fetch_file_index
from .._impl import cache_key
from .diskcache import fetch_index_cached
from .indexhint import HintBook
from ..storage.readsize import HEAD_READ, tail_size_for
from .machineindex import MachineIndexes
from .openahead import OpenAhead
from .plan import calc_restore_plan, torn_files
from .state import ReplicaState, View
from .verify import Verifier

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .diskstore import ReplicaDiskCache

log = logging.getLogger("litevfs.replica")

PREFILL_MAX_FILE = 1024 * 1024  # whole files up to this size seed the cache at once
OPEN_RELISTS = 4  # LISTs an open tries when files of its plan keep vanishing
RECENT_FILES = 32  # indexes fetched lately, kept for the poll board (engine/board.py)
RECENT_ENTRIES = 1 << 18  # ... up to this many page entries in all (4 MiB encoded)


def check_index_bounds(base_commit: int, indexes: Sequence[FileIndex]) -> None:
    """Refuse page numbers and commits no honest replica can have, before the dense page
    index (16 bytes per page up to the highest page number) is sized by them: every
    page above the base's size is written in one of the new files, so nothing can lie
    beyond the base size plus (twice, for slack) the new entries. The lock page's
    number is allowed on top (a database may grow across it), which caps the slack at
    16 bytes x lock page number (4 MiB at 4 KiB pages, 32 MiB at 512-byte pages)."""
    entries = sum(len(fi.pgnos) for fi in indexes)
    for fi in indexes:
        limit = base_commit + 2 * entries + 2 + lock_pgno(fi.header.page_size)
        top = max(fi.header.commit, fi.pgnos[-1] if len(fi.pgnos) else 0)
        if top > limit:
            raise LTXFormatError(
                f"{fi.info.name}: page/commit {top} is impossible for a replica whose files "
                f"hold {entries} page entries (corrupt or hostile file)")


def _from_machine(machine: MachineIndexes, info: FileInfo,
                  started: tuple[Pending | None, Pending | None] | None) -> FileIndex | None:
    """``info``'s index as the machine keeps it, with the head read the LIST's thread
    sent (page 1 and its neighbours); None when not kept, unusable, or when that head
    shows another object under the same name (the stored copy is then dropped)."""
    fi = machine.get(info)
    if fi is None:
        return None
    head = None
    if started is not None and started[1] is not None:
        try:
            head = started[1].result()
        except Exception:  # noqa: BLE001 - the pages are read on demand instead
            head = None
        if head is not None and head[:HEADER_SIZE] != fi.header.pack():
            machine.forget(info)
            return None
    machine.hits += 1
    if head is not None and len(head) > HEADER_SIZE:
        return replace(fi, head=head)
    return fi


class ViewBuilder:
    def __init__(self, state: ReplicaState, verifier: Verifier,
                 disk: ReplicaDiskCache | None = None, ahead: OpenAhead | None = None,
                 machine: MachineIndexes | None = None) -> None:
        self.state = state
        self.verifier = verifier
        self.disk = disk
        self.machine = machine  # big indexes kept for the machine's next opens
        self._ahead = ahead  # index reads the LIST thread already sent (openahead.py)
        self.hints = HintBook(disk)  # exact index read sizes learned earlier (indexhint.py)
        self.reads_adopted = 0  # files whose index reads came from ``ahead``
        self._torn_seen: set[tuple[int, int, int]] = set()
        self.recent: dict[FileInfo, FileIndex] = {}  # what a poll board publishes

    def fetch_indexes(self, infos: Sequence[FileInfo],
                      known: Mapping[FileInfo, FileIndex] | None = None) -> list[FileIndex]:
        """Page indexes of ``infos``, fetched in parallel (one tail read each); those in
        ``known`` (a poll board's) are taken from there."""
        if known:
            have = [known[i] for i in infos if i in known]
            missing = [i for i in infos if i not in known]
            got = self.fetch_indexes(missing) if missing else []
            self._remember(have)
            return have + got
        got = self._fetch(infos)
        self._remember(got)
        return got

    def _remember(self, indexes: Sequence[FileIndex]) -> None:
        expect = self.verifier.expect  # a stored copy of the object must match (objstore.py)
        for fi in indexes:
            expect(fi.info, fi.header)
        recent = self.recent
        for fi in indexes:
            if len(fi.pgnos) <= RECENT_ENTRIES // 4:  # snapshots are not worth sharing
                recent.pop(fi.info, None)
                recent[fi.info] = fi
        while len(recent) > RECENT_FILES or \
                sum(len(fi.pgnos) for fi in recent.values()) > RECENT_ENTRIES:
            del recent[next(iter(recent))]

    def early_object(self, name: str) -> Pending | None:
        """The open's GET of a small object sent next to its LIST (``openahead.py``)."""
        return self._ahead.take_object(name) if self._ahead is not None else None

    def _fetch(self, infos: Sequence[FileInfo]) -> list[FileIndex]:
        state, ahead, hints, machine = self.state, self._ahead, self.hints, self.machine

        def fetch(info: FileInfo) -> FileIndex:
            started = ahead.take(info) if ahead is not None else None
            if machine is not None:
                stored = _from_machine(machine, info, started)
                if stored is not None:
                    return stored
            if started is not None and started[0] is None:
                started = None  # only the head went ahead (the machine's copy was bad)
            if started is not None:
                self.reads_adopted += 1
                hints.count_listed(info)  # the LIST thread sized them by the same hints
                tail_size = 0  # unused: the reads are in flight already
            else:
                tail_size = tail_size_for(info, hints.index_len(info))
            fi = fetch_file_index(state.storage, info, tail_size=tail_size,
                                  executor=state.executor, impl=state.impl,
                                  head_size=HEAD_READ, started=started)
            hints.learn(info, fi.index_len)
            if machine is not None and info.size >= machine.min_object:
                # off the open's path, on a thread the interpreter waits for at exit (a
                # short-lived process still leaves it for the next one; the pool's queued
                # work is cancelled when the replica closes)
                threading.Thread(target=machine.put, args=(fi,), name="litevfs-keep-index",
                                 daemon=False).start()
            return fi

        def one(info: FileInfo) -> FileIndex:  # decoded indexes persist in the disk cache
            return fetch_index_cached(self.disk, info, fetch)
        if len(infos) == 1:
            return [one(infos[0])]
        return list(state.executor.map(one, infos))

    def extend_view(self, base: View | None, indexes: Iterable[FileIndex],
                    *, target_time: str | None = None) -> View:
        """A new view: ``base`` (or nothing) plus ``indexes`` in TXID order. Every page
        keeps its newest version (highest MaxTXID), so a lagging L1 file can never
        override a newer L0 page; the index is trimmed to the last file's commit."""
        indexes = sorted(indexes, key=lambda fi: (fi.info.max_txid, -fi.info.min_txid))
        if base is None and not indexes:
            raise TxNotAvailableError("no LTX files to build a view from")
        file_id = self.state.file_id
        index = base.index.copy() if base is not None else self.state.impl.PageIndex()
        page_size = base.page_size if base is not None else indexes[0].header.page_size
        commit = base.commit if base is not None else 0
        txid = base.txid if base is not None else 0
        timestamp = base.timestamp_ms if base is not None else 0
        l1_max = base.l1_max_txid if base is not None else 0
        check_index_bounds(commit, indexes)
        for fi in indexes:
            header = fi.header
            if header.page_size != page_size or not is_valid_page_size(page_size):
                raise LTXFormatError(
                    f"{fi.info.name}: page size {header.page_size} differs from {page_size}")
            index.merge(file_id(fi.info), fi.info.max_txid, fi.pgnos, fi.offsets, fi.sizes)
            if fi.info.level == 1:
                l1_max = max(l1_max, fi.info.max_txid)
            if fi.info.max_txid >= txid:
                # The newest file defines the database size and position.
                txid, commit = fi.info.max_txid, header.commit
                timestamp = max(timestamp, header.timestamp)
        index.truncate(commit)
        view = View(index, page_size, commit, txid, timestamp, l1_max, target_time)
        self._prefill(view, indexes)
        return view

    def _prefill(self, view: View, indexes: Iterable[FileIndex]) -> None:
        """Small files came back whole from the index read: verify them and cache the
        pages they still provide (page 1 and hot pages usually live in the newest L0)."""
        state = self.state
        for fi in indexes:
            if fi.head is not None:
                self._prefill_head(view, fi)
            if fi.data is None or len(fi.data) > PREFILL_MAX_FILE:
                continue
            fid = state.file_id(fi.info)
            try:
                decoded = decode_file(fi.data, verify=True, impl=state.impl)
            except LTXFormatError as exc:
                self.verifier.mark_failed(fid, str(exc))
                raise LTXFormatError(f"{fi.info.name}: {exc}") from None
            self.verifier.mark_verified(fid)
            store = self.verifier.store
            if store is not None:  # the machine's other processes read it from there
                store.put(fi.info, fi.data, replace=False)
            frames, pages = [], {}
            for pgno, page in decoded.pages:
                entry = view.index.lookup(pgno)
                if entry is not None and entry[0] == fid:
                    state.put_page(cache_key(fid, pgno), page)
                    frames.append((pgno, entry[1], entry[2]))
                    pages[pgno] = page
            self._persist(fi, frames, pages)

    def _prefill_head(self, view: View, fi: FileIndex) -> None:
        """Cache the whole frames inside a large file's head read (page 1 first). Files
        the policy verifies before serving (small ones, or verify=strict) are skipped."""
        state = self.state
        fid = state.file_id(fi.info)
        if self.verifier.verified_first(fid):
            return
        head, decode = fi.head, state.impl.decode_page_frame
        assert head is not None
        frames, pages = [], {}
        for pgno, offset, size in zip(fi.pgnos, fi.offsets, fi.sizes):
            if offset + size > len(head):
                break  # frames are stored in page order, offsets ascending
            entry = view.index.lookup(pgno)
            if entry is None or entry[0] != fid:
                continue
            try:
                got, _flags, page, frame_len = decode(head, view.page_size, offset, size)
            except LTXFormatError:
                break  # the page read path reports it (and retries) if SQLite wants it
            if got != pgno or frame_len != size:
                break
            state.put_page(cache_key(fid, pgno), page)
            self.verifier.seen(fid, fi.info)  # served unverified: verify in the background
            frames.append((pgno, offset, size))
            pages[pgno] = page
        self._persist(fi, frames, pages)

    def _persist(self, fi: FileIndex, frames: list[tuple[int, int, int]],
                 pages: dict[int, bytes]) -> None:
        """Pages that arrived with an index read go to the disk cache too: page 1 and
        its neighbours are what the next open's boot set asks for first, and a boot
        page missing on disk costs that open a round trip."""
        if self.disk is not None and frames:
            self.disk.put_frames(fi.info, frames, pages)

    def build_view(self, plan: Sequence[FileInfo], *, target_time: str | None = None) -> View:
        return self.extend_view(None, self.fetch_indexes(plan), target_time=target_time)

    def list_levels(self) -> dict[int, list[FileInfo]]:
        return self.state.storage.list_all()

    def latest_view(self, levels: Mapping[int, Sequence[FileInfo]] | None = None) -> View:
        """Build a fresh view from Litestream's latest restore plan."""
        levels = self.list_levels() if levels is None else levels
        self.hints.from_listing(self.state.storage.side_names,
                                [i for files in levels.values() for i in files])
        plan = calc_restore_plan(levels)
        self._warn_torn(levels)
        return self.build_view(plan)

    def _warn_torn(self, levels: Mapping[int, Sequence[FileInfo]]) -> None:
        """Torn objects past the plan (an interrupted upload, never committed): said once
        each; a writer repairs them at its next sync."""
        for info in torn_files(levels):
            key = (info.level, info.min_txid, info.max_txid)
            if key not in self._torn_seen:
                self._torn_seen.add(key)
                log.warning("%s: ignoring %s (level %d): %d bytes, an upload cut short "
                            "(not a committed transaction)", self.state.storage.url,
                            info.name, info.level, info.size)

    def replan(self) -> View:
        """Rebuild from the current listing (after a gap or a missing file) and publish."""
        view = self.latest_view()
        self.state.publish(view)
        return self.state.current

    def view_at_txid(self, txid: int) -> View:
        """A view of exactly ``txid`` from the files that exist now (not published)."""
        return self.build_view(calc_restore_plan(self.list_levels(), txid=txid))

    def open_first(self, listing: Pending | None, *, wait: float, poll: float,
                   create_empty: bool) -> View:
        """The first view of an open, published. ``listing``: a LIST this open already
        started. A plan file deleted between the LIST and its index read (compaction or
        retention) makes it list again, a few times; an empty replica is waited for up
        to ``wait`` seconds, or (``create_empty``, write mode) starts a new database."""
        state = self.state
        deadline = time.monotonic() + wait
        vanished = 0
        try:
            while True:
                try:
                    levels, listing = (listing.result() if listing else None), None
                    try:
                        view = self.latest_view(levels)
                    except NotFoundError as exc:
                        vanished += 1
                        if isinstance(exc, BucketNotFoundError) or vanished >= OPEN_RELISTS:
                            raise
                        log.info("%s: %s; listing the replica again", state.storage.url, exc)
                        continue
                    state.publish(view)
                    return view
                except TxNotAvailableError:
                    if create_empty:  # write mode creates the database: start empty
                        view = View(state.impl.PageIndex(), 4096, 0, 0, 0, 0)
                        state.publish(view)
                        return view
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise EmptyReplicaError(
                            empty_replica_message(state.storage, wait)) from None
                    time.sleep(min(poll or 0.1, remaining, 1.0))
        finally:
            self._ahead = None  # reads the plan did not adopt are not wanted later
