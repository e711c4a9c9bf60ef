"""Local-directory storage in Litestream's ``file://`` layout.

LTX files live at ``<root>/ltx/<level decimal>/<min %016x>-<max %016x>.ltx`` (note: not
the S3 layout), side objects at ``<root>/<name>``. Writes never expose a partial file:
temp file in the same directory, fsync, then rename (or hard link for a conditional
create, which is atomic and fails if the name exists), then fsync the directory. The
file's mtime is the LTX timestamp, as Litestream sets it, so ``created_at`` round-trips.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
from collections.abc import Iterable, Iterator
from urllib.parse import quote

from .._files import fsync_dir, makedirs
from ..errors import AccessDeniedError, AlreadyExistsError, NotFoundError, StorageError
from ..errors import PreconditionFailedError, TransientStorageError
from ..ltx.format import MAX_LEVEL, FileInfo, format_filename, parse_filename
from .base import (
    StorageClient, check_ltx_args, check_object_name, check_range, content_etag,
    ltx_timestamp_ms, short_read_message,
)

# errno values meaning "this filesystem cannot hard-link": fall back to O_EXCL.
_NO_LINK = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.EXDEV, errno.ENOSYS}


def _storage_error(exc: OSError, what: str) -> StorageError:
    if isinstance(exc, FileNotFoundError | NotADirectoryError | IsADirectoryError):
        return NotFoundError(f"{what} does not exist")
    if isinstance(exc, PermissionError):
        return AccessDeniedError(f"permission denied for {what}: {exc.strerror}")
    return StorageError(f"{what}: {exc.strerror or exc}")


def _makedirs(path: str) -> None:
    makedirs(path, 0o755, durable=True)


class FileStorage(StorageClient):
    def __init__(self, root: str) -> None:
        super().__init__()
        if not os.path.isabs(root):
            root = os.path.abspath(root)
        self.root = os.path.normpath(root)
        self.url = "file://" + quote(self.root)

    def empty_reason(self) -> str | None:
        if not os.path.exists(self.root):
            return f"directory {self.root} does not exist"
        if not os.path.isdir(self.root):
            return f"{self.root} is not a directory"
        if not os.path.isdir(os.path.join(self.root, "ltx")):
            return f"no ltx/ directory in {self.root}"
        return None

    # Paths -----------------------------------------------------------------------

    def level_dir(self, level: int) -> str:
        return os.path.join(self.root, "ltx", str(level))

    def ltx_path(self, level: int, min_txid: int, max_txid: int) -> str:
        return os.path.join(self.level_dir(level), format_filename(min_txid, max_txid))

    def object_path(self, name: str) -> str:
        check_object_name(name)
        return os.path.join(self.root, *name.split("/"))

    # Interface -------------------------------------------------------------------

    def list_level(self, level: int) -> list[FileInfo]:
        check_ltx_args(level, 1, 1)
        self.stats.add(lists=1)
        return self._list_dir(level)

    def _list_dir(self, level: int) -> list[FileInfo]:
        directory = self.level_dir(level)
        infos: list[FileInfo] = []
        try:
            with os.scandir(directory) as it:
                for entry in it:
                    txids = parse_filename(entry.name)
                    if txids is None:
                        continue
                    try:
                        st = entry.stat()
                    except FileNotFoundError:
                        continue  # deleted between readdir and stat
                    if not entry.is_file():
                        continue
                    infos.append(FileInfo(level, txids[0], txids[1], st.st_size, st.st_mtime))
        except (FileNotFoundError, NotADirectoryError):
            return []  # an empty or not yet written replica, as Litestream treats it
        except OSError as exc:
            raise _storage_error(exc, directory) from exc
        infos.sort(key=lambda i: (i.min_txid, i.max_txid))
        return infos

    def list_all(self) -> dict[int, list[FileInfo]]:
        """Every level; only level directories that exist are read, and the whole
        listing counts as one request (it is one directory walk)."""
        try:
            names = os.listdir(os.path.join(self.root, "ltx"))
        except (FileNotFoundError, NotADirectoryError):
            names = []
        except OSError as exc:
            raise _storage_error(exc, os.path.join(self.root, "ltx")) from exc
        present = {int(n) for n in names if n.isdigit() and 0 <= int(n) <= MAX_LEVEL}
        levels = {lvl: self._list_dir(lvl) if lvl in present else []
                  for lvl in range(MAX_LEVEL + 1)}
        self.stats.add(lists=1)
        return levels

    def _read(self, path: str, what: str, offset: int, length: int | None,
              tail: bool = False) -> bytes:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            raise _storage_error(exc, what) from exc
        try:
            size = os.fstat(fd).st_size
            if tail:
                offset, length = max(0, size - (length or 0)), min(size, length or 0)
            elif length is None:
                length = size - offset
                if offset >= size:
                    raise TransientStorageError(short_read_message(what, offset, None, size))
            chunks = []
            got = 0
            while got < length:
                chunk = os.pread(fd, length - got, offset + got)
                if not chunk:
                    break
                chunks.append(chunk)
                got += len(chunk)
        except OSError as exc:
            raise _storage_error(exc, what) from exc
        finally:
            os.close(fd)
        if got < length:
            raise TransientStorageError(short_read_message(what, offset, length, size))
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self.stats.add(bytes_read=len(data))
        return data

    def read_range(self, info: FileInfo, offset: int = 0, length: int | None = None) -> bytes:
        check_range(offset, length)
        self.stats.add(gets=1)
        path = self.ltx_path(info.level, info.min_txid, info.max_txid)
        if length == 0:
            if not os.path.isfile(path):
                raise NotFoundError(f"{path} does not exist")
            return b""
        return self._read(path, path, offset, length)

    def read_tail(self, info: FileInfo, length: int) -> bytes:
        check_range(0, length)
        self.stats.add(gets=1)
        path = self.ltx_path(info.level, info.min_txid, info.max_txid)
        return self._read(path, path, 0, length, tail=True)

    def write_ltx(
        self, level: int, min_txid: int, max_txid: int, data: bytes, *,
        if_absent: bool = False, timestamp_ms: int | None = None,
    ) -> FileInfo:
        check_ltx_args(level, min_txid, max_txid)
        ts = ltx_timestamp_ms(data) if timestamp_ms is None else timestamp_ms
        path = self.ltx_path(level, min_txid, max_txid)
        self.stats.add(puts=1)
        self._write_atomic(path, data, if_absent=if_absent, mtime=ts / 1000.0)
        self.stats.add(bytes_written=len(data))
        return FileInfo(level, min_txid, max_txid, len(data), ts / 1000.0)

    def delete_ltx(self, infos: Iterable[FileInfo]) -> None:
        paths = [self.ltx_path(i.level, i.min_txid, i.max_txid) for i in infos]
        if not paths:
            return
        self.stats.add(deletes=1)
        for path in paths:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise _storage_error(exc, path) from exc

    def get_object(self, name: str) -> bytes:
        return self.get_object_tagged(name)[0]

    def get_object_tagged(self, name: str) -> tuple[bytes, str]:
        path = self.object_path(name)
        self.stats.add(gets=1)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise _storage_error(exc, path) from exc
        self.stats.add(bytes_read=len(data))
        return data, content_etag(data)

    def put_object(self, name: str, data: bytes, *, if_absent: bool = False,
                   if_match: str | None = None) -> str:
        path = self.object_path(name)
        self.stats.add(puts=1)
        if if_match is None:
            self._write_atomic(path, data, if_absent=if_absent, mtime=None)
        else:
            with self._object_lock(path):  # compare and swap among local processes
                try:
                    with open(path, "rb") as f:
                        current = content_etag(f.read())
                except FileNotFoundError:
                    current = None
                except OSError as exc:
                    raise _storage_error(exc, path) from exc
                if current != if_match:
                    raise PreconditionFailedError(f"{path} changed (If-Match)")
                self._write_atomic(path, data, if_absent=False, mtime=None)
        self.stats.add(bytes_written=len(data))
        return content_etag(bytes(data))

    @contextlib.contextmanager
    def _object_lock(self, path: str) -> Iterator[None]:
        """An exclusive lock (flock on a dot-file beside ``path``) held while comparing
        and replacing: two processes never both swap from the same tag."""
        directory = os.path.dirname(path)
        lock_path = os.path.join(directory, f".{os.path.basename(path)}.lock")
        try:
            _makedirs(directory)
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise _storage_error(exc, lock_path) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def delete_object(self, name: str) -> None:
        path = self.object_path(name)
        self.stats.add(deletes=1)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise _storage_error(exc, path) from exc

    # Writing ---------------------------------------------------------------------

    def _write_atomic(self, path: str, data: bytes, *, if_absent: bool,
                      mtime: float | None) -> None:
        directory = os.path.dirname(path)
        # A unique temp name per writer (Litestream uses "<name>.tmp", which two
        # concurrent writers would share). Dot-prefixed, so listings skip it.
        tmp = os.path.join(directory,
                           f".{os.path.basename(path)}.{secrets.token_hex(6)}.tmp")
        try:
            _makedirs(directory)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                view = memoryview(data)
                while view:
                    n = os.write(fd, view)
                    view = view[n:]
                os.fsync(fd)
            finally:
                os.close(fd)
            if mtime is not None:
                # Before the file becomes visible, so readers never see a wrong mtime.
                os.utime(tmp, (mtime, mtime))
            if if_absent:
                self._link_exclusive(tmp, path)
            else:
                os.replace(tmp, path)
            fsync_dir(directory)
        except AlreadyExistsError:
            raise
        except OSError as exc:
            raise _storage_error(exc, path) from exc
        finally:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            except OSError:
                pass

    @staticmethod
    def _link_exclusive(tmp: str, path: str) -> None:
        """Publish ``tmp`` as ``path`` only if ``path`` does not exist, atomically."""
        try:
            os.link(tmp, path)
            return
        except FileExistsError:
            raise AlreadyExistsError(f"{path} already exists") from None
        except OSError as exc:
            if exc.errno not in _NO_LINK:
                raise
        # No hard links here: claim the name with O_EXCL, then rename the full file
        # over the (empty) claim. Readers may briefly see an empty file, never a torn one.
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        except FileExistsError:
            raise AlreadyExistsError(f"{path} already exists") from None
        os.replace(tmp, path)
