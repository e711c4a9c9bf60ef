"""Litestream-compatible PRAGMAs (through SQLITE_FCNTL_PRAGMA) and SQL functions.

PRAGMAs: ``litestream_txid``, ``litestream_lag``, ``litestream_time`` (settable:
an RFC 3339 time, a relative time or ``LATEST``), plus the hydration/write
read-outs Litestream has. Functions ``litestream_txid()``, ``litestream_time()``,
``litestream_lag()`` and ``litestream_set_time()`` run those PRAGMAs on their own
connection, so they always answer for the connection that calls them.
"""

from __future__ import annotations

import json
import logging
import time
import weakref
from typing import TYPE_CHECKING, Any

import apsw

from ..errors import LiteVFSError

if TYPE_CHECKING:
    from ..engine.hydrate.hydrator import Hydrator
    from .file import LiteFile

log = logging.getLogger("litevfs.sql")


def _timetravel() -> Any:
    from ..engine import timetravel  # datetime and re: ~4 ms no open should wait for

    return timetravel


def lag_seconds(file: LiteFile) -> int:
    last = file.replica.last_poll_ok
    return -1 if last is None else int(time.monotonic() - last)


def current_time_text(file: LiteFile) -> str:
    view = file.snapshot.view
    if view.target_time is not None:
        return view.target_time
    return _timetravel().format_ms(view.timestamp_ms) if view.timestamp_ms else "latest"


def _set_time(file: LiteFile, value: str) -> None:
    timetravel = _timetravel()
    if timetravel.is_latest(value):
        file.snapshot.set_travel(None)
    else:
        file.snapshot.set_travel(timetravel.view_at(file.replica.views, value))


def _progress(hydrator: Hydrator | None) -> str:
    """``PRAGMA litestream_hydration_progress``: "0" when off, else one decimal."""
    return "0" if hydrator is None else f"{hydrator.percent:.1f}"


def _read_only(name: str) -> str:
    return f"PRAGMA {name} is read-only"


def handle_pragma(file: LiteFile, pragma: apsw.VFSFcntlPragma) -> bool:
    """Answer a litestream_* PRAGMA; False lets SQLite handle any other name."""
    name = pragma.name.lower()
    value = pragma.value
    if name == "litevfs_stats":  # cost and health counters of the replica (metrics.py)
        if value is not None:
            raise apsw.SQLError(_read_only(name))
        pragma.result = json.dumps(file.replica.metrics.snapshot())
        return True
    if not name.startswith("litestream_"):
        return False
    if name == "litestream_time":
        if value is None:
            pragma.result = current_time_text(file)
        else:
            try:
                _set_time(file, value)
            except LiteVFSError as exc:
                raise apsw.SQLError(f"litestream_time: {exc}") from exc
        return True
    readers = {
        "litestream_txid": lambda: f"{file.snapshot.view.txid:016x}",
        "litestream_lag": lambda: str(lag_seconds(file)),
        "litestream_hydration_progress": lambda: _progress(file.replica.hydrator),
        "litestream_hydration_file": lambda: (
            (file.replica.hydrator.path or "") if file.replica.hydrator is not None else ""),
        "litestream_write_enabled": lambda: "0",
    }
    reader = readers.get(name)
    if reader is None:
        return False
    if value is not None:
        raise apsw.SQLError(_read_only(name))
    pragma.result = reader()
    return True


def _pragma_value(con: apsw.Connection, name: str) -> str | None:
    rows = con.execute(f"PRAGMA {name}").fetchall()
    return rows[0][0] if rows else None


def register_functions(con: apsw.Connection) -> None:
    """Add the litestream_* SQL functions to ``con``."""
    ref = weakref.ref(con)  # the functions must not keep their connection alive

    def txid() -> str | None:
        return _pragma_value(ref(), "litestream_txid")

    def time_() -> str | None:
        return _pragma_value(ref(), "litestream_time")

    def lag() -> int | None:
        value = _pragma_value(ref(), "litestream_lag")
        return None if value is None else int(value)

    def set_time(text: str) -> None:
        if not isinstance(text, str):
            raise apsw.SQLError("litestream_set_time expects a text argument")
        quoted = text.replace("'", "''")
        ref().execute(f"PRAGMA litestream_time = '{quoted}'")
        return None

    con.create_scalar_function("litestream_txid", txid, 0)
    con.create_scalar_function("litestream_time", time_, 0)
    con.create_scalar_function("litestream_lag", lag, 0)
    con.create_scalar_function("litestream_set_time", set_time, 1,
                               flags=apsw.SQLITE_DIRECTONLY)
