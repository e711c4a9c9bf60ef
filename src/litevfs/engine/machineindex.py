"""Page indexes shared by the processes of one machine (and the next ones it starts).

A process that opens a replica reads the page index of every file of its plan: for a
big snapshot that is one large ranged GET (about 10 bytes per page: ~2.5 MB for 1 GB)
and the decoding. An LTX object never changes, so once one process of the machine has
its index, no other needs to read it again: the decoded index is kept as a file next
to the machine's shared write state (the buffer home, ``_homes.py``), in
``<buffer>.indexes/``, named by the object's identity (level, TXID range, size, listing
time). The next open finds it there: the LIST's thread sends only the head read (page 1
and its neighbours) for such a file, no index read, and the view is built from the
stored index (a gunicorn worker restarted next to others, a cron job, a CLI call).

Only big objects are kept (``MIN_OBJECT``: a small file's index comes with its one
tail read anyway), at most ``KEEP`` per replica, newest used first. Each file carries
an xxh3-64 of its contents and the LTX header; a torn, corrupt or foreign file is
ignored (and replaced by the next process that reads the index from the bucket), never
used. Nothing here is needed for correctness: any trouble means the bucket is read.

The existence check (``has``) runs on the LIST's thread before the rest of litevfs is
imported: this module imports nothing heavy; reading and writing load what they need.
"""

from __future__ import annotations

import os

from .._homes import buffer_path_for

TYPE_CHECKING = False  # not typing's: importing typing costs ~5 ms on the open's path
if TYPE_CHECKING:
    from ..config import Config
    from ..ltx.format import FileInfo
    from ..storage.fetch import FileIndex

MIN_OBJECT = 4 * 1024 * 1024  # smaller objects: the open's one tail read holds the index
KEEP = 6  # stored indexes per replica (a plan is a snapshot and a few level files)
MAGIC = b"LVMI1\n"
SUFFIX = ".idx"


class MachineIndexes:
    """The stored page indexes of one replica on this machine."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.hits = self.stored = self.rejected = 0
        self.min_object = MIN_OBJECT
        self._trusted: bool | None = None

    def _usable(self) -> bool:
        """The store's directory is this user's and nobody else can write it (the same
        rule as the write buffers' home): indexes from anywhere else are not read."""
        if self._trusted is None:
            try:
                st = os.stat(self.directory)
                self._trusted = st.st_uid == os.getuid() and not st.st_mode & 0o022
            except OSError:
                return False  # not there yet: the first put creates it
        return self._trusted

    @classmethod
    def for_config(cls, config: Config) -> MachineIndexes | None:
        """The replica's store, or None without a usable per-user home (``buffer_path``
        pointing somewhere odd is checked by the write side, not guessed at here)."""
        try:
            return cls(buffer_path_for(config.replica_url, config.buffer_path) + ".indexes")
        except (OSError, ValueError):
            return None

    def path(self, info: FileInfo) -> str:
        return os.path.join(self.directory, f"{info.level:02x}-{info.min_txid:016x}-"
                            f"{info.max_txid:016x}-{info.size}-{int(info.created_at)}{SUFFIX}")

    def has(self, info: FileInfo) -> bool:
        return info.size >= self.min_object and self._usable() and os.path.exists(self.path(info))

    def get(self, info: FileInfo) -> FileIndex | None:
        """The stored index of exactly ``info``, checked; None when absent or unusable
        (the caller counts a hit once it used it: ``hits``)."""
        if info.size < self.min_object or not self._usable():
            return None
        path = self.path(info)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            return None
        index = self._decode(info, data)
        if index is None:
            self.rejected += 1
            _remove(path)
            return None
        try:
            os.utime(path)  # eviction keeps the most recently used
        except OSError:
            pass
        return index

    def _decode(self, info: FileInfo, data: bytes) -> FileIndex | None:
        # imported here, not at the top: ``has`` runs on the LIST's thread before these load
        import xxhash

        from ..errors import LTXFormatError
        from ..storage.fetch import FileIndex, unpack_index

        head = len(MAGIC) + 8
        if len(data) < head or not data.startswith(MAGIC):
            return None
        blob = memoryview(data)[head:]
        if xxhash.xxh3_64_intdigest(blob) != int.from_bytes(data[len(MAGIC):head], "big"):
            return None
        parsed = unpack_index(blob)
        if parsed is None:
            return None
        header, pgnos, offsets, sizes = parsed
        try:
            header.validate()
        except LTXFormatError:
            return None
        if (header.min_txid, header.max_txid) != (info.min_txid, info.max_txid) or (
                len(pgnos) and (pgnos[-1] > header.commit or
                                offsets[-1] + sizes[-1] > info.size)):
            return None
        return FileIndex(info, header, pgnos, offsets, sizes)

    def forget(self, info: FileInfo) -> None:
        """Drop the stored index of ``info`` (it described another object)."""
        self.rejected += 1
        _remove(self.path(info))

    def put(self, fi: FileIndex) -> None:
        """Keep ``fi`` for the machine's next opens (best effort, atomic: written to a
        temporary name, then renamed)."""
        info = fi.info
        if info.size < self.min_object or os.path.exists(self.path(info)):
            return
        import xxhash  # as in _decode: kept off the LIST thread's imports

        from .._files import makedirs
        from ..storage.fetch import index_parts

        # hashed and written piece by piece: no copy of a 4 MB index in memory
        parts = index_parts(fi.header.pack(), fi.pgnos, fi.offsets, fi.sizes)
        digest = xxhash.xxh3_64()
        for part in parts:
            digest.update(part)
        parts[:0] = [MAGIC + digest.intdigest().to_bytes(8, "big")]
        path = self.path(info)
        tmp = f"{path}.{os.getpid()}.tmp"
        try:
            makedirs(self.directory, 0o700)
            if not self._usable():
                return
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                for part in parts:
                    view = memoryview(part).cast("B")
                    while view:
                        view = view[os.write(fd, view):]
            finally:
                os.close(fd)
            os.replace(tmp, path)
            self.stored += 1
        except OSError:
            _remove(tmp)
            return
        self._prune()

    def _prune(self) -> None:
        try:
            names = [n for n in os.listdir(self.directory) if n.endswith(SUFFIX)]
            if len(names) <= KEEP:
                return
            paths = [os.path.join(self.directory, n) for n in names]
            paths.sort(key=_mtime, reverse=True)
        except OSError:
            return
        for path in paths[KEEP:]:
            _remove(path)

    def stats(self) -> dict[str, int]:
        return {"dir": self.directory, "hits": self.hits, "stored": self.stored,
                "rejected": self.rejected}


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
