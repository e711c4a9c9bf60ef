"""Materialising a database file from a replica: the restore plan (``plan.py``)
applied file by file as the files stream in (bounded memory), every file
CRC-64-verified, the output published atomically."""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from collections import deque, namedtuple
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType
from typing import TYPE_CHECKING

from .. import _impl
from ..errors import EmptyReplicaError, LTXFormatError, TxNotAvailableError
from ..ltx.format import HEADER_SIZE, FileInfo, Header, lock_pgno
from ..ltx.stream import StreamDecoder
from ..storage import empty_replica_message
from .plan import calc_restore_plan, is_torn
from .timetravel import format_time

if TYPE_CHECKING:
    from ..storage.base import StorageClient


def with_header_timestamps(
    storage: StorageClient, levels: Mapping[int, Sequence[FileInfo]], workers: int = 16,
) -> dict[int, list[FileInfo]]:
    """Replace each file's created_at with its LTX header timestamp (what Litestream
    stores as object metadata and uses for point-in-time restores)."""
    infos = [f for lvl in sorted(levels) for f in levels[lvl] if not is_torn(f)]

    def stamp(info: FileInfo) -> FileInfo:
        header = Header.unpack(storage.read_range(info, 0, HEADER_SIZE))
        return info._replace(created_at=header.timestamp / 1000.0)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        stamped = list(pool.map(stamp, infos))
    out: dict[int, list[FileInfo]] = {
        lvl: [f for f in levels[lvl] if is_torn(f)] for lvl in levels}  # plans name them
    for f in stamped:
        out[f.level].append(f)
    for files in out.values():
        files.sort(key=lambda f: (f.min_txid, f.max_txid))
    return out


class RestoreResult(namedtuple("RestoreResult", ("path", "txid", "page_size", "commit",
                                                 "files", "bytes_downloaded"))):
    __slots__ = ()


# (bytes downloaded and applied, bytes in the plan, files done, files in the plan)
ProgressFn = Callable[[int, int, int, int], None]

CHUNK_SIZE = 4 * 1024 * 1024  # bytes per ranged GET
READ_AHEAD = 32 * 1024 * 1024  # downloaded bytes waiting to be applied, at most


def plan_restore(storage: StorageClient, *, txid: int | None = None,
                 timestamp: float | None = None) -> list[FileInfo]:
    """The files ``restore`` applies, with errors that say what is missing: an empty
    replica (and why, e.g. a missing directory), or no file before ``timestamp``."""
    levels = storage.list_all()
    if not any(levels.values()):
        raise EmptyReplicaError(empty_replica_message(storage, hint=False))
    if timestamp is not None:
        levels = with_header_timestamps(storage, levels)
    try:
        return calc_restore_plan(levels, txid=txid, timestamp=timestamp)
    except TxNotAvailableError:
        if timestamp is None:
            raise
        moment = dt.datetime.fromtimestamp(timestamp, dt.timezone.utc)
        raise TxNotAvailableError(
            f"no backup files available before {format_time(moment)}") from None


def restore(
    storage: StorageClient,
    out_path: str | os.PathLike[str],
    *,
    txid: int | None = None,
    timestamp: float | None = None,
    workers: int = 8,
    progress: ProgressFn | None = None,
    impl: ModuleType | None = None,
    chunk_size: int = CHUNK_SIZE,
    read_ahead: int = READ_AHEAD,
) -> RestoreResult:
    """Materialise the replica (latest, at ``txid`` or before ``timestamp``) into
    ``out_path``, which must not exist.

    Files are downloaded in ranged chunks of ``chunk_size`` bytes, ``workers`` at a
    time and at most ``read_ahead`` bytes ahead of the one being applied; each is
    decoded as it streams in, its pages written to a temporary file next to
    ``out_path`` (memory stays bounded whatever the database size). The output appears
    (atomically, never replacing a file) only once every file's CRC-64 was verified;
    on any error the temporary file is removed and nothing is left behind."""
    out_path = os.fspath(out_path)
    if os.path.exists(out_path):
        raise FileExistsError(f"output file already exists: {out_path}")
    plan = plan_restore(storage, txid=txid, timestamp=timestamp)
    workers = max(1, workers)
    chunk_size = max(1, chunk_size)
    read_ahead = max(chunk_size, read_ahead)

    # lazy: `import litevfs` must stay cheap (a cold open's first request waits for it)
    impl = impl or _impl
    chunks = [(i, info, off, min(chunk_size, info.size - off))
              for i, info in enumerate(plan) for off in range(0, info.size, chunk_size)]
    total = sum(info.size for info in plan)

    directory = os.path.dirname(os.path.abspath(out_path))
    fd, tmp = tempfile.mkstemp(prefix=".litevfs-restore-", dir=directory)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="litevfs-restore")
    window: deque = deque()  # (file index, future, length) in plan order
    downloaded = page_size = commit = files_done = 0
    try:
        with os.fdopen(fd, "r+b") as out:
            nxt = waiting = 0  # next chunk to request; bytes requested, not applied

            def fill() -> None:
                nonlocal nxt, waiting
                while nxt < len(chunks) and len(window) < 4 * workers and (
                        not window or waiting + chunks[nxt][3] <= read_ahead):
                    i, info, off, length = chunks[nxt]
                    window.append((i, pool.submit(storage.read_range, info, off, length), length))
                    waiting += length
                    nxt += 1

            decoder: StreamDecoder | None = None
            current = -1
            in_file = 0  # pages the current file brought so far

            def limit(ps: int) -> int:
                # The reader's bound (views.check_index_bounds): every page above the
                # previous size is written in this file, so a page number or commit
                # beyond it is a hostile or corrupt header, never a sparse 16 TiB file.
                return commit + 2 * in_file + 2 + lock_pgno(ps)

            def finish_file() -> None:
                nonlocal page_size, commit, files_done
                assert decoder is not None
                header = decoder.finish()
                if header.commit > limit(header.page_size):
                    raise LTXFormatError(
                        f"commit {header.commit} is impossible for a replica whose files "
                        f"hold these pages (corrupt or hostile file)")
                page_size, commit = header.page_size, header.commit
                files_done += 1

            fill()
            while window:
                i, future, length = window.popleft()
                info = plan[i]
                try:
                    if i != current:
                        if decoder is not None:
                            finish_file()
                        current, in_file = i, 0
                        decoder = StreamDecoder(info.size, impl=impl,
                                                expect_txids=(info.min_txid, info.max_txid),
                                                expect_page_size=page_size)
                    data = future.result()
                    waiting -= length
                    fill()
                    assert decoder is not None
                    pages = decoder.feed(data)
                    header = decoder.header
                    for pgno, page in pages:
                        in_file += 1
                        if pgno > limit(header.page_size):
                            raise LTXFormatError(
                                f"page {pgno} is impossible for a replica whose files hold "
                                f"these pages (corrupt or hostile file)")
                        out.seek((pgno - 1) * header.page_size)
                        out.write(page)
                except LTXFormatError as exc:
                    raise type(exc)(f"level {info.level} file {info.name}: {exc}") from None
                downloaded += len(data)
                if progress is not None:
                    progress(downloaded, total, files_done, len(plan))
            try:
                if decoder is not None:
                    finish_file()
            except LTXFormatError as exc:
                info = plan[current]
                raise type(exc)(f"level {info.level} file {info.name}: {exc}") from None
            if progress is not None:
                progress(downloaded, total, files_done, len(plan))
            out.truncate(commit * page_size)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        _publish(tmp, out_path)
    except BaseException:
        for _, future, _ in window:
            future.cancel()
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return RestoreResult(out_path, plan[-1].max_txid, page_size, commit, len(plan), downloaded)


def _publish(tmp: str, out_path: str) -> None:
    """Give ``tmp`` the name ``out_path`` unless something took that name meanwhile (a
    hard link is atomic and fails if the name exists; rename would overwrite)."""
    try:
        os.link(tmp, out_path)
    except FileExistsError:
        raise FileExistsError(f"output file already exists: {out_path}") from None
    except OSError:  # no hard links on this file system
        if os.path.exists(out_path):
            raise FileExistsError(f"output file already exists: {out_path}") from None
        os.replace(tmp, out_path)
        return
    os.unlink(tmp)
