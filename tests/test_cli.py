"""The command line as a user runs it (``python -m litevfs ...`` in a subprocess): every
error a user can cause is one line on stderr and exit 1 (2 for a bad command line),
output formats, Litestream's restore flags, help texts, log levels."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import litevfs


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 60
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "litevfs", *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=timeout)


def one_error_line(proc: subprocess.CompletedProcess[str], code: int = 1) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def replica(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A file:// replica of a small database (written by litevfs' write mode)."""
    base = tmp_path_factory.mktemp("cli")
    url = f"file://{base / 'replica'}"
    con = litevfs.connect(url, write=True, buffer_path=str(base / "w.wbuf"))
    # One transaction: TXID 1 is the whole database whenever the syncer runs (a sync
    # between two transactions made `-txid 1` restore an empty table under load).
    con.execute("BEGIN")
    con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, b BLOB)")
    con.execute("INSERT INTO t(name, b) VALUES ('a', x'00ff'), ('b,c', NULL)")
    con.execute("COMMIT")
    con.close()
    return url


# -- query ---------------------------------------------------------------------------


def test_sql_errors_are_one_line(replica: str) -> None:
    line = one_error_line(run("query", replica, "select * from nosuchtable"))
    assert line == "litevfs query: SQLError: no such table: nosuchtable"
    line = one_error_line(run("query", replica, "insert into t(name) values ('x')"))
    assert "ReadOnlyError" in line and "read-only" in line
    line = one_error_line(run("query", replica, "selec 1"))
    assert "syntax error" in line


def test_text_output_has_a_header(replica: str) -> None:
    proc = run("query", replica, "select id, name, b from t order by id")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["id\tname\tb", "1\ta\tx'00ff'", "2\tb,c\tNULL"]
    proc = run("query", replica, "select id from t where id > 5")
    assert proc.stdout.splitlines() == ["id"]  # no rows: the header still says what they are
    proc = run("query", "--no-header", replica, "select id from t order by id")
    assert proc.stdout.splitlines() == ["1", "2"]


def test_json_rows_are_objects_keyed_by_column(replica: str) -> None:
    proc = run("query", replica, "select id, name, b, id from t order by id", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [
        {"id": 1, "name": "a", "b": "AP8=", "id_2": 1},
        {"id": 2, "name": "b,c", "b": None, "id_2": 2}]
    proc = run("query", replica, "select id, name from t order by id", "--json-arrays")
    assert json.loads(proc.stdout) == [[1, "a"], [2, "b,c"]]
    proc = run("query", replica, "select id from t where 0", "--json")
    assert json.loads(proc.stdout) == []


def test_csv_output(replica: str) -> None:
    proc = run("query", "--csv", replica, "select id, name, b from t order by id")
    assert proc.returncode == 0, proc.stderr
    assert list(csv.reader(io.StringIO(proc.stdout))) == [
        ["id", "name", "b"], ["1", "a", "x'00ff'"], ["2", "b,c", ""]]
    proc = run("query", "--csv", "--json", replica, "select 1")
    assert proc.returncode == 2 and "not allowed with" in proc.stderr


def test_several_statements_each_with_its_header(replica: str) -> None:
    proc = run("query", replica, "select count(*) as n from t; select 'x' as a, 'y' as b")
    assert proc.stdout.splitlines() == ["n", "2", "a\tb", "x\ty"]


# -- fail fast -------------------------------------------------------------------------


def test_one_slash_url_typo_fails_at_once_naming_it() -> None:
    started = time.monotonic()
    line = one_error_line(run("query", "s3:/bucket/db?endpoint=http://127.0.0.1:9", "select 1"))
    assert time.monotonic() - started < 5
    assert "malformed replica URL 's3:/bucket/db'" in line and "s3://" in line
    line = one_error_line(run("ls", "s3:bucket/db"))
    assert "malformed replica URL" in line


def test_missing_directory_fails_at_once(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    started = time.monotonic()
    line = one_error_line(run("query", str(missing), "select 1"))
    assert time.monotonic() - started < 5
    assert f"directory {missing} does not exist" in line and "--wait-for-replica" in line
    line = one_error_line(run("ls", f"file://{missing}"))
    assert "does not exist" in line


def test_waiting_for_an_empty_replica_is_asked_for(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    started = time.monotonic()
    line = one_error_line(run("query", "--wait-for-replica", "1s", str(empty), "select 1"))
    assert time.monotonic() - started >= 1
    assert "waited 1s" in line


def test_info_of_an_empty_replica_fails_without_a_cost_line(tmp_path: Path,
                                                            replica: str) -> None:
    line = one_error_line(run("info", str(tmp_path)))
    assert "has no LTX files" in line
    proc = run("info", replica)
    assert proc.returncode == 0, proc.stderr
    assert "TXID" in proc.stdout and "cost" not in proc.stdout  # no S3 request price for file://
    info = json.loads(run("info", "--json", replica).stdout)
    assert info["estimated_cost_usd"] is None
    proc = run("info", "--json", str(tmp_path))
    assert proc.returncode == 1 and json.loads(proc.stdout)["txid"] is None


# -- restore ---------------------------------------------------------------------------


def test_restore_with_litestreams_flags(replica: str, tmp_path: Path) -> None:
    out = tmp_path / "out.db"
    proc = run("restore", replica, "-o", str(out), "-parallelism", "2", "-txid", "1")
    assert proc.returncode == 0, proc.stderr
    assert "restored" in proc.stderr
    con = litevfs.connect(replica)
    want = con.execute("select count(*) from t").fetchone()
    con.close()
    import sqlite3

    assert sqlite3.connect(out).execute("select count(*) from t").fetchone() == want
    before = out.read_bytes()
    out.write_bytes(b"mine")
    proc = run("restore", replica, "-o", str(out), "-if-db-not-exists")
    assert proc.returncode == 0 and out.read_bytes() == b"mine"
    assert "already exists" in proc.stderr
    proc = run("restore", replica, "--output", str(out), "--if-db-not-exists", "-q")
    assert proc.returncode == 0 and proc.stderr == ""
    line = one_error_line(run("restore", replica, "-o", str(out)))
    assert "exists" in line and out.read_bytes() == b"mine"
    out.unlink()
    proc = run("restore", replica, "-o", str(out), "--parallel", "3", "--quiet")
    assert proc.returncode == 0 and out.read_bytes() == before


def test_restore_if_replica_exists(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    out = tmp_path / "out.db"
    proc = run("restore", f"file://{empty}", "-o", str(out), "-if-replica-exists")
    assert proc.returncode == 0 and not out.exists()
    assert "no backups" in proc.stderr
    line = one_error_line(run("restore", f"file://{empty}", "-o", str(out)))
    assert "has no LTX files" in line and not out.exists()


def test_restore_timestamps_relative_and_before_the_first_file(replica: str,
                                                               tmp_path: Path) -> None:
    out = tmp_path / "out.db"
    line = one_error_line(run("restore", replica, "-o", str(out), "-timestamp",
                              "2000-01-01T00:00:00Z"))
    assert "no backup files available before 2000-01-01T00:00:00Z" in line
    line = one_error_line(run("restore", replica, "-o", str(out), "--timestamp",
                              "100 weeks ago"))
    assert "no backup files available before" in line
    proc = run("restore", replica, "-o", str(out), "--timestamp", "now")
    assert proc.returncode == 0, proc.stderr
    line = one_error_line(run("restore", replica, "-o", str(out), "--timestamp", "someday"),
                          code=2)
    assert "invalid timestamp" in line


def test_bad_arguments_are_one_line(replica: str, tmp_path: Path) -> None:
    one_error_line(run("restore", replica, "-o", str(tmp_path / "x.db"), "-parallelism", "0"),
                   code=2)
    one_error_line(run("restore", replica, "-o", str(tmp_path / "x.db"), "--txid", "zz"),
                   code=2)
    one_error_line(run("ls", replica, "--read-timeout", "0"), code=2)
    line = one_error_line(run("unsynced", "export", str(tmp_path / "none.wbuf"), "-o",
                              str(tmp_path / "x.db")))
    assert "none.wbuf" in line
    line = one_error_line(run("query", replica, "select 1", env={"LITEVFS_CACHE_SIZE": "lots"}))
    assert "cache_size" in line


# -- help and logging ------------------------------------------------------------------


@pytest.mark.parametrize("command", ["ls", "query", "info", "restore"])
def test_help_describes_arguments_and_credentials(command: str) -> None:
    proc = run(command, "--help")
    assert proc.returncode == 0
    text = proc.stdout
    assert "url" in text and "s3://bucket/path?endpoint=" in text
    assert "AWS_ACCESS_KEY_ID" in text and "LITESTREAM_ACCESS_KEY_ID" in text
    assert "--read-timeout" in text and "--connect-timeout" in text


def test_litevfs_log_level_is_read(replica: str) -> None:
    proc = run("query", replica, "select 1", env={"LITEVFS_LOG_LEVEL": "DEBUG",
                                                   "LITESTREAM_LOG_LEVEL": ""})
    assert proc.returncode == 0 and "DEBUG litevfs" in proc.stderr
    proc = run("query", replica, "select * from nosuchtable",
               env={"LITEVFS_LOG_LEVEL": "debug", "LITESTREAM_LOG_LEVEL": ""})
    assert proc.returncode == 1 and "Traceback" in proc.stderr  # DEBUG shows it
    line = one_error_line(run("ls", replica, env={"LITEVFS_LOG_LEVEL": "loud",
                                                  "LITESTREAM_LOG_LEVEL": ""}), code=2)
    assert "LITEVFS_LOG_LEVEL" in line
