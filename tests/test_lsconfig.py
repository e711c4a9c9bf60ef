"""Litestream's configuration file as the source of a replica (``connect(config=,
db=)``, ``--config`` on the CLI): the file the real ``litestream replicate`` used opens
its replica; ``$VAR`` expansion follows Go's ``os.Expand``; every form of a replica
entry; missing entries and unset variables name the key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

import litevfs
from litevfs import dbapi2
from litevfs.storage.lsconfig import LitestreamConfig, expand, replica_from_config
from tests.dbapi_support import LitestreamReplica
from tests.rig.seaweed import SeaweedServer


def test_expand_follows_go_os_expand() -> None:
    env = {"A": "x", "LONG_NAME": "y", "EMPTY": ""}.get
    look = lambda name: env(name) or ""  # noqa: E731
    cases = {
        "$A/${A}": "x/x", "$LONG_NAME.": "y.", "${LONG_NAME}z": "yz", "$$": "",
        "a$": "a$", "$ b": "$ b", "${}c": "c", "${A": "A", "$1x": "x", "$-": "",
        "${A}${UNSET}-": "x-", "$A_B": "", "price $5": "price ", "\\$A": "\\x",
    }
    for text, want in cases.items():
        assert expand(text, look) == want, text
    assert expand("$PID", lambda n: "123" if n == "PID" else "") == "123"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_the_file_litestream_used_opens_its_replica(
        core: ModuleType, litestream_replica: LitestreamReplica) -> None:
    con = litevfs.connect(config=str(litestream_replica.config_path),
                          db=str(litestream_replica.db_path), impl=core)
    assert con.execute("SELECT count(*) FROM authors").fetchone() == (3,)
    con.close()
    dcon = dbapi2.connect(config=str(litestream_replica.config_path),
                          db=str(litestream_replica.db_path), impl=core)
    assert dcon.execute("SELECT name FROM authors WHERE id = 2").fetchone() == ("Grace",)
    dcon.close()


def test_env_expansion_and_every_replica_form(tmp_path: Path, core: ModuleType,
                                               litestream_replica: LitestreamReplica,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    server = litestream_replica.server
    url = litestream_replica.url
    bucket = url.split("/")[2]
    monkeypatch.setenv("LS_BUCKET", bucket)
    monkeypatch.setenv("LS_ENDPOINT", server.endpoint)
    monkeypatch.setenv("LS_KEY", server.access_key)
    monkeypatch.setenv("LS_SECRET", server.secret_key)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")  # the file's credentials must be the ones used
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    forms = {
        "type": f"""
access-key-id: $LS_KEY
secret-access-key: ${{LS_SECRET}}
dbs:
  - path: /data/other.db
    replica: {{type: s3, bucket: nope, path: x}}
  - path: /data/app.db
    replica:
      type: s3
      bucket: ${{LS_BUCKET}}
      path: app
      endpoint: $LS_ENDPOINT
      region: us-east-1
      force-path-style: true
""",
        "url": f"""
dbs:
  - path: sqlite:///data/app.db
    replicas:
      - url: s3://$LS_BUCKET/app?endpoint=$LS_ENDPOINT&region=us-east-1
        access-key-id: $LS_KEY
        secret-access-key: $LS_SECRET
""",
        "dir": f"""
access-key-id: $LS_KEY
secret-access-key: $LS_SECRET
endpoint: $LS_ENDPOINT
dbs:
  - dir: /data
    pattern: "*.db"
    replica: {{url: "s3://$LS_BUCKET", region: us-east-1}}
""",
    }
    for name, text in forms.items():
        path = write(tmp_path / f"{name}.yml", text)
        # the dir form appends the database's path under the dir to the replica's path
        db = "/data/app" if name == "dir" else "/data/app.db"
        con = litevfs.connect(config=str(path), db=db, impl=core)
        assert con.execute("SELECT count(*) FROM books").fetchone() == (40,), name
        con.close()


def test_errors_name_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LS_UNSET_BUCKET", raising=False)
    cases = {
        "dbs:\n  - path: /a.db\n    replica: {type: s3, bucket: $LS_UNSET_BUCKET}\n":
            ("dbs[0].replica.bucket uses $LS_UNSET_BUCKET, which is not set", "/a.db"),
        "dbs:\n  - path: /a.db\n    replica: {type: s3, path: x}\n":
            ("dbs[0].replica.bucket: bucket required", "/a.db"),
        "dbs:\n  - path: /a.db\n    replica: {type: s3, bucket: b}\n":
            ("no entry has path '/b.db'", "/b.db"),
        "dbs:\n  - path: /a.db\n": ("dbs[0]: no replica configured", "/a.db"),
        "dbs:\n  - path: /a.db\n    replica: {type: gs, bucket: b}\n":
            ("dbs[0].replica.type: replica type 'gs' is supported by Litestream", "/a.db"),
        "dbs:\n  - path: /a.db\n    replicas: [{url: 's3://a/b'}, {url: 's3://c/d'}]\n":
            ("multiple replicas", "/a.db"),
        "dbs:\n  - path: /a.db\n    replica: {url: 's3://a/b', access-key-id: k}\n":
            ("dbs[0].replica.secret-access-key: missing", "/a.db"),
        "logging: {level: info}\n": ("dbs: no databases configured", "/a.db"),
        "dbs: [\n": ("is not valid YAML", "/a.db"),
    }
    for i, (text, (message, db)) in enumerate(cases.items()):
        path = write(tmp_path / f"bad{i}.yml", text)
        with pytest.raises(litevfs.ConfigError) as info:
            replica_from_config(str(path), db, None, {})
        assert message in str(info.value), (text, str(info.value))
        assert "\n" not in str(info.value)
    with pytest.raises(litevfs.ConfigError, match="config file not found"):
        replica_from_config(str(tmp_path / "none.yml"), "/a.db", None, {})
    two = write(tmp_path / "two.yml", "dbs:\n  - path: /a.db\n  - path: /b.db\n")
    with pytest.raises(litevfs.ConfigError, match="2 databases: pass db="):
        replica_from_config(str(two), None, None, {})


def test_unused_unset_variables_and_no_expand(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LS_NOPE", raising=False)
    path = write(tmp_path / "c.yml", "exec: run $LS_NOPE\ndbs:\n  - path: /a.db\n"
                 "    replica: {url: 's3://b/p?region=r', sync-interval: $LS_NOPE}\n")
    url, options = replica_from_config(str(path), "/a.db", None, {})
    assert url == "s3://b/p?region=r" and options == {}
    literal = write(tmp_path / "l.yml", "dbs:\n  - path: /a.db\n    replica:\n"
                    "      type: s3\n      bucket: 'b$x'\n")
    url, _ = replica_from_config(str(literal), "/a.db", None, {}, expand_env=False)
    assert url.startswith("s3://b$x/")
    monkeypatch.setenv("LITESTREAM_CONFIG", str(path))
    assert replica_from_config(None, "/a.db", None, {})[0] == "s3://b/p?region=r"


def test_keywords_win_over_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "k.yml", "dbs:\n  - path: /a.db\n    replica:\n      url: s3://b/p\n"
                 "      access-key-id: filekey\n      secret-access-key: filesecret\n")
    _, options = replica_from_config(str(path), "/a.db", None, {"profile": "mine"})
    assert options == {"profile": "mine"}
    _, options = replica_from_config(str(path), "/a.db", None, {})
    assert options == {"access_key_id": "filekey", "secret_access_key": "filesecret"}
    assert "filesecret" not in repr(LitestreamConfig(str(path)).replica_for("/a.db")[0])


def test_cli_query_with_config(litestream_replica: LitestreamReplica, tmp_path: Path) -> None:
    env = dict(os.environ, AWS_EC2_METADATA_DISABLED="true")
    cmd = [sys.executable, "-m", "litevfs", "query", "--config",
           str(litestream_replica.config_path), "--db", str(litestream_replica.db_path),
           "SELECT name FROM authors ORDER BY id", "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [{"name": "Ada"}, {"name": "Grace"}, {"name": "Linus"}]
    out = subprocess.run([sys.executable, "-m", "litevfs", "ls", "-config",
                          str(litestream_replica.config_path)], capture_output=True,
                         text=True, env=env, timeout=60)
    assert out.returncode == 0 and "0000000000000001" in out.stdout, out.stderr
    bad = write(tmp_path / "bad.yml", "dbs:\n  - path: /a.db\n    replica: {type: s3}\n")
    out = subprocess.run([sys.executable, "-m", "litevfs", "query", "--config", str(bad),
                          "SELECT 1"], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 1
    assert out.stderr.count("\n") == 1 and "dbs[0].replica.bucket" in out.stderr
    out = subprocess.run([sys.executable, "-m", "litevfs", "query", "SELECT 1"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 1 and "a replica URL is required" in out.stderr
