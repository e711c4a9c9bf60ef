"""Persistence of a hydrated file (mixed into :class:`litevfs.hydrator.Hydrator`):
the checkpoint that writes the sidecar, and the checks that decide whether a restart
may reuse the file. The rules are explained on each method.
"""

from __future__ import annotations

import logging
import os
import time
from array import array
from typing import TYPE_CHECKING, Any

from ...errors import LiteVFSError, NotFoundError
from ...ltx.format import TRAILER_SIZE, Trailer
from .sidecar import Sidecar, SidecarError, make_bitmap, read_sidecar, remove_sidecar, \
    sidecar_path, write_sidecar

if TYPE_CHECKING:
    from ..state import View

log = logging.getLogger("litevfs.hydrator")


class HydrationDiskError(LiteVFSError):
    """The local file cannot be used (disk full, unwritable path, in use elsewhere)."""


class HydrationPersistence:
    """Sidecar checkpoint and resume; the state lives in ``Hydrator``."""

    shared: Any
    storage: Any
    persistent: bool
    path: str | None
    page_size: int
    resumed_pages: int
    _fd: int
    _have: array
    _txid: array
    _lock: Any
    _target: View | None
    _last_checkpoint: float
    _checkpointed: tuple[int, int] | None
    _checksums: dict[int, int | None]

    def _grow(self, n: int) -> None:  # provided by Hydrator
        raise NotImplementedError

    def _checksum_at(self, txid: int) -> int | None:
        """The post-apply checksum of the database at ``txid`` (from the trailer of a
        retained file ending there), None when no such file exists any more."""
        if txid in self._checksums:
            return self._checksums[txid]
        infos = []
        view = self.shared.current
        for fid in view.index.file_ids():
            info = self.shared.file_info(fid)
            if info.max_txid == txid:
                infos.append(info)
        if not infos:
            levels = self.storage.list_all()
            infos = [f for lvl in sorted(levels) for f in levels[lvl] if f.max_txid == txid]
        checksum = None
        for info in infos:
            try:
                raw = self.storage.read_range(info, info.size - TRAILER_SIZE, TRAILER_SIZE)
            except NotFoundError:
                continue
            checksum = Trailer.unpack(raw).post_apply_checksum
            break
        if checksum is not None:
            self._checksums[txid] = checksum
        return checksum

    def checkpoint(self) -> bool:
        """fsync the data file, then record in the sidecar which pages equal the
        database at the target view's TXID. Pages written later for newer views are
        never older than that TXID, so a crash at any point leaves a sidecar that is
        safe to resume from (see :meth:`_resume`)."""
        view = self._target
        if not self.persistent or self._fd < 0 or view is None or self.path is None:
            return False
        checksum = self._checksum_at(view.txid)
        if checksum is None:
            log.debug("no retained file ends at TXID %016x; sidecar not updated", view.txid)
            return False
        lookup, have = view.index.lookup, self._have
        present = []
        for p in range(1, min(view.commit, len(have) - 1) + 1):
            e = lookup(p)
            if e is not None and have[p] == e[0] + 1:
                present.append(p)
        sidecar = Sidecar(self.storage.url, self.page_size, view.txid, view.commit, checksum,
                          make_bitmap(present, view.commit))
        try:
            os.fsync(self._fd)
            write_sidecar(self.path, sidecar)
        except OSError as exc:
            raise HydrationDiskError(f"writing {sidecar_path(self.path)} failed: {exc}") from exc
        self._last_checkpoint = time.monotonic()
        self._checkpointed = (view.txid, len(present))
        return True

    def _resume(self, view: View) -> None:
        """Adopt a persistent file whose sidecar matches this replica; else start empty.

        A page set in the sidecar (state at TXID T) is still current when the file the
        view maps it to ends at or before T: any later change would come from a newer
        file. Everything else is downloaded again."""
        if not self.persistent or self.path is None:
            return
        reason = None
        try:
            sc = read_sidecar(self.path)
        except SidecarError as exc:
            sc, reason = None, str(exc)
        if sc is not None:
            if sc.replica != self.storage.url:
                reason = f"sidecar belongs to replica {sc.replica}"
            elif sc.page_size != view.page_size:
                reason = f"sidecar page size {sc.page_size} is not {view.page_size}"
            elif sc.txid > view.txid:
                reason = (f"sidecar TXID {sc.txid:016x} is ahead of the replica "
                          f"({view.txid:016x}): the replica was reset")
            else:
                checksum = self._checksum_at(sc.txid)
                if checksum is None:
                    reason = (f"no retained LTX file ends at the sidecar's TXID {sc.txid:016x} "
                              "(older than the replica's retention)")
                elif checksum != sc.post_apply_checksum:
                    reason = f"database checksum at TXID {sc.txid:016x} does not match"
        try:
            size = os.fstat(self._fd).st_size
        except OSError as exc:
            raise HydrationDiskError(f"cannot stat {self.path}: {exc}") from exc
        if reason is not None or sc is None:
            if size or reason != "no sidecar":
                log.warning("hydration file %s not reused (%s): rebuilding", self.path, reason)
            try:
                os.ftruncate(self._fd, 0)
                remove_sidecar(self.path)
            except OSError as exc:
                raise HydrationDiskError(f"cannot reset {self.path}: {exc}") from exc
            return
        self.page_size = sc.page_size
        lookup, info_of = view.index.lookup, self.shared.file_info
        limit = min(view.commit, size // sc.page_size)
        adopted = 0
        with self._lock:
            self._grow(view.commit)
            have = self._have
            for p in sc.pages():
                if p > limit:
                    break
                e = lookup(p)
                if e is not None and info_of(e[0]).max_txid <= sc.txid:
                    have[p] = e[0] + 1
                    self._txid[p] = sc.txid
                    adopted += 1
        self.resumed_pages = adopted
        log.info("hydration file %s resumed at TXID %016x: %d pages reused",
                 self.path, sc.txid, adopted)
