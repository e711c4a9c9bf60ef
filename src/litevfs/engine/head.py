"""The head object ``<path>/litevfs/head``: the replica's commit point for litevfs writers
and a cheap freshness signal for readers (Litestream ignores it).

Content (JSON)::

    {"txid": "<16 hex>", "at": <ms>, "sync": <ms>,
     "runs": [["<writer>", "<first 16 hex>", "<last 16 hex>", "<checksum 16 hex>"], ...]}

``txid`` is the newest committed TXID; ``at`` the writer's wall clock when it recorded
it; ``sync`` (optional, absent or 0 when unknown) the writer's sync interval, so readers
poll on its schedule (``freshness.py``). Readers need only ``txid`` and ignore fields
they do not know; every field but ``txid`` is optional. ``runs`` is the recent commit history, newest
last: each run is a stretch of consecutive TXIDs committed by one writer, with the file
checksum of the run's last L0 file. A writer commits TXID t by a compare-and-swap of
this object (``If-Match`` on the tag it last saw): a writer that was paused (SIGSTOP, a
frozen VM, a stalled network) while another took over finds the tag changed, and the
runs tell it whether its file is part of the history (``committed``) — never the TXID
key alone, which retention deletes once compaction covers it.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, NamedTuple

from ..errors import NotFoundError

if TYPE_CHECKING:
    from ..storage.base import StorageClient

HEAD_NAME = "litevfs/head"
MAX_RUNS = 32  # writer changes remembered; one run per writer stretch, so this spans long


class Run(NamedTuple):
    writer: str  # a writer's random id, or "?" for a commit recorded by another writer
    first: int
    last: int
    checksum: int  # file checksum of the L0 file at ``last``


class Head(NamedTuple):
    txid: int
    at_ms: int
    runs: tuple[Run, ...] = ()
    sync_ms: int = 0  # the writer's sync interval (0: not announced)

    def committed(self, txid: int, checksum: int, writer: str | None = None) -> bool | None:
        """Is the L0 file (txid, checksum) part of the history? True, False, or None when
        the runs no longer reach back to ``txid`` (unknown). A TXID inside a run (not its
        last) is known only to that run's ``writer``."""
        run = self.run_of(txid)
        if run is not None:
            if txid == run.last:
                return run.checksum == checksum
            return None if writer is None else run.writer == writer
        if txid > self.txid:
            return False
        oldest = self.runs[0].first if self.runs else self.txid + 1
        return False if txid >= oldest else None

    def run_of(self, txid: int) -> Run | None:
        for run in self.runs:
            if run.first <= txid <= run.last:
                return run
        return None

    def advanced(self, writer: str, txid: int, checksum: int,
                 helped: tuple[tuple[int, int], ...] = (), sync_ms: int = 0) -> Head:
        """The head after committing ``txid`` (whose file has ``checksum``); ``helped``:
        (txid, checksum) of other writers' files committed on their behalf first;
        ``sync_ms``: the committing writer's sync interval (announced to readers)."""
        runs = list(self.runs)
        for t, c in helped:
            runs.append(Run("?", t, t, c))
        last = runs[-1] if runs else None
        if last is not None and last.writer == writer and last.last == txid - 1:
            runs[-1] = Run(writer, last.first, txid, checksum)
        else:
            runs.append(Run(writer, txid, txid, checksum))
        return Head(txid, int(time.time() * 1000), tuple(runs[-MAX_RUNS:]), sync_ms)


def encode_head(head: Head) -> bytes:
    doc: dict[str, object] = {"txid": f"{head.txid:016x}", "at": head.at_ms}
    if head.sync_ms:
        doc["sync"] = head.sync_ms
    doc["runs"] = [[r.writer, f"{r.first:016x}", f"{r.last:016x}", f"{r.checksum:016x}"]
                   for r in head.runs]
    return json.dumps(doc, separators=(",", ":")).encode()


def decode_head(data: bytes) -> Head:
    """Parse a head object; ValueError when it is not one (older heads have no runs)."""
    try:
        doc = json.loads(data)
        txid = int(doc["txid"], 16)
        runs = tuple(Run(str(w), int(a, 16), int(b, 16), int(c, 16))
                     for w, a, b, c in doc.get("runs", ()))
        sync_ms = doc.get("sync", 0)
        return Head(txid, int(doc.get("at", 0)), runs,
                    int(sync_ms) if isinstance(sync_ms, (int, float)) and sync_ms > 0 else 0)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"not a litevfs head object: {exc}") from None


def head_txid(data: bytes) -> int:
    """Just the TXID (what a polling reader needs)."""
    return decode_head(data).txid


def write_head(storage: StorageClient, txid: int) -> None:
    """Overwrite the head with ``txid`` and no history (tools and benchmarks that build
    a replica by hand; writers commit through ``fence.commit_head``)."""
    storage.put_object(HEAD_NAME, encode_head(Head(txid, int(time.time() * 1000))))


def read_head(storage: StorageClient) -> int | None:
    """The head TXID, or None when the replica has no (readable) head object."""
    try:
        return head_txid(storage.get_object(HEAD_NAME))
    except (NotFoundError, ValueError):
        return None
