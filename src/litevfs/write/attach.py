"""Write mode for a replica: the writer state, its recovery, and its two workers.

``attach_writer`` opens (or recovers) the buffer, settles where it stands against the
replica (``syncer.recover``), then starts the syncer and the compactor threads. The
session calls it once per replica; the writer only knows its collaborators.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..engine.state import ReplicaState
from ..engine.views import ViewBuilder
from .compactor import CompactionPolicy, Compactor
from .syncer import Syncer, recover
from .writer import Writer

if TYPE_CHECKING:
    from ..engine.hydrate.hydrator import Hydrator


def attach_writer(state: ReplicaState, views: ViewBuilder, hydrator: Hydrator | None = None,
                  buffer_path: str | None = None) -> Writer:
    """A started write state for the replica ``state`` describes (see the docstring)."""
    writer = Writer(state, views, buffer_path=buffer_path)
    writer.hydrator = hydrator
    try:
        writer.head_state.load(state.storage)
        recover(writer)
    except BaseException:
        writer.buffer.close()
        raise
    config = state.config
    writer.syncer = Syncer(writer, config.sync_interval)
    writer.head_state.sync_ms = int(config.sync_interval * 1000)  # readers follow it
    writer.compactor = Compactor(
        state.storage,
        CompactionPolicy(config.compaction_levels, config.snapshot_interval,
                         config.l0_retention, config.snapshot_retention),
        state.impl, config.replica_url)
    writer.syncer.start()
    writer.compactor.start()
    return writer
