"""Durable writes on every POSIX system litevfs supports (stdlib only).

``os.fdatasync`` does not exist on macOS, and ``os.fsync`` there only hands the data to
the drive, whose cache may still lose it on power loss; ``fcntl(F_FULLFSYNC)`` is what
flushes that cache (SQLite's ``PRAGMA fullfsync`` does the same).
"""

from __future__ import annotations

import os

try:
    import fcntl

    _FULLFSYNC: int | None = getattr(fcntl, "F_FULLFSYNC", None)
except ImportError:  # pragma: no cover - litevfs is POSIX-only
    _FULLFSYNC = None

_FDATASYNC = getattr(os, "fdatasync", None)


def datasync(fd: int) -> None:
    """Make the data written to ``fd`` (and the file size) survive power loss."""
    if _FULLFSYNC is not None:
        try:
            fcntl.fcntl(fd, _FULLFSYNC)
            return
        except OSError:
            pass  # not supported by this filesystem (some network mounts): fsync below
        os.fsync(fd)
    elif _FDATASYNC is not None:
        _FDATASYNC(fd)
    else:
        os.fsync(fd)
