"""Where a user's litevfs state lives on this machine: pure path functions (nothing is
created here; ``write/home.py`` creates and checks the directories). Light on purpose:
the cold open's LIST thread asks where the machine's shared page indexes are."""

from __future__ import annotations

import hashlib
import os
import sys

TYPE_CHECKING = False  # not typing's: importing typing costs ~5 ms on the open's path
if TYPE_CHECKING:
    from collections.abc import Mapping


def state_home(environ: Mapping[str, str] | None = None) -> str:
    """The platform's per-user state directory (XDG base directory spec on Linux)."""
    env = os.environ if environ is None else environ
    if sys.platform == "darwin":
        return os.path.expanduser("~/Library/Application Support")
    xdg = env.get("XDG_STATE_HOME", "")
    if xdg and os.path.isabs(xdg):  # the spec: relative values are invalid, ignore them
        return xdg
    return os.path.join(os.path.expanduser("~"), ".local", "state")


def buffer_dir(environ: Mapping[str, str] | None = None) -> str:
    return os.path.join(state_home(environ), "litevfs", "write-buffers")


def buffer_name(replica_url: str) -> str:
    return hashlib.sha256(replica_url.encode()).hexdigest()[:24] + ".wbuf"


def default_buffer_path(replica_url: str, environ: Mapping[str, str] | None = None) -> str:
    """The default buffer of ``replica_url`` (a pure function: nothing is created)."""
    return os.path.join(buffer_dir(environ), buffer_name(replica_url))


def buffer_path_for(replica_url: str, configured: str | None = None) -> str:
    """Where the buffer of ``replica_url`` is (a pure function: nothing is created)."""
    if configured:
        return os.path.abspath(os.path.expanduser(configured))
    return default_buffer_path(replica_url)


