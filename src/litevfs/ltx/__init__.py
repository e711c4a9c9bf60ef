"""The LTX file format: constants, decoding, encoding and ranged index reads.

Submodules load on first use: ``ltx.format`` is on a cold open's path before its
first request, and must not drag in the decoder (lz4, the core) with it."""

from __future__ import annotations

_EXPORTS = {
    "DecodedFile": "decoder", "FileDecoder": "decoder", "decode_file": "decoder",
    "locate_index": "decoder", "encode_file": "encoder",
    "ENCODING_BLOCK": "format", "ENCODING_FRAME": "format", "FileInfo": "format",
    "Header": "format", "Trailer": "format",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module  # lazy exports: loaded on first attribute

    return getattr(import_module(f"{__name__}.{module}"), name)
