"""Replica URL parsing, Litestream's key-prefix quirks and S3 option resolution.
Pure: no server, no network."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from litevfs.errors import ConfigError
from litevfs.storage import open_storage
from litevfs.storage.file import FileStorage
from litevfs.storage.memory import MemoryStorage
from litevfs.storage.url import (
    ensure_endpoint_scheme, go_path_clean, is_local_endpoint, parse_replica_url,
    parse_s3_host, resolve_s3_config,
)

ENDPOINT = "http://127.0.0.1:9"  # never contacted: resolution does no I/O
NO_ENV: dict[str, str] = {}
CREDS = {"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "s3cr3t-value"}


def s3cfg(url: str, env: dict[str, str] | None = None, **kwargs: object):
    return resolve_s3_config(parse_replica_url(url), kwargs, CREDS if env is None else env)


@pytest.mark.parametrize("path,want", [
    ("", "."), ("/", "/"), (".", "."), ("a", "a"), ("a/", "a"), ("/a/", "/a"),
    ("a/b/../c", "a/c"), ("a/..", "."), ("../a", "../a"), ("../../a/..", "../.."),
    ("/../a", "/a"), ("/..", "/"), ("//a//b/", "/a/b"), ("./a/./b", "a/b"),
    ("a/b/../../..", ".."), ("/a/b/../../..", "/"),
])
def test_go_path_clean_matches_go(path: str, want: str) -> None:
    assert go_path_clean(path) == want


@pytest.mark.parametrize("url,bucket,prefix", [
    ("s3://bucket/db/prod.db", "bucket", "db/prod.db"),
    ("s3://bucket/db/prod.db/", "bucket", "db/prod.db"),
    ("s3://bucket", "bucket", "."),  # Litestream quirk: keys "./0000/..."
    ("s3://bucket/", "bucket", ""),  # Litestream quirk: keys "/0000/..."
    ("s3://bucket//db//x/", "bucket", "db/x"),
    ("s3://bucket/a/../b", "bucket", "b"),
    ("s3://bucket/../../b", "bucket", "b"),
    ("s3://bucket/a%20b/c", "bucket", "a b/c"),
    ("s3://bucket/db?region=eu-west-1", "bucket", "db"),
    ("S3://bucket/db", "bucket", "db"),
])
def test_s3_url_bucket_and_prefix(url: str, bucket: str, prefix: str) -> None:
    parsed = parse_replica_url(url)
    assert (parsed.scheme, parsed.bucket, parsed.path) == ("s3", bucket, prefix)


def test_s3_keys_follow_litestream_layout() -> None:
    st = open_storage(f"s3://b/db/prod.db?endpoint={ENDPOINT}", **{
        "access_key_id": "k", "secret_access_key": "s"})
    assert st.ltx_key(0, 0x101, 0x101) == "db/prod.db/0000/0000000000000101-0000000000000101.ltx"
    assert st.ltx_key(9, 1, 0x120) == "db/prod.db/0009/0000000000000001-0000000000000120.ltx"
    assert st.ltx_key(10 - 1, 1, 2).split("/")[2] == "0009"
    assert st.level_prefix(1) == "db/prod.db/0001/"
    assert st.object_key("litevfs/head") == "db/prod.db/litevfs/head"
    quirk_dot = open_storage(f"s3://b?endpoint={ENDPOINT}", access_key_id="k",
                             secret_access_key="s")
    assert quirk_dot.ltx_key(0, 1, 1) == "./0000/0000000000000001-0000000000000001.ltx"
    quirk_slash = open_storage(f"s3://b/?endpoint={ENDPOINT}", access_key_id="k",
                               secret_access_key="s")
    assert quirk_slash.ltx_key(0, 1, 1) == "/0000/0000000000000001-0000000000000001.ltx"


def test_open_storage_neither_imports_boto3_nor_connects() -> None:
    code = (
        "import sys\n"
        "from litevfs.storage import open_storage\n"
        "st = open_storage('s3://b/p?endpoint=http://127.0.0.1:9&forcePathStyle=true',"
        " access_key_id='k', secret_access_key='s')\n"
        "assert st.ltx_key(0, 1, 1)\n"
        "mods = [m for m in ('boto3', 'botocore', 'urllib3') if m in sys.modules]\n"
        "assert not mods, mods\n"
    )
    env = dict(os.environ, AWS_EC2_METADATA_DISABLED="true")
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)


# -- options ---------------------------------------------------------------------------


def test_litestream_query_options_and_aliases() -> None:
    c = s3cfg(f"s3://b/p?endpoint={ENDPOINT}&region=eu-central-1&force-path-style=false"
              "&skip-verify=true&sign-payload=1&require-content-md5=yes&concurrency=8"
              "&part-size=10485760&storage-class=STANDARD_IA&sse-kms-key-id=k1")
    assert c.endpoint == ENDPOINT and c.region == "eu-central-1"
    assert c.force_path_style is False and c.skip_verify is True
    assert c.sign_payload is True and c.require_content_md5 is True
    assert (c.concurrency, c.part_size, c.storage_class, c.sse_kms_key_id) == (
        8, 10485760, "STANDARD_IA", "k1")
    camel = s3cfg(f"s3://b/p?endpoint={ENDPOINT}&forcePathStyle=false&skipVerify=true"
                  "&storageClass=GLACIER&sseKmsKeyId=k2")
    assert camel.force_path_style is False and camel.skip_verify is True
    assert (camel.storage_class, camel.sse_kms_key_id) == ("GLACIER", "k2")


def test_keyword_options_override_query_in_any_spelling() -> None:
    c = s3cfg(f"s3://b/p?endpoint={ENDPOINT}&region=eu-west-1", region="ap-south-1",
              force_path_style=False, connect_timeout=1.5, read_timeout=7,
              max_pool_connections=64)
    assert c.region == "ap-south-1" and c.force_path_style is False
    assert (c.connect_timeout, c.read_timeout, c.max_pool_connections) == (1.5, 7.0, 64)
    assert s3cfg("s3://b/p", **{"forcePathStyle": "true"}).force_path_style is True
    assert s3cfg("s3://b/p", **{"force-path-style": True}).force_path_style is True


@pytest.mark.parametrize("url,named", [
    ("s3://b/p?bogus=1", "bogus"),
    ("s3://b/p?forcePathStyl=true", "forcePathStyl"),
    ("s3://b/p?access_key_id=AKID", "access_key_id"),  # secrets never in URLs
    ("s3://b/p?secret-access-key=x", "secret-access-key"),
    ("s3://b/p?forcePathStyle=maybe", "forcePathStyle"),
    ("s3://b/p?concurrency=0", "concurrency"),
    ("s3://b/p?partSize=big", "partSize"),
    ("s3://b/p?forcePathStyle=true&force-path-style=false", "force-path-style"),
])
def test_bad_options_name_themselves(url: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        s3cfg(url)


def test_unknown_keyword_option_is_named() -> None:
    with pytest.raises(ConfigError, match="frobnicate"):
        open_storage("s3://b/p", frobnicate=True)
    with pytest.raises(ConfigError, match="endpoint"):
        open_storage("memory://x", endpoint="http://127.0.0.1:1")
    with pytest.raises(ConfigError, match="region"):
        open_storage("file:///tmp/x?region=us-east-1")


def test_empty_option_value_means_unset() -> None:
    assert s3cfg(f"s3://b/p?endpoint={ENDPOINT}&forcePathStyle=").force_path_style is True


def test_repeated_identical_option_is_fine() -> None:
    c = s3cfg("s3://b/p?region=x&region=x")
    assert c.region == "x"


# -- endpoint, path style, region ---------------------------------------------------------


def test_custom_endpoint_defaults() -> None:
    c = s3cfg(f"s3://b/p?endpoint={ENDPOINT}")
    assert c.force_path_style is True and c.region == "us-east-1"


def test_no_endpoint_defaults() -> None:
    c = s3cfg("s3://b/p")
    assert c.endpoint is None and c.force_path_style is False and c.region == "us-east-1"
    c = s3cfg("s3://b/p", env=dict(CREDS, AWS_REGION="eu-north-1"))
    assert c.region == "eu-north-1"
    assert s3cfg("s3://b/p?region=sa-east-1", env=dict(CREDS, AWS_REGION="x")).region == "sa-east-1"


@pytest.mark.parametrize("given,want", [
    ("localhost:9000", "http://localhost:9000"),
    ("127.0.0.1:9000", "http://127.0.0.1:9000"),
    ("10.1.2.3:9000", "http://10.1.2.3:9000"),
    ("172.20.0.5", "http://172.20.0.5"),
    ("minio.local:9000", "http://minio.local:9000"),
    ("s3.example.com", "https://s3.example.com"),
    ("172.32.0.1", "https://172.32.0.1"),
    ("https://x.example", "https://x.example"),
    ("http://x.example", "http://x.example"),
])
def test_endpoint_scheme(given: str, want: str) -> None:
    assert ensure_endpoint_scheme(given) == want
    assert s3cfg(f"s3://b/p?endpoint={given}").endpoint == want


def test_is_local_endpoint() -> None:
    assert is_local_endpoint("http://[::1]:9000")
    assert not is_local_endpoint("https://s3.amazonaws.com")


def test_litestream_s3_endpoint_env() -> None:
    env = dict(CREDS, LITESTREAM_S3_ENDPOINT="127.0.0.1:7000")
    c = s3cfg("s3://b/p", env=env)
    assert c.endpoint == "http://127.0.0.1:7000" and c.force_path_style is True
    assert c.region == "us-east-1"
    assert s3cfg("s3://b/p?forcePathStyle=false", env=env).force_path_style is False
    # The URL's endpoint wins over the environment.
    assert s3cfg(f"s3://b/p?endpoint={ENDPOINT}", env=env).endpoint == ENDPOINT


@pytest.mark.parametrize("host,want", [
    ("mybucket", ("mybucket", "", "", False)),
    ("mybucket.localhost:9000", ("mybucket", "us-east-1", "http://localhost:9000", True)),
    ("localhost:9000", ("", "", "http://localhost:9000", True)),
    ("mybucket.s3.amazonaws.com", ("mybucket", "", "", False)),
    ("mybucket.s3.eu-west-1.amazonaws.com", ("mybucket", "eu-west-1", "", False)),
    ("mybucket.nyc3.digitaloceanspaces.com",
     ("mybucket", "nyc3", "https://nyc3.digitaloceanspaces.com", False)),
    ("mybucket.s3.us-west-002.backblazeb2.com",
     ("mybucket", "us-west-002", "https://s3.us-west-002.backblazeb2.com", True)),
])
def test_s3_host_forms(host: str, want: tuple[str, str, str, bool]) -> None:
    assert parse_s3_host(host) == want


def test_minio_style_host_in_url() -> None:
    c = s3cfg("s3://mybucket.localhost:9000/db")
    assert (c.bucket, c.endpoint, c.force_path_style, c.prefix) == (
        "mybucket", "http://localhost:9000", True, "db")
    with pytest.raises(ConfigError, match="bucket required"):
        s3cfg("s3://localhost:9000/db")


def test_access_point_arn() -> None:
    arn = "arn:aws:s3:us-west-2:123456789012:accesspoint/my-ap"
    c = s3cfg(f"s3://{arn}/db/x.db?forcePathStyle=false")
    assert (c.bucket, c.prefix, c.region) == (arn, "db/x.db", "us-west-2")
    assert s3cfg(f"s3://{arn}").prefix == ""


# -- credentials ---------------------------------------------------------------------------


def test_credentials_precedence() -> None:
    both = dict(CREDS, LITESTREAM_ACCESS_KEY_ID="lk", LITESTREAM_SECRET_ACCESS_KEY="ls",
                AWS_SESSION_TOKEN="tok")
    c = s3cfg("s3://b/p", env=both)
    assert (c.access_key_id, c.secret_access_key, c.session_token) == (
        "AKIDEXAMPLE", "s3cr3t-value", "tok")
    assert "AWS_ACCESS_KEY_ID" in c.credential_source
    only_ls = {"LITESTREAM_ACCESS_KEY_ID": "lk", "LITESTREAM_SECRET_ACCESS_KEY": "ls",
               "AWS_SESSION_TOKEN": "tok"}
    c = s3cfg("s3://b/p", env=only_ls)
    # The session token belongs to AWS_* keys, never to Litestream's.
    assert (c.access_key_id, c.secret_access_key, c.session_token) == ("lk", "ls", None)
    assert "LITESTREAM" in c.credential_source
    c = s3cfg("s3://b/p", env=NO_ENV)
    assert c.access_key_id is None and c.credential_source == "default AWS credential chain"
    # Half a pair is not a pair: fall through to the next source.
    c = s3cfg("s3://b/p", env={"AWS_ACCESS_KEY_ID": "a", "LITESTREAM_ACCESS_KEY_ID": "lk",
                               "LITESTREAM_SECRET_ACCESS_KEY": "ls"})
    assert c.access_key_id == "lk"


def test_keyword_credentials() -> None:
    c = s3cfg("s3://b/p", access_key_id="kk", secret_access_key="ks", session_token="kt")
    assert (c.access_key_id, c.secret_access_key, c.session_token) == ("kk", "ks", "kt")
    with pytest.raises(ConfigError):
        s3cfg("s3://b/p", access_key_id="kk")


def test_secrets_stay_out_of_reprs_and_urls() -> None:
    c = s3cfg(f"s3://b/p?endpoint={ENDPOINT}&sseCustomerKey=topsecretkey")
    assert "s3cr3t-value" not in repr(c)
    assert "topsecretkey" not in repr(c)
    st = open_storage(f"s3://user:pw@b/p?endpoint={ENDPOINT}&sseCustomerKey=topsecretkey")
    assert "topsecretkey" not in st.url and "pw" not in st.url
    assert "REDACTED" in st.url and st.url.startswith("s3://b/p?")


# -- other schemes ---------------------------------------------------------------------------


@pytest.mark.parametrize("url,named", [
    ("gs://bucket/db", "gs"), ("abs://c/db", "abs"), ("sftp://h/db", "sftp"),
    ("ftp://h/db", "ftp"), ("webdavs://h/db", "webdavs"),
])
def test_unsupported_schemes_are_named(url: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        open_storage(url)


def test_file_urls_and_plain_paths(tmp_path: os.PathLike[str]) -> None:
    st = open_storage(f"file://{tmp_path}/r")
    assert isinstance(st, FileStorage) and st.root == f"{tmp_path}/r"
    assert open_storage(f"file://localhost{tmp_path}/r").root == f"{tmp_path}/r"
    assert open_storage(f"file://{tmp_path}/a/../r/").root == f"{tmp_path}/r"
    assert open_storage(str(tmp_path)).root == str(tmp_path)
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path)
        assert open_storage("rel/dir").root == os.path.join(str(tmp_path), "rel/dir")
    finally:
        os.chdir(cwd)
    assert st.ltx_path(10 - 1, 1, 2) == f"{tmp_path}/r/ltx/9/0000000000000001-0000000000000002.ltx"
    with pytest.raises(ConfigError, match="three slashes"):
        open_storage("file://relative/dir")
    with pytest.raises(ConfigError):
        open_storage("")


def test_memory_urls_share_by_name() -> None:
    a = open_storage("memory://url-test-shared")
    b = open_storage("memory://url-test-shared")
    assert isinstance(a, MemoryStorage) and a.store is b.store
    assert open_storage("memory://").store is not open_storage("memory://").store


@pytest.mark.parametrize("url,expected", [
    ("s3:/bucket/db?endpoint=http://127.0.0.1:9", "s3://bucket/path"),
    ("s3:bucket/db", "s3://bucket/path"),
    ("S3:/bucket", "s3://bucket/path"),
    ("memory:/x", "memory://name"),
    ("file:relative", "file:///absolute/dir"),
    ("http://127.0.0.1:9000/bucket", "unsupported"),
    ("https:/host/bucket", "s3://bucket/path?endpoint="),
    ("gs:/bucket", "Litestream supports it"),
])
def test_mistyped_url_is_an_error_at_once(url: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_replica_url(url)
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


def test_mistyped_url_never_echoes_its_query() -> None:
    with pytest.raises(ConfigError) as info:
        parse_replica_url("s3:/bucket/db?sseCustomerKey=TOPSECRETKEY")
    assert "TOPSECRETKEY" not in str(info.value) and "s3:/bucket/db" in str(info.value)


def test_one_slash_file_url_and_plain_paths_still_work(tmp_path) -> None:
    assert parse_replica_url("file:/srv/replica").path == "/srv/replica"  # as Litestream
    assert parse_replica_url(str(tmp_path / "s3")).path == str(tmp_path / "s3")
    assert parse_replica_url("some:dir").scheme == "file"  # not a scheme we know


@pytest.mark.parametrize("url", [
    "s3://bucket/pa#th?endpoint=http://127.0.0.1:9000",
    "s3://bucket/path?endpoint=http://127.0.0.1:9000#x",
    "file:///srv/rep#lica",
])
def test_a_fragment_is_refused_not_silently_cut(url: str) -> None:
    with pytest.raises(ConfigError, match="'#'.*%23"):
        parse_replica_url(url)
