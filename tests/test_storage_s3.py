"""S3 backend facts beyond the shared contract: Litestream's key layout and metadata on a
real server (SeaweedFS), error mapping, our retry policy (faults injected by a small
proxy on 127.0.0.1), server quirks and their fallbacks, credential sources."""

from __future__ import annotations

import http.client
import logging
import socket
import struct
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest

from litevfs.errors import (
    AccessDeniedError, AlreadyExistsError, BucketNotFoundError, EndpointUnreachableError,
    NotFoundError, TransientStorageError,
)
from litevfs.ltx.format import FileInfo
from litevfs.storage import open_storage
from litevfs.storage.retry import RetryPolicy, call_with_retry
from litevfs.storage.s3.client import S3Storage, format_timestamp, parse_timestamp

pytestmark = pytest.mark.s3

FAST_RETRY = RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.05, max_elapsed=5.0)
DATA = bytes(range(256)) * 16  # 4096 bytes


def s3_storage(seaweed: Any, bucket: str, path: str = "db", endpoint: str | None = None,
               **options: Any) -> S3Storage:
    endpoint = endpoint or seaweed.endpoint
    options.setdefault("retry", FAST_RETRY)
    st = open_storage(f"s3://{bucket}/{path}?endpoint={endpoint}&region=us-east-1"
                      "&forcePathStyle=true", **options)
    assert isinstance(st, S3Storage)
    return st


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# -- a fault-injecting proxy -----------------------------------------------------------------

Fault = str  # "503", "500", "reset", "truncate", "short", "lose_response", "hang", "delay"


@dataclass
class _Rule:
    fault: Fault
    remaining: int
    method: str | None
    when: Callable[[str, str, dict[str, str]], bool] | None


class FaultProxy:
    """Forwards HTTP/1.1 requests unchanged (Host included, so SigV4 signatures stay valid)
    to the upstream S3 server, applying queued faults to matching requests."""

    def __init__(self, upstream: str) -> None:
        u = urlsplit(upstream)
        self.upstream = (u.hostname or "127.0.0.1", u.port or 80)
        self.rules: deque[_Rule] = deque()
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str, str | None]] = []
        self.hang_seconds = 2.0
        self.delay_seconds = 0.2
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_any(self) -> None:
                proxy._handle(self)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_any

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # resets are on purpose

        self.server = Server(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def add(self, fault: Fault, n: int = 1, method: str | None = None,
            when: Callable[[str, str, dict[str, str]], bool] | None = None) -> None:
        with self.lock:
            self.rules.append(_Rule(fault, n, method, when))

    def _take(self, method: str, path: str, headers: dict[str, str]) -> Fault | None:
        with self.lock:
            self.requests.append((method, path, headers.get("range")))
            for rule in self.rules:
                if rule.remaining > 0 and rule.method in (None, method) and (
                        rule.when is None or rule.when(method, path, headers)):
                    rule.remaining -= 1
                    return rule.fault
        return None

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    @staticmethod
    def _reset(h: BaseHTTPRequestHandler) -> None:
        h.close_connection = True
        h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        h.connection.close()

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in h.headers.items()}
        fault = self._take(h.command, h.path, headers)
        if fault in ("503", "500"):
            code = "SlowDown" if fault == "503" else "InternalError"
            xml = (f"<?xml version='1.0'?><Error><Code>{code}</Code>"
                   "<Message>injected</Message></Error>").encode()
            h.send_response(int(fault))
            h.send_header("Content-Type", "application/xml")
            h.send_header("Content-Length", str(len(xml)))
            h.end_headers()
            h.wfile.write(xml)
            return
        if fault == "reset":
            self._reset(h)
            return
        if fault == "416":
            xml = b"<Error><Code>InvalidRange</Code><Message>no suffix</Message></Error>"
            h.send_response(416)
            h.send_header("Content-Length", str(len(xml)))
            h.end_headers()
            h.wfile.write(xml)
            return
        if fault == "hang":
            time.sleep(self.hang_seconds)
            self._reset(h)
            return
        if fault == "delay":
            time.sleep(self.delay_seconds)

        conn = http.client.HTTPConnection(*self.upstream, timeout=30)
        try:
            fwd = {k: v for k, v in h.headers.items() if k.lower() not in ("expect", "connection")}
            conn.request(h.command, h.path, body=body, headers=fwd)
            resp = conn.getresponse()
            data = resp.read()
            status, reason = resp.status, resp.reason
            out_headers = [(k, v) for k, v in resp.getheaders()
                           if k.lower() not in ("transfer-encoding", "connection", "content-length")]
            upstream_length = resp.getheader("Content-Length")
        finally:
            conn.close()
        if fault == "lose_response":
            self._reset(h)  # the upstream did the work; the client never hears of it
            return
        declared = len(data)
        if h.command == "HEAD":
            declared = int(upstream_length or 0)
        if fault == "truncate" and len(data) > 1:
            data = data[: len(data) // 2]  # Content-Length still promises everything
        if fault == "short" and status == 206 and len(data) > 1:
            half = len(data) // 2
            out_headers = [(k, v) for k, v in out_headers if k.lower() != "content-range"]
            cr = resp.getheader("Content-Range", "")
            first, total = cr.split(" ")[1].split("-")[0], cr.split("/")[1]
            out_headers.append(("Content-Range",
                                f"bytes {first}-{int(first) + half - 1}/{total}"))
            data = data[:half]
            declared = half
        h.send_response(status, reason)
        for k, v in out_headers:
            h.send_header(k, v)
        h.send_header("Content-Length", str(declared))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(data)
        if fault == "truncate":
            h.wfile.flush()
            self._reset(h)


@pytest.fixture
def proxy(seaweed: Any) -> Iterator[FaultProxy]:
    p = FaultProxy(seaweed.endpoint)
    try:
        yield p
    finally:
        p.close()


# -- layout and metadata on a real server ----------------------------------------------------


def test_keys_and_metadata_match_litestream(seaweed: Any, s3_bucket: str) -> None:
    st = s3_storage(seaweed, s3_bucket, "db/prod.db")
    st.write_ltx(0, 0x101, 0x101, b"l0", timestamp_ms=1767323045123)
    st.write_ltx(9, 1, 0x120, b"snap", timestamp_ms=1767323045100)
    st.write_ltx(1, 0xE1, 0x120, b"l1", timestamp_ms=1767323045000)
    st.put_object("litevfs/head", b"h")
    assert sorted(seaweed.list_keys(s3_bucket)) == [
        "db/prod.db/0000/0000000000000101-0000000000000101.ltx",
        "db/prod.db/0001/00000000000000e1-0000000000000120.ltx",
        "db/prod.db/0009/0000000000000001-0000000000000120.ltx",
        "db/prod.db/litevfs/head",
    ]
    raw = seaweed.shared_client
    meta = {k: raw.head_object(Bucket=s3_bucket, Key=k)["Metadata"].get("litestream-timestamp")
            for k in seaweed.list_keys(s3_bucket, "db/prod.db/000")}
    assert sorted(meta.values()) == ["2026-01-02T03:04:05.123Z", "2026-01-02T03:04:05.1Z",
                                     "2026-01-02T03:04:05Z"]
    stat = st.stat_ltx(FileInfo(0, 0x101, 0x101, 0))
    assert stat.created_at == pytest.approx(1767323045.123) and stat.size == 2


def test_reads_files_written_by_another_client(seaweed: Any, s3_bucket: str) -> None:
    raw = seaweed.shared_client
    raw.put_object(Bucket=s3_bucket, Key="db/0009/0000000000000001-0000000000000005.ltx",
                   Body=DATA)
    raw.put_object(Bucket=s3_bucket, Key="db/0009/0000000000000001-0000000000000005.ltx.bak",
                   Body=b"x")
    raw.put_object(Bucket=s3_bucket, Key="db2/0009/0000000000000001-0000000000000009.ltx",
                   Body=b"other replica")
    st = s3_storage(seaweed, s3_bucket)
    (info,) = st.list_all()[9]
    assert (info.min_txid, info.max_txid, info.size) == (1, 5, len(DATA))
    assert st.read_range(info, 100, 10) == DATA[100:110]
    # No metadata (not written by Litestream): stat falls back to LastModified.
    assert abs(st.stat_ltx(info).created_at - time.time()) < 300


def test_bucket_root_quirk_on_seaweedfs(seaweed: Any, s3_bucket: str) -> None:
    """``s3://bucket/`` means keys ``/0000/...``; SeaweedFS drops the leading slash when
    storing, and listing must still find them (Litestream matches on the base name)."""
    st = open_storage(f"s3://{s3_bucket}/?endpoint={seaweed.endpoint}")
    assert st.ltx_key(0, 1, 1).startswith("/0000/")
    info = st.write_ltx(0, 1, 1, b"root")
    assert seaweed.list_keys(s3_bucket) == ["0000/0000000000000001-0000000000000001.ltx"]
    assert st.list_level(0) == [FileInfo(0, 1, 1, 4, st.list_level(0)[0].created_at)]
    assert st.read_range(info) == b"root"
    assert st.read_tail(info, 2) == b"ot"


# -- error mapping ---------------------------------------------------------------------------


def test_missing_bucket_fails_fast(seaweed: Any) -> None:
    # Reads only: SeaweedFS (weed mini) creates a missing bucket on PUT.
    bucket = f"missing-{uuid.uuid4().hex[:12]}"
    st = s3_storage(seaweed, bucket)
    t0 = time.monotonic()
    with pytest.raises(BucketNotFoundError) as info:
        st.list_level(0)
    assert f"bucket '{bucket}' does not exist at {seaweed.endpoint}" in str(info.value)
    with pytest.raises(BucketNotFoundError):
        st.list_all()
    with pytest.raises(BucketNotFoundError):
        st.read_range(FileInfo(0, 1, 1, 10), 0, 5)
    with pytest.raises(BucketNotFoundError):
        st.read_tail(FileInfo(0, 1, 1, 10), 5)
    with pytest.raises(NotFoundError):  # BucketNotFoundError is a NotFoundError
        st.get_object("x")
    assert time.monotonic() - t0 < 3
    assert st.stats.retries == 0


@pytest.mark.parametrize("key_id", ["known", "unknown"])
def test_wrong_credentials_are_access_denied(seaweed: Any, s3_bucket: str, key_id: str) -> None:
    secret = "definitely-not-the-secret-123"
    access = seaweed.access_key if key_id == "known" else "AKIDUNKNOWN"
    st = s3_storage(seaweed, s3_bucket, access_key_id=access, secret_access_key=secret)
    for call in (lambda: st.list_level(0), lambda: st.read_tail(FileInfo(0, 1, 1, 0), 5),
                 lambda: st.write_ltx(0, 1, 1, b"x")):
        with pytest.raises(AccessDeniedError) as info:
            call()
        message = str(info.value)
        assert s3_bucket in message and "keyword arguments" in message
        assert secret not in message and seaweed.secret_key not in message
    assert st.stats.retries == 0


def test_unreachable_endpoint_fails_within_seconds(s3_bucket: str, seaweed: Any) -> None:
    port = closed_port()
    st = s3_storage(seaweed, s3_bucket, endpoint=f"http://127.0.0.1:{port}")
    t0 = time.monotonic()
    with pytest.raises(EndpointUnreachableError) as info:
        st.list_all()
    with pytest.raises(EndpointUnreachableError):
        st.read_range(FileInfo(0, 1, 1, 10))
    with pytest.raises(EndpointUnreachableError):  # botocore path
        st.write_ltx(0, 1, 1, b"x")
    slow = s3_storage(seaweed, s3_bucket, endpoint=f"http://127.0.0.1:{port}", fast_reads=False)
    with pytest.raises(EndpointUnreachableError):
        slow.list_level(0)
    assert time.monotonic() - t0 < 3
    assert f"127.0.0.1:{port}" in str(info.value)


def test_botocore_settings(seaweed: Any, s3_bucket: str) -> None:
    st = s3_storage(seaweed, s3_bucket)
    assert st._client is None  # nothing built (nor any connection made) at open
    cfg = st.client.meta.config
    assert cfg.retries["total_max_attempts"] == 1  # retry.py is the only policy
    assert cfg.max_pool_connections >= 32
    assert cfg.connect_timeout == 3 and cfg.read_timeout == 30
    assert cfg.s3["addressing_style"] == "path"
    assert st.client is st.client  # one client per storage object
    st.close()


def test_prewarm_builds_client_in_background(seaweed: Any, s3_bucket: str) -> None:
    st = s3_storage(seaweed, s3_bucket)
    st.prewarm().join(30)
    assert st._client is not None
    assert st.list_level(0) == []


# -- retries -----------------------------------------------------------------------------------


def test_5xx_is_retried_and_counted(seaweed: Any, s3_bucket: str, proxy: FaultProxy) -> None:
    st = s3_storage(seaweed, s3_bucket, endpoint=proxy.endpoint)
    proxy.add("503", 2, method="PUT")
    info = st.write_ltx(0, 1, 1, DATA)
    assert st.stats.retries == 2 and st.stats.puts == 3 and st.stats.bytes_written == len(DATA)
    proxy.add("500", 1, method="GET")
    assert st.list_level(0) == [FileInfo(0, 1, 1, len(DATA), st.list_level(0)[0].created_at)]
    proxy.add("503", 1, method="GET")
    assert st.read_range(info, 10, 20) == DATA[10:30]
    assert st.stats.retries == 4


def test_persistent_5xx_becomes_transient_error(seaweed: Any, s3_bucket: str,
                                                proxy: FaultProxy) -> None:
    st = s3_storage(seaweed, s3_bucket, endpoint=proxy.endpoint)
    proxy.add("500", 100)
    t0 = time.monotonic()
    with pytest.raises(TransientStorageError, match="4 attempts.*InternalError"):
        st.list_level(0)
    assert time.monotonic() - t0 < 2
    assert st.stats.lists == FAST_RETRY.max_attempts
    assert st.stats.retries == FAST_RETRY.max_attempts - 1


@pytest.mark.parametrize("fault", ["reset", "truncate", "short"])
def test_broken_reads_are_retried(seaweed: Any, s3_bucket: str, proxy: FaultProxy,
                                  fault: str) -> None:
    info = s3_storage(seaweed, s3_bucket).write_ltx(0, 1, 1, DATA)
    # Fresh storages: the first request opens a fresh connection (a reset on a pooled
    # keep-alive connection is a silent reconnect instead; see the next test).
    st = s3_storage(seaweed, s3_bucket, endpoint=proxy.endpoint)
    proxy.add(fault, 1, method="GET")
    assert st.read_range(info, 100, 1000) == DATA[100:1100]
    assert st.stats.retries == 1 and st.stats.gets == 2
    st = s3_storage(seaweed, s3_bucket, endpoint=proxy.endpoint)
    proxy.add(fault, 1, method="GET")
    assert st.read_tail(info, 500) == DATA[-500:]
    assert st.stats.retries == 1


def test_stale_keepalive_connection_reconnects(seaweed: Any, s3_bucket: str,
                                               proxy: FaultProxy) -> None:
    info = s3_storage(seaweed, s3_bucket).write_ltx(0, 1, 1, DATA)
    st = s3_storage(seaweed, s3_bucket, endpoint=proxy.endpoint)
    assert st._fast is not None
    assert st.read_range(info, 0, 10) == DATA[:10]  # leaves one pooled connection
    proxy.add("reset", 1, method="GET")  # as if the server dropped the idle connection
    assert st.read_range(info, 10, 10) == DATA[10:20]
    assert st.stats.retries == 0 and len(proxy.requests) == 3


def test_persistent_short_reads_fail(seaweed: Any, s3_bucket: str, proxy: FaultProxy) -> None:
    st = s3_storage(seaweed, s3_bucket, endpoint=proxy.endpoint)
    info = st.write_ltx(0, 1, 1, DATA)
    proxy.add("short", 100, method="GET")
    with pytest.raises(TransientStorageError, match="short read"):
        st.read_range(info, 0, 1000)
    assert st.stats.retries == FAST_RETRY.max_attempts - 1


def test_read_timeout_is_retried_then_transient(seaweed: Any, s3_bucket: str,
                                                proxy: FaultProxy) -> None:
    proxy.hang_seconds = 1.0
    st = s3_storage(seaweed, s3_bucket, endpoint=proxy.endpoint, read_timeout=0.3,
                    retry=RetryPolicy(max_attempts=2, base_delay=0.01, max_elapsed=5))
    proxy.add("hang", 2, method="GET")
    t0 = time.monotonic()
    with pytest.raises(TransientStorageError, match="2 attempts"):
        st.list_level(0)
    assert time.monotonic() - t0 < 2.5
    assert st.stats.retries == 1


def test_lost_response_to_conditional_put_is_not_a_conflict(
        seaweed: Any, s3_bucket: str, proxy: FaultProxy) -> None:
    st = s3_storage(seaweed, s3_bucket, endpoint=proxy.endpoint)
    st.write_ltx(0, 1, 1, b"probe the server first", if_absent=True)
    proxy.add("lose_response", 1, method="PUT")
    st.write_ltx(0, 2, 2, DATA, if_absent=True)  # retry meets 412 from our own upload
    assert st.stats.retries == 1
    assert st.read_range(FileInfo(0, 2, 2, 0)) == DATA
    # A genuine conflict still is one.
    proxy.add("lose_response", 1, method="PUT")
    with pytest.raises(AlreadyExistsError):
        st.write_ltx(0, 2, 2, b"someone else", if_absent=True)


def test_parallel_requests_share_the_pool(seaweed: Any, s3_bucket: str,
                                          proxy: FaultProxy) -> None:
    st = s3_storage(seaweed, s3_bucket, endpoint=proxy.endpoint)
    infos = [st.write_ltx(3, t, t, DATA) for t in range(1, 11)]
    st.list_all()  # warm: one pooled connection
    proxy.delay_seconds = 0.3
    proxy.add("delay", 10, method="GET")
    t0 = time.monotonic()
    got = st.read_many([(info, 7, 3) for info in infos])
    elapsed = time.monotonic() - t0
    assert got == [DATA[7:10]] * 10
    assert elapsed < 1.5  # sequential would take 3 s
    t0 = time.monotonic()
    proxy.add("delay", 1, method="GET")
    assert [len(v) for v in st.list_all().values()] == [0, 0, 0, 10, 0, 0, 0, 0, 0, 0]
    assert time.monotonic() - t0 < 1.0


def test_retry_policy_bounds() -> None:
    calls: list[float] = []
    clock = [0.0]

    def fake_sleep(s: float) -> None:
        calls.append(s)
        clock[0] += s

    def always_fail() -> None:
        from litevfs.storage.retry import Retryable
        clock[0] += 1.0
        raise Retryable("boom")

    policy = RetryPolicy(max_attempts=100, base_delay=0.5, max_delay=4.0, max_elapsed=10.0)
    with pytest.raises(TransientStorageError, match="boom"):
        call_with_retry(always_fail, what="op", policy=policy, sleep=fake_sleep,
                        clock=lambda: clock[0])
    assert clock[0] <= 10.0 + 1.0  # no attempt starts after the time budget
    assert all(0 < s <= 4.0 for s in calls)
    assert calls[0] <= 0.5


def test_retry_delay_is_equal_jitter() -> None:
    """The docstring's "equal jitter": each sleep is drawn from [ceiling/2, ceiling] of
    an exponential ceiling capped at max_delay, and the draws do vary."""
    import random

    policy = RetryPolicy(base_delay=0.1, max_delay=1.0)
    rng = random.Random(7)
    for retry, ceiling in ((1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (5, 1.0), (9, 1.0)):
        draws = [policy.delay(retry, rng) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in draws), (retry, min(draws), max(draws))
        assert max(draws) - min(draws) > ceiling / 4  # random, not a fixed step


# -- conditional writes ------------------------------------------------------------------------


def test_seaweedfs_honours_if_none_match(seaweed: Any, s3_bucket: str) -> None:
    st = s3_storage(seaweed, s3_bucket)
    st.write_ltx(0, 1, 1, b"a", if_absent=True)
    assert st._conditional is True
    assert seaweed.list_keys(s3_bucket) == ["db/0000/0000000000000001-0000000000000001.ltx"]


def test_server_ignoring_if_none_match_is_detected(seaweed: Any, s3_bucket: str,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    st = s3_storage(seaweed, s3_bucket)

    def strip(request: Any, **_: Any) -> None:  # what a server ignoring the header sees
        if "If-None-Match" in request.headers:
            del request.headers["If-None-Match"]

    st.client.meta.events.register("before-sign.s3.PutObject", strip)
    with caplog.at_level(logging.WARNING, logger="litevfs.storage.s3.client"):
        st.write_ltx(0, 1, 1, b"first", if_absent=True)
    assert st._conditional is False
    assert "ignores If-None-Match" in caplog.text
    with pytest.raises(AlreadyExistsError):
        st.write_ltx(0, 1, 1, b"second", if_absent=True)
    assert st.read_range(FileInfo(0, 1, 1, 0)) == b"first"
    st.put_object("lock.json", b"1", if_absent=True)
    with pytest.raises(AlreadyExistsError):
        st.put_object("lock.json", b"2", if_absent=True)
    # The probe object is cleaned up.
    assert not [k for k in seaweed.list_keys(s3_bucket) if "probe" in k]


def test_require_content_md5(seaweed: Any, s3_bucket: str) -> None:
    st = open_storage(f"s3://{s3_bucket}/db?endpoint={seaweed.endpoint}&requireContentMD5=true")
    sent: list[str] = []
    st.client.meta.events.register(
        "before-send.s3", lambda request, **_: sent.append(request.headers.get("Content-MD5")))
    info = st.write_ltx(0, 1, 1, b"md5")
    st.delete_ltx([info])
    assert all(sent) and len(sent) == 2


# -- suffix ranges: quirks of other servers, with a stub client ------------------------------


class _Body:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def read(self) -> bytes:
        return self.data

    def close(self) -> None:
        pass


class StubS3:
    """Answers GetObject like a server with a given suffix-range bug."""

    def __init__(self, data: bytes, mode: str) -> None:
        self.data, self.mode = data, mode
        self.ranges: list[str | None] = []

    def get_object(self, Bucket: str, Key: str, Range: str | None = None, **_: Any) -> dict:
        from botocore.exceptions import ClientError
        self.ranges.append(Range)
        n = len(self.data)
        if Range is None or self.mode == "ignore":
            return {"Body": _Body(self.data), "ResponseMetadata": {"HTTPStatusCode": 200}}
        spec = Range.split("=", 1)[1]
        if spec.startswith("-"):
            want = int(spec[1:])
            if self.mode == "416":
                raise ClientError({"Error": {"Code": "InvalidRange"},
                                   "ResponseMetadata": {"HTTPStatusCode": 416}}, "GetObject")
            if self.mode == "prefix":  # reads "-N" as "0-(N-1)"
                start, end = 0, min(want, n) - 1
            else:
                start, end = max(0, n - want), n - 1
        else:
            a, _, b = spec.partition("-")
            start, end = int(a), min(int(b) if b else n - 1, n - 1)
        return {"Body": _Body(self.data[start:end + 1]), "ContentRange": f"bytes {start}-{end}/{n}",
                "ResponseMetadata": {"HTTPStatusCode": 206}}

    def head_object(self, **_: Any) -> dict:
        return {"ContentLength": len(self.data)}


@pytest.mark.parametrize("mode", ["good", "416", "prefix", "ignore"])
@pytest.mark.parametrize("known_size", [True, False])
def test_suffix_range_fallbacks(mode: str, known_size: bool) -> None:
    st = open_storage("s3://b/db?endpoint=http://127.0.0.1:9", access_key_id="k",
                      secret_access_key="s", retry=FAST_RETRY, fast_reads=False)
    stub = StubS3(DATA, mode)
    st._client = stub
    info = FileInfo(0, 1, 1, len(DATA) if known_size else 0)
    for length in (10, 1000, len(DATA), len(DATA) + 5):
        assert st.read_tail(info, length) == DATA[-length:], (mode, length)
    assert st.read_range(info, 5, 10) == DATA[5:15]
    assert st.read_range(info, 4000, None) == DATA[4000:]
    assert st._suffix_ranges_ok is (mode in ("good", "ignore"))
    # Re-asks: none for good servers, one after a 416, two odd answers before giving up.
    assert st.stats.retries == {"good": 0, "ignore": 0, "416": 1, "prefix": 2}[mode]
    if mode in ("416", "prefix") and known_size:
        # After the first fallback, tails go straight to explicit ranges.
        assert stub.ranges[-3].startswith("bytes=") and not stub.ranges[-3].startswith("bytes=-")


def test_suffix_416_falls_back_over_http(seaweed: Any, s3_bucket: str,
                                         proxy: FaultProxy) -> None:
    info = s3_storage(seaweed, s3_bucket).write_ltx(0, 1, 1, DATA)
    st = s3_storage(seaweed, s3_bucket, endpoint=proxy.endpoint)
    proxy.add("416", 100, method="GET", when=lambda m, p, h: h.get("range", "").startswith(
        "bytes=-"))
    assert st.read_tail(info, 100) == DATA[-100:]
    assert st.read_tail(FileInfo(0, 1, 1, 0), 5000) == DATA  # size from a HEAD
    assert not st._suffix_ranges_ok
    assert [r for _, _, r in proxy.requests] == [
        "bytes=-100", f"bytes={len(DATA) - 100}-{len(DATA) - 1}", None,
        f"bytes=0-{len(DATA) - 1}"]


# -- credentials from the environment ----------------------------------------------------------


def test_litestream_credential_fallback(seaweed: Any, s3_bucket: str,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    monkeypatch.setenv("LITESTREAM_ACCESS_KEY_ID", seaweed.access_key)
    monkeypatch.setenv("LITESTREAM_SECRET_ACCESS_KEY", seaweed.secret_key)
    st = s3_storage(seaweed, s3_bucket)
    assert "LITESTREAM_ACCESS_KEY_ID" in st.config.credential_source
    st.write_ltx(0, 1, 1, b"via litestream vars")
    assert len(st.list_level(0)) == 1
    # AWS_* wins when both are set.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", seaweed.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret")
    with pytest.raises(AccessDeniedError, match="AWS_ACCESS_KEY_ID"):
        s3_storage(seaweed, s3_bucket).list_level(0)


def test_litestream_s3_endpoint_variable(seaweed: Any, s3_bucket: str,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LITESTREAM_S3_ENDPOINT", seaweed.endpoint)
    st = open_storage(f"s3://{s3_bucket}/db")
    assert st.config.force_path_style and st.config.region == "us-east-1"
    st.write_ltx(0, 1, 1, b"env endpoint")
    assert seaweed.list_keys(s3_bucket) == ["db/0000/0000000000000001-0000000000000001.ltx"]


# -- timestamps --------------------------------------------------------------------------------


@pytest.mark.parametrize("ms,text", [
    (1767323045123, "2026-01-02T03:04:05.123Z"),
    (1767323045120, "2026-01-02T03:04:05.12Z"),
    (1767323045100, "2026-01-02T03:04:05.1Z"),
    (1767323045000, "2026-01-02T03:04:05Z"),
    (0, "1970-01-01T00:00:00Z"),
    (5, "1970-01-01T00:00:00.005Z"),
])
def test_timestamp_format_matches_go_rfc3339nano(ms: int, text: str) -> None:
    assert format_timestamp(ms) == text
    assert parse_timestamp(text) == pytest.approx(ms / 1000)


def test_parse_timestamp_variants() -> None:
    assert parse_timestamp("2026-01-02T03:04:05.123456789Z") == pytest.approx(1767323045.123456789)
    assert parse_timestamp("2026-01-02T04:04:05+01:00") == pytest.approx(1767323045)
    assert parse_timestamp("yesterday") is None
