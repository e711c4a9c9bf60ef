"""Restore plans (which LTX files give a state) and materialising a database file.

The plan follows Litestream's ``CalcRestorePlan``: start from the newest fitting
level-9 snapshot, then repeatedly take, across levels 8..0, the contiguous file
reaching furthest; a "latest" plan that leaves files beyond a gap is an error.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from collections import namedtuple
from types import ModuleType

from ..errors import LTXFormatError, NonContiguousError, TxNotAvailableError
from ..ltx.format import HEADER_SIZE, MAX_LEVEL, SNAPSHOT_LEVEL, FileInfo, Header

TYPE_CHECKING = False  # not typing's: importing typing costs ~5 ms on the open's path
if TYPE_CHECKING:
    from ..storage.base import StorageClient


def _fits(info: FileInfo, txid: int | None, timestamp: float | None) -> bool:
    if txid is not None and info.max_txid > txid:
        return False
    return timestamp is None or info.created_at < timestamp


def calc_restore_plan(
    levels: Mapping[int, Sequence[FileInfo]],
    txid: int | None = None,
    timestamp: float | None = None,
) -> list[FileInfo]:
    """Files to apply, in order, to reach the latest state, TXID ``txid`` or the
    last state before ``timestamp`` (seconds since the epoch)."""
    if txid is not None and timestamp is not None:
        raise ValueError("give a target TXID or a timestamp, not both")
    plan: list[FileInfo] = []
    current = 0
    snapshots = [f for f in levels.get(SNAPSHOT_LEVEL, ()) if _fits(f, txid, timestamp)]
    if snapshots:
        plan.append(snapshots[-1])  # listing order: the last one is the newest
        current = snapshots[-1].max_txid
    others = [f for lvl in range(MAX_LEVEL - 1, -1, -1) for f in levels.get(lvl, ())]
    while txid is None or current < txid:
        best: FileInfo | None = None
        for f in others:
            if f.min_txid > current + 1 or f.max_txid <= current or not _fits(f, txid, timestamp):
                continue
            if best is None or (
                (-f.max_txid, f.min_txid, -f.level, f.created_at)
                < (-best.max_txid, best.min_txid, -best.level, best.created_at)
            ):
                best = f
        if best is None:
            break
        plan.append(best)
        current = best.max_txid
    if not plan:
        raise TxNotAvailableError("transaction not available: the replica has no usable LTX files")
    if txid is not None and current < txid:
        raise TxNotAvailableError(
            f"transaction not available: TXID {txid:016x} is beyond the replica ({current:016x})")
    if txid is None and timestamp is None:
        for f in others:
            if f.max_txid > current:
                raise NonContiguousError(
                    f"non-contiguous ltx files: level {f.level} file {f.name} starts after "
                    f"TXID {current:016x} with nothing bridging the gap")
    return plan


def with_header_timestamps(
    storage: StorageClient, levels: Mapping[int, Sequence[FileInfo]], workers: int = 16,
) -> dict[int, list[FileInfo]]:
    """Replace each file's created_at with its LTX header timestamp (what Litestream
    stores as object metadata and uses for point-in-time restores)."""
    from concurrent.futures import ThreadPoolExecutor

    infos = [f for lvl in sorted(levels) for f in levels[lvl]]

    def stamp(info: FileInfo) -> FileInfo:
        header = Header.unpack(storage.read_range(info, 0, HEADER_SIZE))
        return info._replace(created_at=header.timestamp / 1000.0)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        stamped = list(pool.map(stamp, infos))
    out: dict[int, list[FileInfo]] = {lvl: [] for lvl in levels}
    for f in stamped:
        out[f.level].append(f)
    return out


class RestoreResult(namedtuple("RestoreResult", ("path", "txid", "page_size", "commit",
                                                 "files", "bytes_downloaded"))):
    __slots__ = ()


ProgressFn = Callable[[int, int, int], None]  # (files done, files total, bytes downloaded)


def terminal_progress(stream=sys.stderr) -> ProgressFn | None:
    """A one-line progress bar when ``stream`` is a terminal, else None."""
    if not stream.isatty():
        return None
    started = time.monotonic()

    def show(done: int, total: int, nbytes: int) -> None:
        width = 30
        filled = width * done // max(total, 1)
        rate = nbytes / max(time.monotonic() - started, 1e-6) / 1e6
        stream.write(f"\rrestoring [{'#' * filled}{'.' * (width - filled)}] "
                     f"{done}/{total} files, {nbytes / 1e6:.1f} MB, {rate:.1f} MB/s")
        if done == total:
            stream.write("\n")
        stream.flush()

    return show


def restore(
    storage: StorageClient,
    out_path: str | os.PathLike[str],
    *,
    txid: int | None = None,
    timestamp: float | None = None,
    workers: int = 8,
    progress: ProgressFn | None = None,
    impl: ModuleType | None = None,
) -> RestoreResult:
    """Materialise the replica (latest, at ``txid`` or before ``timestamp``) into
    ``out_path``. Every file is read whole and its CRC-64 verified before the output
    appears; on any error the partial file is removed and nothing is left behind."""
    out_path = os.fspath(out_path)
    if os.path.exists(out_path):
        raise FileExistsError(f"output file already exists: {out_path}")
    levels = storage.list_all()
    if timestamp is not None:
        levels = with_header_timestamps(storage, levels)
    plan = calc_restore_plan(levels, txid=txid, timestamp=timestamp)

    # lazy: `import litevfs` must stay cheap (a cold open's first request waits for it)
    import tempfile
    from concurrent.futures import ThreadPoolExecutor

    from .. import _impl

    impl = impl or _impl

    directory = os.path.dirname(os.path.abspath(out_path))
    fd, tmp = tempfile.mkstemp(prefix=".litevfs-restore-", dir=directory)
    downloaded = 0
    page_size = 0
    commit = 0
    try:
        with os.fdopen(fd, "r+b") as out, ThreadPoolExecutor(max_workers=workers) as pool:
            # Download ahead (bounded) while applying strictly in plan order.
            pending = []
            ahead = iter(plan)
            for f in ahead:
                pending.append(pool.submit(storage.read_range, f, 0, None))
                if len(pending) >= workers:
                    break
            for done, info in enumerate(plan, 1):
                data = pending.pop(0).result()
                nxt = next(ahead, None)
                if nxt is not None:
                    pending.append(pool.submit(storage.read_range, nxt, 0, None))
                downloaded += len(data)
                header = _apply(data, info, out, page_size, impl)
                page_size, commit = header.page_size, header.commit
                if progress is not None:
                    progress(done, len(plan), downloaded)
            out.truncate(commit * page_size)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, out_path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return RestoreResult(out_path, plan[-1].max_txid, page_size, commit, len(plan), downloaded)


def _apply(data: bytes, info: FileInfo, out, page_size: int, impl: ModuleType) -> Header:
    from ..ltx.decoder import FileDecoder

    try:
        dec = FileDecoder(data, impl=impl)
        header = dec.header
        if (header.min_txid, header.max_txid) != (info.min_txid, info.max_txid):
            raise LTXFormatError("header TXID range does not match the file name")
        if page_size and header.page_size != page_size:
            raise LTXFormatError(
                f"page size {header.page_size} differs from earlier files ({page_size})")
        for pgno, page in dec.pages(verify=True):
            out.seek((pgno - 1) * header.page_size)
            out.write(page)
    except LTXFormatError as exc:
        raise type(exc)(f"level {info.level} file {info.name}: {exc}") from None
    return header
