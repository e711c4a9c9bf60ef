"""Which large LTX objects passed their CRC-64 check, recorded where every reader sees it.

A big snapshot is immutable: once any process checked it, no other process needs to
download it again to check it. The record is a small JSON object under the replica
prefix, ``<path>/litevfs/verified`` (Litestream ignores it)::

    {"v": 1, "verified": ["<object key>", ...],
     "progress": {"<object key>": [<offset>, "<crc 16 hex>", <page size>, <commit>], ...}}

An object key is ``level/min-max/size/upload time`` (``object_key``): an object
re-created under the same name is another object and is checked again. ``progress``
holds where an unfinished background check stopped (the offset of the next page frame
and the running CRC), so short-lived processes, each spending a little, together
finish checking an object instead of each starting over. Updates are merges by
compare-and-swap of the object's tag, best effort: a reader without write permission
(or any storage trouble) only loses the sharing, never a read.

Trust: the record lives next to the data it describes, so whoever can alter it can
alter the LTX files too; what it gives up is re-detecting damage that happens in storage
after an object was checked (the README states the trade-off).
"""

from __future__ import annotations

import json
import logging
import threading
from typing import TYPE_CHECKING, Any

from ..errors import AlreadyExistsError, NotFoundError, PreconditionFailedError, StorageError

if TYPE_CHECKING:
    from ..ltx.format import FileInfo
    from ..storage.base import StorageClient

log = logging.getLogger("litevfs.verify")

RECORD_NAME = "litevfs/verified"
MAX_VERIFIED = 1024  # newest entries kept (objects age out through compaction anyway)
MAX_PROGRESS = 64
CAS_ATTEMPTS = 3

Progress = tuple[int, int, int, int]  # (offset of the next frame, crc, page size, commit)


def object_key(info: FileInfo) -> str:
    return (f"{info.level}/{info.min_txid:016x}-{info.max_txid:016x}/{info.size}/"
            f"{int(info.created_at)}")


def _decode(data: bytes | None) -> tuple[list[str], dict[str, Progress]]:
    if not data:
        return [], {}
    try:
        doc = json.loads(data)
        if not isinstance(doc, dict) or doc.get("v") != 1:
            return [], {}
        verified = [str(k) for k in doc.get("verified", ())]
        progress = {str(k): (int(v[0]), int(v[1], 16), int(v[2]), int(v[3]))
                    for k, v in dict(doc.get("progress", {})).items()}
        return verified, progress
    except (ValueError, TypeError, IndexError, AttributeError):
        return [], {}  # unreadable: the next save replaces it


def _encode(verified: list[str], progress: dict[str, Progress]) -> bytes:
    return json.dumps({"v": 1, "verified": verified[-MAX_VERIFIED:],
                       "progress": {k: [p[0], f"{p[1]:016x}", p[2], p[3]]
                                    for k, p in list(progress.items())[-MAX_PROGRESS:]}},
                      separators=(",", ":")).encode()


class SharedRecord:
    """One replica's view of ``<path>/litevfs/verified`` (see the module docstring)."""

    def __init__(self, storage: StorageClient, *, write: bool = True) -> None:
        self.storage = storage
        self.write = write  # False: read what others recorded, never write
        self.loaded = False
        self._verified: set[str] = set()
        self._progress: dict[str, Progress] = {}
        self._new_verified: list[str] = []
        self._new_progress: dict[str, Progress] = {}
        self._lock = threading.Lock()
        self.reads = self.writes = 0

    def load(self) -> None:
        """Read the record once (a missing or unreadable one is empty)."""
        try:
            data: bytes | None = self.storage.get_object(RECORD_NAME)
            self.reads += 1
        except NotFoundError:
            data = None
        except Exception as exc:  # noqa: BLE001 - sharing is an optimisation
            log.debug("reading %s failed: %s", RECORD_NAME, exc)
            data = None
        verified, progress = _decode(data)
        with self._lock:
            self._verified.update(verified)
            for k, p in progress.items():
                if p[0] > self._progress.get(k, (0,))[0]:
                    self._progress[k] = p
            self.loaded = True

    def is_verified(self, info: FileInfo) -> bool:
        return object_key(info) in self._verified

    def progress(self, info: FileInfo) -> Progress | None:
        return self._progress.get(object_key(info))

    def add_verified(self, info: FileInfo) -> None:
        key = object_key(info)
        with self._lock:
            if key not in self._verified:
                self._verified.add(key)
                self._new_verified.append(key)
            self._new_progress.pop(key, None)

    def add_progress(self, info: FileInfo, state: Progress) -> None:
        key = object_key(info)
        with self._lock:
            if key not in self._verified and state[0] > self._progress.get(key, (0,))[0]:
                self._progress[key] = state
                self._new_progress[key] = state

    @property
    def dirty(self) -> bool:
        return bool(self._new_verified or self._new_progress)

    def save(self) -> bool:
        """Merge what this process learned into the stored record (compare-and-swap,
        a few attempts). True when stored or nothing was new."""
        if not self.write or not self.dirty:
            return True
        for _attempt in range(CAS_ATTEMPTS):
            try:
                data, tag = self.storage.get_object_tagged(RECORD_NAME)
            except NotFoundError:
                data, tag = None, None
            except Exception as exc:  # noqa: BLE001
                log.debug("reading %s failed: %s", RECORD_NAME, exc)
                return False
            verified, progress = _decode(data)
            with self._lock:
                new_v, new_p = list(self._new_verified), dict(self._new_progress)
            known = set(verified)
            verified += [k for k in new_v if k not in known]
            for k, p in new_p.items():
                if k not in known and p[0] > progress.get(k, (0,))[0]:
                    progress[k] = p
            for k in new_v:
                progress.pop(k, None)
            try:
                self.storage.put_object(RECORD_NAME, _encode(verified, progress),
                                        if_absent=tag is None, if_match=tag)
            except (PreconditionFailedError, AlreadyExistsError):
                continue  # another reader recorded something meanwhile: merge again
            except StorageError as exc:  # e.g. read-only credentials: stop trying
                log.info("cannot record verified objects in %s (%s); each process checks "
                         "large objects itself", RECORD_NAME, exc)
                self.write = False
                return False
            self.writes += 1
            with self._lock:
                self._new_verified = [k for k in self._new_verified if k not in new_v]
                for k, p in new_p.items():
                    if self._new_progress.get(k) == p:
                        del self._new_progress[k]
                self._verified.update(verified)
            return True
        return False

    def stats(self) -> dict[str, Any]:
        return {"write": self.write, "loaded": self.loaded, "reads": self.reads,
                "writes": self.writes, "objects": len(self._verified)}


def record_verified(storage: StorageClient, infos: list[FileInfo]) -> bool:
    """For a writer: record objects it uploaded itself (it made their checksums) so
    readers do not download them to check them. Best effort; True when stored."""
    record = SharedRecord(storage)
    for info in infos:
        record.add_verified(info)
    return record.save()
