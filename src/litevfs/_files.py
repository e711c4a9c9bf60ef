"""Small file-system helpers shared by the layers that keep files (the file backend, the
write buffer's home, the hydration sidecar). Stdlib only."""

from __future__ import annotations

import os


def fsync_dir(path: str) -> None:
    """fsync a directory, so a rename or a new entry in it survives a crash (best effort:
    some platforms cannot open directories; the rename itself is still atomic)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def makedirs(path: str, mode: int = 0o755, *, durable: bool = False) -> None:
    """``mkdir -p`` giving every directory it creates ``mode`` (``os.makedirs`` gives the
    intermediate ones the umask's); ``durable`` fsyncs the parent of each, so a new
    directory survives a crash together with the file later renamed into it."""
    if os.path.isdir(path):
        return
    parent = os.path.dirname(path)
    if parent and parent != path:
        makedirs(parent, mode, durable=durable)
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        if not os.path.isdir(path):
            raise
        return
    if durable:
        fsync_dir(parent or ".")
