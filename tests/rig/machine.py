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
