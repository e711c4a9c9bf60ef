"""MemberLiteFile: a read-only connection of a process that joined the machine's shared
state (``write/member.py``).

It is a read-only ``LiteFile`` (writes refused with the same message, the same read
path, header cache and prefetch) that also pins the machine's unsynced layer at the
start of each read transaction, as a write-mode connection does: while that layer is
empty (no writer on the machine has unsynced commits, or time travel) every read is
``LiteFile``'s; otherwise reads look in the layer first (``WritableLiteFile``'s).
"""

from __future__ import annotations

from .file import LiteFile
from .writable import WritableLiteFile
from ..write.writer import SHARED


class MemberLiteFile(WritableLiteFile):
    def _plain(self) -> bool:
        """No unsynced layer under this transaction: ``LiteFile``'s reads apply."""
        local = self._local
        return local is None or local.empty or self.snapshot.view.target_time is not None

    def xRead(self, amount: int, offset: int) -> bytes:
        if self._plain():
            return LiteFile.xRead(self, amount, offset)
        return WritableLiteFile.xRead(self, amount, offset)

    def xFileSize(self) -> int:
        if self._plain():
            return LiteFile.xFileSize(self)
        return WritableLiteFile.xFileSize(self)

    def xLock(self, level: int) -> None:
        if level == SHARED and self.lock_level < SHARED and not self.replica.inherited:
            self._local = self.writer.begin_read(self.owner)  # before the view: writer.py
        LiteFile.xLock(self, level)  # refuses RESERVED and up: read-only

    def xUnlock(self, level: int) -> None:
        self.writer.locks.unlock(self.owner, level)
        if level < SHARED:
            self._local = None
        LiteFile.xUnlock(self, level)

    xWrite = LiteFile.xWrite
    xTruncate = LiteFile.xTruncate
    xSync = LiteFile.xSync
    xCheckReservedLock = LiteFile.xCheckReservedLock
    xFileControl = LiteFile.xFileControl
