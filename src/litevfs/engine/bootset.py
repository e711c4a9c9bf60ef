"""Learned boot set: remember which pages the first queries after an open touched,
and fetch exactly those at the next cold open, in parallel with building the index.

Recording: from the first read after an open, every page the read path is asked for
is noted with its physical location (LTX object, frame offset, frame size), until
``MAX_PAGES`` pages or ``WINDOW_S`` seconds. The set is then saved in the persistent
cache directory (``meta`` table) and, with ``boot_set=shared``, as the small object
``<path>/litevfs/bootset`` (Litestream ignores it), so a new machine benefits.

Replay: the open starts the boot fetch before it lists the replica: frames found in
the disk cache are taken from there, the rest are fetched with coalesced ranged GETs
per object, all in parallel with the LIST and the index reads. Nothing fetched is
trusted blindly: once the view is built, a page enters the cache only if the view's
index points at exactly that object (same level, TXIDs, size, listing time), offset
and size, and the frame decodes to the expected page number. A stale boot set
(compaction, a deleted file) costs a few wasted bytes, never a wrong page.
"""

from __future__ import annotations

import atexit
import json
import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from .._impl import cache_key
from ..errors import NotFoundError
from ..ltx.format import FileInfo
from .openahead import SHARED_BOOT_SET
from .state import ReplicaState, View
from .verify import Verifier

if TYPE_CHECKING:
    from .._pending import Pending
    from .diskstore import ReplicaDiskCache

log = logging.getLogger("litevfs.bootset")

OBJECT_NAME = SHARED_BOOT_SET
META_NAME = "bootset"
MAX_PAGES = 512
WINDOW_S = 3.0
MAX_GAP = 64 * 1024  # bytes of unwanted frames read through to keep one GET per object
WAIT_S = 5.0  # longest an open waits for the boot fetch after its own work is done

Frame = tuple[int, int, int]  # (pgno, offset, size)


def encode_boot_set(page_size: int, entries: Sequence[tuple[FileInfo, int, int, int]]
                    ) -> bytes:
    files: list[list[Any]] = []
    index: dict[tuple[int, int, int], int] = {}
    frames = []
    for info, pgno, offset, size in entries:
        key = (info.level, info.min_txid, info.max_txid)
        if key not in index:
            index[key] = len(files)
            files.append([info.level, info.min_txid, info.max_txid, info.size,
                          int(info.created_at)])
        frames.append([index[key], pgno, offset, size])
    return json.dumps({"v": 1, "page_size": page_size, "files": files,
                       "frames": frames}, separators=(",", ":")).encode()


def decode_boot_set(data: bytes) -> tuple[int, dict[FileInfo, list[Frame]]]:
    """(page size, frames per object) or ValueError."""
    doc = json.loads(data)
    if not isinstance(doc, dict) or doc.get("v") != 1:
        raise ValueError("not a litevfs boot set")
    files = [FileInfo(int(f[0]), int(f[1]), int(f[2]), int(f[3]), float(f[4]))
             for f in doc["files"]]
    out: dict[FileInfo, list[Frame]] = {}
    for fidx, pgno, offset, size in doc["frames"][:MAX_PAGES]:
        out.setdefault(files[int(fidx)], []).append((int(pgno), int(offset), int(size)))
    for frames in out.values():
        frames.sort(key=lambda f: f[1])
    return int(doc["page_size"]), out


def _same_object(a: FileInfo, b: FileInfo) -> bool:
    return (a.level, a.min_txid, a.max_txid, a.size, int(a.created_at)) == \
        (b.level, b.min_txid, b.max_txid, b.size, int(b.created_at))


class BootSet:
    """Per replica: replays the last boot set at open, records the next one."""

    def __init__(self, state: ReplicaState, disk: ReplicaDiskCache | None,
                 verifier: Verifier, mode: str, early: Pending | None = None) -> None:
        self.state = state
        self._early = early  # the shared set's GET, sent next to the open's LIST
        self.read_with_list = False
        self.disk = disk
        self.verifier = verifier
        self.mode = mode
        self.loaded_pages: set[int] = set()
        self.prefetched = self.used = self.requests = 0
        self._fetches: list[Future[tuple[FileInfo, dict[int, bytes]]]] = []
        self._disk_hits: list[tuple[FileInfo, dict[int, bytes]]] = []
        self._recorded: dict[int, tuple[int, int, int]] = {}  # pgno -> (file_id, off, size)
        self._record_until = 0.0
        self.recording = False
        self._saved = False
        self._lock = threading.Lock()
        self._loader: Future[None] | None = None
        self._page_size = 0

    # -- replay ----------------------------------------------------------------------
    def start(self) -> None:
        """Begin fetching the stored boot set (returns at once)."""
        self._loader = self.state.executor.submit(self._load_and_fetch)

    def _stored(self) -> bytes | None:
        disk = self.disk
        data = disk.get_meta(META_NAME) if disk is not None else None
        if data is None and self.mode == "shared":
            early, self._early = self._early, None
            self.read_with_list = early is not None
            try:
                data = (early.result(WAIT_S) if early is not None
                        else self.state.storage.get_object(OBJECT_NAME))
            except NotFoundError:
                return None
        return data

    def _load_and_fetch(self) -> None:
        data = self._stored()
        if data is None:
            return
        try:
            self._page_size, per_file = decode_boot_set(data)
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            log.info("ignoring an unreadable boot set: %s", exc)
            return
        disk, executor = self.disk, self.state.executor
        for info, frames in per_file.items():
            self.loaded_pages.update(f[0] for f in frames)
            if disk is not None:  # the next view most likely has this object again
                disk.preload_index(info)
            if disk is not None:
                found = disk.get_frames(info, frames)
                if found:
                    self._disk_hits.append((info, found))
                frames = [f for f in frames if f[0] not in found]
            if frames and self.verifier.fetch_whole(info):  # CRC-checked whole
                self.requests += 1
                self._fetches.append(executor.submit(self._whole, info, frames))
                continue
            for run in _coalesce(frames):
                self.requests += 1
                self._fetches.append(executor.submit(self._fetch, info, run))

    def _whole(self, info: FileInfo, frames: list[Frame]) -> tuple[FileInfo, dict[int, bytes]]:
        pages = self.verifier.whole_file_pages(info)
        return info, {f[0]: pages[f[0]] for f in frames if f[0] in pages}

    def _fetch(self, info: FileInfo, run: list[Frame]) -> tuple[FileInfo, dict[int, bytes]]:
        start = run[0][1]
        data = self.state.storage.read_range(info, start, run[-1][1] + run[-1][2] - start)
        decode = self.state.impl.decode_page_frame
        page_size = self._page_size
        pages = {}
        for pgno, offset, size in run:
            got, _flags, page, frame_len = decode(data, page_size, offset - start, size)
            if got == pgno and frame_len == size:
                pages[pgno] = page
        return info, pages

    def finish(self, view: View) -> None:
        """Put the verified boot pages in the caches, then start recording."""
        try:
            if self._loader is not None:
                self._loader.result(timeout=WAIT_S)
            results = list(self._disk_hits)
            deadline = time.monotonic() + WAIT_S
            for fut in self._fetches:
                try:
                    results.append(fut.result(timeout=max(0.0, deadline - time.monotonic())))
                except Exception as exc:  # noqa: BLE001 - a boot page is only a hint
                    log.debug("boot set fetch failed: %s", exc)
            self._install(view, results)
        except Exception as exc:  # noqa: BLE001
            log.debug("boot set replay failed: %s", exc)
        self.recording = True
        self._record_until = 0.0
        atexit.register(self.save)

    def _install(self, view: View, results: list[tuple[FileInfo, dict[int, bytes]]]) -> None:
        state = self.state
        lookup = view.index.lookup
        put = state.put_page
        disk = self.disk
        for info, pages in results:
            fid = state.file_id(info)
            if not _same_object(state.file_info(fid), info):
                continue
            self.verifier.seen(fid, info)  # verification bookkeeping (verify.py)
            frames = []
            for pgno, page in pages.items():
                entry = lookup(pgno)
                if entry is None or entry[0] != fid or len(page) != view.page_size:
                    continue
                put(cache_key(fid, pgno), page)
                frames.append((pgno, entry[1], entry[2]))
            self.used += len(frames)
            self.prefetched += len(pages)
            if disk is not None and frames:
                disk.put_frames(info, frames, pages)

    # -- recording -------------------------------------------------------------------
    def note(self, pgno: int, entry: tuple[int, int, int]) -> None:
        """A page the read path was asked for (called only while recording)."""
        now = time.monotonic()
        if not self._record_until:
            self._record_until = now + WINDOW_S
        if pgno not in self._recorded:
            self._recorded[pgno] = entry
        if len(self._recorded) >= MAX_PAGES or now > self._record_until:
            self.recording = False
            self.save()

    def save(self) -> None:
        with self._lock:
            if self._saved or not self._recorded:
                return
            self._saved = True
            self.recording = False
        state = self.state
        try:
            view = state.current
            entries = [(state.file_info(fid), pgno, off, size)
                       for pgno, (fid, off, size) in sorted(self._recorded.items())]
            data = encode_boot_set(view.page_size, entries)
            if self.disk is not None:
                self.disk.put_meta(META_NAME, data)
            same = len(self.loaded_pages & set(self._recorded)) >= 0.9 * len(self._recorded)
            if self.mode == "shared" and not same:
                state.storage.put_object(OBJECT_NAME, data)
        except Exception as exc:  # noqa: BLE001 - best effort
            log.debug("saving the boot set failed: %s", exc)

    def stats(self) -> dict[str, Any]:
        return {"mode": self.mode, "loaded": len(self.loaded_pages),
                "prefetched": self.prefetched, "used": self.used, "requests": self.requests,
                "recorded": len(self._recorded), "recording": self.recording,
                "read_with_list": self.read_with_list}


def _coalesce(frames: list[Frame]) -> list[list[Frame]]:
    runs: list[list[Frame]] = []
    for frame in frames:
        if runs and frame[1] - (runs[-1][-1][1] + runs[-1][-1][2]) <= MAX_GAP:
            runs[-1].append(frame)
        else:
            runs.append([frame])
    return runs


def start_boot(state: ReplicaState, disk: ReplicaDiskCache | None, verifier: Verifier,
               mode: str, early: Pending | None = None) -> BootSet | None:
    """Start replaying the replica's boot set (None when the feature is off or has
    nowhere to keep the set); ``early``: the shared set's GET already in flight."""
    if mode == "off" or (mode == "local" and disk is None):
        return None
    boot = BootSet(state, disk, verifier, mode, early)
    boot.start()
    return boot
