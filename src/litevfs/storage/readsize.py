"""How much to read of an LTX object to get its page index and header in one round trip:
the tail read holds the index (the whole file when it is small), a concurrent head read
holds the header and the lowest pages. Light on purpose: a cold open sizes its reads
before the rest of litevfs is imported."""

from __future__ import annotations

from ..ltx.format import HEADER_SIZE, INDEX_LEN_SIZE, TRAILER_SIZE, FileInfo

MAX_TAIL_READ = 4 * 1024 * 1024
HEAD_READ = 64 * 1024  # the header read also brings page 1 and its neighbours (one RTT less)
INDEX_FOOTER = INDEX_LEN_SIZE + TRAILER_SIZE  # what follows the page index


def tail_size_for(info: FileInfo, index_len: int | None = None) -> int:
    """The tail read that holds the whole page index. ``index_len``: the index's length
    when an earlier process recorded it (``engine/indexhint.py``): read exactly that.
    Otherwise a guess (about 9 bytes per page; compressed frames are rarely below
    ~1 KiB), so big snapshots need one read, not two. A wrong hint costs a second read,
    never a wrong answer: the index length is read from the tail itself."""
    if index_len is not None and index_len > 0:
        return index_len + INDEX_FOOTER
    return max(32 * 1024, min(MAX_TAIL_READ, info.size // 96))


def head_size_for(info: FileInfo, tail_size: int, head_size: int = HEAD_READ) -> int:
    """Bytes of the concurrent head read (0: the tail read returns the whole file)."""
    if info.size <= tail_size:
        return 0
    return max(HEADER_SIZE, min(head_size, info.size - tail_size))
