"""Time travel: parse Litestream's time formats and build the view of a past moment.

Accepted, as in Litestream: RFC 3339 (with or without fractional seconds), then
relative phrases (``5 minutes ago``, ``2 hours ago``, ``yesterday``, ``now``)
relative to the current UTC time; ``LATEST`` (any case) resets.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from ..errors import LiteVFSError, TxNotAvailableError
from .plan import calc_restore_plan

if TYPE_CHECKING:
    from .state import View
    from .views import ViewBuilder

INVALID_TIME = "invalid timestamp (expected RFC3339 or relative time like '5 minutes ago')"

_UNITS = {
    "second": 1, "sec": 1, "s": 1, "minute": 60, "min": 60, "m": 60, "hour": 3600, "h": 3600,
    "day": 86400, "d": 86400, "week": 7 * 86400, "w": 7 * 86400,
}
_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]+?)s?\s+ago\s*$", re.IGNORECASE)
_FRACTION = re.compile(r"(\.\d+)")


class TimeTravelError(LiteVFSError, ValueError):
    """An unparseable time or a moment the replica has no files for."""


def is_latest(text: str) -> bool:
    return text.strip().upper() == "LATEST"


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """An aware datetime for ``text``; raises TimeTravelError with Litestream's message."""
    raw = text.strip()
    now = now or datetime.now(timezone.utc)
    try:
        # fromisoformat takes at most microseconds: trim nanoseconds first.
        iso = _FRACTION.sub(lambda m: m.group(1)[:7], raw, count=1)
        value = datetime.fromisoformat(iso.replace("z", "Z"))
        if "T" in raw.upper() and value.tzinfo is not None:
            return value
    except ValueError:
        pass
    lowered = raw.lower()
    if lowered == "now":
        return now
    if lowered == "yesterday":
        return now - timedelta(days=1)
    m = _RELATIVE.match(lowered)
    if m and m.group(2) in _UNITS:
        return now - timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])
    raise TimeTravelError(INVALID_TIME)


def format_time(value: datetime) -> str:
    """Go's RFC3339Nano: trailing fractional zeros trimmed, ``Z`` for UTC."""
    base = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        base += f".{value.microsecond:06d}".rstrip("0")
    offset = value.utcoffset()
    if offset is None or offset == timedelta(0):
        return base + "Z"
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    minutes = abs(minutes)
    return f"{base}{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def format_ms(timestamp_ms: int) -> str:
    return format_time(datetime.fromtimestamp(timestamp_ms / 1000, timezone.utc))


def view_at(views: ViewBuilder, text: str) -> View:
    """The view of the last state committed strictly before the time ``text``."""
    moment = parse_time(text)
    levels = views.list_levels()
    try:
        plan = calc_restore_plan(levels, timestamp=moment.timestamp())
    except TxNotAvailableError:
        raise TimeTravelError(f"no backup files available before {format_time(moment)}") from None
    return views.build_view(plan, target_time=format_time(moment))
