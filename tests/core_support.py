"""Helpers shared by the core twin tests of the page index and page cache."""

from __future__ import annotations

import os
from array import array

from hypothesis import HealthCheck, settings

HYPO = settings(
    max_examples=25 if os.environ.get("HYPOTHESIS_PROFILE") == "ci" else 60,
    deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def entries(pgnos, base=1000, size=4000):
    """(pgnos, offsets, sizes) arrays for ``PageIndex.merge``: frames of ``size`` bytes
    laid out from ``base``."""
    pg = array("I", pgnos)
    return pg, array("Q", (base + i * size for i in range(len(pg)))), array("I", [size] * len(pg))


def key(file_id: int, pgno: int) -> int:
    return (file_id << 32) | pgno  # litevfs._impl.cache_key
