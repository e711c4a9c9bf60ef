"""The hydration sidecar ``<path>.litevfs-hydration``: what a persistent hydrated
file holds, so a restart can resume instead of downloading everything again.

Layout: a magic line, one JSON line (format version, replica URL without
credentials, page size, TXID, commit, the post-apply checksum of the database at
that TXID and the bitmap length), the bitmap (bit ``p`` set = page ``p`` of the
data file equals the database at TXID), the pages' xxh3-64 checksums (8 bytes per page
number, big-endian; a resumed page is checked against its own on every read, so a data
file damaged or overwritten between runs is healed, never served), then a CRC-32 of
everything before it.
Written atomically (temp file, fsync, rename, directory fsync). Stdlib only.
"""

from __future__ import annotations

import json
import os
import tempfile
import zlib
from dataclasses import dataclass

from ..._files import fsync_dir

MAGIC = b"LITEVFS-HYDRATION\n"
FORMAT_VERSION = 2  # 2: per-page checksums
SUFFIX = ".litevfs-hydration"


class SidecarError(ValueError):
    """The sidecar is missing, corrupt or from another format version."""


@dataclass(frozen=True)
class Sidecar:
    replica: str  # replica URL, credentials removed
    page_size: int
    txid: int
    commit: int
    post_apply_checksum: int  # identity of the database state at ``txid``
    bitmap: bytes  # bit p (p >= 1) = page p is present at ``txid``
    sums: bytes = b""  # u64 BE per page number (index 0 unused): xxh3-64 of the page

    def has(self, pgno: int) -> bool:
        byte = pgno >> 3
        return byte < len(self.bitmap) and bool(self.bitmap[byte] & (1 << (pgno & 7)))

    def page_sum(self, pgno: int) -> int:
        """The recorded checksum of page ``pgno`` (0: none)."""
        at = pgno * 8
        return int.from_bytes(self.sums[at:at + 8], "big") if at + 8 <= len(self.sums) else 0

    def pages(self) -> list[int]:
        """Page numbers whose bit is set, ascending."""
        out = []
        for i, b in enumerate(self.bitmap):
            if b:
                base = i << 3
                out.extend(base + j for j in range(8) if b & (1 << j))
        return out

    def encode(self) -> bytes:
        meta = {
            "version": FORMAT_VERSION, "replica": self.replica, "page_size": self.page_size,
            "txid": self.txid, "commit": self.commit,
            "post_apply_checksum": self.post_apply_checksum, "bitmap_len": len(self.bitmap),
            "sums_len": len(self.sums),
        }
        body = MAGIC + json.dumps(meta, sort_keys=True).encode() + b"\n" + self.bitmap + \
            self.sums
        return body + zlib.crc32(body).to_bytes(4, "big")

    @classmethod
    def decode(cls, data: bytes) -> Sidecar:
        if not data.startswith(MAGIC):
            raise SidecarError("not a litevfs hydration sidecar (bad magic)")
        if len(data) < len(MAGIC) + 4 or \
                zlib.crc32(data[:-4]).to_bytes(4, "big") != data[-4:]:
            raise SidecarError("sidecar checksum mismatch (corrupt or truncated)")
        end = data.find(b"\n", len(MAGIC))
        if end < 0:
            raise SidecarError("sidecar header line missing")
        try:
            meta = json.loads(data[len(MAGIC):end])
            if meta["version"] != FORMAT_VERSION:
                raise SidecarError(f"sidecar format version {meta['version']} is not "
                                   f"{FORMAT_VERSION}")
            body = data[end + 1:-4]
            nbits, nsums = int(meta["bitmap_len"]), int(meta["sums_len"])
            if len(body) != nbits + nsums or nsums % 8:
                raise SidecarError("sidecar bitmap/checksum length mismatch")
            return cls(str(meta["replica"]), int(meta["page_size"]), int(meta["txid"]),
                       int(meta["commit"]), int(meta["post_apply_checksum"]),
                       bytes(body[:nbits]), bytes(body[nbits:]))
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, SidecarError):
                raise
            raise SidecarError(f"sidecar header unreadable: {exc}") from None


def make_bitmap(pgnos: list[int], commit: int) -> bytes:
    bits = bytearray((commit >> 3) + 1)
    for p in pgnos:
        bits[p >> 3] |= 1 << (p & 7)
    return bytes(bits)


def sidecar_path(data_path: str) -> str:
    return data_path + SUFFIX


def read_sidecar(data_path: str) -> Sidecar:
    try:
        with open(sidecar_path(data_path), "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise SidecarError("no sidecar") from None
    return Sidecar.decode(data)


def write_sidecar(data_path: str, sidecar: Sidecar) -> None:
    """Replace the sidecar atomically: a crash leaves the old one or the new one."""
    target = sidecar_path(data_path)
    directory = os.path.dirname(os.path.abspath(target))
    fd, tmp = tempfile.mkstemp(prefix=".litevfs-hydration-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(sidecar.encode())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_dir(directory)


def remove_sidecar(data_path: str) -> None:
    try:
        os.unlink(sidecar_path(data_path))
    except FileNotFoundError:
        pass
