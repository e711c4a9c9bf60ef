"""A PEP 249 module with the surface and behaviour of the stdlib ``sqlite3`` module, over
apsw: replicas (``s3://``, ``file://``, ``memory://``) through the litevfs VFS, plain
paths and ``:memory:`` through apsw's own SQLite with the default VFS.

Public as ``litevfs.dbapi2`` (which wires ``connect`` to ``litevfs.connect``). What it
copies from ``sqlite3`` on purpose, and why:

* The transaction model: the legacy ``isolation_level`` control (an implicit ``BEGIN``
  before INSERT/UPDATE/DELETE/REPLACE, none before other statements) and 3.12's
  ``autocommit`` attribute, so ORMs that know ``sqlite3`` drive it unchanged.
* The exception classes by SQLite result code, which derive from the stdlib's own
  classes too (``except sqlite3.IntegrityError`` catches ours), and litevfs's errors as
  subclasses that are both (``dbapi2.StorageError`` is an ``OperationalError`` and a
  ``litevfs.StorageError``).
* ``Connection`` derives from ``sqlite3.Connection``: libraries that check
  ``isinstance(con, sqlite3.Connection)`` (pandas' ``read_sql``) take it as one. Every
  public attribute of the base is overridden here (a test checks it); the base itself
  holds only an unused ``:memory:`` handle.
* The adapter and converter registries are the stdlib's (``sqlite3.adapters``,
  ``sqlite3.converters``): one registration serves both modules.

What differs (the README lists it): ``Row`` is this module's class (``sqlite3.Row`` given
as a row factory is replaced by it); replicas refuse extensions and ``deserialize``;
``backup`` to a stdlib connection goes through a temporary file (two SQLite libraries).
"""

from __future__ import annotations

import os
import sqlite3 as _std
import sys
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import ModuleType
from typing import Any

import apsw

from .. import errors as _lerrors

# -- module attributes -----------------------------------------------------------------

apilevel = "2.0"
paramstyle = "qmark"  # named (:name, @name, $name) works as well
# apsw serializes each connection (SQLite's THREADSAFE=1 build): the stdlib's mapping.
threadsafety = {0: 0, 2: 1, 1: 3}.get(
    next((int(o.split("=")[1]) for o in apsw.compile_options if o.startswith("THREADSAFE=")),
         1), 3)
sqlite_version = apsw.sqlite_lib_version()
sqlite_version_info = tuple(int(p) for p in sqlite_version.split("."))

PARSE_DECLTYPES = _std.PARSE_DECLTYPES
PARSE_COLNAMES = _std.PARSE_COLNAMES
LEGACY_TRANSACTION_CONTROL = -1

# The stdlib's registries and adaptation, shared (see the module docstring).
PrepareProtocol = _std.PrepareProtocol
adapt = _std.adapt
adapters = _std.adapters
converters = _std.converters
register_adapter = _std.register_adapter
register_converter = _std.register_converter
complete_statement = apsw.complete

Date, Time, Timestamp = _std.Date, _std.Time, _std.Timestamp
DateFromTicks, TimeFromTicks, TimestampFromTicks = (
    _std.DateFromTicks, _std.TimeFromTicks, _std.TimestampFromTicks)
Binary = memoryview

# SQLITE_* constants (authorizer actions and answers, limits, result codes, DBCONFIG):
# SQLite's numbers, whichever module names them.
for _name in dir(_std):
    if _name.startswith("SQLITE_"):
        globals()[_name] = getattr(_std, _name)
SQLITE_OK, SQLITE_DENY, SQLITE_IGNORE = 0, 1, 2

_callback_tracebacks = False


def enable_callback_tracebacks(flag: bool, /) -> None:
    """Print tracebacks of exceptions raised in user-defined functions, aggregates,
    authorizers and progress handlers (``sqlite3.enable_callback_tracebacks``)."""
    global _callback_tracebacks
    _callback_tracebacks = bool(flag)


# -- exceptions -------------------------------------------------------------------------


class Warning(_std.Warning):  # noqa: A001 - PEP 249's name
    __module__ = "litevfs.dbapi2"


class Error(_std.Error):
    __module__ = "litevfs.dbapi2"
    sqlite_errorcode: int | None = None
    sqlite_errorname: str | None = None


class InterfaceError(Error, _std.InterfaceError):
    __module__ = "litevfs.dbapi2"


class DatabaseError(Error, _std.DatabaseError):
    __module__ = "litevfs.dbapi2"


class DataError(DatabaseError, _std.DataError):
    __module__ = "litevfs.dbapi2"


class OperationalError(DatabaseError, _std.OperationalError):
    __module__ = "litevfs.dbapi2"


class IntegrityError(DatabaseError, _std.IntegrityError):
    __module__ = "litevfs.dbapi2"


class InternalError(DatabaseError, _std.InternalError):
    __module__ = "litevfs.dbapi2"


class ProgrammingError(DatabaseError, _std.ProgrammingError):
    __module__ = "litevfs.dbapi2"


class NotSupportedError(DatabaseError, _std.NotSupportedError):
    __module__ = "litevfs.dbapi2"


_litevfs_classes: dict[type, type] = {}


def litevfs_error(exc: BaseException) -> BaseException:
    """A litevfs error (storage, empty replica, conflict, sync timeout...) as an
    ``OperationalError`` that is still an instance of its own litevfs class, so both
    ``except dbapi2.OperationalError`` and ``except litevfs.StorageError`` catch it.
    Configuration errors (``ConfigError``, a ``ValueError``) stay as they are."""
    if not isinstance(exc, _lerrors.LiteVFSError) or isinstance(exc, _lerrors.ConfigError):
        return exc
    new = _wrapped_class(type(exc))(*exc.args)
    new.__cause__ = exc
    return new


def _wrapped_class(cls: type) -> type:
    """``cls`` as a subclass of OperationalError, its litevfs parents wrapped alike, so
    ``dbapi2.BucketNotFoundError`` is a ``dbapi2.StorageError`` as well."""
    wrapped = _litevfs_classes.get(cls)
    if wrapped is None:
        parent = next((b for b in cls.__bases__ if issubclass(b, _lerrors.LiteVFSError)), None)
        first = OperationalError if parent is None else _wrapped_class(parent)
        wrapped = type(cls.__name__, (first, cls), {"__module__": "litevfs.dbapi2"})
        _litevfs_classes[cls] = wrapped
    return wrapped


StorageError = type(litevfs_error(_lerrors.StorageError("x")))
EmptyReplicaError = type(litevfs_error(_lerrors.EmptyReplicaError("x")))
ConflictError = type(litevfs_error(_lerrors.ConflictError("x")))

# SQLite primary result code -> class, as CPython's _sqlite/util.c maps them.
_BY_CODE: dict[int, type[Error]] = {}
for _code, _cls in (
        (apsw.SQLITE_INTERNAL, InternalError), (apsw.SQLITE_NOTFOUND, InternalError),
        (apsw.SQLITE_ERROR, OperationalError), (apsw.SQLITE_PERM, OperationalError),
        (apsw.SQLITE_ABORT, OperationalError), (apsw.SQLITE_BUSY, OperationalError),
        (apsw.SQLITE_LOCKED, OperationalError), (apsw.SQLITE_READONLY, OperationalError),
        (apsw.SQLITE_INTERRUPT, OperationalError), (apsw.SQLITE_IOERR, OperationalError),
        (apsw.SQLITE_FULL, OperationalError), (apsw.SQLITE_CANTOPEN, OperationalError),
        (apsw.SQLITE_PROTOCOL, OperationalError), (apsw.SQLITE_EMPTY, OperationalError),
        (apsw.SQLITE_SCHEMA, OperationalError), (apsw.SQLITE_CORRUPT, DatabaseError),
        (apsw.SQLITE_TOOBIG, DataError), (apsw.SQLITE_CONSTRAINT, IntegrityError),
        (apsw.SQLITE_MISMATCH, IntegrityError), (apsw.SQLITE_MISUSE, InterfaceError),
        (apsw.SQLITE_RANGE, InterfaceError)):
    _BY_CODE[_code] = _cls
_APSW_ONLY: dict[type, type[Error]] = {
    apsw.BindingsError: ProgrammingError, apsw.ConnectionClosedError: ProgrammingError,
    apsw.CursorClosedError: ProgrammingError, apsw.ThreadingViolationError: ProgrammingError,
    apsw.ExecutionCompleteError: ProgrammingError, apsw.ExecTraceAbort: OperationalError,
    apsw.ExtensionLoadingError: OperationalError,
}
_RESULT_NAMES = {v: k for k, v in apsw.mapping_result_codes.items() if isinstance(v, int)}
_RESULT_NAMES.update({v: k for k, v in apsw.mapping_extended_result_codes.items()
                      if isinstance(v, int)})


class _CallbackError(Exception):
    """A user callback (function, aggregate, collation) failed: reported as
    ``OperationalError`` with the stdlib's message, its cause chained."""


def _sqlite_error(exc: apsw.Error) -> Error:
    """apsw's exception -> this module's class (by SQLite result code, as the stdlib)."""
    cls = _APSW_ONLY.get(type(exc))
    if cls is None:
        code = getattr(exc, "result", -1)
        cls = _BY_CODE.get(code, DatabaseError) if isinstance(code, int) and code >= 0 else (
            DatabaseError)
    message = str(exc.args[0]) if exc.args else str(exc)
    if type(exc) is apsw.BindingsError:
        message = _bindings_message(message)
    err = cls(message)
    extended = getattr(exc, "extendedresult", None)
    if isinstance(extended, int):
        err.sqlite_errorcode = extended
        err.sqlite_errorname = _RESULT_NAMES.get(extended, _RESULT_NAMES.get(extended & 0xFF))
    return err


def _bindings_message(message: str) -> str:
    """apsw's binding messages in the stdlib's words."""
    if message.startswith("Incorrect number of bindings supplied."):
        words = message.split()
        numbers = [w for w in words if w.isdigit()]
        if len(numbers) >= 2:
            return (f"Incorrect number of bindings supplied. The current statement uses "
                    f"{numbers[0]}, and there are {numbers[1]} supplied.")
    if message.startswith("Binding ") and "has no name" in message:
        number = message.split()[1]
        if number.isdigit():
            return (f"Binding {int(number) + 1} has no name, but you supplied a dictionary "
                    "(which has only names).")
    return message


def _report_callback_error() -> None:
    if _callback_tracebacks:
        exc = sys.exc_info()[1]
        if exc is not None:
            sys.unraisablehook(sys.UnraisableHookArgs(  # type: ignore[call-arg,attr-defined]
                type(exc), exc, exc.__traceback__, "Exception ignored in user callback", None))


# -- statements ------------------------------------------------------------------------

_DML = ("insert", "update", "delete", "replace")
_stmt_cache: dict[str, tuple[bool, bool]] = {}


def _skip_space_and_comments(sql: str, pos: int = 0) -> int:
    n = len(sql)
    while pos < n:
        ch = sql[pos]
        if ch in " \t\r\n\f\v":
            pos += 1
        elif sql.startswith("--", pos):
            end = sql.find("\n", pos)
            pos = n if end < 0 else end + 1
        elif sql.startswith("/*", pos):
            end = sql.find("*/", pos + 2)
            pos = n if end < 0 else end + 2
        else:
            break
    return pos


def _statement_info(sql: str) -> tuple[bool, bool]:
    """(is_dml, single statement) of ``sql``, cached. DML is what the stdlib begins a
    transaction for: the first keyword after spaces and comments is INSERT, UPDATE,
    DELETE or REPLACE. Single: nothing but spaces and comments after the first complete
    statement (``apsw.complete`` knows triggers' inner semicolons)."""
    info = _stmt_cache.get(sql)
    if info is not None:
        return info
    start = _skip_space_and_comments(sql)
    head = sql[start:start + 7].lower()
    is_dml = head.startswith(_DML)
    single = True
    if ";" in sql:
        pos = sql.find(";", start)
        while pos >= 0:
            if apsw.complete(sql[:pos + 1]):
                single = _skip_space_and_comments(sql, pos + 1) == len(sql)
                break
            pos = sql.find(";", pos + 1)
    if len(_stmt_cache) > 512:
        _stmt_cache.clear()
    info = _stmt_cache[sql] = (is_dml, single)
    return info


_BASE_TYPES = frozenset({int, float, str, bytes, type(None)})
_STD_BASE_ADAPTED = (int, float, str, bytearray)
_base_adapted_cache = [-1, False]


def _base_types_adapted() -> bool:
    """Has anyone registered an adapter for int, float, str or bytearray? Then every
    parameter goes through adaptation (the stdlib's BaseTypeAdapted rule)."""
    n = len(adapters)
    if _base_adapted_cache[0] != n:
        _base_adapted_cache[0] = n
        _base_adapted_cache[1] = any(t in _STD_BASE_ADAPTED for t, _ in adapters)
    return bool(_base_adapted_cache[1])


def _adapt_one(value: Any, index: int | str) -> Any:
    value = adapt(value, PrepareProtocol, value)
    if value is None or isinstance(value, (int, float, str, bytes, bytearray, memoryview)):
        return value
    where = index if isinstance(index, int) else f":{index}"
    raise ProgrammingError(f"Error binding parameter {where}: type "
                           f"'{type(value).__name__}' is not supported")


def _adapted(params: Any) -> Any:
    """``params`` ready for apsw: adapters applied (only where needed, as the stdlib)."""
    if params is None:
        return None
    all_adapted = _base_types_adapted()
    if type(params) is tuple or type(params) is list:
        if not all_adapted:
            for p in params:
                if type(p) not in _BASE_TYPES:
                    break
            else:
                return params
        return tuple(_adapt_one(p, i) for i, p in enumerate(params, 1))
    if isinstance(params, dict):
        if not all_adapted and all(type(v) in _BASE_TYPES for v in params.values()):
            return params
        return {k: _adapt_one(v, k) for k, v in params.items()}
    if isinstance(params, (str, bytes)) or not hasattr(params, "__getitem__"):
        raise ProgrammingError("parameters are of unsupported type")
    if isinstance(params, Mapping):
        return _adapted(dict(params))
    try:
        return _adapted(tuple(params))
    except TypeError:
        raise ProgrammingError("parameters are of unsupported type") from None


def _converter_name(decltype: str | None) -> str | None:
    if not decltype:
        return None
    word = decltype.strip()
    for i, ch in enumerate(word):
        if ch in " (":
            word = word[:i]
            break
    return word.upper()


def _colname_parts(name: str) -> tuple[str, str | None]:
    """PARSE_COLNAMES: ``'x [type]'`` -> ('x', 'TYPE'); the name is cut before ' ['."""
    start = name.find("[")
    if start < 0:
        return name, None
    end = name.find("]", start + 1)
    kind = name[start + 1:end].upper() if end > start else None
    cut = start - 1 if start > 0 and name[start - 1] == " " else start
    return name[:cut], kind


# -- rows ------------------------------------------------------------------------------


class Row:
    """A row that is indexed by position and, case-insensitively, by column name, like
    ``sqlite3.Row`` (``keys()``, ``len``, iteration, equality and hashing)."""

    __slots__ = ("_description", "_data")
    __module__ = "litevfs.dbapi2"

    def __new__(cls, cursor: Cursor, data: tuple[Any, ...]) -> Row:
        self = object.__new__(cls)
        self._description = cursor.description or ()
        self._data = tuple(data)
        return self

    def keys(self) -> list[str]:
        return [d[0] for d in self._description]

    def __getitem__(self, key: int | str | slice) -> Any:
        if isinstance(key, str):
            folded = key.casefold()
            for i, d in enumerate(self._description):
                if d[0].casefold() == folded:
                    return self._data[i]
            raise IndexError("No item with that key")
        return self._data[key]

    def __len__(self) -> int:
        return len(self._data)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._data)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Row):
            return NotImplemented
        return self._description == other._description and self._data == other._data

    def __hash__(self) -> int:
        return hash(self._description) ^ hash(self._data)

    def __repr__(self) -> str:
        return f"<litevfs.dbapi2.Row object at {id(self):#x}>"


_NONE6 = (None, None, None, None, None, None)
# DB-API descriptions by (apsw's (name, decltype) pairs, PARSE_COLNAMES): immutable tuples
_descriptions: dict[tuple[Any, ...], tuple[tuple[Any, ...], ...]] = {}


# -- cursor ----------------------------------------------------------------------------


class Cursor:
    """``sqlite3.Cursor``: execute, executemany, executescript, fetch*, iteration,
    ``description``, ``rowcount``, ``lastrowid``, ``arraysize``, ``row_factory``."""

    __module__ = "litevfs.dbapi2"
    # Slots: drivers such as SQLAlchemy make a cursor per statement (cheaper to build
    # and to read); subclasses (cursor factories) still get a __dict__.
    __slots__ = ("_connection", "_cursor", "_convert", "_is_dml", "_active", "_closed",
                 "arraysize", "rowcount", "lastrowid", "row_factory", "_description",
                 "_state", "_tracer", "__weakref__")

    def __init__(self, connection: Connection, /) -> None:
        if not isinstance(connection, Connection):
            raise TypeError(f"Cursor() argument 1 must be litevfs.dbapi2.Connection, "
                            f"not {type(connection).__name__}")
        connection._check()
        self._connection = connection
        self._cursor: Any = None
        self._convert: Callable[[Any], Any] | None = None
        self._is_dml = False
        self._active = False
        self._closed = False
        self.arraysize = 1
        self.rowcount = -1
        self.lastrowid: int | None = None
        self.row_factory = connection.row_factory
        self._description: tuple[tuple[Any, ...], ...] | None = None
        # [apsw's description of the statement, executemany?]: written by the trace,
        # which holds this list and the connection but not the cursor, so a cursor
        # dropped mid-statement is freed (and its statement reset) at once, as in the
        # stdlib, not at the next garbage collection.
        self._state: list[Any] = [None, False]
        self._tracer = _statement_tracer(self._state, connection)

    # -- state -----------------------------------------------------------------------
    @property
    def connection(self) -> Connection:
        return self._connection

    def _check(self) -> None:
        self._connection._check()
        if self._closed:
            raise ProgrammingError("Cannot operate on a closed cursor.")

    @property
    def description(self) -> tuple[tuple[Any, ...], ...] | None:
        raw = self._state[0]
        if self._description is None and raw:
            colnames = self._connection._detect_types & PARSE_COLNAMES
            key = (raw, colnames)
            desc = _descriptions.get(key)  # one statement's shape, built once
            if desc is None:
                desc = tuple(((_colname_parts(d[0])[0] if colnames else d[0]),) + _NONE6
                             for d in raw)
                if len(_descriptions) > 1024:
                    _descriptions.clear()
                _descriptions[key] = desc
            self._description = desc
        return self._description

    # -- execution -------------------------------------------------------------------
    def _new_cursor(self) -> Any:
        old = self._cursor
        if old is not None:
            try:
                old.close(True)
            except apsw.Error:
                pass
        cur = self._connection._con.cursor()
        cur.exec_trace = self._tracer
        self._cursor = cur
        return cur

    def execute(self, sql: str, parameters: Any = (), /) -> Cursor:
        self._check()
        if type(sql) is not str:
            if not isinstance(sql, str):
                raise TypeError(f"execute() argument 1 must be str, not {type(sql).__name__}")
        con = self._connection
        is_dml, single = _statement_info(sql)
        if not single:
            raise ProgrammingError("You can only execute one statement at a time.")
        params = _adapted(parameters) if parameters else None
        if is_dml and con._implicit_begin is not None and con._con.get_autocommit():
            con._begin()
        state = self._state
        state[0] = state[1] = self._description = self._convert = None
        self._is_dml = is_dml
        self.rowcount = -1
        cur = self._new_cursor()
        try:
            cur.execute(sql, params)
        except apsw.Error as exc:
            raise con._error(exc, params) from None
        except (_CallbackError, KeyError, TypeError, OverflowError) as exc:
            raise con._other_error(exc, params) from None
        self.lastrowid = con._con.last_insert_rowid()
        if state[0]:
            self._active = True
            self._convert = self._converter()
        else:
            self._active = False
            if is_dml:
                self.rowcount = con._con.changes()
        return self

    def executemany(self, sql: str, seq_of_parameters: Iterable[Any], /) -> Cursor:
        self._check()
        if not isinstance(sql, str):
            raise TypeError(f"executemany() argument 1 must be str, not {type(sql).__name__}")
        con = self._connection
        is_dml, single = _statement_info(sql)
        if not single:
            raise ProgrammingError("You can only execute one statement at a time.")
        if is_dml and con._implicit_begin is not None and con._con.get_autocommit():
            con._begin()
        state = self._state
        state[0] = self._description = self._convert = None
        state[1] = True
        self._is_dml = is_dml
        self._active = False
        self.rowcount = 0 if is_dml else -1
        counted = [0]
        changes = con._con.changes

        def each() -> Iterator[Any]:
            first = True
            for params in seq_of_parameters:
                if not first:
                    counted[0] += changes()
                first = False
                yield _adapted(params) if params else ()

        cur = self._new_cursor()
        try:
            rows = cur.executemany(sql, each())
            for _ in rows:  # RETURNING rows are not kept (the stdlib discards them too)
                pass
        except apsw.Error as exc:
            raise con._error(exc, None) from None
        except (_CallbackError, KeyError, TypeError, OverflowError) as exc:
            raise con._other_error(exc, None) from None
        finally:
            state[1] = False
        if is_dml:
            self.rowcount = counted[0] + changes()
        return self

    def executescript(self, sql_script: str, /) -> Cursor:
        self._check()
        if not isinstance(sql_script, str):
            raise ValueError("script argument must be unicode.")
        con = self._connection
        if con._autocommit == LEGACY_TRANSACTION_CONTROL and not con._con.get_autocommit():
            con._run("COMMIT")
        self._state[0] = self._description = self._convert = None
        self._active = False
        self.rowcount = -1
        cur = self._new_cursor()
        cur.exec_trace = _script_tracer(con)
        try:
            for _ in cur.execute(sql_script):
                pass
        except apsw.Error as exc:
            raise con._error(exc, None) from None
        except _CallbackError as exc:
            raise con._other_error(exc, None) from None
        return self

    def _converter(self) -> Callable[[Any], Any] | None:
        """How each row of this statement is turned into what the user sees: converters
        (detect_types), text_factory, row_factory; None when rows pass as they come."""
        con = self._connection
        row_factory = self.row_factory
        text_factory = con.text_factory
        convs: list[Callable[[bytes], Any] | None] | None = None
        if con._detect_types:
            convs = []
            for d in self._state[0]:
                name = None
                if con._detect_types & PARSE_COLNAMES:
                    name = _colname_parts(d[0])[1]
                if name is None and con._detect_types & PARSE_DECLTYPES:
                    name = _converter_name(d[1])
                convs.append(converters.get(name) if name else None)
            if not any(convs):
                convs = None
        if text_factory is str:
            text_factory = None
        if row_factory is _std.Row:
            row_factory = Row
        if convs is None and text_factory is None and row_factory is None:
            return None
        as_bytes = con._as_bytes
        cursor = weakref.ref(self)  # no cycle: see _state

        def convert(row: Any) -> Any:
            if convs is not None or text_factory is not None:
                out = []
                for i, value in enumerate(row):
                    conv = convs[i] if convs is not None else None
                    if conv is not None and value is not None:
                        value = conv(as_bytes(value))
                    elif text_factory is not None and type(value) is str:
                        value = (value.encode() if text_factory is bytes
                                 else text_factory(value.encode()))
                    out.append(value)
                row = tuple(out)
            if row_factory is not None:
                return row_factory(cursor(), row)
            return row

        return convert

    # -- fetching --------------------------------------------------------------------
    def _done(self) -> None:
        self._active = False
        if self._is_dml:
            self.rowcount = self._connection._con.changes()

    def _fetch_error(self, exc: BaseException) -> BaseException:
        self._active = False
        if isinstance(exc, apsw.Error):
            return self._connection._error(exc, None)
        return self._connection._other_error(exc, None)

    def fetchone(self) -> Any:
        self._check()
        if not self._active:
            return None
        try:
            row = self._cursor.fetchone()
        except (apsw.Error, _CallbackError) as exc:
            raise self._fetch_error(exc) from None
        if row is None:
            self._done()
            return None
        convert = self._convert
        return row if convert is None else convert(row)

    def fetchmany(self, size: int | None = None) -> list[Any]:
        self._check()
        n = self.arraysize if size is None else size
        out = []
        while n > 0 or size is not None and size < 0:
            row = self.fetchone()
            if row is None:
                break
            out.append(row)
            n -= 1
        return out

    def fetchall(self) -> list[Any]:
        self._check()
        if not self._active:
            return []
        try:
            rows = self._cursor.fetchall()
        except (apsw.Error, _CallbackError) as exc:
            raise self._fetch_error(exc) from None
        self._done()
        convert = self._convert
        return rows if convert is None else [convert(r) for r in rows]

    def __iter__(self) -> Cursor:
        return self

    def __next__(self) -> Any:
        row = self.fetchone()
        if row is None:
            raise StopIteration
        return row

    def close(self) -> None:
        self._connection._check_thread()
        if self._cursor is not None:
            try:
                self._cursor.close(True)
            except apsw.Error:
                pass
            self._cursor = None
        self._active = False
        self._closed = True

    def setinputsizes(self, sizes: Any, /) -> None:
        """Does nothing (PEP 249 allows it; so does the stdlib)."""

    def setoutputsize(self, size: Any, column: Any = None, /) -> None:
        """Does nothing (PEP 249 allows it; so does the stdlib)."""


def _statement_tracer(state: list[Any], con: Connection) -> Callable[..., bool]:
    """The exec trace apsw calls once a statement is prepared and bound, before it runs:
    it keeps the description (known even when no row comes back) and makes the checks
    the stdlib makes before running anything."""
    def trace(cursor: Any, sql: str, bindings: Any) -> bool:
        if state[1]:
            if cursor.is_readonly:
                raise ProgrammingError("executemany() can only execute DML statements.")
        else:
            state[0] = cursor.description
        if _NAMED_SEQUENCE_CHECK and bindings and type(bindings) is not dict:
            names = cursor.bindings_names
            if any(names):
                _named_with_sequence(names)
        callback = con._trace_callback
        if callback is not None:
            con._call_trace(callback, cursor.expanded_sql or sql)
        return True

    return trace


def _script_tracer(con: Connection) -> Callable[..., bool]:
    def trace(cursor: Any, sql: str, bindings: Any) -> bool:
        callback = con._trace_callback
        if callback is not None:
            con._call_trace(callback, cursor.expanded_sql or sql)
        return True

    return trace


_NAMED_SEQUENCE_CHECK = sys.version_info >= (3, 12)


def _named_with_sequence(names: tuple[str | None, ...]) -> None:
    """3.12 warns (3.14 refuses) when named placeholders get a sequence: as this Python's
    ``sqlite3`` does."""
    index = next(i for i, n in enumerate(names) if n)
    message = (f"Binding {index + 1} ('{names[index]}') is a named parameter, but you "
               "supplied a sequence which requires nameless (qmark) placeholders.")
    if sys.version_info >= (3, 14):
        raise ProgrammingError(message)
    warnings.warn(message + " Starting with Python 3.14 an sqlite3.ProgrammingError will "
                  "be raised.", DeprecationWarning, stacklevel=4)


# -- blob ------------------------------------------------------------------------------


class Blob:
    """``sqlite3.Blob``: incremental I/O on one BLOB value (``Connection.blobopen``)."""

    __module__ = "litevfs.dbapi2"

    def __init__(self, connection: Connection, blob: Any) -> None:
        self._connection = connection
        self._blob = blob

    def _live(self) -> Any:
        self._connection._check()
        if self._blob is None:
            raise ProgrammingError("Cannot operate on a closed blob.")
        return self._blob

    def read(self, length: int = -1, /) -> bytes:
        blob = self._live()
        return bytes(blob.read(length if length >= 0 else -1))

    def write(self, data: bytes, /) -> None:
        blob = self._live()
        if blob.tell() + len(data) > blob.length():
            raise ValueError("data longer than blob length")
        try:
            blob.write(data)
        except apsw.Error as exc:
            raise _sqlite_error(exc) from None

    def tell(self) -> int:
        return int(self._live().tell())

    def seek(self, offset: int, origin: int = 0, /) -> None:
        blob = self._live()
        base = {0: 0, 1: blob.tell(), 2: blob.length()}.get(origin)
        if base is None:
            raise ValueError("'origin' should be os.SEEK_SET, os.SEEK_CUR, or os.SEEK_END")
        target = base + offset
        if not 0 <= target <= blob.length():
            raise ValueError("offset out of blob range")
        blob.seek(target)

    def __len__(self) -> int:
        return int(self._live().length())

    def close(self) -> None:
        if self._blob is not None:
            self._blob.close()
            self._blob = None

    def __enter__(self) -> Blob:
        self._live()
        return self

    def __exit__(self, *exc: Any) -> bool:
        self.close()
        return False


# -- connection ------------------------------------------------------------------------

_ISOLATION_LEVELS = ("", "DEFERRED", "IMMEDIATE", "EXCLUSIVE")
REPLICA_SCHEMES = ("s3://", "file://", "memory://")
Opener = Callable[..., Any]  # (url, *, impl, config, db, **options) -> apsw.Connection


def is_replica(database: Any, uri: bool) -> bool:
    """Does ``database`` name a litevfs replica (an s3://, file:// or memory:// URL)
    rather than a local SQLite file? With ``uri=True`` a ``file:`` string is a SQLite
    URI, as in the stdlib."""
    if not isinstance(database, str):
        return False
    lowered = database[:9].lower()
    if uri and lowered.startswith("file:"):
        return False
    return lowered.startswith(REPLICA_SCHEMES)


def _default_opener(url: str | None, **options: Any) -> Any:
    """Open a replica without the facade (``litevfs.dbapi2`` passes ``litevfs.connect``,
    which also overlaps the first LIST with the imports)."""
    config_path, db = options.pop("config", None), options.pop("db", None)
    if config_path is not None or db is not None:
        from ..storage.lsconfig import replica_from_config  # PyYAML only for config=

        url, options = replica_from_config(config_path, db, url, options)
    from .connect import connect as vfs_connect

    return vfs_connect(url, **options)


class Connection(_std.Connection):
    """``sqlite3.Connection`` over an apsw connection (see the module docstring)."""

    __module__ = "litevfs.dbapi2"

    Warning = Warning
    Error = Error
    InterfaceError = InterfaceError
    DatabaseError = DatabaseError
    DataError = DataError
    OperationalError = OperationalError
    IntegrityError = IntegrityError
    InternalError = InternalError
    ProgrammingError = ProgrammingError
    NotSupportedError = NotSupportedError

    def __init__(self, database: Any = None, timeout: float = 5.0, detect_types: int = 0,
                 isolation_level: str | None = "", check_same_thread: bool = True,
                 factory: Any = None, cached_statements: int = 128, uri: bool = False, *,
                 autocommit: bool | int = LEGACY_TRANSACTION_CONTROL,
                 impl: ModuleType | None = None, config: str | None = None,
                 db: str | None = None, _opener: Opener | None = None,
                 **options: Any) -> None:
        # The stdlib base gets an unused in-memory handle (see the module docstring).
        super().__init__(":memory:", check_same_thread=False)
        self._con: Any = None
        self._thread = threading.get_ident() if check_same_thread else None
        self._trace_callback: Callable[[str], Any] | None = None
        self._detect_types = int(detect_types)
        self._row_factory: Any = None
        self._text_factory: Any = str
        self._isolation_level: str | None = ""
        self._begin_statement: str | None = "BEGIN "
        # What a DML statement begins implicitly: the legacy mode only (3.12's rule).
        self._implicit_begin: str | None = None
        self._autocommit: bool | int = LEGACY_TRANSACTION_CONTROL
        self._replica = False
        self._write = False
        self._check_autocommit(autocommit)
        level = self._check_isolation_level(isolation_level)
        if database is not None and not isinstance(database, str):

            database = os.fsdecode(database)
        self._replica = config is not None or database is None or is_replica(database, uri)
        try:
            if self._replica:
                opener = _opener or _default_opener
                con = opener(database, impl=impl, config=config, db=db, **options)
                self._write = not con.readonly("main")
            else:
                con = self._open_local(database, uri, cached_statements, impl, options)
        except apsw.Error as exc:
            raise _sqlite_error(exc) from None
        except _lerrors.LiteVFSError as exc:
            raise litevfs_error(exc) from None
        self._con = con
        if timeout is not None:
            con.set_busy_timeout(int(float(timeout) * 1000))
        self._isolation_level = level
        self._begin_statement = None if level is None else f"BEGIN {level}"
        self._autocommit = autocommit
        self._update_implicit_begin()
        if autocommit is False:
            self._run("BEGIN")

    @staticmethod
    def _open_local(database: str, uri: bool, cached_statements: int,
                    impl: ModuleType | None, options: dict[str, Any]) -> Any:
        """A plain SQLite database (a path, ``:memory:``, a ``file:`` URI): the stdlib's
        behaviour through apsw's SQLite. litevfs options do not apply to it."""
        if options or impl is not None:
            name = next(iter(options)) if options else "impl"
            raise _lerrors.ConfigError(
                f"litevfs option {name!r} applies to replica URLs (s3://, file://, "
                f"memory://), not the local database {database!r}")
        flags = apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE
        if uri:
            flags |= apsw.SQLITE_OPEN_URI
            if "vfs=litevfs" in database:
                from .connect import register  # only for a file: URI naming the VFS

                register()
        return apsw.Connection(database, flags=flags,
                               statementcachesize=max(0, int(cached_statements)))

    # -- checks ----------------------------------------------------------------------
    def _check_thread(self) -> None:
        thread = self._thread
        if thread is not None and thread != threading.get_ident():
            raise ProgrammingError(
                "SQLite objects created in a thread can only be used in that same thread. "
                f"The object was created in thread id {thread} and this is thread id "
                f"{threading.get_ident()}.")

    def _check(self) -> None:
        if self._thread is not None:
            self._check_thread()
        if self._con is None:
            raise ProgrammingError("Cannot operate on a closed database.")

    @staticmethod
    def _check_isolation_level(level: Any) -> str | None:
        if level is None:
            return None
        if not isinstance(level, str):
            raise TypeError("isolation_level must be str or None")
        upper = level.upper()
        if upper not in _ISOLATION_LEVELS:
            raise ValueError("isolation_level string must be '', 'DEFERRED', 'IMMEDIATE', "
                             "or 'EXCLUSIVE'")
        return upper

    @staticmethod
    def _check_autocommit(value: Any) -> None:
        if value is True or value is False or (
                type(value) is int and value == LEGACY_TRANSACTION_CONTROL):
            return
        raise ValueError("autocommit must be True, False, or "
                         "sqlite3.LEGACY_TRANSACTION_CONTROL")

    # -- errors ----------------------------------------------------------------------
    def _error(self, exc: apsw.Error, params: Any) -> Exception:
        err = _sqlite_error(exc)
        if self._write and isinstance(exc, apsw.ReadOnlyError):
            conflict = self._conflict()
            if conflict:
                wrapped = litevfs_error(_lerrors.ConflictError(conflict))
                assert isinstance(wrapped, Exception)
                return wrapped
        return err

    def _conflict(self) -> str | None:
        try:
            from .writeapi import write_status  # only when an error may be a conflict

            conflict = write_status(self._con).get("conflict")
        except Exception:  # noqa: BLE001 - diagnostics only
            return None
        return str(conflict) if conflict else None

    def _other_error(self, exc: BaseException, params: Any) -> BaseException:
        if isinstance(exc, _CallbackError):
            return OperationalError(str(exc))
        if isinstance(exc, KeyError) and isinstance(params, dict) and exc.args:
            return ProgrammingError(
                f"You did not supply a value for binding parameter :{exc.args[0]}.")
        if isinstance(exc, TypeError) and "must supply a dict or a sequence" in str(exc):
            return ProgrammingError("parameters are of unsupported type")
        if isinstance(exc, TypeError) and "Bad binding argument type" in str(exc):
            where = str(exc).split("#", 1)[-1].split(":", 1)[0]
            kind = str(exc).rsplit("type ", 1)[-1]
            return ProgrammingError(f"Error binding parameter {where}: type '{kind}' is "
                                    "not supported")
        if isinstance(exc, OverflowError):
            return OverflowError("Python int too large to convert to SQLite INTEGER")
        return exc

    # -- transactions ----------------------------------------------------------------
    def _call_trace(self, trace: Callable[[str], Any], sql: str) -> None:
        try:
            trace(sql)
        except Exception:  # noqa: BLE001 - the stdlib ignores them (prints if asked)
            _report_callback_error()

    def _run(self, sql: str) -> None:
        trace = self._trace_callback
        if trace is not None:
            self._call_trace(trace, sql)
        try:
            self._con.execute(sql)
        except apsw.Error as exc:
            raise self._error(exc, None) from None

    def _begin(self) -> None:
        self._run(self._implicit_begin or "BEGIN")

    def commit(self) -> None:
        self._check()
        if self._autocommit is True:
            return
        if not self._con.get_autocommit():
            self._run("COMMIT")
        if self._autocommit is False:
            self._run("BEGIN")

    def rollback(self) -> None:
        self._check()
        if self._autocommit is True:
            return
        if not self._con.get_autocommit():
            self._run("ROLLBACK")
        if self._autocommit is False:
            self._run("BEGIN")

    @property
    def in_transaction(self) -> bool:
        self._check()
        return not self._con.get_autocommit()

    @property
    def isolation_level(self) -> str | None:
        self._check()
        return self._isolation_level

    @isolation_level.setter
    def isolation_level(self, value: str | None) -> None:
        self._check()
        level = self._check_isolation_level(value)
        if level is None and self._autocommit == LEGACY_TRANSACTION_CONTROL:
            # The stdlib commits here, so the connection is in autocommit mode at once.
            if not self._con.get_autocommit():
                self._run("COMMIT")
        self._isolation_level = level
        self._begin_statement = None if level is None else f"BEGIN {level}"
        self._update_implicit_begin()

    def _update_implicit_begin(self) -> None:
        legacy = self._autocommit == LEGACY_TRANSACTION_CONTROL and (
            self._autocommit is not True and self._autocommit is not False)
        self._implicit_begin = self._begin_statement if legacy else None

    @property
    def autocommit(self) -> bool | int:
        self._check()
        return self._autocommit

    @autocommit.setter
    def autocommit(self, value: bool | int) -> None:
        self._check()
        self._check_autocommit(value)
        self._autocommit = value
        self._update_implicit_begin()
        if value is True and not self._con.get_autocommit():
            self._run("COMMIT")
        elif value is False and self._con.get_autocommit():
            self._run("BEGIN")

    @property
    def total_changes(self) -> int:
        self._check()
        return int(self._con.total_changes())

    @property
    def row_factory(self) -> Any:
        return self._row_factory

    @row_factory.setter
    def row_factory(self, value: Any) -> None:
        self._row_factory = value

    @property
    def text_factory(self) -> Any:
        return self._text_factory

    @text_factory.setter
    def text_factory(self, value: Any) -> None:
        self._text_factory = value

    def _as_bytes(self, value: Any) -> bytes:
        """A value as the bytes a converter gets (``sqlite3_column_blob``: numbers in
        SQLite's own text form)."""
        if type(value) is str:
            return value.encode()
        if type(value) is bytes:
            return value
        if type(value) is float:
            return str(self._con.execute("SELECT CAST(? AS TEXT)", (value,))
                       .fetchone()[0]).encode()
        return str(value).encode()

    # -- cursors and shortcuts -------------------------------------------------------
    def cursor(self, factory: Callable[[Connection], Any] | None = None) -> Any:
        self._check()
        cur = (factory or Cursor)(self)
        if not isinstance(cur, Cursor):
            raise TypeError("factory must return a cursor, not "
                            f"{type(cur).__name__}")
        if self._row_factory is not None and cur.row_factory is None:
            cur.row_factory = self._row_factory
        return cur

    def execute(self, sql: str, parameters: Any = (), /) -> Cursor:
        return self.cursor().execute(sql, parameters)

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> Cursor:
        return self.cursor().executemany(sql, parameters)

    def executescript(self, sql_script: str, /) -> Cursor:
        return self.cursor().executescript(sql_script)

    def close(self) -> None:
        self._check_thread()
        con, self._con = self._con, None
        if con is None:
            return
        try:
            if self._autocommit is False and not con.get_autocommit():
                try:
                    con.execute("ROLLBACK")
                except apsw.Error:
                    pass
            try:
                con.close()
            except apsw.Error as exc:
                raise _sqlite_error(exc) from None
            except _lerrors.LiteVFSError as exc:
                raise litevfs_error(exc) from None
        finally:
            super().close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        if exc_type is None:
            try:
                self.commit()
            except BaseException:
                try:
                    self.rollback()
                except BaseException:  # noqa: BLE001 - the commit's error is the one
                    pass
                raise
        else:
            self.rollback()
        return False

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise NotSupportedError("litevfs.dbapi2: calling a Connection (the stdlib's "
                                "undocumented statement factory) is not supported")

    # -- user-defined functions ------------------------------------------------------
    def create_function(self, name: str, narg: int, func: Callable[..., Any] | None, *,
                        deterministic: bool = False) -> None:
        self._check()
        if not -1 <= narg <= 127:
            raise OperationalError("Error creating function")
        # None is not a removal: the stdlib registers it, and calls fail (as here).
        def call(*args: Any) -> Any:
            try:
                result = func(*args)  # type: ignore[misc]
            except BaseException as exc:
                _report_callback_error()
                raise _CallbackError("user-defined function raised exception") from exc
            if result is None or isinstance(result, (int, float, str, bytes, bytearray,
                                                     memoryview)):
                return result
            raise _CallbackError("user-defined function raised exception")

        self._con.create_scalar_function(name, call, narg, deterministic=deterministic)

    def create_aggregate(self, name: str, n_arg: int, aggregate_class: Any) -> None:
        self._check()
        if not -1 <= n_arg <= 127:
            raise OperationalError("Error creating aggregate")
        self._con.create_aggregate_function(name, _aggregate_factory(aggregate_class), n_arg)

    def create_window_function(self, name: str, num_params: int, aggregate_class: Any,
                               /) -> None:
        self._check()
        self._con.create_window_function(name, _window_factory(aggregate_class),
                                         num_params)

    def create_collation(self, name: str, callable: Callable[[str, str], int] | None,
                         /) -> None:
        self._check()
        if callable is not None and not hasattr(callable, "__call__"):
            raise TypeError("parameter must be callable")
        if callable is None:
            self._con.create_collation(name, None)
            return
        fn = callable

        def compare(a: str, b: str) -> int:
            try:
                result = fn(a, b)
            except BaseException as exc:
                _report_callback_error()
                raise _CallbackError("user-defined collation raised exception") from exc
            return int(result) if isinstance(result, int) else 0

        self._con.create_collation(name, compare)

    def set_authorizer(self, authorizer_callback: Callable[..., int] | None) -> None:
        self._check()
        if authorizer_callback is None:
            self._con.authorizer = None
            return
        fn = authorizer_callback

        def authorize(*args: Any) -> int:
            try:
                answer = fn(*args)
            except Exception:  # noqa: BLE001 - the stdlib denies then
                _report_callback_error()
                return SQLITE_DENY
            return answer if type(answer) is int else SQLITE_DENY

        self._con.authorizer = authorize

    def set_progress_handler(self, progress_handler: Callable[[], Any] | None,
                             n: int) -> None:
        self._check()
        if progress_handler is None:
            self._con.set_progress_handler(None)
            return
        fn = progress_handler

        def progress() -> bool:
            try:
                return bool(fn())
            except Exception:  # noqa: BLE001 - the stdlib aborts then
                _report_callback_error()
                return True

        self._con.set_progress_handler(progress, n)

    def set_trace_callback(self, trace_callback: Callable[[str], Any] | None) -> None:
        self._check()
        self._trace_callback = trace_callback

    def interrupt(self) -> None:
        if self._con is None:
            raise ProgrammingError("Cannot operate on a closed database.")
        self._con.interrupt()

    # -- limits, config, serialization, blobs ----------------------------------------
    def getlimit(self, category: int, /) -> int:
        self._check()
        try:
            return int(self._con.limit(category))
        except apsw.Error:
            raise ProgrammingError("'category' is out of bounds") from None

    def setlimit(self, category: int, limit: int, /) -> int:
        self._check()
        try:
            return int(self._con.limit(category, limit))
        except apsw.Error:
            raise ProgrammingError("'category' is out of bounds") from None

    def getconfig(self, op: int, /) -> bool:
        self._check()
        return bool(self._con.config(op, -1))

    def setconfig(self, op: int, enable: bool = True, /) -> bool:
        self._check()
        return bool(self._con.config(op, 1 if enable else 0))

    def serialize(self, *, name: str = "main") -> bytes:
        self._check()
        data = self._con.serialize(name)
        return b"" if data is None else bytes(data)

    def deserialize(self, data: bytes, /, *, name: str = "main") -> None:
        self._check()
        if self._replica:
            raise NotSupportedError(
                "litevfs.dbapi2: deserialize() would replace the replica with an in-memory "
                "copy; it is not supported on a replica connection")
        self._con.deserialize(name, bytes(data))

    def blobopen(self, table: str, column: str, row: int, /, *, readonly: bool = False,
                 name: str = "main") -> Blob:
        self._check()
        try:
            blob = self._con.blob_open(name, table, column, row, not readonly)
        except apsw.Error as exc:
            raise _sqlite_error(exc) from None
        return Blob(self, blob)

    def enable_load_extension(self, enabled: bool, /) -> None:
        self._check()
        if self._replica:
            raise NotSupportedError(
                "litevfs.dbapi2: enable_load_extension() is not supported on a replica "
                "connection: an extension runs inside the SQLite that serves every replica "
                "of the process, and one that replaces the default VFS breaks them (as "
                "Litestream's own extension does, litestream#1506)")
        self._con.enable_load_extension(bool(enabled))

    def load_extension(self, path: str, /, *, entrypoint: str | None = None) -> None:
        self._check()
        if self._replica:
            raise NotSupportedError(
                "litevfs.dbapi2: load_extension() is not supported on a replica connection "
                "(see enable_load_extension)")
        try:
            self._con.load_extension(path, entrypoint)
        except apsw.Error as exc:
            raise _sqlite_error(exc) from None

    # -- dump and backup -------------------------------------------------------------
    def iterdump(self, *, filter: str | None = None) -> Iterator[str]:
        """The stdlib's own dump (``sqlite3.dump``) run over this connection, so the SQL
        text is exactly what ``sqlite3`` writes."""
        self._check()
        from sqlite3 import dump  # the stdlib's dump module, only for iterdump()

        if filter is None:
            return dump._iterdump(self)  # type: ignore[no-any-return]
        return dump._iterdump(self, filter=filter)  # type: ignore[call-arg,no-any-return]

    def backup(self, target: Any, *, pages: int = -1,
               progress: Callable[[int, int, int], Any] | None = None,
               name: str = "main", sleep: float = 0.250) -> None:
        """Copy database ``name`` into ``target``'s main database: a connection of this
        module (SQLite's backup API directly) or a stdlib ``sqlite3.Connection``, which
        runs another SQLite library: then through a temporary file (this SQLite's backup
        into it, the stdlib's backup out of it, with ``pages``/``progress``/``sleep``)."""
        self._check()
        if target is self:
            raise ValueError("target cannot be the same connection instance")
        if isinstance(target, Connection):
            target._check()
            self._backup_to(target._con, "main", pages, progress, name, sleep)
            return
        if not isinstance(target, _std.Connection):
            raise TypeError("backup() argument 1 must be sqlite3.Connection, not "
                            f"{type(target).__name__}")
        import tempfile  # only for backup()

        with tempfile.TemporaryDirectory(prefix="litevfs-backup-") as tmp:
            path = os.path.join(tmp, "copy.db")
            staging = apsw.Connection(path)
            try:
                self._backup_to(staging, "main", -1, None, name, sleep)
            finally:
                staging.close()
            source = _std.connect(path)
            try:
                source.backup(target, pages=pages, progress=progress, sleep=sleep)
            finally:
                source.close()

    def _backup_to(self, dest: Any, dest_name: str, pages: int,
                   progress: Callable[[int, int, int], Any] | None, name: str,
                   sleep: float) -> None:
        step = -1 if pages == 0 or pages is None else int(pages)
        try:
            with dest.backup(dest_name, self._con, name) as backup:
                while not backup.done:
                    try:
                        backup.step(step)
                        status = apsw.SQLITE_OK if not backup.done else apsw.SQLITE_DONE
                    except (apsw.BusyError, apsw.LockedError) as exc:
                        status = exc.result
                        time.sleep(sleep)
                    if progress is not None:
                        progress(status, backup.remaining, backup.page_count)
        except apsw.Error as exc:
            raise _sqlite_error(exc) from None


def _aggregate_factory(cls: Any) -> Callable[[], Any]:
    def factory() -> tuple[Any, Callable[..., None], Callable[[Any], Any]]:
        try:
            instance = cls()
        except BaseException as exc:
            _report_callback_error()
            raise _CallbackError("user-defined aggregate's '__init__' method raised "
                                 "error") from exc

        def step(_ctx: Any, *args: Any) -> None:
            try:
                instance.step(*args)
            except BaseException as exc:
                _report_callback_error()
                raise _CallbackError("user-defined aggregate's 'step' method raised "
                                     "error") from exc

        def final(_ctx: Any) -> Any:
            try:
                return instance.finalize()
            except BaseException as exc:
                _report_callback_error()
                raise _CallbackError("user-defined aggregate's 'finalize' method raised "
                                     "error") from exc

        return None, step, final

    return factory


def _window_factory(cls: Any) -> Callable[[], Any]:
    def factory() -> tuple[Any, ...]:
        try:
            instance = cls()
        except BaseException as exc:
            _report_callback_error()
            raise _CallbackError("user-defined aggregate's '__init__' method raised "
                                 "error") from exc

        def method(attr: str) -> Callable[..., Any]:
            def call(_ctx: Any, *args: Any) -> Any:
                try:
                    return getattr(instance, attr)(*args)
                except BaseException as exc:
                    _report_callback_error()
                    raise _CallbackError(f"user-defined aggregate's '{attr}' method raised "
                                         "error") from exc
            return call

        return (None, method("step"), method("finalize"), method("value"),
                method("inverse"))

    return factory


def connect(database: Any = None, timeout: float = 5.0, detect_types: int = 0,
            isolation_level: str | None = "", check_same_thread: bool = True,
            factory: type[Connection] | None = None, cached_statements: int = 128,
            uri: bool = False, *, autocommit: bool | int = LEGACY_TRANSACTION_CONTROL,
            **options: Any) -> Connection:
    """``sqlite3.connect`` for replicas and local files (see ``litevfs.dbapi2``)."""
    cls = factory or Connection
    if not (isinstance(cls, type) and issubclass(cls, Connection)):
        raise TypeError("factory must be a subclass of litevfs.dbapi2.Connection")
    return cls(database, timeout, detect_types, isolation_level, check_same_thread,
               None, cached_statements, uri, autocommit=autocommit, **options)
