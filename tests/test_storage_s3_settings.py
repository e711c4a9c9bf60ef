"""The S3 fast read path and botocore agree on where requests go and which CAs they
trust (``storage/awsconfig.py``, ``storage/url.py``, ``storage/s3/fast.py``).

One test per setting (endpoint variables and profile keys, CA bundles, FIPS, dual-stack,
acceleration, the us-east-1 style, proxies, partitions, IPv6), checked without network
by comparing the fast path's request with the one botocore builds for the same storage
(captured before it is sent), plus live checks on 127.0.0.1 / ::1 only: reads and writes
reach one server, both paths accept or refuse the same certificate.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

import litevfs.storage.s3.client as s3mod
from litevfs.errors import ConfigError, StorageError
from litevfs.storage.awsconfig import default_ca_bundle, load_aws_settings
from litevfs.storage.s3.client import S3Storage

# Every variable that moves S3 requests or changes their trust; each test sets its own.
_AWS_VARS = (
    "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
    "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_CA_BUNDLE", "AWS_USE_FIPS_ENDPOINT",
    "AWS_USE_DUALSTACK_ENDPOINT", "AWS_S3_US_EAST_1_REGIONAL_ENDPOINT", "AWS_DEFAULTS_MODE",
    "AWS_REGION", "AWS_DEFAULT_REGION", "LITESTREAM_S3_ENDPOINT", "AWS_SESSION_TOKEN",
    "http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY",
    "no_proxy", "NO_PROXY", "REQUEST_METHOD", "SSL_CERT_FILE", "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """A clean AWS environment: static credentials, no variables from the list above, and
    config/credentials files in ``tmp_path`` (absent until a test writes them). Returns
    the config file's path. The process-wide botocore session is reset (it caches the
    files it read)."""
    for var in _AWS_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    monkeypatch.setattr(s3mod, "_session", None)
    yield tmp_path / "aws-config"
    monkeypatch.setattr(s3mod, "_session", None)


class _Captured(Exception):
    pass


def botocore_request(st: S3Storage, key: str | None = None) -> tuple[str, dict[str, str]]:
    """(URL, headers) of the ListObjectsV2 (or GetObject of ``key``) botocore would send
    for this storage, captured before it leaves the process."""
    got: dict[str, Any] = {}

    def grab(request: Any, **_: Any) -> None:
        got["url"], got["headers"] = request.url, dict(request.headers)
        raise _Captured

    client = st.client
    client.meta.events.register("before-send.s3", grab, unique_id="litevfs-test-grab")
    try:
        if key is None:
            client.list_objects_v2(Bucket=st.bucket, Prefix="db/0000/", MaxKeys=7)
        else:
            client.get_object(Bucket=st.bucket, Key=key, Range="bytes=0-9")
    except _Captured:
        pass
    finally:
        client.meta.events.unregister("before-send.s3", unique_id="litevfs-test-grab")
    return got["url"], got["headers"]


def vanilla_client(st: S3Storage) -> Any:
    """A botocore client left to resolve endpoint, CA and us-east-1 style by itself from
    the environment and files (only region, credentials and addressing style given):
    what botocore alone makes of the settings under test."""
    import botocore.session
    from botocore.config import Config

    style = "path" if st.config.force_path_style else "auto"
    return botocore.session.get_session().create_client(
        "s3", region_name=st.config.region, aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret", config=Config(s3={"addressing_style": style},
                                                      retries={"total_max_attempts": 1}))


def vanilla_url(st: S3Storage) -> str:
    got: dict[str, str] = {}

    def grab(request: Any, **_: Any) -> None:
        got["url"] = request.url
        raise _Captured

    client = vanilla_client(st)
    client.meta.events.register("before-send.s3", grab)
    with pytest.raises(_Captured):
        client.list_objects_v2(Bucket=st.bucket, Prefix="db/0000/", MaxKeys=7)
    client.close()
    return got["url"]


def fast_url(st: S3Storage, key: str | None = None) -> str:
    fast = st._fast
    assert fast is not None, st.fast_unusable
    if key is None:
        target, _ = fast.prepare("GET", None, [("list-type", "2"), ("prefix", "db/0000/"),
                                               ("max-keys", "7")])
    else:
        target, _ = fast.prepare("GET", key, (), {"range": "bytes=0-9"})
    return f"{'https' if fast.tls_wanted else 'http'}://{fast.host_header}{target}"


def assert_same_target(st: S3Storage, key: str | None = None, alone: bool = False) -> str:
    """The fast path's request goes to the same scheme, Host and path, with the same
    query (botocore adds encoding-type=url to LISTs), as botocore's. ``alone``: also as
    a botocore client that resolved the endpoint from the SDK settings by itself (for a
    LIST, when the replica URL names no endpoint)."""
    ours = urlsplit(fast_url(st, key))
    url, _ = botocore_request(st, key)
    theirs = urlsplit(url)
    assert (ours.scheme, ours.netloc, ours.path) == (theirs.scheme, theirs.netloc, theirs.path)
    query = set(parse_qsl(theirs.query, keep_blank_values=True)) - {("encoding-type", "url")}
    assert set(parse_qsl(ours.query, keep_blank_values=True)) == query
    if alone:
        own = urlsplit(vanilla_url(st))
        assert (own.scheme, own.netloc, own.path) == (ours.scheme, ours.netloc, ours.path)
    return url


def botocore_verify(st: S3Storage) -> Any:
    return st.client._endpoint.http_session._verify


def botocore_alone_ca(st: S3Storage) -> Any:
    """The CA file a botocore client left to itself would load (``get_cert_path``)."""
    from botocore.httpsession import get_cert_path

    client = vanilla_client(st)
    verify = client._endpoint.http_session._verify
    client.close()
    return get_cert_path(True if verify is None else verify)


# -- where requests go: the same place on both paths ------------------------------------


@pytest.mark.parametrize("url, env", [
    ("s3://bucket/db?endpoint=http://127.0.0.1:9000&forcePathStyle=true", {}),
    ("s3://bucket/db?endpoint=http://localhost:9000&forcePathStyle=false", {}),
    ("s3://my.bucket/db?endpoint=http://localhost:9000&forcePathStyle=false", {}),
    ("s3://my.bucket/db?endpoint=https://minio.example:9000&forcePathStyle=false", {}),
    ("s3://bucket/db?endpoint=http://127.0.0.1:9000&forcePathStyle=false", {}),
    ("s3://bucket/db?endpoint=http://[::1]:9000&forcePathStyle=false", {}),
    ("s3://UPPER/db?endpoint=http://localhost:9000&forcePathStyle=false", {}),
    ("s3://bucket/db", {"AWS_REGION": "us-east-1"}),
    ("s3://bucket/db", {"AWS_REGION": "eu-west-1"}),
    ("s3://my.bucket/db", {"AWS_REGION": "eu-west-1"}),
    ("s3://bucket/db", {"AWS_REGION": "us-gov-west-1"}),
    ("s3://bucket.s3.ap-southeast-2.amazonaws.com/db", {}),
    ("s3://bucket/db", {"AWS_REGION": "us-east-1", "AWS_S3_US_EAST_1_REGIONAL_ENDPOINT": "regional"}),
    ("s3://bucket/db", {"AWS_REGION": "us-east-1", "AWS_DEFAULTS_MODE": "standard"}),
    ("s3://bucket/db", {"AWS_ENDPOINT_URL": "http://127.0.0.1:9001"}),
    ("s3://bucket/db", {"AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9002",
                        "AWS_ENDPOINT_URL": "http://127.0.0.1:9001"}),
])
def test_fast_path_targets_what_botocore_targets(aws: Path, monkeypatch: pytest.MonkeyPatch,
                                                 url: str, env: dict[str, str]) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    st = S3Storage.from_url(url)
    assert_same_target(st, alone="endpoint=" not in url)
    assert_same_target(st, "db/0000/0000000000000001-0000000000000001.ltx")


def test_replica_url_endpoint_wins(aws: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    aws.write_text("[default]\nendpoint_url = http://127.0.0.1:9004\n")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9002")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9001")
    monkeypatch.setenv("LITESTREAM_S3_ENDPOINT", "http://127.0.0.1:9003")
    st = S3Storage.from_url("s3://bucket/db?endpoint=http://127.0.0.1:9000")
    assert (st.config.endpoint, st.config.endpoint_source) == ("http://127.0.0.1:9000",
                                                               "replica URL")
    assert assert_same_target(st).startswith("http://127.0.0.1:9000/bucket?")
    # Then Litestream's own variable, then the SDK's.
    st = S3Storage.from_url("s3://bucket/db")
    assert st.config.endpoint_source == "LITESTREAM_S3_ENDPOINT"
    assert assert_same_target(st).startswith("http://127.0.0.1:9003/bucket?")


@pytest.mark.parametrize("settings, config, want, source", [
    ({"AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9002",
      "AWS_ENDPOINT_URL": "http://127.0.0.1:9001"}, "", 9002, "AWS_ENDPOINT_URL_S3"),
    ({"AWS_ENDPOINT_URL": "http://127.0.0.1:9001"},
     "[default]\nendpoint_url = http://127.0.0.1:9004\n", 9001, "AWS_ENDPOINT_URL"),
    ({}, "[default]\nservices = local\nendpoint_url = http://127.0.0.1:9004\n"
         "[services local]\ns3 =\n  endpoint_url = http://127.0.0.1:9003\n", 9003,
     "services 'local'"),
    ({}, "[default]\nendpoint_url = http://127.0.0.1:9004\n", 9004, "endpoint_url of profile"),
    ({"AWS_PROFILE": "other"}, "[default]\nendpoint_url = http://127.0.0.1:9004\n"
                               "[profile other]\nendpoint_url = http://127.0.0.1:9005\n",
     9005, "profile 'other'"),
    ({"AWS_PROFILE": "other", "AWS_DEFAULT_PROFILE": "third"},
     "[profile other]\nendpoint_url = http://127.0.0.1:9005\n"
     "[profile third]\nendpoint_url = http://127.0.0.1:9006\n", 9006, "profile 'third'"),
    ({"AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": "true",
      "AWS_ENDPOINT_URL": "http://127.0.0.1:9001"}, "", None, ""),
    ({}, "[default]\nignore_configured_endpoint_urls = true\n"
         "endpoint_url = http://127.0.0.1:9004\n", None, ""),
])
def test_sdk_endpoint_settings(aws: Path, monkeypatch: pytest.MonkeyPatch,
                               settings: dict[str, str], config: str, want: int | None,
                               source: str) -> None:
    """AWS_ENDPOINT_URL_S3 > AWS_ENDPOINT_URL > the profile's services section > the
    profile's endpoint_url (botocore's order); the ignore switch turns all of them off.
    Both paths then send to that endpoint (path style: a custom endpoint)."""
    aws.write_text(config)
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    st = S3Storage.from_url("s3://bucket/db")
    if want is None:
        assert st.config.endpoint is None
        assert assert_same_target(st, alone=True).startswith(
            "https://bucket.s3.eu-west-1.amazonaws.com/")
        return
    assert st.config.endpoint == f"http://127.0.0.1:{want}"
    assert source in st.config.endpoint_source
    assert st.config.force_path_style and st.config.region == "eu-west-1"
    assert assert_same_target(st, alone=True).startswith(f"http://127.0.0.1:{want}/bucket?")
    assert st.endpoint == f"http://127.0.0.1:{want}"


def test_credentials_file_extends_profiles(aws: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore merges the credentials file's sections into the profiles (a profile only
    there exists, and its keys count)."""
    (aws.parent / "aws-credentials").write_text(
        "[only-creds]\naws_access_key_id = x\nendpoint_url = http://127.0.0.1:9007\n")
    monkeypatch.setenv("AWS_PROFILE", "only-creds")
    st = S3Storage.from_url("s3://bucket/db")
    assert st.config.endpoint == "http://127.0.0.1:9007"
    assert_same_target(st, alone=True)


def test_profile_region_is_the_last_region_source(aws: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    aws.write_text("[default]\nregion = ap-northeast-1\n")
    assert S3Storage.from_url("s3://bucket/db").config.region == "ap-northeast-1"
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-central-1")
    assert S3Storage.from_url("s3://bucket/db").config.region == "eu-central-1"
    # A custom endpoint in the replica URL keeps Litestream's us-east-1 default.
    assert S3Storage.from_url("s3://bucket/db?endpoint=http://127.0.0.1:9").config.region == \
        "us-east-1"


@pytest.mark.parametrize("settings, config, message", [
    ({"AWS_PROFILE": "nope"}, "[default]\n", "AWS profile 'nope' (from AWS_PROFILE) is not "
                                              "defined"),
    ({}, "[default]\nservices = missing\n", "services section 'missing'"),
    ({}, "[default\nregion = x\n", "cannot parse AWS config file"),
    ({}, "[default]\ns3 =\n  no equals sign\n", "is not 'key = value'"),
    ({"AWS_ENDPOINT_URL": "127.0.0.1:9000"}, "", "AWS_ENDPOINT_URL is '127.0.0.1:9000'"),
    ({"AWS_S3_US_EAST_1_REGIONAL_ENDPOINT": "bogus"}, "", "use legacy or regional"),
    ({"AWS_DEFAULTS_MODE": "turbo"}, "", "AWS_DEFAULTS_MODE is 'turbo'"),
    ({"AWS_CA_BUNDLE": "/nonexistent/ca.pem"}, "", "AWS_CA_BUNDLE names '/nonexistent"),
    ({}, "[default]\nca_bundle = /nonexistent/ca.pem\n", "ca_bundle of profile 'default'"),
    ({"AWS_CA_BUNDLE": ""}, "", "AWS_CA_BUNDLE is empty"),
    ({"REQUESTS_CA_BUNDLE": " "}, "", "REQUESTS_CA_BUNDLE is empty"),
    ({"REQUESTS_CA_BUNDLE": "/"}, "", "REQUESTS_CA_BUNDLE names '/', which is not a file"),
])
def test_broken_settings_fail_in_one_line(aws: Path, monkeypatch: pytest.MonkeyPatch,
                                          settings: dict[str, str], config: str,
                                          message: str) -> None:
    """What botocore would fail every request with is one ConfigError line at open."""
    aws.write_text(config)
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        S3Storage.from_url("s3://bucket/db")
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_cli_reports_a_bad_setting_in_one_line(aws: Path) -> None:
    import os
    import sys

    env = dict(os.environ, AWS_PROFILE="nope")
    out = subprocess.run([sys.executable, "-m", "litevfs", "ls", "s3://bucket/db"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode != 0
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "AWS profile 'nope'" in lines[0], out.stderr


# -- what only botocore does: the fast path hands over ---------------------------------


@pytest.mark.parametrize("settings, config, reason", [
    ({"AWS_USE_FIPS_ENDPOINT": "true"}, "", "FIPS endpoints (AWS_USE_FIPS_ENDPOINT)"),
    ({}, "[default]\nuse_fips_endpoint = TRUE\n", "FIPS endpoints (use_fips_endpoint of"),
    ({"AWS_USE_DUALSTACK_ENDPOINT": "true"}, "", "dual-stack endpoints"),
    ({}, "[default]\ns3 =\n  use_dualstack_endpoint = true\n", "dual-stack endpoints"),
    ({}, "[default]\ns3 =\n  use_accelerate_endpoint = true\n", "transfer acceleration"),
    ({"AWS_REGION": "cn-north-1"}, "", "outside the aws partition"),
    ({"AWS_REGION": "us-iso-east-1"}, "", "outside the aws partition"),
    ({"https_proxy": "http://127.0.0.1:3128"}, "", "an HTTP proxy"),
])
def test_settings_only_botocore_reproduces_hand_over(aws: Path, monkeypatch: pytest.MonkeyPatch,
                                                     settings: dict[str, str], config: str,
                                                     reason: str) -> None:
    aws.write_text(config)
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    st = S3Storage.from_url("s3://bucket/db")
    assert st._fast is None and reason in (st.fast_unusable or "")
    # ...and botocore does honour them (what the fast path would have got wrong).
    url, _ = botocore_request(st)
    if "FIPS" in reason:
        assert "s3-fips." in url
    elif "dual-stack" in reason:
        assert ".dualstack." in url
    elif "acceleration" in reason:
        assert "s3-accelerate" in url
    elif "partition" in reason:
        assert ".amazonaws.com/" not in url


def test_false_or_unset_switches_keep_the_fast_path(aws: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_USE_FIPS_ENDPOINT", "false")
    aws.write_text("[default]\nuse_dualstack_endpoint = false\n")
    st = S3Storage.from_url("s3://bucket/db")
    assert st._fast is not None, st.fast_unusable
    assert_same_target(st)


@pytest.mark.parametrize("bucket", ["b--usw2-az1--x-s3", "ap--op-s3"])
def test_s3_express_and_outposts_buckets_hand_over(aws: Path, bucket: str) -> None:
    st = S3Storage.from_url(f"s3://{bucket}/db")
    assert st._fast is None and "Express or Outposts" in (st.fast_unusable or "")


@pytest.mark.parametrize("env, endpoint, proxied", [
    ({"http_proxy": "http://127.0.0.1:3128"}, "http://127.0.0.1:9000", True),
    ({"HTTP_PROXY": "http://127.0.0.1:3128"}, "http://127.0.0.1:9000", True),
    ({"https_proxy": "http://127.0.0.1:3128"}, "http://127.0.0.1:9000", False),
    ({"all_proxy": "http://127.0.0.1:3128"}, "http://127.0.0.1:9000", False),
    ({"http_proxy": "http://p:1", "no_proxy": "127.0.0.1"}, "http://127.0.0.1:9000", False),
    ({"http_proxy": "http://p:1", "NO_PROXY": "*"}, "http://127.0.0.1:9000", False),
    ({"http_proxy": "http://p:1", "no_proxy": ".example.com"}, "http://s3.example.com", False),
    ({"http_proxy": "http://p:1", "no_proxy": "example.com"}, "http://s3.example.com:9", False),
    ({"http_proxy": "http://p:1", "no_proxy": "other.com"}, "http://s3.example.com", True),
    ({"HTTP_PROXY": "http://p:1", "REQUEST_METHOD": "GET"}, "http://127.0.0.1:9000", False),
    ({"HTTP_PROXY": "http://p:1", "http_proxy": ""}, "http://127.0.0.1:9000", False),
])
def test_proxy_settings_match_botocore(aws: Path, monkeypatch: pytest.MonkeyPatch,
                                       env: dict[str, str], endpoint: str,
                                       proxied: bool) -> None:
    """The fast path hands over exactly when botocore would use a proxy (urllib's
    environment rules, which botocore uses for the client's endpoint)."""
    from botocore.utils import get_environ_proxies

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    scheme = endpoint.split(":", 1)[0]
    assert bool(get_environ_proxies(endpoint).get(scheme)) is proxied
    st = S3Storage.from_url(f"s3://bucket/db?endpoint={endpoint}")
    assert (st._fast is None) is proxied
    if proxied:
        assert st.fast_unusable == "an HTTP proxy"


# -- us-east-1 ---------------------------------------------------------------------------


@pytest.mark.parametrize("settings, config, regional", [
    ({}, "", False),
    ({"AWS_S3_US_EAST_1_REGIONAL_ENDPOINT": "regional"}, "", True),
    ({}, "[default]\ns3 =\n  us_east_1_regional_endpoint = regional\n", True),
    ({}, "[default]\ns3_us_east_1_regional_endpoint = regional\n", True),
    ({"AWS_DEFAULTS_MODE": "in-region"}, "", True),
    ({"AWS_DEFAULTS_MODE": "standard", "AWS_S3_US_EAST_1_REGIONAL_ENDPOINT": "legacy"}, "",
     False),
])
def test_us_east_1_endpoint_style(aws: Path, monkeypatch: pytest.MonkeyPatch,
                                  settings: dict[str, str], config: str,
                                  regional: bool) -> None:
    aws.write_text(config)
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    st = S3Storage.from_url("s3://bucket/db?region=us-east-1")
    host = "bucket.s3.us-east-1.amazonaws.com" if regional else "bucket.s3.amazonaws.com"
    assert assert_same_target(st, alone=True).startswith(f"https://{host}/")


# -- IPv6 --------------------------------------------------------------------------------


def test_ipv6_host_header_is_bracketed(aws: Path) -> None:
    st = S3Storage.from_url("s3://bucket/db?endpoint=http://[::1]:9000")
    fast = st._fast
    assert fast is not None
    assert (fast.host, fast.host_header) == ("::1", "[::1]:9000")
    _, headers = fast.prepare("GET", "k")
    assert headers["host"] == "[::1]:9000"
    st = S3Storage.from_url("s3://bucket/db?endpoint=https://[fd00::5]")
    assert st._fast is not None and st._fast.host_header == "[fd00::5]"
    assert_same_target(st)


def _bind_ipv6() -> socket.socket | None:
    try:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        sock.bind(("::1", 0))
    except OSError:
        return None
    return sock


class _V6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


@pytest.mark.skipif(_bind_ipv6() is None, reason="::1 is not bindable here")
def test_ipv6_endpoint_live(aws: Path) -> None:
    """A tiny S3 stand-in on ::1 (loopback) records the Host header each path sends."""
    hosts: list[tuple[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            hosts.append((self.headers.get("user-agent", ""), self.headers.get("host", "")))
            body = (b'<?xml version="1.0" encoding="UTF-8"?><ListBucketResult>'
                    b"<IsTruncated>false</IsTruncated></ListBucketResult>")
            self.send_response(200)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = _V6Server(("::1", 0), Handler)
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        for fast in (True, False):
            st = S3Storage.from_url(f"s3://bucket/db?endpoint=http://[::1]:{port}",
                                    fast_reads=fast)
            assert st.list_level(0) == []
            assert (st._fast is not None) is fast
            st.close()
    finally:
        server.shutdown()
        server.server_close()
    assert [h for _, h in hosts] == [f"[::1]:{port}"] * 2
    assert hosts[0][0].startswith("litevfs/") and "Botocore" in hosts[1][0]


# -- live: reads and writes reach one server ---------------------------------------------


@pytest.mark.s3
@pytest.mark.parametrize("how", ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "profile",
                                 "services"])
def test_sdk_endpoint_serves_reads_and_writes(aws: Path, monkeypatch: pytest.MonkeyPatch,
                                              seaweed: Any, s3_bucket: str, how: str) -> None:
    """No endpoint in the replica URL: the SDK setting sends botocore's writes and the
    fast path's reads to the same (loopback) server."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", seaweed.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweed.secret_key)
    if how.startswith("AWS_"):
        monkeypatch.setenv(how, seaweed.endpoint)
    elif how == "profile":
        aws.write_text(f"[default]\nendpoint_url = {seaweed.endpoint}\n")
    else:
        aws.write_text(f"[default]\nservices = here\n[services here]\n"
                       f"s3 =\n  endpoint_url = {seaweed.endpoint}\n")
    st = S3Storage.from_url(f"s3://{s3_bucket}/db")
    # Checked before any request: nothing may leave 127.0.0.1.
    assert st._fast is not None and st._fast.host == "127.0.0.1"
    assert st.client.meta.endpoint_url == seaweed.endpoint
    info = st.write_ltx(0, 1, 1, b"x" * 100)
    assert st.list_level(0) == [info._replace(created_at=st.list_level(0)[0].created_at)]
    assert st.read_range(info, 10, 5) == b"x" * 5
    assert st.stats.lists >= 1 and st._fast is not None
    assert seaweed.list_keys(s3_bucket) == ["db/0000/0000000000000001-0000000000000001.ltx"]
    st.close()


# -- one trust store -----------------------------------------------------------------------


def test_both_paths_get_the_same_ca_file(aws: Path, monkeypatch: pytest.MonkeyPatch,
                                         tmp_path: Path) -> None:
    default = default_ca_bundle()
    st = S3Storage.from_url("s3://bucket/db?endpoint=https://127.0.0.1:9")
    assert st.config.trust_store == default == botocore_alone_ca(st)
    assert botocore_verify(st) == (default or True)
    ctx = st._fast._tls_context() if st._fast else None
    assert ctx is not None and default is not None
    assert ctx.cert_store_stats() == ssl.create_default_context(cafile=default).cert_store_stats()

    cert, _ = _self_signed(tmp_path)
    aws.write_text(f"[default]\nca_bundle = {cert}\n")
    monkeypatch.setattr(s3mod, "_session", None)
    st = S3Storage.from_url("s3://bucket/db?endpoint=https://127.0.0.1:9")
    assert st.config.trust_store == str(cert) and botocore_verify(st) == str(cert)
    assert botocore_alone_ca(st) == str(cert)
    assert "ca_bundle of profile 'default'" in load_aws_settings(dict(
        AWS_CONFIG_FILE=str(aws))).ca_source

    other = tmp_path / "other.pem"
    other.write_bytes(cert.read_bytes())
    monkeypatch.setenv("AWS_CA_BUNDLE", str(other))  # the variable beats the profile
    st = S3Storage.from_url("s3://bucket/db?endpoint=https://127.0.0.1:9")
    assert st.config.trust_store == str(other) and botocore_verify(st) == str(other)
    assert botocore_alone_ca(st) == str(other)

    monkeypatch.delenv("AWS_CA_BUNDLE")
    aws.write_text("")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(other))  # botocore's last source
    st = S3Storage.from_url("s3://bucket/db?endpoint=https://127.0.0.1:9")
    assert st.config.trust_store == str(other) == botocore_alone_ca(st)
    assert botocore_verify(st) == str(other)
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    st = S3Storage.from_url("s3://bucket/db?endpoint=https://127.0.0.1:9&skipVerify=true")
    assert botocore_verify(st) is False
    assert st._fast is not None and st._fast._tls_context().verify_mode == ssl.CERT_NONE


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True,
                   capture_output=True, timeout=60)
    return cert, key


@pytest.mark.s3
def test_one_trust_store_live(aws: Path, monkeypatch: pytest.MonkeyPatch, seaweed: Any,
                              s3_bucket: str, tmp_path: Path) -> None:
    """A TLS proxy on 127.0.0.1 with a self-signed certificate. Trusted through the
    profile's ca_bundle: both paths read. Trusted only by Python's default store
    (SSL_CERT_FILE), which botocore never consults: both paths refuse (the fast path
    used to accept it, botocore did not)."""
    from tests.rig.faults import FaultProxy

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", seaweed.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweed.secret_key)
    cert, key = _self_signed(tmp_path)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    proxy = FaultProxy(seaweed.port, tls=ctx).start()
    try:
        S3Storage.from_url(f"s3://{s3_bucket}/db?endpoint={seaweed.endpoint}").write_ltx(
            0, 1, 1, b"y" * 10)
        url = f"s3://{s3_bucket}/db?endpoint={proxy.endpoint}"
        aws.write_text(f"[default]\nca_bundle = {cert}\n")
        for fast in (True, False):
            monkeypatch.setattr(s3mod, "_session", None)
            st = S3Storage.from_url(url, fast_reads=fast)
            assert len(st.list_level(0)) == 1 and (st._fast is not None) is fast
            st.close()
        aws.write_text("")
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        for fast in (True, False):
            monkeypatch.setattr(s3mod, "_session", None)
            st = S3Storage.from_url(url, fast_reads=fast)
            with pytest.raises(StorageError, match="(?i)certificate|ssl|tls"):
                st.list_level(0)
            st.close()
    finally:
        proxy.stop()


def test_settings_cost_no_botocore_import(tmp_path: Path) -> None:
    """Reading the SDK settings stays stdlib-only (the open's critical path)."""
    import os
    import sys

    config = tmp_path / "config"
    config.write_text("[default]\nendpoint_url = http://127.0.0.1:9\nca_bundle = /x\n"
                      "s3 =\n  addressing_style = path\n")
    code = (
        "import sys, time\n"
        "from litevfs.storage import open_storage\n"
        "t = time.perf_counter()\n"
        "st = open_storage('s3://b/p', access_key_id='k', secret_access_key='s')\n"
        "assert st.config.endpoint == 'http://127.0.0.1:9', st.config\n"
        "mods = [m for m in ('boto3', 'botocore', 'urllib3', 'typing', 'logging') "
        "if m in sys.modules]\n"
        "assert not mods, mods\n"
    )
    env = dict(os.environ, AWS_EC2_METADATA_DISABLED="true", AWS_CONFIG_FILE=str(config))
    for var in _AWS_VARS:
        env.pop(var, None)
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)
