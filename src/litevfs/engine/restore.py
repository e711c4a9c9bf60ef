"""Materialising a database file from a replica: the restore plan (``plan.py``)
applied file by file, every file CRC-64-verified, written atomically."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from collections import namedtuple
from types import ModuleType

from ..errors import LTXFormatError
from ..ltx.format import HEADER_SIZE, FileInfo, Header
from .plan import calc_restore_plan

TYPE_CHECKING = False  # not typing's: importing typing costs ~5 ms on the open's path
if TYPE_CHECKING:
    from ..storage.base import StorageClient


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
