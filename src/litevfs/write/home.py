"""Where write buffers live, and the checks that make that place safe.

A buffer holds committed transactions that are not in object storage yet, so it must
survive a reboot and nobody else may write it (a planted buffer would be uploaded as
our transactions). The default is the per-user state directory:

* ``$XDG_STATE_HOME/litevfs/write-buffers`` (``~/.local/state/litevfs/write-buffers``
  when unset; ``~/Library/Application Support/litevfs/write-buffers`` on macOS),
* one file per replica, ``<sha256(replica URL)[:24]>.wbuf``, so a restarted process
  finds what a crashed one left.

Directories are created 0700 and files 0600. A directory owned by another user, or
one others can write to, is refused with one line naming the path and the
``buffer_path`` option. Buffers left at the old default (``$TMPDIR/litevfs-<uid>/``)
are moved here once, so an upgrade never strands unsynced transactions.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import stat

from .._files import makedirs
from .._homes import (  # noqa: F401 - the paths are public here too
    buffer_dir, buffer_name, buffer_path_for, default_buffer_path, state_home)
from ..errors import BufferInUseError, WriteBufferError

log = logging.getLogger("litevfs.writer")

OPTION = "buffer_path (LITEVFS_BUFFER_PATH)"


def legacy_buffer_path(replica_url: str) -> str:
    """Where litevfs before this version kept the buffer (under the temp directory)."""
    import tempfile  # not at import: read-only opens load this module on their path

    return os.path.join(tempfile.gettempdir(), f"litevfs-{os.getuid()}", "write-buffers",
                        buffer_name(replica_url))


def _refuse(path: str, why: str) -> WriteBufferError:
    return WriteBufferError(f"write buffer directory {path} {why}; refusing to keep unsynced "
                            f"transactions there (set {OPTION} to a file in a directory "
                            "you own)")


def check_directory(path: str, *, strict: bool) -> None:
    """Refuse a directory others could tamper with. ``strict`` (the default location):
    owned by this user and writable by nobody else. Otherwise (a ``buffer_path`` the
    user chose): owned by this user or root, and not world-writable."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise WriteBufferError(f"cannot use write buffer directory {path} "
                               f"({OPTION}): {exc.strerror or exc}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise WriteBufferError(f"{path} is not a directory ({OPTION})")
    uid = os.getuid()
    owners = (uid,) if strict else (uid, 0)
    if st.st_uid not in owners:
        raise _refuse(path, f"is owned by uid {st.st_uid}, not by this user (uid {uid})")
    writable_by_others = stat.S_IWGRP | stat.S_IWOTH if strict else stat.S_IWOTH
    if st.st_mode & writable_by_others:
        raise _refuse(path, f"is writable by other users (mode {stat.S_IMODE(st.st_mode):04o})")


def ensure_directory(path: str, *, strict: bool) -> None:
    """Create ``path`` (missing components 0700) and check it (``check_directory``)."""
    try:
        _makedirs_private(path)
    except OSError as exc:
        raise WriteBufferError(f"cannot create write buffer directory {path} "
                               f"({OPTION}): {exc.strerror or exc}") from None
    check_directory(path, strict=strict)


def _makedirs_private(path: str) -> None:
    makedirs(path, 0o700)


def resolve_buffer_path(replica_url: str, configured: str | None = None) -> str:
    """The buffer file to open for ``replica_url``: ``configured`` (the ``buffer_path``
    option) or the default, its directory created and checked; a buffer left at the
    old default location is moved to the new one first."""
    path = buffer_path_for(replica_url, configured)
    if configured:
        ensure_directory(os.path.dirname(path), strict=False)
        return path
    directory = os.path.dirname(path)
    ensure_directory(directory, strict=True)
    check_directory(os.path.dirname(directory), strict=True)  # .../litevfs itself
    adopt_legacy_buffer(replica_url, path)
    return path


def adopt_legacy_buffer(replica_url: str, path: str) -> bool:
    """Move this replica's buffer from the old default location (under the temp
    directory) to ``path``. Returns True when one was moved. A buffer there that could
    have been planted (a directory or file not ours) is left alone, with a warning that
    names it; one in use by an older process is an error (two writers)."""
    old = legacy_buffer_path(replica_url)
    if not os.path.lexists(old):
        return False
    export_hint = (f"inspect or recover it with: litevfs unsynced export {old} -o recovered.db")
    if os.path.lexists(path):
        log.warning("%s: an older write buffer is left at %s and is not used (the buffer "
                    "is now %s); %s", replica_url, old, path, export_hint)
        return False
    try:
        for d in (os.path.dirname(os.path.dirname(old)), os.path.dirname(old)):
            check_directory(d, strict=True)
        st = os.lstat(old)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid():
            raise _refuse(old, "is not a regular file of this user")
    except WriteBufferError as exc:
        log.warning("%s: not adopting the write buffer at the old location %s: %s; %s",
                    replica_url, old, exc, export_hint)
        return False
    lock_fd = os.open(old + ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise BufferInUseError(
                    f"write buffer {old} (the old default location) is in use by another "
                    "process, probably an older litevfs: stop it first (one writer per "
                    "replica)") from None
            raise
        _move_file(old, path)
        for suffix in (".lock", ".shm", ".bell", ".want", ".board"):  # coordination (shared.py)
            try:
                os.unlink(old + suffix)
            except FileNotFoundError:
                pass
    finally:
        os.close(lock_fd)
    log.warning("%s: moved the write buffer from the old default location %s to %s",
                replica_url, old, path)
    return True


def _move_file(src: str, dst: str) -> None:
    """rename, or copy + fsync + rename + unlink across file systems; never a partial
    ``dst`` (the temp directory is often a different file system than $HOME)."""
    try:
        os.rename(src, dst)
        return
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    import shutil  # a rare cross-device move only (~2 ms to import)

    tmp = dst + ".moving"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as out, open(src, "rb") as f:
        shutil.copyfileobj(f, out)
        out.flush()
        os.fsync(out.fileno())
    os.rename(tmp, dst)
    os.unlink(src)
