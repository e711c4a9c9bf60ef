"""Write mode for a replica: the writer state, its recovery, and its two workers.

``attach_writer`` opens (or recovers, or joins) the machine's shared buffer, settles
where it stands against the replica (``syncer.recover``), then starts the syncer
thread, which competes for the duty of syncing and, once elected, starts compaction,
and the keeper that hands the machine's write lock over when another process waits.
The session calls it once per replica; the writer only knows its collaborators.
A read-only member (``member.attach_reader``) is promoted here when the process opens
the replica for writing too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..engine.state import ReplicaState
from ..engine.views import ViewBuilder
from .compactor import CompactionPolicy, Compactor
from .shared import LockKeeper
from .syncer import Syncer, recover
from .writer import Writer

if TYPE_CHECKING:
    from ..engine.hydrate.hydrator import Hydrator


def attach_writer(state: ReplicaState, views: ViewBuilder, hydrator: Hydrator | None = None,
                  buffer_path: str | None = None, member: Writer | None = None) -> Writer:
    """A started write state for the replica ``state`` describes (see the docstring).
    ``member``: this process's read-only member of the machine's state, promoted (its
    connections keep it; their own read-only flag still refuses writes)."""
    if member is not None:
        member.buffer.ensure_log()
        member.promote()
        writer = member
    else:
        writer = Writer(state, views, buffer_path=buffer_path)
    writer.hydrator = hydrator
    try:
        recover(writer)
    except BaseException:
        if member is not None:
            member.read_only = True
        else:
            writer.buffer.close()
        raise
    config = state.config
    writer.head_state.sync_ms = int(config.sync_interval * 1000)  # readers follow it
    writer.compactor = Compactor(
        state.storage,
        CompactionPolicy(config.compaction_levels, config.snapshot_interval,
                         config.l0_retention, config.snapshot_retention),
        state.impl, config.replica_url)
    # The process elected to sync (DUTY) also compacts; the others take over if it goes.
    writer.syncer = Syncer(writer, config.sync_interval, on_duty=writer.compactor.start)
    writer.keeper = LockKeeper(writer.gate, writer.name)
    writer.syncer.start()
    writer.keeper.start()
    return writer
