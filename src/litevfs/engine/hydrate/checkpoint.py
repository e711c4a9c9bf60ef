"""Persistence of a hydrated file: the checkpoint that writes the sidecar, and the
checks that decide whether a restart may reuse the file. The rules are explained on
each method."""

from __future__ import annotations

import logging
import os
import sys
import time
from array import array
from typing import TYPE_CHECKING

import xxhash

from ...errors import NotFoundError
from ...ltx.format import TRAILER_SIZE, Trailer
from .localcopy import HydrationDiskError, LocalCopy
from .sidecar import Sidecar, SidecarError, make_bitmap, read_sidecar, remove_sidecar, \
    sidecar_path, write_sidecar

if TYPE_CHECKING:
    from ..state import ReplicaState, View

log = logging.getLogger("litevfs.hydrator")


class Checkpoint:
    """Sidecar writes and resume for the persistent ``copy`` of the replica ``state``."""

    def __init__(self, copy: LocalCopy, state: ReplicaState) -> None:
        self.copy = copy
        self.state = state
        self.last_at = time.monotonic()
        self.saved: tuple[int, int] | None = None  # (TXID, pages) of the last sidecar
        self._checksums: dict[int, int | None] = {}  # TXID -> post-apply checksum

    def _verify_adopted(self, limit: int) -> int:
        """Read every adopted page back and check it against its recorded checksum (a
        local sequential read, far cheaper than a download): pages damaged or
        overwritten since the sidecar was written are dropped, to be fetched again.
        Returns how many were dropped."""
        copy = self.copy
        ps, have, sums = copy.page_size, copy.have, copy.sums
        dropped = 0
        p = 1
        span = max(1, (1 << 20) // ps)  # pages per read
        while p <= limit:
            if not have[p]:
                p += 1
                continue
            n = 1
            while n < span and p + n <= limit and have[p + n]:
                n += 1
            data = os.pread(copy.fd, n * ps, (p - 1) * ps)
            for i in range(n):
                page = data[i * ps:(i + 1) * ps]
                if len(page) != ps or xxhash.xxh3_64_intdigest(page) != sums[p + i]:
                    have[p + i] = 0
                    copy.txids[p + i] = 0
                    dropped += 1
            p += n
        if dropped:
            copy.damaged += dropped
            log.warning("hydration file %s: %d pages did not match their checksums (damaged "
                        "or overwritten since the last run); fetching them again",
                        copy.path, dropped)
        return dropped

    def checksum_at(self, txid: int) -> int | None:
        """The post-apply checksum of the database at ``txid`` (from the trailer of a
        retained file ending there), None when no such file exists any more."""
        if txid in self._checksums:
            return self._checksums[txid]
        state, storage = self.state, self.state.storage
        infos = []
        for fid in state.current.index.file_ids():
            info = state.file_info(fid)
            if info.max_txid == txid:
                infos.append(info)
        if not infos:
            levels = storage.list_all()
            infos = [f for lvl in sorted(levels) for f in levels[lvl] if f.max_txid == txid]
        checksum = None
        for info in infos:
            try:
                raw = storage.read_range(info, info.size - TRAILER_SIZE, TRAILER_SIZE)
            except NotFoundError:
                continue
            checksum = Trailer.unpack(raw).post_apply_checksum
            break
        if checksum is not None:
            self._checksums[txid] = checksum
        return checksum

    def save(self, view: View | None) -> bool:
        """fsync the data file, then record in the sidecar which pages equal the
        database at ``view``'s TXID. Pages written later for newer views are never older
        than that TXID, so a crash at any point leaves a sidecar that is safe to resume
        from (see :meth:`resume`)."""
        copy = self.copy
        if not copy.persistent or copy.fd < 0 or view is None or copy.path is None:
            return False
        checksum = self.checksum_at(view.txid)
        if checksum is None:
            log.debug("no retained file ends at TXID %016x; sidecar not updated", view.txid)
            return False
        lookup, have = view.index.lookup, copy.have
        present = []
        sums = array("Q", bytes(8 * (view.commit + 1)))
        with copy.lock:
            for p in range(1, min(view.commit, len(have) - 1) + 1):
                e = lookup(p)
                if e is not None and have[p] == e[0] + 1:
                    present.append(p)
                    sums[p] = copy.sums[p]
        if sys.byteorder == "little":
            sums.byteswap()  # stored big-endian
        sidecar = Sidecar(self.state.storage.url, copy.page_size, view.txid, view.commit,
                          checksum, make_bitmap(present, view.commit), sums.tobytes())
        try:
            copy.fsync()
            write_sidecar(copy.path, sidecar)
        except OSError as exc:
            raise HydrationDiskError(f"writing {sidecar_path(copy.path)} failed: {exc}") from exc
        self.last_at = time.monotonic()
        self.saved = (view.txid, len(present))
        return True

    def resume(self, view: View) -> int:
        """Adopt a persistent file whose sidecar matches this replica (returns the pages
        reused); else start empty.

        A page set in the sidecar (state at TXID T) is still current when the file the
        view maps it to ends at or before T: any later change would come from a newer
        file. Everything else is downloaded again."""
        copy = self.copy
        if not copy.persistent or copy.path is None:
            return 0
        reason = None
        try:
            sc = read_sidecar(copy.path)
        except SidecarError as exc:
            sc, reason = None, str(exc)
        if sc is not None:
            if sc.replica != self.state.storage.url:
                reason = f"sidecar belongs to replica {sc.replica}"
            elif sc.page_size != view.page_size:
                reason = f"sidecar page size {sc.page_size} is not {view.page_size}"
            elif sc.txid > view.txid:
                reason = (f"sidecar TXID {sc.txid:016x} is ahead of the replica "
                          f"({view.txid:016x}): the replica was reset")
            else:
                checksum = self.checksum_at(sc.txid)
                if checksum is None:
                    reason = (f"no retained LTX file ends at the sidecar's TXID {sc.txid:016x} "
                              "(older than the replica's retention)")
                elif checksum != sc.post_apply_checksum:
                    reason = f"database checksum at TXID {sc.txid:016x} does not match"
        size = copy.size()
        if reason is not None or sc is None:
            if size or reason != "no sidecar":
                log.warning("hydration file %s not reused (%s): rebuilding", copy.path, reason)
            try:
                copy.resize(0)
                remove_sidecar(copy.path)
            except OSError as exc:
                raise HydrationDiskError(f"cannot reset {copy.path}: {exc}") from exc
            return 0
        copy.page_size = sc.page_size
        lookup, info_of = view.index.lookup, self.state.file_info
        limit = min(view.commit, size // sc.page_size)
        adopted = 0
        with copy.lock:
            copy.grow(view.commit)
            have, txids, sums = copy.have, copy.txids, copy.sums
            for p in sc.pages():
                if p > limit:
                    break
                e = lookup(p)
                digest = sc.page_sum(p)
                if e is not None and digest and info_of(e[0]).max_txid <= sc.txid:
                    have[p] = e[0] + 1
                    txids[p] = sc.txid
                    sums[p] = digest  # checked on every read: a damaged page is refetched
                    adopted += 1
        adopted -= self._verify_adopted(limit)
        log.info("hydration file %s resumed at TXID %016x: %d pages reused",
                 copy.path, sc.txid, adopted)
        return adopted
