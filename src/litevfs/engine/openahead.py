"""Index reads started by the LIST thread itself, the moment a cold open's LIST answers.

``litevfs.connect`` sends the LIST before it imports apsw, the core and the VFS
machinery; those imports take about as long as the LIST's round trip. Without this
module the index reads of the restore plan would wait for them. Here the listing
thread computes the plan and sends every plan file's tail read (the page index) and
head read (header, page 1 and its neighbours) at once, so they are on the wire while
the main thread is still importing. The replica's index fetch then adopts the reads
whose object is still the one it wants (same level, TXIDs and size) and makes its own
for the rest: an adopted read is exactly the read it would have sent.

Kept light on purpose: it runs before the rest of litevfs is imported.
"""

from __future__ import annotations

import threading

from .._pending import Pending, run_on_thread
from ..ltx.format import FileInfo
from ..storage.readsize import head_size_for, tail_size_for
from .indexhint import hint_key, parse_hints
from .plan import calc_restore_plan

TYPE_CHECKING = False  # not typing's: importing typing costs ~5 ms on the open's path
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from ..storage.base import StorageClient
    from .machineindex import MachineIndexes

MAX_FILES = 8  # plans longer than this (many L0 files) read the rest the usual way
SHARED_BOOT_SET = "litevfs/bootset"  # engine/bootset.py: what earlier readers needed

ObjectKey = tuple[int, int, int, int]
THREAD = "litevfs-openahead"


def object_key(info: FileInfo) -> ObjectKey:
    return (info.level, info.min_txid, info.max_txid, info.size)


class OpenAhead:
    """The plan's index reads, in flight; filled by the listing thread."""

    def __init__(self, indexes: MachineIndexes | None = None) -> None:
        self.indexes = indexes  # page indexes the machine already has (machineindex.py)
        self._reads: dict[ObjectKey, tuple[Pending | None, Pending | None]] = {}
        self._objects: dict[str, Pending] = {}
        self._lock = threading.Lock()
        self.started = 0

    def start(self, storage: StorageClient, levels: Mapping[int, Sequence[FileInfo]]) -> None:
        """Called with the LIST's answer: send the latest plan's index reads. Any trouble
        (an empty or gapped replica) just means no reads ahead: the open reports it."""
        try:
            indexes = self.indexes
            # Index lengths earlier processes recorded came with this very listing.
            hints = parse_hints(storage.side_names)
            for info in calc_restore_plan(levels)[:MAX_FILES]:
                tail = tail_size_for(info, hints.get(hint_key(info)))
                head = head_size_for(info, tail)
                stored = indexes is not None and indexes.has(info)  # no index read then
                reads = (None if stored else
                         run_on_thread(storage.read_tail, info, tail, name=THREAD),
                         run_on_thread(storage.read_range, info, 0, head, name=THREAD)
                         if head else None)
                with self._lock:
                    self._reads[object_key(info)] = reads
                self.started += 1
        except Exception:  # noqa: BLE001 - the open plans again and raises what it finds
            return

    def fetch_object(self, storage: StorageClient, name: str) -> None:
        """GET the small object ``name`` under the replica prefix now, next to the LIST
        (the shared boot set: its frames can then go out with the index reads, one
        round trip earlier than if the open asked for it after its imports)."""
        self._objects[name] = run_on_thread(storage.get_object, name, name=THREAD)

    def take_object(self, name: str) -> Pending | None:
        """The in-flight GET of ``name`` (its result or NotFoundError), once."""
        return self._objects.pop(name, None)

    def take(self, info: FileInfo) -> tuple[Pending | None, Pending | None] | None:
        """The in-flight (tail, head) reads of exactly this object, once (tail None: its
        index was on the machine, only the head was read)."""
        with self._lock:
            return self._reads.pop(object_key(info), None)
