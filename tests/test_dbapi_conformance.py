"""The conformance suite: tests written against the stdlib ``sqlite3`` on a local file,
run unchanged against ``litevfs.dbapi2`` on a replica on SeaweedFS.

Each test takes ``mod`` (the module under test) and ``connect`` (a fresh writable
database: a local file for ``sqlite3``; for ``litevfs``, a new, empty replica prefix in
write mode, with both core twins) or ``connect_ro`` (the database replicated by the real
``litestream replicate``: the primary file opened read-only for ``sqlite3``, the replica
for ``litevfs``). The test bodies never ask which module they run on; the few features
that only Python 3.12's ``sqlite3`` has skip on older stdlib modules.
"""

from __future__ import annotations

import datetime
import decimal
import sqlite3
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from litevfs import dbapi2
from tests.dbapi_support import AUTHORS, BOOKS, LitestreamReplica, fill

pytestmark = [pytest.mark.s3]


@pytest.fixture(params=["sqlite3", "litevfs"])
def mod(request: pytest.FixtureRequest) -> ModuleType:
    return sqlite3 if request.param == "sqlite3" else dbapi2


@pytest.fixture
def connect(mod: ModuleType, core: ModuleType, tmp_path: Any,
            request: pytest.FixtureRequest) -> Iterator[Any]:
    opened: list[Any] = []
    if mod is sqlite3:
        path = tmp_path / "conformance.db"

        def make(**kw: Any) -> Any:
            con = sqlite3.connect(path, **kw)
            opened.append(con)
            return con
    else:
        url = request.getfixturevalue("fresh_s3_url")

        def make(**kw: Any) -> Any:
            con = dbapi2.connect(url, write=True, impl=core, **kw)
            opened.append(con)
            return con
    yield make
    for con in opened:
        try:
            con.close()
        except Exception:  # noqa: BLE001 - a test may leave it in any state
            pass


@pytest.fixture
def connect_ro(mod: ModuleType, core: ModuleType,
               litestream_replica: LitestreamReplica) -> Iterator[Any]:
    opened: list[Any] = []

    def make(**kw: Any) -> Any:
        if mod is sqlite3:
            con = sqlite3.connect(f"file:{litestream_replica.db_path}?mode=ro", uri=True, **kw)
        else:
            con = dbapi2.connect(litestream_replica.url, impl=core, **kw)
        opened.append(con)
        return con

    yield make
    for con in opened:
        con.close()


@pytest.fixture
def autocommit_attribute(mod: ModuleType) -> None:
    """Python 3.12's ``autocommit``: on older Pythons only the stdlib side skips;
    ``litevfs.dbapi2`` has it everywhere and runs the test."""
    if mod is sqlite3 and not hasattr(sqlite3.Connection, "autocommit"):
        pytest.skip("the stdlib sqlite3 of this Python has no autocommit attribute (3.12+)")


needs_autocommit = pytest.mark.usefixtures("autocommit_attribute")


def table(con: Any) -> None:
    con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v)")


# -- module surface ------------------------------------------------------------------


def test_module_attributes(mod: ModuleType) -> None:
    assert mod.apilevel == "2.0"
    assert mod.paramstyle == "qmark"
    assert mod.threadsafety in (0, 1, 3)
    assert isinstance(mod.sqlite_version, str)
    assert tuple(int(p) for p in mod.sqlite_version.split(".")) == mod.sqlite_version_info
    assert mod.PARSE_DECLTYPES == 1 and mod.PARSE_COLNAMES == 2
    assert mod.SQLITE_DENY == 1 and mod.SQLITE_IGNORE == 2 and mod.SQLITE_OK == 0
    assert mod.complete_statement("SELECT 1;") and not mod.complete_statement("SELECT 1")
    assert mod.Binary(b"x") == memoryview(b"x")


def test_exception_hierarchy(mod: ModuleType) -> None:
    assert issubclass(mod.Error, Exception)
    assert issubclass(mod.Warning, Exception)
    for name in ("InterfaceError", "DatabaseError"):
        assert issubclass(getattr(mod, name), mod.Error)
    for name in ("DataError", "OperationalError", "IntegrityError", "InternalError",
                 "ProgrammingError", "NotSupportedError"):
        assert issubclass(getattr(mod, name), mod.DatabaseError)


def test_connection_exposes_exceptions(connect: Any, mod: ModuleType) -> None:
    con = connect()
    assert con.Error is mod.Error and con.IntegrityError is mod.IntegrityError
    assert con.OperationalError is mod.OperationalError


# -- transactions (legacy isolation_level control) -----------------------------------


def test_dml_begins_a_transaction_select_and_ddl_do_not(connect: Any) -> None:
    con = connect()
    assert con.isolation_level == ""
    table(con)
    assert not con.in_transaction
    con.execute("SELECT * FROM t").fetchall()
    assert not con.in_transaction
    con.execute("INSERT INTO t(v) VALUES (1)")
    assert con.in_transaction
    con.commit()
    assert not con.in_transaction
    for sql in ("UPDATE t SET v = 2", "DELETE FROM t WHERE id = 5",
                "REPLACE INTO t VALUES (9, 9)", "  /* c */ -- x\n insert into t(v) values (3)"):
        con.execute(sql)
        assert con.in_transaction, sql
        con.rollback()


def test_rollback_undoes_and_commit_keeps(connect: Any) -> None:
    con = connect()
    table(con)
    con.execute("INSERT INTO t(v) VALUES ('kept')")
    con.commit()
    con.execute("INSERT INTO t(v) VALUES ('gone')")
    con.rollback()
    assert con.execute("SELECT v FROM t").fetchall() == [("kept",)]


def test_isolation_level_none_is_autocommit(connect: Any) -> None:
    con = connect(isolation_level=None)
    assert con.isolation_level is None
    table(con)
    con.execute("INSERT INTO t(v) VALUES (1)")
    assert not con.in_transaction
    con.execute("BEGIN")
    assert con.in_transaction
    con.execute("INSERT INTO t(v) VALUES (2)")
    con.commit()
    assert not con.in_transaction
    assert con.execute("SELECT count(*) FROM t").fetchone() == (2,)


def test_setting_isolation_level_none_commits(connect: Any) -> None:
    con = connect()
    table(con)
    con.execute("INSERT INTO t(v) VALUES (1)")
    assert con.in_transaction
    con.isolation_level = None
    assert not con.in_transaction
    con.rollback()
    assert con.execute("SELECT count(*) FROM t").fetchone() == (1,)


def test_isolation_levels_are_validated(connect: Any, mod: ModuleType) -> None:
    con = connect()
    for level in ("DEFERRED", "immediate", "EXCLUSIVE", ""):
        con.isolation_level = level
        assert con.isolation_level == level.upper()
    with pytest.raises(ValueError, match="isolation_level string must be"):
        con.isolation_level = "SERIALIZABLE"
    with pytest.raises(TypeError):
        con.isolation_level = 1


def test_immediate_begin(connect: Any) -> None:
    con = connect(isolation_level="IMMEDIATE")
    table(con)
    statements: list[str] = []
    con.set_trace_callback(statements.append)
    con.execute("INSERT INTO t(v) VALUES (1)")
    con.commit()
    con.set_trace_callback(None)
    assert statements == ["BEGIN IMMEDIATE", "INSERT INTO t(v) VALUES (1)", "COMMIT"]


def test_context_manager_commits_or_rolls_back(connect: Any) -> None:
    con = connect()
    table(con)
    with con:
        con.execute("INSERT INTO t(v) VALUES ('a')")
    assert not con.in_transaction
    with pytest.raises(ZeroDivisionError):
        with con:
            con.execute("INSERT INTO t(v) VALUES ('b')")
            1 / 0  # noqa: B018
    assert con.execute("SELECT v FROM t").fetchall() == [("a",)]
    assert con.__exit__(None, None, None) is False


def test_executescript_commits_first_and_runs_everything(connect: Any) -> None:
    con = connect()
    table(con)
    con.execute("INSERT INTO t(v) VALUES (1)")
    assert con.in_transaction
    cur = con.executescript("INSERT INTO t(v) VALUES (2); CREATE TABLE u(x);"
                            "INSERT INTO u VALUES (3); -- trailing comment")
    assert not con.in_transaction
    assert cur.fetchall() == []
    con.rollback()
    assert con.execute("SELECT count(*) FROM t").fetchone() == (2,)
    assert con.execute("SELECT x FROM u").fetchall() == [(3,)]


@needs_autocommit
def test_autocommit_false_keeps_a_transaction_open(connect: Any, mod: ModuleType) -> None:
    con = connect(autocommit=False)
    assert con.autocommit is False and con.in_transaction
    table(con)
    con.commit()
    assert con.in_transaction
    con.execute("INSERT INTO t(v) VALUES (1)")
    con.rollback()
    assert con.in_transaction
    assert con.execute("SELECT count(*) FROM t").fetchone() == (0,)
    con.autocommit = True
    assert not con.in_transaction
    con.execute("INSERT INTO t(v) VALUES (2)")
    assert not con.in_transaction
    con.autocommit = mod.LEGACY_TRANSACTION_CONTROL
    assert con.autocommit == -1
    with pytest.raises(ValueError, match="autocommit must be True, False"):
        con.autocommit = 5


@needs_autocommit
def test_autocommit_true_never_begins(connect: Any) -> None:
    con = connect(autocommit=True)
    table(con)
    con.execute("INSERT INTO t(v) VALUES (1)")
    assert not con.in_transaction
    con.commit()  # does nothing
    con.rollback()  # does nothing
    assert con.execute("SELECT count(*) FROM t").fetchone() == (1,)


# -- types -----------------------------------------------------------------------------


def test_value_types_round_trip(connect: Any) -> None:
    con = connect()
    values = [None, 0, -1, 2**63 - 1, -(2**63), 1.5, float("inf"), "", "héllo ✓",
              b"", b"\x00\xff" * 100]
    con.execute("CREATE TABLE v(x)")
    con.executemany("INSERT INTO v VALUES (?)", [(x,) for x in values])
    assert [r[0] for r in con.execute("SELECT x FROM v ORDER BY rowid")] == values
    assert con.execute("SELECT ?", (bytearray(b"ab"),)).fetchone() == (b"ab",)
    assert con.execute("SELECT ?", (memoryview(b"cd"),)).fetchone() == (b"cd",)
    assert con.execute("SELECT ?, ?", (True, False)).fetchone() == (1, 0)


def test_too_large_integer_is_an_overflow(connect: Any) -> None:
    con = connect()
    with pytest.raises(OverflowError):
        con.execute("SELECT ?", (2**64,))


def test_named_parameters(connect: Any) -> None:
    con = connect()
    assert con.execute("SELECT :a, @b, $c", {"a": 1, "b": 2, "c": 3}).fetchone() == (1, 2, 3)
    assert con.execute("SELECT ?1, ?2, ?1", (5, 6)).fetchone() == (5, 6, 5)


def test_adapters_and_conform(connect: Any, mod: ModuleType) -> None:
    class Point:
        def __init__(self, x: float, y: float) -> None:
            self.x, self.y = x, y

    class Conforming:
        def __conform__(self, protocol: Any) -> str:
            if protocol is mod.PrepareProtocol:
                return "conformed"
            return "?"

    mod.register_adapter(Point, lambda p: f"{p.x};{p.y}")
    try:
        con = connect()
        assert con.execute("SELECT ?", (Point(1, 2),)).fetchone() == ("1;2",)
        assert con.execute("SELECT ?", (Conforming(),)).fetchone() == ("conformed",)
        assert con.execute("SELECT :p", {"p": Point(3, 4)}).fetchone() == ("3;4",)
        assert mod.adapt(Point(5, 6)) == "5;6"
    finally:
        del mod.adapters[(Point, mod.PrepareProtocol)]


def test_decimal_adapter(connect: Any, mod: ModuleType) -> None:
    mod.register_adapter(decimal.Decimal, str)
    try:
        con = connect()
        assert con.execute("SELECT ?", (decimal.Decimal("1.10"),)).fetchone() == ("1.10",)
    finally:
        del mod.adapters[(decimal.Decimal, mod.PrepareProtocol)]


def test_converters_by_declared_type(connect: Any, mod: ModuleType) -> None:
    mod.register_converter("point", lambda b: tuple(float(x) for x in b.split(b";")))
    mod.register_converter("NUMBERS", lambda b: ("conv", b))
    try:
        con = connect(detect_types=mod.PARSE_DECLTYPES)
        con.execute("CREATE TABLE p(a point, b numbers(10), c INTEGER, d point)")
        con.execute("INSERT INTO p VALUES ('1;2', 42, 7, NULL)")
        assert con.execute("SELECT a, b, c, d FROM p").fetchone() == (
            (1.0, 2.0), ("conv", b"42"), 7, None)
    finally:
        del mod.converters["POINT"], mod.converters["NUMBERS"]


def test_converters_by_column_name(connect: Any, mod: ModuleType) -> None:
    mod.register_converter("upper", lambda b: b.decode().upper())
    try:
        con = connect(detect_types=mod.PARSE_COLNAMES)
        cur = con.execute("SELECT 'abc' AS \"x [upper]\", 'def' AS y")
        assert cur.fetchone() == ("ABC", "def")
        assert [d[0] for d in cur.description] == ["x", "y"]
    finally:
        del mod.converters["UPPER"]


def test_float_reaches_a_converter_as_sqlite_text(connect: Any, mod: ModuleType) -> None:
    mod.register_converter("ftext", lambda b: b)
    try:
        con = connect(detect_types=mod.PARSE_DECLTYPES)
        con.execute("CREATE TABLE f(x ftext)")
        con.execute("INSERT INTO f VALUES (2.5)")
        assert con.execute("SELECT x FROM f").fetchone() == (b"2.5",)
    finally:
        del mod.converters["FTEXT"]


def test_default_date_and_timestamp_converters(connect: Any, mod: ModuleType) -> None:
    con = connect(detect_types=mod.PARSE_DECLTYPES)
    con.execute("CREATE TABLE d(day date, at timestamp)")
    con.execute("INSERT INTO d VALUES ('2024-02-29', '2024-02-29 12:30:00')")
    assert con.execute("SELECT day, at FROM d").fetchone() == (
        datetime.date(2024, 2, 29), datetime.datetime(2024, 2, 29, 12, 30))


def test_text_factory(connect: Any) -> None:
    con = connect()
    con.text_factory = bytes
    assert con.execute("SELECT 'é', 1, x'00'").fetchone() == ("é".encode(), 1, b"\x00")
    con.text_factory = lambda b: b.decode().upper()
    assert con.execute("SELECT 'abc'").fetchone() == ("ABC",)
    con.text_factory = str
    assert con.execute("SELECT 'abc'").fetchone() == ("abc",)


# -- rows ------------------------------------------------------------------------------


def test_row_factory_row(connect: Any, mod: ModuleType) -> None:
    con = connect()
    con.row_factory = mod.Row
    row = con.execute("SELECT 1 AS id, 'x' AS Name").fetchone()
    assert isinstance(row, mod.Row)
    assert row.keys() == ["id", "Name"]
    assert row["name"] == row["NAME"] == row[1] == "x"
    assert row[-1] == "x" and row[0:2] == (1, "x")
    assert len(row) == 2 and list(row) == [1, "x"] and tuple(row) == (1, "x")
    other = con.execute("SELECT 1 AS id, 'x' AS Name").fetchone()
    assert row == other and hash(row) == hash(other)
    with pytest.raises(IndexError):
        row["missing"]


def test_custom_row_factories(connect: Any) -> None:
    con = connect()
    con.row_factory = lambda cur, row: {d[0]: v for d, v in zip(cur.description, row)}
    assert con.execute("SELECT 1 AS a, 2 AS b").fetchone() == {"a": 1, "b": 2}
    cur = con.cursor()
    cur.row_factory = lambda c, r: r[0]
    assert cur.execute("SELECT 5").fetchall() == [5]
    con.row_factory = None
    assert con.execute("SELECT 1").fetchone() == (1,)


# -- cursor ------------------------------------------------------------------------------


def test_description_rowcount_lastrowid(connect: Any) -> None:
    con = connect()
    cur = con.cursor()
    assert cur.description is None and cur.rowcount == -1 and cur.lastrowid is None
    assert cur.arraysize == 1 and cur.connection is con
    cur.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    assert cur.description is None
    cur.execute("INSERT INTO t(v) VALUES ('a')")
    assert cur.description is None and cur.rowcount == 1 and cur.lastrowid == 1
    cur.executemany("INSERT INTO t(v) VALUES (?)", [("b",), ("c",)])
    assert cur.rowcount == 2 and cur.lastrowid == 1
    cur.execute("UPDATE t SET v = v || '!'")
    assert cur.rowcount == 3
    cur.execute("SELECT id, v FROM t WHERE 0")
    assert cur.description == (("id", None, None, None, None, None, None),
                               ("v", None, None, None, None, None, None))
    assert cur.rowcount == -1 and cur.fetchall() == []
    cur.execute("DELETE FROM t WHERE id > 1")
    assert cur.rowcount == 2


def test_returning_counts_once_fetched(connect: Any) -> None:
    con = connect()
    table(con)
    cur = con.execute("INSERT INTO t(v) VALUES (1), (2) RETURNING id")
    assert cur.description[0][0] == "id"
    assert cur.fetchall() == [(1,), (2,)]
    assert cur.rowcount == 2


def test_fetch_styles(connect: Any) -> None:
    con = connect()
    table(con)
    con.executemany("INSERT INTO t(v) VALUES (?)", ((i,) for i in range(10)))
    cur = con.execute("SELECT v FROM t ORDER BY id")
    assert cur.fetchone() == (0,)
    assert cur.fetchmany() == [(1,)]
    cur.arraysize = 3
    assert cur.fetchmany() == [(2,), (3,), (4,)]
    assert cur.fetchmany(2) == [(5,), (6,)]
    assert list(cur) == [(7,), (8,), (9,)]
    assert cur.fetchone() is None and cur.fetchall() == [] and cur.fetchmany(5) == []


def test_cursor_closed_and_connection_closed(connect: Any, mod: ModuleType) -> None:
    con = connect()
    cur = con.cursor()
    cur.close()
    with pytest.raises(mod.ProgrammingError, match="closed cursor"):
        cur.execute("SELECT 1")
    cur2 = con.execute("SELECT 1")
    con.close()
    with pytest.raises(mod.ProgrammingError, match="closed database"):
        con.execute("SELECT 1")
    with pytest.raises(mod.ProgrammingError, match="closed database"):
        cur2.fetchall()
    con.close()  # twice is fine


def test_setinputsizes_are_accepted(connect: Any) -> None:
    cur = connect().cursor()
    cur.setinputsizes([1])
    cur.setoutputsize(1)
    cur.setoutputsize(1, 0)


# -- errors ------------------------------------------------------------------------------


def test_integrity_error(connect: Any, mod: ModuleType) -> None:
    con = connect()
    con.execute("CREATE TABLE u(x UNIQUE NOT NULL)")
    con.execute("INSERT INTO u VALUES (1)")
    with pytest.raises(mod.IntegrityError, match="UNIQUE constraint failed: u.x") as info:
        con.execute("INSERT INTO u VALUES (1)")
    assert info.value.sqlite_errorname == "SQLITE_CONSTRAINT_UNIQUE"
    with pytest.raises(mod.IntegrityError, match="NOT NULL"):
        con.execute("INSERT INTO u VALUES (NULL)")


def test_operational_errors(connect: Any, mod: ModuleType) -> None:
    con = connect()
    with pytest.raises(mod.OperationalError, match="no such table: nope") as info:
        con.execute("SELECT * FROM nope")
    assert info.value.sqlite_errorcode == 1 and info.value.sqlite_errorname == "SQLITE_ERROR"
    with pytest.raises(mod.OperationalError, match='near "SELEC": syntax error'):
        con.execute("SELEC 1")


def test_programming_errors(connect: Any, mod: ModuleType) -> None:
    con = connect()
    cases = [
        (("SELECT 1; SELECT 2",), "You can only execute one statement at a time."),
        (("SELECT ?", (1, 2)), "Incorrect number of bindings supplied. The current "
                               "statement uses 1, and there are 2 supplied."),
        (("SELECT :a", {"b": 1}), "You did not supply a value for binding parameter :a."),
        (("SELECT ?", {"b": 1}), "Binding 1 has no name, but you supplied a dictionary "
                                 "(which has only names)."),
        (("SELECT ?", (object(),)), "Error binding parameter 1: type 'object' is not "
                                    "supported"),
        (("SELECT ?", 5), "parameters are of unsupported type"),
    ]
    for args, message in cases:
        with pytest.raises(mod.ProgrammingError) as info:
            con.execute(*args)
        assert str(info.value) == message
    with pytest.raises(TypeError):
        con.execute(b"SELECT 1")  # type: ignore[arg-type]
    assert con.execute("SELECT 1; -- only a comment after it").fetchone() == (1,)
    con.execute("CREATE TABLE tg(x)")
    con.execute("CREATE TRIGGER tr AFTER INSERT ON tg BEGIN SELECT 1; SELECT 2; END")


def test_executemany_refuses_queries(connect: Any, mod: ModuleType) -> None:
    con = connect()
    with pytest.raises(mod.ProgrammingError, match="executemany\\(\\) can only execute DML"):
        con.executemany("SELECT ?", [(1,)])


def test_errors_are_caught_as_the_stdlib_classes(connect: Any) -> None:
    con = connect()
    with pytest.raises(sqlite3.OperationalError):
        con.execute("SELECT * FROM nope")
    with pytest.raises(sqlite3.Error):
        con.execute("SELECT ?", (1, 2))


# -- user-defined functions --------------------------------------------------------------


def test_create_function(connect: Any, mod: ModuleType) -> None:
    con = connect()
    con.create_function("twice", 1, lambda x: None if x is None else x * 2, deterministic=True)
    assert con.execute("SELECT twice(21), twice('ab'), twice(NULL)").fetchone() == (
        42, "abab", None)
    con.create_function("boom", 0, lambda: 1 / 0)
    with pytest.raises(mod.OperationalError, match="user-defined function raised exception"):
        con.execute("SELECT boom()").fetchone()
    con.create_function("twice", 1, None)
    with pytest.raises(mod.OperationalError, match="user-defined function raised exception"):
        con.execute("SELECT twice(1)").fetchone()
    with pytest.raises(mod.OperationalError, match="Error creating function"):
        con.create_function("bad", 300, lambda: 1)


def test_create_aggregate(connect: Any, mod: ModuleType) -> None:
    class Product:
        def __init__(self) -> None:
            self.value = 1

        def step(self, x: int) -> None:
            self.value *= x

        def finalize(self) -> int:
            return self.value

    class Broken(Product):
        def step(self, x: int) -> None:
            raise ValueError("no")

    con = connect()
    con.execute("CREATE TABLE n(x)")
    con.executemany("INSERT INTO n VALUES (?)", [(2,), (3,), (7,)])
    con.create_aggregate("product", 1, Product)
    assert con.execute("SELECT product(x) FROM n").fetchone() == (42,)
    con.create_aggregate("broken", 1, Broken)
    with pytest.raises(mod.OperationalError, match="'step' method raised error"):
        con.execute("SELECT broken(x) FROM n").fetchone()


def test_create_window_function(connect: Any) -> None:
    if not hasattr(connect().__class__, "create_window_function"):
        pytest.skip("no window functions in this sqlite3")

    class Sum:
        def __init__(self) -> None:
            self.total = 0

        def step(self, x: int) -> None:
            self.total += x

        def inverse(self, x: int) -> None:
            self.total -= x

        def value(self) -> int:
            return self.total

        def finalize(self) -> int:
            return self.total

    con = connect()
    con.create_window_function("wsum", 1, Sum)
    rows = con.execute("SELECT wsum(x) OVER (ORDER BY x ROWS BETWEEN 1 PRECEDING AND CURRENT "
                       "ROW) FROM (SELECT 1 AS x UNION ALL SELECT 2 UNION ALL SELECT 3)")
    assert rows.fetchall() == [(1,), (3,), (5,)]


def test_create_collation(connect: Any) -> None:
    con = connect()
    con.create_collation("reverse", lambda a, b: (a < b) - (a > b))
    con.execute("CREATE TABLE s(x)")
    con.executemany("INSERT INTO s VALUES (?)", [("a",), ("c",), ("b",)])
    assert [r[0] for r in con.execute("SELECT x FROM s ORDER BY x COLLATE reverse")] == [
        "c", "b", "a"]
    with pytest.raises(TypeError):
        con.create_collation("x", 5)


def test_authorizer(connect: Any, mod: ModuleType) -> None:
    con = connect()
    con.execute("CREATE TABLE secret(x)")
    con.execute("CREATE TABLE open(x)")

    def deny_secret(action: int, arg1: Any, arg2: Any, db: Any, source: Any) -> int:
        return mod.SQLITE_DENY if arg1 == "secret" else mod.SQLITE_OK

    con.set_authorizer(deny_secret)
    with pytest.raises(mod.DatabaseError, match="access to secret.x is prohibited"):
        con.execute("SELECT * FROM secret")
    assert con.execute("SELECT * FROM open").fetchall() == []
    con.set_authorizer(None)
    assert con.execute("SELECT * FROM secret").fetchall() == []


def test_progress_handler_can_abort(connect: Any, mod: ModuleType) -> None:
    con = connect()
    calls: list[int] = []
    con.set_progress_handler(lambda: calls.append(1) or len(calls) > 2, 10)
    with pytest.raises(mod.OperationalError, match="interrupted"):
        con.execute("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
                    "LIMIT 100000) SELECT count(*) FROM c").fetchone()
    con.set_progress_handler(None, 0)
    assert con.execute("SELECT 1").fetchone() == (1,)


def test_trace_callback_sees_expanded_statements(connect: Any) -> None:
    con = connect()
    seen: list[str] = []
    con.set_trace_callback(seen.append)
    con.execute("CREATE TABLE t(x)")
    con.execute("INSERT INTO t VALUES (?)", (5,))
    con.commit()
    con.set_trace_callback(None)
    con.execute("SELECT 1")
    assert seen == ["CREATE TABLE t(x)", "BEGIN ", "INSERT INTO t VALUES (5)", "COMMIT"]


def test_total_changes(connect: Any) -> None:
    con = connect()
    table(con)
    before = con.total_changes
    con.executemany("INSERT INTO t(v) VALUES (?)", [(1,), (2,), (3,)])
    con.execute("DELETE FROM t")
    assert con.total_changes - before == 6


def test_limits(connect: Any, mod: ModuleType) -> None:
    if not hasattr(mod, "SQLITE_LIMIT_SQL_LENGTH"):
        pytest.skip("no limits in this sqlite3")
    con = connect()
    old = con.getlimit(mod.SQLITE_LIMIT_SQL_LENGTH)
    assert con.setlimit(mod.SQLITE_LIMIT_SQL_LENGTH, 100) == old
    with pytest.raises(mod.DataError):
        con.execute("SELECT '" + "x" * 200 + "'")
    con.setlimit(mod.SQLITE_LIMIT_SQL_LENGTH, old)


def test_blob_io(connect: Any) -> None:
    con = connect()
    con.execute("CREATE TABLE b(x)")
    con.execute("INSERT INTO b VALUES (zeroblob(10))")
    con.commit()
    with con.blobopen("b", "x", 1) as blob:
        blob.write(b"hello")
        blob.seek(0)
        assert blob.read(5) == b"hello"
        assert len(blob) == 10 and blob.tell() == 5
        with pytest.raises(ValueError):
            blob.write(b"x" * 20)
    con.commit()
    assert con.execute("SELECT x FROM b").fetchone()[0][:5] == b"hello"


# -- dump, backup, serialize --------------------------------------------------------------


def test_iterdump(connect: Any) -> None:
    con = connect()
    fill(con)
    dump = list(con.iterdump())
    assert dump[0] == "BEGIN TRANSACTION;" and dump[-1] == "COMMIT;"
    reference = sqlite3.connect(":memory:")
    fill(reference)
    assert dump == list(reference.iterdump())


def test_backup_to_a_local_sqlite3_database(connect: Any, tmp_path: Any) -> None:
    con = connect()
    fill(con)
    target = sqlite3.connect(tmp_path / "backup.db")
    progress: list[tuple[int, int, int]] = []
    con.backup(target, pages=1, progress=lambda *a: progress.append(a))
    assert target.execute("SELECT count(*) FROM books").fetchone() == (len(BOOKS),)
    assert progress and progress[-1][1] == 0
    with pytest.raises(ValueError):
        con.backup(con)
    target.close()


def test_serialize(connect: Any) -> None:
    con = connect()
    fill(con)
    con.commit()
    data = con.serialize()
    assert data[:16] == b"SQLite format 3\x00"
    copy = sqlite3.connect(":memory:")
    copy.deserialize(data)
    assert copy.execute("SELECT count(*) FROM authors").fetchone() == (len(AUTHORS),)


# -- the read-only replica made by litestream ----------------------------------------------


def test_reads_what_litestream_replicated(connect_ro: Any, mod: ModuleType) -> None:
    con = connect_ro(detect_types=mod.PARSE_DECLTYPES)
    con.row_factory = mod.Row
    rows = con.execute("SELECT a.name, a.born, count(b.id) AS n FROM authors a "
                       "JOIN books b ON b.author_id = a.id GROUP BY a.id ORDER BY a.id")
    got = [(r["name"], r["born"], r["n"]) for r in rows]
    assert got == [("Ada", datetime.date(1815, 12, 10), 13),
                   ("Grace", datetime.date(1906, 12, 9), 14),
                   ("Linus", datetime.date(1969, 12, 28), 13)]
    assert con.execute("SELECT cover FROM books WHERE id = 13").fetchone()["cover"] == (
        bytes([13]) * 6)


def test_read_only_database_refuses_writes(connect_ro: Any, mod: ModuleType) -> None:
    con = connect_ro()
    with pytest.raises(mod.OperationalError,
                       match="attempt to write a readonly database") as info:
        con.execute("INSERT INTO authors(name) VALUES ('Edsger')")
    assert info.value.sqlite_errorname.startswith("SQLITE_READONLY")
    con.rollback()
    with pytest.raises(mod.OperationalError, match="readonly"):
        con.execute("CREATE TABLE x(y)")


def test_iterdump_of_the_replica_matches(connect_ro: Any,
                                         litestream_replica: LitestreamReplica) -> None:
    dump = list(connect_ro().iterdump())
    reference = sqlite3.connect(f"file:{litestream_replica.db_path}?mode=ro", uri=True)
    assert dump == list(reference.iterdump())
    assert "INSERT INTO \"authors\" VALUES(1,'Ada','1815-12-10');" in dump


def test_named_parameters_with_a_sequence_follow_this_python(connect: Any) -> None:
    con = connect()
    if sys.version_info >= (3, 12):
        with pytest.warns(DeprecationWarning, match="named parameter"):
            con.execute("SELECT :a", (1,))
    else:
        assert con.execute("SELECT :a", (1,)).fetchone() == (1,)
