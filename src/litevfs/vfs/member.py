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
    __slots__ = ()

    def _write_state(self) -> None:
        WritableLiteFile._write_state(self)
        self._plain = True  # no unsynced layer under this transaction: LiteFile's reads apply
        self._in_table = False  # SHARED taken in the writer's lock table (a promoted member)

    def xRead(self, amount: int, offset: int) -> bytes:
        if self._plain:
            return LiteFile.xRead(self, amount, offset)
        return WritableLiteFile.xRead(self, amount, offset)

    def xFileSize(self) -> int:
        if self._plain:
            return LiteFile.xFileSize(self)
        return WritableLiteFile.xFileSize(self)

    def xLock(self, level: int) -> None:
        if level != SHARED or self.lock_level >= SHARED or self.replica.inherited:
            LiteFile.xLock(self, level)  # refuses RESERVED and up: read-only
            return
        writer = self.writer  # the unsynced layer is pinned before the view (writer.py)
        if writer.read_only:
            local = writer.member_read()
        else:  # the process writes too now: its commits must see this reader
            local = writer.begin_read(self.owner)
            self._in_table = True
        self._local = local
        LiteFile.xLock(self, level)
        self._plain = (local.dirty_commit is None and local.frozen is None) or \
            self.snapshot.view.target_time is not None

    def xUnlock(self, level: int) -> None:
        if self._in_table:
            self.writer.locks.unlock(self.owner, level)
            self._in_table = level >= SHARED
        if level < SHARED:
            self._local = None
            self._plain = True
        LiteFile.xUnlock(self, level)

    xWrite = LiteFile.xWrite
    xTruncate = LiteFile.xTruncate
    xSync = LiteFile.xSync
    xCheckReservedLock = LiteFile.xCheckReservedLock
    xFileControl = LiteFile.xFileControl


def become_member(file: LiteFile) -> None:
    """A ``LiteFile`` opened while the member was joining (``LiteFile._join_member``)
    becomes the member's, between two transactions: both are plain Python classes of
    the same layout, so the object keeps its reader, snapshot and planner (and its
    place in apsw) and only gains the member's state."""
    file.__class__ = MemberLiteFile
    file._joining = None
    file._write_state()
