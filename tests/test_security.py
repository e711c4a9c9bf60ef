"""Security properties against the real SeaweedFS (and memory/file backends).

* secrets (secret key, session token, SSE-C key) and request signatures never appear in
  log records or error messages, even at DEBUG and in chained causes;
* the standard AWS credential chain: a profile from a shared-credentials file
  (AWS_PROFILE), session tokens sent as x-amz-security-token;
* TLS verification is on by default; skipVerify=true is the explicit opt-out;
  AWS_CA_BUNDLE trusts a private CA;
* SSE-C reads and writes (SeaweedFS implements SSE-C: objects are unreadable without
  the key);
* hostile LTX content cannot size the page index (clear error before allocation).
"""

from __future__ import annotations

import logging
import re
import ssl
import subprocess
import traceback
from pathlib import Path
from types import ModuleType

import apsw
import pytest

import litevfs
import litevfs.vfs.connect as api
from litevfs.vfs import writeapi
from litevfs.errors import LiteVFSError, LTXFormatError, StorageError
from litevfs.ltx.encoder import encode_file
from litevfs.session import open_replica, release_replica
from litevfs.storage.file import FileStorage
from litevfs.storage.memory import MemoryStorage
from litevfs.storage.s3.client import S3Storage
from tests.rig.faults import FaultProxy, Rule
from tests.rig.seaweed import SeaweedServer, s3_replica_url
from tests.vfs_support import unique_memory_url

SSE_KEY = "c2VjcmV0LXNzZS1jLWtleS0wMTIzNDU2Nzg5YWJjZGU="  # base64 of a 32-byte key


def _scan(secrets: list[str], texts: list[str]) -> None:
    for text in texts:
        for secret in secrets:
            assert secret not in text, f"secret leaked: ...{text[:200]}"
        assert re.search(r"Signature=(?!REDACTED)", text, re.I) is None, text[:300]


def _exc_texts(exc: BaseException) -> list[str]:
    return ["".join(traceback.format_exception(exc)), repr(exc), str(exc)]


@pytest.mark.s3
def test_secrets_never_logged(seaweed: SeaweedServer, s3_url: str, core: ModuleType,
                              caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, botocore's included
    texts: list[str] = []
    token = "session-token-never-printed-42"
    # 1. wrong secret through both request paths
    for fast in (True, False):
        storage = S3Storage.from_url(s3_url, access_key_id=seaweed.access_key,
                                     secret_access_key="wrong-secret-never-printed",
                                     session_token=token, fast_reads=fast)
        with pytest.raises(StorageError) as info:
            storage.list_all()
        texts += _exc_texts(info.value)
        storage.close()
    # 2. faults while writing with an SSE-C key in the URL
    proxy = FaultProxy(seaweed.port).start()
    try:
        bucket = s3_url.split("//")[1].split("/")[0]
        url = s3_replica_url(bucket, "db", proxy.endpoint) + f"&sseCustomerKey={SSE_KEY}"
        con = api.connect(url, impl=core, write=True, sync_interval=0,
                          buffer_path=str(tmp_path / "buf"), boot_set="off")
        try:
            con.execute("CREATE TABLE t(x); INSERT INTO t VALUES (1)")
            proxy.add(Rule("503", method="PUT"))
            try:
                writeapi.sync(con, timeout=3)
            except LiteVFSError as exc:
                texts += _exc_texts(exc)
            proxy.clear()
            writeapi.sync(con)
        finally:
            con.close()
    finally:
        proxy.stop()
    texts += [r.getMessage() for r in caplog.records]
    texts += [str(r.args) for r in caplog.records]
    assert len(texts) > 5
    _scan([seaweed.secret_key, "wrong-secret-never-printed", token, SSE_KEY], texts)


@pytest.mark.s3
def test_session_token_is_sent(seaweed: SeaweedServer, s3_url: str) -> None:
    """SeaweedFS has no STS, so it refuses the token: we only check it was signed in."""
    proxy = FaultProxy(seaweed.port).start()
    try:
        bucket = s3_url.split("//")[1].split("/")[0]
        url = s3_replica_url(bucket, "db", proxy.endpoint)
        for fast in (True, False):
            storage = S3Storage.from_url(url, access_key_id=seaweed.access_key,
                                         secret_access_key=seaweed.secret_key,
                                         session_token="tok-123", fast_reads=fast)
            with pytest.raises(StorageError):
                storage.list_all()
            storage.close()
            assert "x-amz-security-token: tok-123" in proxy.heads[-1].lower()
    finally:
        proxy.stop()


@pytest.mark.s3
def test_profile_from_shared_credentials_file(scenario_factory, seaweed: SeaweedServer,
                                              core: ModuleType, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    scn = scenario_factory()
    creds = tmp_path / "credentials"
    creds.write_text(f"[litevfs-test]\naws_access_key_id = {seaweed.access_key}\n"
                     f"aws_secret_access_key = {seaweed.secret_key}\n")
    (tmp_path / "config").write_text("[profile litevfs-test]\nregion = us-east-1\n")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                 "LITESTREAM_ACCESS_KEY_ID", "LITESTREAM_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_PROFILE", "litevfs-test")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    import litevfs.storage.s3.client as s3mod  # the botocore session reads profiles once
    monkeypatch.setattr(s3mod, "_session", None)
    con = litevfs.connect(scn.url, impl=core,
                          poll_interval=0, boot_set="off")
    try:
        assert con.execute("SELECT count(*) FROM accounts").fetchall()[0][0] > 0
    finally:
        con.close()
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    monkeypatch.setattr(s3mod, "_session", None)
    with pytest.raises(Exception, match="(?i)profile|credential"):
        storage = S3Storage.from_url(scn.url)
        try:
            storage.list_all()
        finally:
            storage.close()


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True,
                   capture_output=True, timeout=60)
    return cert, key


@pytest.mark.s3
def test_tls_verification_on_by_default(scenario_factory, tmp_path: Path, core: ModuleType,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    scn = scenario_factory()
    cert, key = _self_signed(tmp_path)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    port = int(scn.url.split("endpoint=http://127.0.0.1:")[1].split("&")[0])
    proxy = FaultProxy(port, tls=ctx).start()
    try:
        url = s3_replica_url(scn.replica.bucket, "db", proxy.endpoint)
        assert url.startswith("s3://") and "https://127.0.0.1" in url
        for fast in (True, False):
            storage = S3Storage.from_url(url, fast_reads=fast)
            with pytest.raises(StorageError, match="(?i)certificate|ssl|tls"):
                storage.list_all()
            storage.close()
            storage = S3Storage.from_url(url + "&skipVerify=true", fast_reads=fast)
            assert storage.list_all()
            storage.close()
        monkeypatch.setenv("AWS_CA_BUNDLE", str(cert))  # a private CA, trusted explicitly
        storage = S3Storage.from_url(url)
        assert storage.list_all()
        storage.close()
        monkeypatch.delenv("AWS_CA_BUNDLE")
        con = litevfs.connect(url + "&skipVerify=true", impl=core, poll_interval=0,
                              boot_set="off")
        try:
            assert con.execute("SELECT count(*) FROM accounts").fetchall()[0][0] > 0
        finally:
            con.close()
    finally:
        proxy.stop()


@pytest.mark.s3
def test_sse_c_reads_and_writes(seaweed: SeaweedServer, s3_url: str, core: ModuleType,
                                tmp_path: Path) -> None:
    url = s3_url + f"&sseCustomerKey={SSE_KEY}"
    w = api.connect(url, impl=core, write=True, sync_interval=0, boot_set="off",
                    buffer_path=str(tmp_path / "buf"))
    try:
        w.execute("CREATE TABLE t(x); INSERT INTO t VALUES ('encrypted at rest')")
        writeapi.sync(w)
    finally:
        w.close()
    bucket = s3_url.split("//")[1].split("/")[0]
    keys = [k for k in seaweed.list_keys(bucket, "db/") if k.endswith(".ltx")]
    assert keys
    client = seaweed.client()
    with pytest.raises(Exception, match="(?i)InvalidArgument|InvalidRequest|encrypt|400"):
        client.get_object(Bucket=bucket, Key=keys[0])  # unreadable without the key
    r = litevfs.connect(url, impl=core, poll_interval=0, boot_set="off")
    try:
        assert r.execute("SELECT x FROM t").fetchall() == [("encrypted at rest",)]
    finally:
        r.close()
    with pytest.raises(Exception):  # without the key the replica cannot be opened
        litevfs.connect(s3_url, impl=core, poll_interval=0, boot_set="off").close()


def test_file_backend_stays_inside_its_root(tmp_path: Path) -> None:
    root = tmp_path / "replica"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.write_bytes(b"secret")
    storage = FileStorage(str(root))
    for name in ("../outside", "/etc/passwd", "a/../../outside", "a\\..\\b", "x\0y", "", "./x"):
        with pytest.raises((ValueError, LiteVFSError)):
            storage.get_object(name)
        with pytest.raises((ValueError, LiteVFSError)):
            storage.put_object(name, b"x")
        with pytest.raises((ValueError, LiteVFSError)):
            storage.delete_object(name)
    assert outside.read_bytes() == b"secret"
    written = {p for p in tmp_path.rglob("*")} - {outside, root}
    assert all(root in p.parents for p in written), written


def test_hostile_page_numbers_are_refused_before_allocation(core: ModuleType) -> None:
    """One page claiming page number 2^31 (and commit to match) would size a 32 GiB
    dense index; the open refuses it with a named error instead."""
    import resource

    url = unique_memory_url("hostile")
    storage = MemoryStorage(url.removeprefix("memory://"))
    page = bytes(4096)
    storage.write_ltx(0, 1, 1, encode_file([(1, dbgen_page1())], page_size=4096, commit=1,
                                           min_txid=1, max_txid=1, timestamp_ms=1))
    data = encode_file([(2**31, page)], page_size=4096, commit=2**31,
                       min_txid=2, max_txid=2, timestamp_ms=2)
    storage.write_ltx(0, 2, 2, data)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises((LTXFormatError, apsw.Error), match="impossible"):
        litevfs.connect(url, impl=core, poll_interval=0, boot_set="off")
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 200 * 1024


def dbgen_page1() -> bytes:
    """A valid page 1 of an empty 4096-byte-page database."""
    import sqlite3

    con = sqlite3.connect(":memory:")
    con.execute("PRAGMA page_size=4096")
    con.execute("VACUUM")
    data = con.serialize()
    con.close()
    return data[:4096].ljust(4096, b"\0")


def test_open_replica_keeps_storage_errors_named(core: ModuleType) -> None:
    """Errors name the redacted URL: an SSE-C key given in the URL is never echoed."""
    from litevfs.config import Config

    url = ("s3://bucket/db?endpoint=http://127.0.0.1:9&region=us-east-1&forcePathStyle=true"
           f"&sseCustomerKey={SSE_KEY}")
    cfg = Config.resolve({"replica_url": url, "open_timeout": 0, "boot_set": "off"})
    storage = S3Storage.from_url(url, access_key_id="AKIDEXAMPLE",
                                 secret_access_key="never-printed-secret", connect_timeout=0.5)
    with pytest.raises(LiteVFSError) as info:
        replica = open_replica(cfg, core, storage=storage)
        release_replica(replica)
    _scan([SSE_KEY, "never-printed-secret"], _exc_texts(info.value))
