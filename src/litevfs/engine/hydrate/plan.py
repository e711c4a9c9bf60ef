"""Which ranged GETs download a set of frames: neighbouring frames of one LTX file
become one read (small superseded gaps are read through rather than split around),
capped in size so many reads run in parallel."""

from __future__ import annotations

from dataclasses import dataclass

MAX_GAP = 16 * 1024  # superseded frames up to this size are read through, not split around
RUN_BYTES = 4 * 1024 * 1024  # largest ranged GET


@dataclass(frozen=True, slots=True)
class Run:
    """One ranged GET: frames ``(pgno, offset, size)`` of one file, offset order."""

    file_id: int
    start: int
    length: int
    frames: tuple[tuple[int, int, int], ...]


def plan_runs(wanted: list[tuple[int, int, int, int]], *, max_gap: int = MAX_GAP,
              run_bytes: int = RUN_BYTES) -> list[Run]:
    """Coalesce wanted frames ``(file_id, offset, size, pgno)`` into ranged reads:
    frames of one file closer than ``max_gap`` bytes share a read of at most
    ``run_bytes`` (a single larger frame still gets its own read)."""
    wanted.sort()
    runs: list[Run] = []
    frames: list[tuple[int, int, int]] = []
    fid = start = end = -1
    for f, off, size, pgno in wanted:
        if frames and f == fid and off - end <= max_gap and off + size - start <= run_bytes:
            frames.append((pgno, off, size))
            end = off + size
            continue
        if frames:
            runs.append(Run(fid, start, end - start, tuple(frames)))
        fid, start, end, frames = f, off, off + size, [(pgno, off, size)]
    if frames:
        runs.append(Run(fid, start, end - start, tuple(frames)))
    return runs


def page_spans(pages: list[tuple[int, bytes]]) -> list[tuple[int, list[bytes]]]:
    """Group pgno-sorted pages into runs of consecutive page numbers (one pwrite each)."""
    out: list[tuple[int, list[bytes]]] = []
    last = -2
    for pgno, page in pages:
        if pgno == last + 1:
            out[-1][1].append(page)
        else:
            out.append((pgno, [page]))
        last = pgno
    return out
