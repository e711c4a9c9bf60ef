"""Choose the compiled core or its pure-Python twin, in one place.

``LITEVFS_NO_EXTENSIONS=1`` forces the pure twin; otherwise the compiled module
is used when it was built. Nothing else imports the twins directly (tests and
benchmarks excepted).
"""

from __future__ import annotations

import os
import sys
from types import ModuleType
TYPE_CHECKING = False  # not typing's: importing typing costs ~5 ms at import time


def _select() -> tuple[ModuleType, str]:
    if os.environ.get("LITEVFS_NO_EXTENSIONS", "") not in ("", "0") or (
        sys.implementation.name != "cpython"
    ):
        from . import _pagecache_py as mod  # forced: the compiled twin is never loaded

        return mod, "python"
    try:
        from . import _pagecache as mod  # type: ignore[no-redef]
    except ImportError:
        from . import _pagecache_py as mod  # not built: the pure twin

        return mod, "python"
    return mod, "cython"


if TYPE_CHECKING:
    from . import _pagecache_py as core

    IMPLEMENTATION: str
else:
    core, IMPLEMENTATION = _select()



def cache_key(file_id: int, pgno: int) -> int:
    """The page cache's key of page ``pgno`` of LTX file ``file_id``: the format the core's
    ``PageCache.page_for`` and ``uncached`` compute internally (LTX content is immutable,
    so one key per (file, page) never needs invalidating)."""
    return (file_id << 32) | pgno


crc64 = core.crc64
decode_page_index = core.decode_page_index
decode_page_frame = core.decode_page_frame
encode_page_frame = core.encode_page_frame
PageIndex = core.PageIndex
PageCache = core.PageCache

__all__ = [
    "IMPLEMENTATION", "cache_key", "core", "crc64", "decode_page_index", "decode_page_frame",
    "encode_page_frame", "PageIndex", "PageCache",
]
