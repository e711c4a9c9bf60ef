"""A new machine for a benchmark's child process: a fresh, private per-user state home.

litevfs keeps per-machine state under ``$XDG_STATE_HOME/litevfs`` (write buffers, the
read-only members' coordination files, the page indexes of big objects for the
machine's next opens). A cold-start figure is about a new machine: each measured child
gets its own empty home, removed when it exits.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def new_machine(env: dict[str, str]) -> Iterator[dict[str, str]]:
    """``env`` with ``XDG_STATE_HOME`` pointing at a fresh 0700 directory (removed after)."""
    with tempfile.TemporaryDirectory(prefix="litevfs-machine-") as home:
        os.chmod(home, 0o700)
        yield {**env, "XDG_STATE_HOME": home}


def private_state_home(parent: str | os.PathLike[str]) -> str:
    """Point this process (and the children that copy its environment) at a state home
    of its own under ``parent``: a benchmark or the demo leaves nothing in the user's
    ``~/.local/state``."""
    home = os.path.join(os.fspath(parent), "state")
    os.makedirs(home, mode=0o700, exist_ok=True)
    os.environ["XDG_STATE_HOME"] = home
    return home
