"""A read-only process's membership in the machine's shared state of a replica.

A ``write=False`` open joins the buffer's coordination files (``shared.py``) as a
member that follows the log (``buffer.py``, ``follow``): it sees the unsynced commits
of the machine's writers at its next read transaction, never appends, never takes
WRITER, SYNC or DUTY, and creates no log (only the coordination files, removed by the
last member to leave). Kept apart from ``attach.py`` so a read-only open does not load
the syncer and compactor.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..engine.state import ReplicaState
from ..engine.views import ViewBuilder
from ..errors import LiteVFSError
from .writer import Writer

if TYPE_CHECKING:
    from ..engine.hydrate.hydrator import Hydrator

log = logging.getLogger("litevfs.writer")


def attach_reader(state: ReplicaState, views: ViewBuilder,
                  hydrator: Hydrator | None = None) -> Writer | None:
    """The read-only member for the replica ``state`` describes, or None when the
    buffer's home cannot be used (then the process polls the bucket on its own)."""
    try:
        member = Writer(state, views, follow=True)
    except (LiteVFSError, OSError) as exc:
        log.debug("%s: reading without the machine's shared state: %s", state.storage.url,
                  exc)
        return None
    member.hydrator = hydrator
    return member
