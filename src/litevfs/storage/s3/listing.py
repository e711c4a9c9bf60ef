"""List every level of an S3 replica with as few requests as possible.

Litestream lists each of the ten levels separately (>= 10 LISTs per open). All of a
replica's LTX keys share the prefix ``<path>/`` and sort by level first
(``<path>/0000/...`` < ``<path>/0001/...`` < ... < ``<path>/0009/...``), so one
ListObjectsV2 over ``<path>/`` answers for every level at once: one request for any
replica with fewer than 1000 files, which is the normal case (L0 retention keeps a
few hundred files at most).

Pagination of one listing is sequential (each page needs the previous page's
continuation token), so a huge listing would cost many round trips in a row. When
the first page comes back truncated, the levels it has not finished are listed
per level, in parallel, instead: levels already complete on the first page are not
listed again. Side objects sorting after the levels (``generations/``, ``litevfs/``,
``lock.json``) are never paged through: listing stops at the first key past level 9.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: importing typing costs ~5 ms on the open's path
if TYPE_CHECKING:
    from typing import Any

from ...ltx.format import MAX_LEVEL, FileInfo, parse_filename

if TYPE_CHECKING:
    from .client import S3Storage


def _level_dirs(storage: S3Storage) -> dict[str, int]:
    # Compared without leading slashes: SeaweedFS stores "/0000/x" as "0000/x".
    return {storage.level_prefix(lvl).rstrip("/").lstrip("/"): lvl
            for lvl in range(MAX_LEVEL + 1)}


def _file_info(key: str, obj: dict[str, Any], dirs: dict[str, int]) -> FileInfo | None:
    directory, _, name = key.rpartition("/")
    level = dirs.get(directory.lstrip("/"))
    if level is None:
        return None
    txids = parse_filename(name)
    if txids is None:
        return None
    modified = obj.get("LastModified")
    created = modified.timestamp() if modified is not None else 0.0
    return FileInfo(level, txids[0], txids[1], int(obj.get("Size", 0)), created)


def list_all_s3(storage: S3Storage) -> dict[int, list[FileInfo]]:
    """Files of levels 0..9, each sorted by (min, max) TXID."""
    levels: dict[int, list[FileInfo]] = {lvl: [] for lvl in range(MAX_LEVEL + 1)}
    prefix = storage.prefix
    if prefix in ("", ".") or prefix.startswith("/"):
        # Odd roots (keys starting with "/" or "./"): servers disagree on them; the
        # per-level listing already copes, so use it.
        storage.side_names = None
        return _per_level(storage, range(MAX_LEVEL + 1), levels)
    list_prefix = f"{prefix}/"
    past_levels = f"{prefix}/{MAX_LEVEL + 1:04x}"  # first key that sorts after every level
    dirs = _level_dirs(storage)
    args: dict[str, Any] = {"Bucket": storage.bucket, "Prefix": list_prefix,
                            "MaxKeys": storage.page_size}
    what = f"LIST s3://{storage.bucket}/{list_prefix}"
    page = storage._request("lists", what, lambda: storage._list_page(args))
    last_level = -1
    last_key = ""
    side_prefix = f"{prefix.lstrip('/')}/litevfs/"
    side: list[str] = []
    for obj in page.get("Contents", ()):
        key = obj["Key"]
        last_key = key
        info = _file_info(key, obj, dirs)
        if info is not None:
            levels[info.level].append(info)
            last_level = info.level
        elif key.lstrip("/").startswith(side_prefix):
            side.append(key.lstrip("/")[len(prefix.lstrip("/")) + 1:])
    truncated = bool(page.get("IsTruncated")) and bool(page.get("NextContinuationToken"))
    if truncated and last_key.lstrip("/") < past_levels:
        # A big listing: finish the level the page stopped in and the ones after it
        # in parallel (one round trip) rather than page after page in sequence.
        unfinished = range(max(last_level, 0), MAX_LEVEL + 1)
        storage.side_names = None
        return _per_level(storage, unfinished, levels)
    # Side objects sort after the levels: a page that got past them holds them all (a
    # page cut inside them holds the first ones, which is fine for hints).
    storage.side_names = tuple(side)
    for files in levels.values():
        files.sort(key=lambda i: (i.min_txid, i.max_txid))
    return levels


def _per_level(storage: S3Storage, todo: range,
               levels: dict[int, list[FileInfo]]) -> dict[int, list[FileInfo]]:
    results = storage._map_parallel(storage.list_level, todo)
    for lvl, files in zip(todo, results, strict=True):
        levels[lvl] = files
    for files in levels.values():
        files.sort(key=lambda i: (i.min_txid, i.max_txid))
    return levels
