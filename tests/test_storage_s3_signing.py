"""The fast read path signs exactly as botocore's SigV4 signer does.

Each request is built twice for one pinned clock: by ``_FastReader.prepare`` (our
path encoding, query canonicalisation, headers and signature) and by botocore's
``S3SigV4Auth`` over the path botocore's own serializer produces for the key (captured
from a real client before sending) and the raw query parameters. The request target and
every signed header (``authorization`` included) must be identical, over odd keys
(unicode, spaces, ``+=&~*``, ``//``, dot-segments, percent signs), continuation tokens,
session tokens, regions and addressing styles. No network: nothing is sent.
"""

from __future__ import annotations

import datetime
import types
from typing import Any
from urllib.parse import urlsplit

import pytest

from litevfs.storage.s3.client import S3Storage

NOW = datetime.datetime(2025, 3, 4, 5, 6, 7)
KEY_ID = "AKIDEXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"

ODD_KEYS = [
    "db/0000/0000000000000001-0000000000000001.ltx",
    "db/with space/and  two",
    "db/ünïcødé/ファイル/🙂",
    "db/+=&~*/plus+equals=amp&tilde~star*",
    "db//double//slash/",
    "/leading/slash",  # the s3://bucket/ quirk: keys start with "/"
    "./0000/dot",  # the s3://bucket quirk: keys start with "./"
    "db/./dot/../segments/..",
    "db/percent%20literal%2F",
    "db/quote'\"semi;colon,comma",
    "db/hash#and?question",
    "db/!$()@:[]{}|^`\\",
]
TOKENS = [
    None,
    "FwoGZXIvYXdzEJr//////////wEaDExampleToken+/=",
    "IQoJb3JpZ2luX2VjEJ7//////////wEaCXVzLWVhc3QtMSJHMEUCIQ" * 8,
]
REGIONS = ["us-east-1", "eu-west-1", "ap-southeast-2", "us-gov-west-1", "cn-north-1", "garage"]
ENDPOINTS = [
    "?endpoint=http://127.0.0.1:9000&forcePathStyle=true",
    "?endpoint=https://minio.example:9443&forcePathStyle=false",
    "?endpoint=http://[::1]:9000",
    "",  # AWS itself, virtual-hosted
]


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> None:
    import litevfs.storage.s3.client as s3mod

    for var in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "LITESTREAM_S3_ENDPOINT",
                "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_USE_FIPS_ENDPOINT",
                "AWS_USE_DUALSTACK_ENDPOINT", "http_proxy", "HTTP_PROXY", "https_proxy",
                "HTTPS_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setattr(s3mod, "_session", None)


def storage(endpoint: str, region: str, token: str | None) -> S3Storage:
    st = S3Storage.from_url(f"s3://litevfs-bucket/db{endpoint}"
                            + ("&" if endpoint else "?") + f"region={region}",
                            access_key_id=KEY_ID, secret_access_key=SECRET,
                            session_token=token)
    return st


class _Captured(Exception):
    pass


def botocore_path(st: S3Storage, key: str | None) -> str:
    """The URL path botocore's serializer builds for GetObject(key) / ListObjectsV2."""
    got: dict[str, str] = {}

    def grab(request: Any, **_: Any) -> None:
        got["url"] = request.url
        raise _Captured

    client = st.client
    client.meta.events.register("before-send.s3", grab, unique_id="sign-grab")
    try:
        with pytest.raises(_Captured):
            if key is None:
                client.list_objects_v2(Bucket=st.bucket, Prefix="x")
            else:
                client.get_object(Bucket=st.bucket, Key=key)
    finally:
        client.meta.events.unregister("before-send.s3", unique_id="sign-grab")
    parts = urlsplit(got["url"])
    return parts.path, f"{parts.scheme}://{parts.netloc}"


def botocore_signed(st: S3Storage, method: str, base: str, path: str,
                    query: list[tuple[str, str]], headers: dict[str, str],
                    monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    import botocore.auth
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    if hasattr(botocore.auth, "get_current_datetime"):
        monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: NOW)
    else:  # older botocore (the 1.36 floor) reads datetime.datetime.utcnow()
        class Clock(datetime.datetime):
            @classmethod
            def utcnow(cls) -> datetime.datetime:  # type: ignore[override]
                return NOW

        monkeypatch.setattr(botocore.auth, "datetime", types.SimpleNamespace(
            datetime=Clock, timedelta=datetime.timedelta, timezone=datetime.timezone))
    request = AWSRequest(method=method, url=base + path, headers=dict(headers),
                         params=list(query))
    creds = Credentials(st.config.access_key_id, st.config.secret_access_key,
                        st.config.session_token)
    S3SigV4Auth(creds, "s3", st.config.region).add_auth(request)
    return {k.lower(): v for k, v in request.headers.items()}


def compare(st: S3Storage, method: str, key: str | None, query: list[tuple[str, str]],
            headers: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    fast = st._fast
    assert fast is not None
    target, ours = fast.prepare(method, key, query, headers, now=NOW.timetuple())
    path, base = botocore_path(st, key)
    # The host botocore signs is the one it sends to; the fast path sends to the same.
    assert urlsplit(base).netloc == fast.host_header
    assert target.split("?", 1)[0] == path
    theirs = botocore_signed(st, method, base, path, query, headers, monkeypatch)
    for name in ("authorization", "x-amz-date", "x-amz-content-sha256",
                 "x-amz-security-token", *headers):
        assert ours.get(name) == theirs.get(name), (name, key, query)
    assert ours["authorization"].startswith(
        f"AWS4-HMAC-SHA256 Credential={KEY_ID}/{NOW:%Y%m%d}/{st.config.region}/s3/aws4_request")


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("region", REGIONS)
def test_get_and_head_signatures_match_botocore(endpoint: str, region: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    if not endpoint and region in ("cn-north-1", "garage"):
        # Not an amazonaws.com region: reads go through botocore (see the settings tests).
        assert storage(endpoint, region, None)._fast is None
        return
    for i, key in enumerate(ODD_KEYS):
        st = storage(endpoint, region, TOKENS[i % len(TOKENS)])
        compare(st, "GET", key, [], {"range": f"bytes={i}-{i + 99}"}, monkeypatch)
        compare(st, "HEAD", key, [], {}, monkeypatch)
        compare(st, "GET", key, [], {"if-none-match": '"0123abcd"'}, monkeypatch)


@pytest.mark.parametrize("token", TOKENS)
@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_list_signatures_match_botocore(endpoint: str, token: str | None,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    st = storage(endpoint, "eu-west-1", token)
    continuation = [
        None,
        "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=",
        "a b+c/d=e&f~g*h%i",
        "ünï/🙂==",
    ]
    for prefix in ("db/0000/", "/0000/", "./0000/", "", "a b/+=&~*/ü/"):
        for token_value in continuation:
            query = [("list-type", "2"), ("prefix", prefix), ("max-keys", "1000")]
            if token_value is not None:
                query.append(("continuation-token", token_value))
            compare(st, "GET", None, query, {}, monkeypatch)


def test_header_whitespace_is_canonicalised_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    st = storage(ENDPOINTS[0], "us-east-1", None)
    compare(st, "GET", "k", [], {"range": "  bytes=0-9  ", "if-none-match": 'a   "b"  c'},
            monkeypatch)


def test_signing_key_cache_follows_the_day(monkeypatch: pytest.MonkeyPatch) -> None:
    """The derived key is cached per day: a request on the next day must not reuse it."""
    global NOW
    st = storage(ENDPOINTS[0], "eu-west-1", None)
    compare(st, "GET", "k", [], {}, monkeypatch)
    saved = NOW
    try:
        NOW = saved + datetime.timedelta(days=1)
        compare(st, "GET", "k", [], {}, monkeypatch)
    finally:
        NOW = saved
