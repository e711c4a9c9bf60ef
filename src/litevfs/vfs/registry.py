"""The apsw VFS: routes main databases to LiteFile and everything else (journals,
temp files, transient databases) to the default VFS.

Configuration of a main-database open comes from ``litevfs.connect`` (a prepared
replica handed over by token) or from the URI parameters and environment.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
import weakref
from types import ModuleType
from typing import Any

import apsw

from .. import _impl
from ..config import Config
from ..session import Replica, open_replica, release_replica
from .file import LiteFile, take_gate_wait

OPEN_TOKEN = "litevfs_open"  # URI parameter naming a replica prepared by connect()


class LiteVFS(apsw.VFS):
    def __init__(self, name: str = "litevfs", impl: ModuleType = _impl) -> None:
        self.vfs_name = name
        self.impl = impl
        self._prepared: dict[str, Replica] = {}
        self._tokens = itertools.count(1)
        self._lock = threading.Lock()
        self._main_names: dict[str, int] = {}  # full names of open main files
        self._files: weakref.WeakValueDictionary[str, LiteFile] = weakref.WeakValueDictionary()
        super().__init__(name, base="")

    # -- connect() hand-over ---------------------------------------------------------
    def prepare(self, replica: Replica) -> str:
        with self._lock:
            token = f"{os.getpid()}-{next(self._tokens)}"
            self._prepared[token] = replica
        return token

    def unprepare(self, token: str) -> Replica | None:
        with self._lock:
            return self._prepared.pop(token, None)

    # -- VFS methods -----------------------------------------------------------------
    def xOpen(self, name: Any, flags: list[int]) -> Any:
        inflags = flags[0]
        if not inflags & apsw.SQLITE_OPEN_MAIN_DB or name is None:
            return apsw.VFSFile("", name, flags)
        params: dict[str, str] = {}
        if isinstance(name, apsw.URIFilename):
            params = {k: name.uri_parameter(k) for k in name.parameters}
            filename = name.filename()
        else:
            filename = str(name)
        token = params.pop(OPEN_TOKEN, None)
        replica = self.unprepare(token) if token else None
        if replica is None:
            if token:
                raise apsw.CantOpenError(f"litevfs: stale open token {token!r}")
            config = Config.resolve(None, params, os.environ)
            if config.log_level is not None:
                logging.getLogger("litevfs").setLevel(config.log_level)
            replica = open_replica(config, self.impl)
            if config.write and (replica.writer is None or replica.writer.read_only):  # opened read-only first
                replica.attach_writer()
        flags[1] = inflags
        with self._lock:
            self._main_names[filename] = self._main_names.get(filename, 0) + 1
        if replica.writer is not None and replica.writer.read_only:
            from .member import MemberLiteFile  # only with the machine's shared state

            file = MemberLiteFile(replica, filename, on_close=self._closed)
        elif replica.writer is not None:
            from .writable import WritableLiteFile  # write-mode code only for writers

            file = WritableLiteFile(replica, filename, on_close=self._closed)
        else:
            file = LiteFile(replica, filename, on_close=self._closed)
            if replica.joining is not None:  # the member comes: this file becomes its
                file._joining, file._become_member = replica.joining, _become_member
        self._files[filename] = file
        return file

    def _closed(self, file: LiteFile) -> None:
        with self._lock:
            count = self._main_names.get(file.filename, 0) - 1
            if count > 0:
                self._main_names[file.filename] = count
            else:
                self._main_names.pop(file.filename, None)
        release_replica(file.replica)

    def xSleep(self, microseconds: int) -> int:
        # SQLite's busy handler sleeps here: release the GIL so the connection holding the
        # lock (another thread of this process, in write mode) can finish meanwhile.
        request = take_gate_wait()
        if request is not None:
            gate, file, yield_first = request
            if not file._closed and not file.w_held and gate.wait(
                    microseconds / 1e6, yield_first=yield_first,
                    meanwhile=file.writer.catch_up_while_waiting):
                file.w_held = True  # the retry's RESERVED uses it (released at unlock)
            return microseconds
        time.sleep(microseconds / 1e6)
        return microseconds

    def xAccess(self, pathname: str, flags: int) -> bool:
        if pathname.endswith("-wal"):
            return False  # never WAL: page 1 is served as a rollback-journal database
        if pathname.endswith("-journal") and pathname[:-8] in self._main_names:
            return False  # read-only: no journal of ours ever exists
        return super().xAccess(pathname, flags)


def _become_member(file: LiteFile) -> None:
    from .member import become_member  # the write layer is loaded once the member is

    become_member(file)


_vfs_by_name: dict[str, LiteVFS] = {}


def file_of(con: apsw.Connection) -> LiteFile:
    """The LiteFile serving ``con``'s main database (diagnostics and tests)."""
    for vfs in _vfs_by_name.values():
        file = vfs._files.get(con.filename)
        if file is not None and not file._closed:
            return file
    raise LookupError(f"{con.filename!r} is not a litevfs database")
_register_lock = threading.Lock()


def register(name: str = "litevfs", impl: ModuleType | None = None) -> LiteVFS:
    """Register (once per name) and return the VFS called ``name``."""
    with _register_lock:
        vfs = _vfs_by_name.get(name)
        if vfs is None:
            vfs = LiteVFS(name, impl or _impl)
            _vfs_by_name[name] = vfs
        elif impl is not None and vfs.impl is not impl:
            raise ValueError(f"VFS {name!r} is registered with another core implementation")
        return vfs
