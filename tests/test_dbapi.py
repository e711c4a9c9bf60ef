"""litevfs.dbapi2 beyond the conformance suite: 3.12's autocommit on any Python, the
stdlib-connection disguise, statements released with their cursor, litevfs errors as
DB-API classes, sqlite3-only features refused by name, local databases, per-connection
credentials that never show up in reprs, logs or errors."""

from __future__ import annotations

import gc
import logging
import sqlite3
import weakref
from pathlib import Path
from types import ModuleType

import pytest

import litevfs
from litevfs import dbapi2
from litevfs.config import Config
from tests.dbapi_support import LitestreamReplica
from tests.rig.seaweed import SeaweedServer, s3_replica_url


def test_autocommit_attribute_as_python_312(core: ModuleType) -> None:
    """The sequence Python 3.12's sqlite3 produces (recorded from 3.12.1)."""
    con = dbapi2.connect("memory://ac-" + core.__name__, write=True, impl=core,
                         autocommit=False)
    assert con.in_transaction and con.isolation_level == ""
    con.execute("CREATE TABLE t(x)")
    con.commit()
    assert con.in_transaction
    con.autocommit = True
    assert not con.in_transaction
    with con:
        con.execute("INSERT INTO t VALUES (1)")
    assert not con.in_transaction
    con.autocommit = False
    assert con.in_transaction
    con.rollback()
    assert con.in_transaction
    con.isolation_level = None  # no commit outside the legacy mode
    assert con.in_transaction and con.isolation_level is None
    with pytest.raises(ValueError, match="autocommit must be True, False, or"):
        con.autocommit = 1
    con.close()


def test_a_stdlib_connection_to_isinstance_checks() -> None:
    con = dbapi2.connect(":memory:")
    assert isinstance(con, sqlite3.Connection)
    # Every public attribute of the stdlib class is this module's, so nothing reaches
    # the unused handle underneath.
    for name in dir(sqlite3.Connection):
        if name.startswith("_") and name not in ("__enter__", "__exit__", "__call__"):
            continue
        owner = next(k for k in type(con).__mro__ if name in vars(k))
        assert owner is not sqlite3.Connection, name
    con.close()


def test_a_dropped_cursor_releases_its_statement() -> None:
    con = dbapi2.connect(":memory:")
    con.execute("CREATE TABLE t(x)")
    con.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(10)])
    con.commit()
    gc.disable()
    try:
        cur = con.execute("SELECT x FROM t")
        cur.fetchone()
        ref = weakref.ref(cur)
        del cur
        assert ref() is None  # freed by reference counting: no cycle holds it
    finally:
        gc.enable()
    con.close()


def test_sqlite3_only_features_are_refused_by_name(core: ModuleType) -> None:
    con = dbapi2.connect("memory://ns-" + core.__name__, write=True, impl=core)
    for call, name in ((lambda: con.enable_load_extension(True), "enable_load_extension"),
                       (lambda: con.load_extension("x"), "load_extension"),
                       (lambda: con.deserialize(b""), "deserialize"),
                       (lambda: con("SELECT 1"), "calling a Connection")):
        with pytest.raises(dbapi2.NotSupportedError, match=name):
            call()
    con.close()


def test_local_databases_are_stdlib_equivalent(tmp_path: Path) -> None:
    path = tmp_path / "local.db"
    con = dbapi2.connect(path)
    con.execute("CREATE TABLE t(x)")
    con.commit()
    con.close()
    assert sqlite3.connect(path).execute("SELECT name FROM sqlite_master").fetchall() == [("t",)]
    ro = dbapi2.connect(f"file:{path}?mode=ro", uri=True)
    with pytest.raises(dbapi2.OperationalError, match="readonly"):
        ro.execute("INSERT INTO t VALUES (1)")
    ro.close()
    mem = dbapi2.connect(":memory:")
    mem.deserialize(sqlite3.connect(path).serialize())
    assert mem.execute("SELECT count(*) FROM t").fetchone() == (0,)
    with pytest.raises(litevfs.ConfigError, match="option 'poll_interval' applies to replica"):
        dbapi2.connect(path, poll_interval="1s")
    with pytest.raises(litevfs.ConfigError, match="unknown litevfs option 'pol_interval'"):
        dbapi2.connect("memory://x", pol_interval="1s")


def test_litevfs_errors_are_dbapi_errors(core: ModuleType, seaweed: SeaweedServer,
                                         shared_bucket: str) -> None:
    empty = s3_replica_url(shared_bucket, "nothing-here", seaweed.endpoint)
    with pytest.raises(dbapi2.OperationalError) as info:
        dbapi2.connect(empty, impl=core)
    assert isinstance(info.value, litevfs.EmptyReplicaError)
    assert isinstance(info.value, dbapi2.EmptyReplicaError)
    missing = s3_replica_url("no-such-bucket-here", "db", seaweed.endpoint)
    with pytest.raises(dbapi2.StorageError) as info2:
        dbapi2.connect(missing, impl=core)
    assert isinstance(info2.value, litevfs.BucketNotFoundError)
    assert isinstance(info2.value, sqlite3.OperationalError)


@pytest.fixture
def no_env_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                "LITESTREAM_ACCESS_KEY_ID", "LITESTREAM_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(var, raising=False)


def test_per_connection_credentials(core: ModuleType, litestream_replica: LitestreamReplica,
                                    no_env_credentials: None,
                                    caplog: pytest.LogCaptureFixture) -> None:
    server = litestream_replica.server
    url = litestream_replica.url.split("?")[0]  # endpoint and region as keywords instead
    caplog.set_level(logging.DEBUG)
    con = litevfs.connect(url, impl=core, endpoint=server.endpoint, region=server.region,
                          access_key_id=server.access_key, secret_access_key=server.secret_key)
    assert con.execute("SELECT count(*) FROM authors").fetchone() == (3,)
    con.close()
    dcon = dbapi2.connect(url, impl=core, endpoint=server.endpoint,
                          access_key_id=server.access_key, secret_access_key=server.secret_key,
                          poll_interval="50ms")
    assert dcon.execute("SELECT count(*) FROM books").fetchone() == (40,)
    dcon.close()
    wrong = "not-the-secret-" + server.secret_key[:4]
    with pytest.raises(litevfs.AccessDeniedError) as info:
        litevfs.connect(url + "-other", impl=core, endpoint=server.endpoint,
                        access_key_id=server.access_key, secret_access_key=wrong)
    assert "keyword arguments" in str(info.value)
    with pytest.raises(dbapi2.OperationalError) as info2:
        dbapi2.connect(url + "-third", impl=core, endpoint=server.endpoint,
                       access_key_id=server.access_key, secret_access_key=wrong,
                       session_token="tok-" + wrong)
    config = Config.resolve({"replica_url": url, "access_key_id": "k",
                             "secret_access_key": wrong, "session_token": "tok-" + wrong})
    for text in (str(info.value), repr(info.value), str(info2.value), repr(config),
                 caplog.text, repr(litevfs.open_storage(url, access_key_id="k",
                                                        secret_access_key=wrong).config)):
        assert wrong not in text and server.secret_key not in text


def test_profile_and_anonymous(core: ModuleType, litestream_replica: LitestreamReplica,
                               no_env_credentials: None, tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    server = litestream_replica.server
    creds = tmp_path / "credentials"
    creds.write_text(f"[replica-reader]\naws_access_key_id = {server.access_key}\n"
                     f"aws_secret_access_key = {server.secret_key}\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds))
    con = dbapi2.connect(litestream_replica.url, impl=core, profile="replica-reader")
    assert con.execute("SELECT count(*) FROM authors").fetchone() == (3,)
    con.close()
    with pytest.raises(litevfs.ConfigError, match="AWS profile 'nobody'"):
        litevfs.connect(litestream_replica.url.replace("/app?", "/app-p?"), impl=core,
                        profile="nobody")
    # SeaweedFS here requires signatures: an unsigned request is refused, and says so
    with pytest.raises(litevfs.AccessDeniedError, match="anonymous"):
        litevfs.connect(litestream_replica.url.replace("/app?", "/app-anon?"), impl=core,
                        anonymous=True)
    with pytest.raises(litevfs.ConfigError, match="cannot be combined"):
        litevfs.connect(litestream_replica.url, impl=core, anonymous=True, access_key_id="a",
                        secret_access_key="b")


def test_credentials_are_keyword_only_and_s3_only(core: ModuleType) -> None:
    with pytest.raises(litevfs.ConfigError, match="not accepted as a URI parameter"):
        Config.resolve(None, {"replica_url": "s3://b/p", "secret_access_key": "x"})
    with pytest.raises(litevfs.ConfigError, match="applies to s3:// replica URLs only"):
        litevfs.connect("memory://creds", impl=core, access_key_id="a", secret_access_key="b")
    with pytest.raises(litevfs.ConfigError, match="applies to s3:// replica URLs only"):
        litevfs.connect("memory://creds", impl=core, endpoint="http://127.0.0.1:1")
    url = Config.resolve({"replica_url": "s3://b/p?Endpoint=http://x&forcePathStyle=true",
                          "endpoint": "http://127.0.0.1:9", "region": "auto"}).replica_url
    assert url == "s3://b/p?forcePathStyle=true&endpoint=http://127.0.0.1:9&region=auto"
