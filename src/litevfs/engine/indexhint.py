"""Exact sizes for the open's index reads, learned by earlier processes.

A cold open reads each plan file's page index with one tail read sized before the
index's length is known (``storage/readsize.py``): for a 916 MB snapshot that guess is
4 MiB where the index is 2.5 MB, and that waste was a quarter of the bytes a process
spends on 1,000 point queries. Once any process has read an object's index it knows
the length, and the object is immutable, so it records it for everyone:

* in the replica, as an empty object whose *name* carries the length,
  ``<path>/litevfs/hint/<level>-<min>-<max>-<size>-<upload time>-<index length>``.
  Side objects sort after the level directories, so the open's one LIST over
  ``<path>/`` returns the hints with the LTX files: no request and no wait is added
  to the open (a hint inside a record object would cost a GET racing the LIST);
* in the ``cache_dir`` (this machine), as a meta entry under the same key.

A hint names the object by level, TXIDs, size and upload time: an object re-created
under the same name is another object and gets no hint. A hint that is wrong anyway
only costs a second read (the tail read ends with the index's real length). Hints are
written only for objects whose guessed read exceeds the exact one by ``MIN_SAVING``
(big snapshots), by readers allowed to record (``verify_record=shared``), in the
background; the process that writes one also deletes the hints of objects the same
listing no longer holds (compacted or retired), so hints do not accumulate.

Light on purpose: the cold open's LIST thread uses it before the rest of litevfs loads.
"""

from __future__ import annotations

from ..ltx.format import FileInfo
from ..storage.readsize import INDEX_FOOTER, tail_size_for

TYPE_CHECKING = False  # not typing's: importing typing costs ~5 ms on the open's path
if TYPE_CHECKING:
    from collections.abc import Iterable

HINT_DIR = "litevfs/hint/"
MIN_SAVING = 64 * 1024  # bytes an exact read must save for a hint to be worth writing
MAX_HINTS = 64  # at most this many hints are parsed from one listing (bounded work)

HintKey = tuple[int, int, int, int, int]  # level, min TXID, max TXID, size, upload second


def hint_key(info: FileInfo) -> HintKey:
    return (info.level, info.min_txid, info.max_txid, info.size, int(info.created_at))


def hint_name(info: FileInfo, index_len: int) -> str:
    """The side-object name recording that ``info``'s page index is ``index_len`` bytes."""
    return (f"{HINT_DIR}{info.level}-{info.min_txid:016x}-{info.max_txid:016x}-"
            f"{info.size}-{int(info.created_at)}-{index_len}")


def parse_hint(name: str) -> tuple[HintKey, int] | None:
    """(object key, index length) of a hint name; None for anything else."""
    if not name.startswith(HINT_DIR):
        return None
    parts = name[len(HINT_DIR):].split("-")
    if len(parts) != 6:
        return None
    try:
        level, size, created, length = int(parts[0]), int(parts[3]), int(parts[4]), int(parts[5])
        lo, hi = int(parts[1], 16), int(parts[2], 16)
    except ValueError:
        return None
    if not (0 <= level <= 9 and 0 < length < size and 0 < lo <= hi and created >= 0):
        return None
    return (level, lo, hi, size, created), length


def parse_hints(names: Iterable[str] | None) -> dict[HintKey, int]:
    """Hints among the side-object names a listing returned (``storage.side_names``)."""
    hints: dict[HintKey, int] = {}
    if not names:
        return hints
    for name in names:
        got = parse_hint(name)
        if got is not None:
            hints[got[0]] = got[1]
            if len(hints) >= MAX_HINTS:
                break
    return hints


def worth_hinting(info: FileInfo, index_len: int) -> bool:
    """Would an exact index read of ``info`` save enough over the guessed one?"""
    return tail_size_for(info) - (index_len + INDEX_FOOTER) >= MIN_SAVING


def disk_meta_name(info: FileInfo) -> str:
    """The ``cache_dir`` meta entry holding ``info``'s index length."""
    return "indexlen|" + hint_name(info, 0)[len(HINT_DIR):].rpartition("-")[0]


class HintBook:
    """What the processes of one replica learned about index lengths: hints read from
    the latest listing and from the ``cache_dir``, and those this process found missing
    or wrong (written later, in the background, by ``publish``)."""

    def __init__(self, disk: object | None = None) -> None:
        self.disk = disk  # ReplicaDiskCache (get_meta/put_meta) or None
        self.listed: dict[HintKey, int] = {}
        self._listed_names: dict[HintKey, str] = {}
        self._new: dict[str, FileInfo] = {}  # hint name -> object, to be written
        self._stale: set[str] = set()  # listed hints whose object is gone
        self.used = self.learned = self.written = self.deleted = 0

    def from_listing(self, names: Iterable[str] | None, live: Iterable[FileInfo]) -> None:
        """Take the hints of a listing (None: the listing did not reach the side objects)
        and note the hints of objects that listing no longer holds."""
        if names is None:
            return
        names = [n for n in names if n.startswith(HINT_DIR)]
        self.listed = parse_hints(names)
        self._listed_names = {p[0]: n for n in names if (p := parse_hint(n)) is not None}
        keys = {hint_key(i) for i in live}
        self._stale = {n for n in names if (p := parse_hint(n)) is None or p[0] not in keys}

    def index_len(self, info: FileInfo) -> int | None:
        """The recorded index length of ``info`` (listing first, then the cache_dir)."""
        got = self.listed.get(hint_key(info))
        if got is None and self.disk is not None:
            raw = self.disk.get_meta(disk_meta_name(info))  # type: ignore[attr-defined]
            try:
                got = int(raw) if raw else None
            except ValueError:
                got = None
        if got is not None:
            self.used += 1
        return got

    def count_listed(self, info: FileInfo) -> None:
        if hint_key(info) in self.listed:
            self.used += 1

    def learn(self, info: FileInfo, index_len: int) -> None:
        """An index of ``info`` was read: ``index_len`` is its exact length."""
        if not index_len or not worth_hinting(info, index_len):
            return
        key = hint_key(info)
        if self.listed.get(key) == index_len:
            return
        self.learned += 1
        wrong = self._listed_names.get(key)
        if wrong is not None:  # a hint for this very object with another length
            self._stale.add(wrong)
        if self.disk is not None:
            self.disk.put_meta(disk_meta_name(info), str(index_len).encode())  # type: ignore[attr-defined]
        self._new[hint_name(info, index_len)] = info

    @property
    def pending(self) -> bool:
        return bool(self._new)

    def publish(self, storage: object) -> None:
        """Write the hints learned (an empty object each) and delete stale ones. Best
        effort: a reader that may not delete (or write) stops writing hints, so
        hints never pile up."""
        new, self._new = self._new, {}
        stale, self._stale = sorted(self._stale), set()
        try:
            for name in stale:
                storage.delete_object(name)  # type: ignore[attr-defined]
                self.deleted += 1
            for name in new:
                storage.put_object(name, b"")  # type: ignore[attr-defined]
                self.written += 1
        except Exception:  # noqa: BLE001 - an optimisation: the next process tries again
            return

    def stats(self) -> dict[str, int]:
        return {"used": self.used, "learned": self.learned, "written": self.written,
                "deleted": self.deleted}
