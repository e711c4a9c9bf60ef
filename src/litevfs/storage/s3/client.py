"""S3 (and S3-compatible) storage: botocore (the engine under boto3) plus a stdlib fast
path for reads.

Key layout (Litestream's, reference section 2.1): ``<prefix>/<level %04x>/<min>-<max>.ltx``,
side objects at ``<prefix>/<name>``.

Cold start: importing botocore and building a client costs ~150 ms, most of a cold open's
budget. So LIST, GET and HEAD go through ``fast._FastReader`` (SigV4 with hashlib/hmac over
plain keep-alive sockets, ~3 ms to import) whenever credentials are static and it sends
where botocore would (``_FastReader.unusable`` names what it leaves to botocore: SSE-C,
proxies, ARNs, FIPS/dual-stack endpoints, ...); both paths get the endpoint and CA
bundle resolved once (``url.py``, ``awsconfig.py``). PUT and DeleteObjects always use
botocore, which is built on first need (``prewarm()`` can build it in the background). A
fast-path answer it cannot handle (a region redirect) switches that storage to botocore
for good. ``fast_reads=False`` forces botocore everywhere.

Retries: botocore's are off; ``retry.py`` is the only policy, so attempts and time are
bounded in one place and counted in ``stats.retries``.

Counters: ``lists``/``gets``/``puts``/``deletes`` count HTTP requests sent, retries
included (a HEAD counts as a get); ``bytes_read``/``bytes_written`` count payload bytes of
successful requests only.

Conditional creates (``if_absent``) send ``If-None-Match: *``. The first one per storage
probes whether the server honours it (two conditional PUTs of a fresh probe key; the
second must fail). If the server ignores it, creates fall back to HEAD-before plus an
ETag check after the upload, which narrows but cannot close the race; a warning is
logged. SeaweedFS honours it (412 PreconditionFailed).
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections.abc import Callable, Iterable, Sequence

# Imports an open needs only after its LIST went out are made where they are used
# (typing, datetime, base64, secrets, concurrent.futures.thread: ~10 ms in all).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor
    from typing import Any, TypeVar

    T = TypeVar("T")


from ..._version import __version__
from ...errors import (
    AccessDeniedError, AlreadyExistsError, BucketNotFoundError, EndpointUnreachableError,
    NotFoundError, PreconditionFailedError, StorageError,
)
from ...ltx.format import FileInfo, format_filename, parse_filename
from ..base import (
    ServerClock, StorageClient, check_ltx_args, check_object_name, check_range,
    ltx_timestamp_ms, short_read_message,
)
from ..retry import DEFAULT_POLICY, Retryable, RetryPolicy, call_with_retry
from .listing import list_all_s3
from .fast import _CONTENT_RANGE, _FastReader, _FastUnsupported, _xml_text, aws_endpoint
from ..url import ReplicaURL, S3Config, parse_replica_url, resolve_s3_config



def _log() -> Any:
    """This module's logger, made on first use: ``logging`` is not imported before a
    cold open's first request (it pulls in traceback, tokenize and more)."""
    import logging

    return logging.getLogger(__name__)

MAX_DELETE_BATCH = 1000  # S3's DeleteObjects limit
TIMESTAMP_METADATA = "litestream-timestamp"

_ACCESS_CODES = {
    "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled",
    "ExpiredToken", "InvalidToken", "TokenRefreshRequired", "AccountProblem",
    "InvalidSecurity", "InvalidClientTokenId", "UnrecognizedClientException",
}
_TRANSIENT_CODES = {
    "SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable", "Throttling",
    "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException",
    "RequestThrottled", "BandwidthLimitExceeded", "ConditionalRequestConflict",
    "OperationAborted",
}


def _datetime() -> Any:
    import datetime  # written and parsed only off the cold open's path (~2 ms to import)

    return datetime


def _base64() -> Any:
    import base64  # for Content-MD5 and SSE-C only: not before a cold open's LIST

    return base64


def _b64(data: bytes) -> str:
    return _base64().b64encode(data).decode()


def _b64decode(text: str) -> bytes | None:
    try:
        return _base64().b64decode(text, validate=True)
    except ValueError:  # binascii.Error is a ValueError
        return None


def format_timestamp(ms: int) -> str:
    """Go's ``time.RFC3339Nano`` of a millisecond timestamp, UTC, trailing zeros of the
    fraction trimmed (``2026-01-02T03:04:05.123Z``, ``...05.1Z``, ``...05Z``), which is
    what Litestream writes in ``x-amz-meta-litestream-timestamp``."""
    dt = _datetime()
    seconds, frac = divmod(ms, 1000)
    text = dt.datetime.fromtimestamp(seconds, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    if frac:
        text += "." + f"{frac:03d}".rstrip("0")
    return text + "Z"


def parse_timestamp(text: str) -> float | None:
    """Seconds since the epoch from an RFC 3339 timestamp (metadata written by Litestream
    or by us), or None when it does not parse."""
    datetime = _datetime().datetime
    try:
        m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", text)
        if m is None:
            return None
        base = datetime.fromisoformat(m.group(1) + ("+00:00" if m.group(3) == "Z" else m.group(3)))
        return base.timestamp() + (int(m.group(2)) / 10 ** len(m.group(2)) if m.group(2) else 0)
    except ValueError:
        return None


# --------------------------------------------------------------------------------------
# Client construction (the ~100 ms part: loading the service model)

_session_lock = threading.Lock()
_session: Any = None


_profile_sessions: dict[str, Any] = {}


def _new_client(cfg: S3Config, clock: ServerClock | None = None) -> Any:
    global _session
    from botocore import config as botocore_config, session as botocore_session  # ~150 ms

    Config = botocore_config.Config
    if cfg.force_path_style:
        style = "path"
    else:
        style = "virtual" if cfg.endpoint else "auto"
    # Endpoint, CA bundle and the us-east-1 style are resolved once (url.py, awsconfig.py)
    # and given explicitly, so botocore cannot drift from the fast read path.
    s3_opts: dict[str, Any] = {
        "addressing_style": style,
        "us_east_1_regional_endpoint": "regional" if cfg.us_east_1_regional else "legacy"}
    if cfg.sign_payload is not None:
        s3_opts["payload_signing_enabled"] = cfg.sign_payload
    extra: dict[str, Any] = {}
    if cfg.endpoint:
        # S3-compatible servers often reject the SDK's default flexible checksums
        # (aws-chunked trailers); Litestream turns them off for custom endpoints too.
        extra = {"request_checksum_calculation": "when_required",
                 "response_checksum_validation": "when_required"}
    if cfg.anonymous:  # a public bucket: botocore sends the requests unsigned
        from botocore import UNSIGNED

        extra["signature_version"] = UNSIGNED
    config = Config(
        region_name=cfg.region,
        connect_timeout=cfg.connect_timeout,
        read_timeout=cfg.read_timeout,
        retries={"total_max_attempts": 1, "mode": "standard"},  # ours are the only retries
        max_pool_connections=cfg.max_pool_connections,
        tcp_keepalive=True,
        user_agent_extra=f"litevfs/{__version__}",
        ignore_configured_endpoint_urls=True,  # cfg.endpoint already holds them
        s3=s3_opts,
        **extra,
    )
    # One botocore session per process: the second client then costs ~5 ms instead of
    # ~100 ms because the loaded service model is cached. Sessions are not thread-safe.
    with _session_lock:
        if _session is None:
            from ...redact import install  # botocore's DEBUG logs carry signatures

            install()
            _session = botocore_session.get_session()
        session = _session
        if cfg.profile is not None:
            # A connection's own profile: its own session (botocore then skips the AWS_*
            # credential variables, as for any explicit profile), one per profile name.
            session = _profile_sessions.get(cfg.profile)
            if session is None:
                session = botocore_session.Session(profile=cfg.profile)
                _profile_sessions[cfg.profile] = session
        client = session.create_client(
            "s3",
            region_name=cfg.region,
            endpoint_url=cfg.endpoint,
            verify=False if cfg.skip_verify else (cfg.trust_store or True),
            aws_access_key_id=cfg.access_key_id,
            aws_secret_access_key=cfg.secret_access_key,
            aws_session_token=cfg.session_token,
            config=config,
        )
    events = client.meta.events
    if clock is not None:  # the server's clock from every answer's Date header
        events.register("after-call.s3", lambda http_response=None, **_: clock.note(
            getattr(http_response, "headers", {}).get("Date")) if http_response else None)
    if cfg.is_tigris:
        events.register("before-sign.s3", _tigris_consistent)
    if cfg.require_content_md5:
        # PutObject gets ContentMD5 as a parameter; DeleteObjects' body is built by botocore.
        events.register("before-sign.s3.DeleteObjects", _content_md5)
    return client


def _tigris_consistent(request: Any, **_: Any) -> None:
    request.headers["X-Tigris-Consistent"] = "true"


def _content_md5(request: Any, **_: Any) -> None:
    body = request.body
    if isinstance(body, bytes | bytearray) and "Content-MD5" not in request.headers:
        request.headers["Content-MD5"] = _b64(hashlib.md5(body).digest())


def _sse_customer_key(raw: str) -> bytes | str:
    """Litestream takes the SSE-C key base64-encoded (Go SDK convention); botocore wants
    the raw key and encodes it itself."""
    decoded = _b64decode(raw)
    return decoded if decoded is not None and len(decoded) == 32 else raw


_worker = threading.local()


def _fast_code(resp: Any) -> str:
    """The S3 error code of a fast-path answer (a 404 for a missing bucket vs key)."""
    return _xml_text(resp.body, b"Code") or ""


def _mark_worker() -> None:
    _worker.inside = True


# The stdlib read path lives in fast.py.

# --------------------------------------------------------------------------------------


class S3Storage(StorageClient):
    #: Keys per ListObjectsV2 page (S3's maximum; tests lower it).
    page_size = 1000

    def __init__(self, config: S3Config) -> None:
        super().__init__()
        self.config = config
        self.url = config.redacted_url or f"s3://{config.bucket}/{config.prefix}"
        self.bucket = config.bucket
        self.prefix = config.prefix
        self.policy: RetryPolicy = config.retry or DEFAULT_POLICY
        self._client: Any = None
        self._client_lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._executor_lock = threading.Lock()
        self._conditional: bool | None = None  # does the server honour If-None-Match?
        self._conditional_lock = threading.Lock()
        self._suffix_ranges_ok = True
        self._suffix_anomalies = 0
        self._closed = False
        #: Set once a request has been written to a socket (see ``wait_sent``).
        self.request_sent = threading.Event()
        #: The server's clock, from the Date of its answers (both request paths).
        self.clock = ServerClock()
        sse: dict[str, Any] = {}
        if config.sse_customer_key:
            sse["SSECustomerAlgorithm"] = config.sse_customer_algorithm or "AES256"
            sse["SSECustomerKey"] = _sse_customer_key(config.sse_customer_key)
        self._sse_read = sse
        #: Why reads go through botocore too (None: the fast path serves them).
        self.fast_unusable = _FastReader.unusable(config, os.environ)
        self._fast: _FastReader | None = (
            _FastReader(config, self) if self.fast_unusable is None else None)

    def server_time(self) -> float:
        """S3's clock (``created_at`` times are its ``LastModified``): ours corrected by
        the ``Date`` of its answers, asking once when none was seen yet."""
        if self.clock.offset is None:
            try:
                self.list_level(0)  # any answer carries a Date
            except StorageError:
                pass
        return self.clock.now()

    @classmethod
    def from_url(cls, url: str | ReplicaURL, **options: Any) -> S3Storage:
        parsed = parse_replica_url(url) if isinstance(url, str) else url
        return cls(resolve_s3_config(parsed, options))

    # Client ----------------------------------------------------------------------

    @property
    def client(self) -> Any:
        """The botocore S3 client, built on first use (no network I/O)."""
        client = self._client
        if client is None:
            with self._client_lock:
                if self._client is None:
                    self._client = _new_client(self.config, self.clock)
                client = self._client
        return client

    def prewarm(self) -> threading.Thread:
        """Build the client in a background thread (imports and model loading, ~100 ms
        cold), so a caller can overlap it with its own start-up work."""
        t = threading.Thread(target=lambda: self.client, name="litevfs-s3-prewarm", daemon=True)
        t.start()
        return t

    def preconnect(self, n: int = 2) -> None:
        """Open ``n`` keep-alive connections in the background, so their TCP (and TLS)
        handshakes overlap the open's LIST and the parallel index reads after it find
        connections ready. Best effort: a failure is left to the request that follows."""
        fast = self._fast
        if fast is None:
            return

        def connect() -> None:
            try:
                conn = fast._connect()
            except Exception:  # noqa: BLE001 - the real request reports it
                return
            with fast._lock:
                keep = not fast.closed and len(fast._idle) < self.config.max_pool_connections
                if keep:
                    fast._idle.append(conn)
            if not keep:
                conn.close()

        for _ in range(n):
            threading.Thread(target=connect, name="litevfs-connect", daemon=True).start()

    @property
    def endpoint(self) -> str:
        if self.config.endpoint:
            return self.config.endpoint
        if self._client is not None:
            return str(self._client.meta.endpoint_url)
        return aws_endpoint(self.config)

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            with self._executor_lock:
                if self._executor is None:
                    # concurrent.futures imports logging: not before a cold open's LIST
                    from concurrent.futures import ThreadPoolExecutor

                    workers = self.config.concurrency or 16
                    self._executor = ThreadPoolExecutor(
                        max_workers=min(workers, self.config.max_pool_connections),
                        thread_name_prefix="litevfs-s3", initializer=_mark_worker)
        return self._executor

    def close(self) -> None:
        self._closed = True
        if self._fast is not None:
            self._fast.close()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        if self._client is not None:
            try:
                self._client.close()
            except Exception:  # pragma: no cover - best effort
                pass
            self._client = None

    # Keys --------------------------------------------------------------------------

    def level_prefix(self, level: int) -> str:
        return f"{self.prefix}/{level:04x}/"

    def ltx_key(self, level: int, min_txid: int, max_txid: int) -> str:
        return self.level_prefix(level) + format_filename(min_txid, max_txid)

    def object_key(self, name: str) -> str:
        return f"{self.prefix}/{check_object_name(name)}"

    # Requests ----------------------------------------------------------------------

    def _request(self, counter: str, what: str, fn: Callable[[], T],
                 key: str | None = None) -> T:
        """One logical request with our retry policy; botocore errors are mapped."""
        def attempt() -> T:
            self.stats.add(**{counter: 1})
            try:
                return fn()
            except (Retryable, StorageError, ValueError):
                raise
            except Exception as exc:  # botocore's and urllib3's exceptions
                raise self._map_error(exc, what, key) from exc

        return call_with_retry(attempt, what=what, policy=self.policy,
                               on_retry=lambda: self.stats.add(retries=1))

    def _map_error(self, exc: Exception, what: str, key: str | None) -> Exception:
        """botocore exception -> our error class, or Retryable for transient ones."""
        from botocore import exceptions as bex  # loaded already: this error came from it
        from urllib3 import exceptions as uex  # botocore's transport (a dependency of it)

        transport: tuple[type[BaseException], ...] = (uex.HTTPError,)

        bucket = self.bucket
        if isinstance(exc, bex.ClientError):
            err = exc.response.get("Error", {})
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            return self._map_status(str(err.get("Code", "")), status,
                                    str(err.get("Message", "")), what, key)
        if isinstance(exc, bex.SSLError):
            return StorageError(f"TLS error talking to {self.endpoint}: {exc} "
                                "(skipVerify=true disables certificate checks)")
        if isinstance(exc, bex.ConnectTimeoutError):
            return EndpointUnreachableError(
                f"cannot reach S3 endpoint {self.endpoint} (bucket {bucket!r}): connect "
                f"timeout after {self.config.connect_timeout:g}s")
        if isinstance(exc, bex.EndpointConnectionError):
            return EndpointUnreachableError(
                f"cannot reach S3 endpoint {self.endpoint} (bucket {bucket!r}): {exc}")
        if isinstance(exc, bex.ReadTimeoutError | TimeoutError) or (
                type(exc).__name__ == "ReadTimeoutError"):  # urllib3's, reading a body
            return Retryable(f"cannot reach S3 endpoint {self.endpoint}: no answer (read "
                             f"timeout after {self.config.read_timeout:g}s)", timeout=True)
        if isinstance(exc, bex.NoCredentialsError | bex.PartialCredentialsError):
            return AccessDeniedError(
                f"no usable AWS credentials for bucket {bucket!r}: set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY (or LITESTREAM_ACCESS_KEY_ID/_SECRET_ACCESS_KEY)")
        if isinstance(exc, (bex.HTTPClientError, bex.IncompleteReadError, bex.ConnectionError,
                            ConnectionError, TimeoutError, *transport)):
            return Retryable(f"{type(exc).__name__}: {exc}")
        if isinstance(exc, bex.ParamValidationError):
            return ValueError(str(exc))
        return StorageError(f"{what} on bucket {bucket!r} failed: {type(exc).__name__}: {exc}")

    def _map_status(self, code: str, status: int, message: str, what: str,
                    key: str | None) -> Exception:
        """An S3 error answer (code, HTTP status) -> our error, or Retryable."""
        bucket = self.bucket
        detail = f"{code or status}" + (f": {message}" if message else "")
        if code == "NoSuchBucket" or (key is None and status == 404):
            return BucketNotFoundError(f"bucket {bucket!r} does not exist at {self.endpoint}")
        if code in ("NoSuchKey", "NotFound", "404") or status == 404:
            return NotFoundError(f"s3://{bucket}/{key} does not exist")
        if code in _ACCESS_CODES or status in (401, 403):
            # Name the bucket and where the credentials came from, never the secret.
            return AccessDeniedError(
                f"access denied to bucket {bucket!r} at {self.endpoint} during {what} "
                f"({code or status}; credentials from {self.config.credential_source})")
        if code == "PreconditionFailed" or status == 412:
            return AlreadyExistsError(f"s3://{bucket}/{key} already exists")
        if code == "InvalidRange" or status == 416:
            return Retryable("range not satisfiable (HTTP 416)", retry=False)
        if status >= 500 or status == 429 or code in _TRANSIENT_CODES:
            return Retryable(f"{detail} (HTTP {status})")
        if code in ("PermanentRedirect", "AuthorizationHeaderMalformed",
                    "IllegalLocationConstraintException"):
            return StorageError(
                f"{what}: bucket {bucket!r} is not in region {self.config.region!r} "
                f"({detail}); set ?region= in the replica URL")
        return StorageError(f"{what} on bucket {bucket!r} failed: {detail} (HTTP {status})")

    def _via_fast(self, op: Callable[[_FastReader], T]) -> tuple[bool, T | None]:
        """Run ``op`` on the fast path if there is one: (handled, result)."""
        fast = self._fast
        if fast is None:
            return False, None
        try:
            return True, op(fast)
        except _FastUnsupported as exc:
            _log().info("%s: %s; reads switch to botocore", self.url, exc)
            self._fast = None
            return False, None

    # Listing -----------------------------------------------------------------------

    def list_level(self, level: int) -> list[FileInfo]:
        check_ltx_args(level, 1, 1)
        prefix = self.level_prefix(level)
        level_dir = prefix.rstrip("/").lstrip("/")
        infos: list[FileInfo] = []
        token: str | None = None
        while True:
            args: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix,
                                    "MaxKeys": self.page_size}
            if token:
                args["ContinuationToken"] = token
            page = self._request("lists", f"LIST s3://{self.bucket}/{prefix}",
                                 lambda a=args: self._list_page(a))
            for obj in page.get("Contents", ()):
                key = obj["Key"]
                directory, _, name = key.rpartition("/")
                # Only direct children of the level directory. Compare without leading
                # slashes: SeaweedFS stores "/0000/x" (the s3://bucket/ quirk) as "0000/x".
                if directory.lstrip("/") != level_dir:
                    continue
                txids = parse_filename(name)
                if txids is None:
                    continue
                modified = obj.get("LastModified")
                created = modified.timestamp() if modified is not None else 0.0
                infos.append(FileInfo(level, txids[0], txids[1], int(obj.get("Size", 0)),
                                      created))
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                break
        infos.sort(key=lambda i: (i.min_txid, i.max_txid))
        return infos

    def _list_page(self, args: dict[str, Any]) -> dict[str, Any]:
        done, page = self._via_fast(lambda f: f.list_page(
            args["Prefix"], args.get("ContinuationToken"), args["MaxKeys"],
            f"LIST s3://{self.bucket}/{args['Prefix']}"))
        if done:
            return page  # type: ignore[return-value]
        return self.client.list_objects_v2(**args)  # type: ignore[no-any-return]

    def list_all(self) -> dict[int, list[FileInfo]]:
        """All ten levels, usually from one ListObjectsV2 over the whole prefix (see
        ``listing.py``; huge listings fall back to per-level LISTs in parallel)."""
        try:
            return list_all_s3(self)
        finally:
            self.request_sent.set()  # also when it failed before sending anything

    def wait_sent(self, timeout: float) -> None:
        """Wait (at most ``timeout``) until a request started on another thread is on
        the wire. A caller about to do CPU-bound work (imports) calls this first: the
        request thread would otherwise wait for the GIL (5 ms slices) before sending.
        Returns at once when requests go through botocore (no such signal)."""
        if self._fast is not None:
            self.request_sent.wait(timeout)

    def _map_parallel(self, fn: Callable[[Any], T], items: Iterable[Any]) -> list[T]:
        items = list(items)
        if len(items) <= 1 or getattr(_worker, "inside", False):
            # Sequential inside one of our own workers: nested submits to a saturated
            # pool would wait on themselves.
            return [fn(i) for i in items]
        if self._fast is None:
            self.client  # build the client once, not racing in every worker  # noqa: B018
        futures = [self._pool().submit(fn, i) for i in items]
        try:
            return [f.result() for f in futures]
        finally:
            for f in futures:
                f.cancel()

    # Reading -------------------------------------------------------------------------

    def read_range(self, info: FileInfo, offset: int = 0, length: int | None = None) -> bytes:
        check_range(offset, length)
        if length == 0:
            return b""
        key = self.ltx_key(info.level, info.min_txid, info.max_txid)
        return self._read_range_key(key, offset, length)

    def _read_range_key(self, key: str, offset: int, length: int | None) -> bytes:
        what = f"GET s3://{self.bucket}/{key}"
        # A whole-object read sends no Range at all: "bytes=0-" is a 416 on empty objects.
        rng = None if (offset == 0 and length is None) else (
            f"bytes={offset}-" + ("" if length is None else str(offset + length - 1)))

        def checked() -> bytes:
            data, start, total, status = self._get_raw(key, rng, what)
            if start != offset:
                if start == 0 and total is not None and len(data) == total:
                    data = data[offset:]  # whole object returned: cut our range out of it
                else:
                    raise Retryable(f"server answered from byte {start}, asked for {offset}")
            if length is not None and len(data) > length:
                data = data[:length]
            want = (total - offset) if (length is None and total is not None) else length
            if want is not None and len(data) < want:
                # Deterministic when the object itself is too small: do not retry that.
                too_small = total is not None and offset + want > total
                raise Retryable(short_read_message("object", offset, length, total)
                                + f", got {len(data)}", retry=not too_small)
            return data

        data = self._request("gets", what, checked, key)
        self.stats.add(bytes_read=len(data))
        return data

    def _get_raw(self, key: str, rng: str | None, what: str
                 ) -> tuple[bytes, int, int | None, int]:
        """GET, with a Range header unless ``rng`` is None: (body, first byte offset, object
        size or None, status). The body is read here, inside the retried attempt, so a
        reset mid-body retries."""
        done, got = self._via_fast(lambda f: f.get(key, rng, what))
        if done:
            return got  # type: ignore[return-value]
        args = {"Range": rng} if rng else {}
        resp = self.client.get_object(Bucket=self.bucket, Key=key, **args, **self._sse_read)
        body = resp["Body"]
        try:
            data = body.read()
        finally:
            body.close()
        status = int(resp.get("ResponseMetadata", {}).get("HTTPStatusCode", 200))
        start, total = 0, None
        m = _CONTENT_RANGE.match(resp.get("ContentRange") or "")
        if m:
            start = int(m.group(1))
            total = None if m.group(3) == "*" else int(m.group(3))
        elif status == 200:
            total = len(data)  # the server ignored Range: this is the whole object
        return data, start, total, status

    def read_tail(self, info: FileInfo, length: int) -> bytes:
        check_range(0, length)
        if length == 0:
            return b""
        key = self.ltx_key(info.level, info.min_txid, info.max_txid)
        if not self._suffix_ranges_ok:
            return self._read_tail_explicit(key, info.size, length)
        what = f"GET tail s3://{self.bucket}/{key}"

        def checked() -> bytes | str:
            # A suffix range needs no size, so it works before (or without) a listing.
            try:
                data, start, total, _ = self._get_raw(key, f"bytes=-{length}", what)
            except Exception as exc:
                mapped = exc if isinstance(exc, Retryable | StorageError) else \
                    self._map_error(exc, what, key)
                if isinstance(mapped, Retryable) and not mapped.retry:
                    return "unsupported"  # 416 for a suffix range
                raise mapped from exc
            if total is not None and start + len(data) == total and \
                    len(data) >= min(length, total):
                return data[len(data) - min(length, total):]  # the tail (or whole object)
            return "odd"  # an answer that is not the tail

        data = self._request("gets", what, checked, key)
        if isinstance(data, str):
            # Ask again with an explicit range computed from the size. One odd answer may
            # be a glitch; a 416 or a second odd answer means the server mishandles
            # suffix ranges (seen on some S3 clones): then skip them from now on.
            self.stats.add(retries=1)
            self._suffix_anomalies += 1
            if self._suffix_ranges_ok and (data == "unsupported" or self._suffix_anomalies > 1):
                _log().warning("%s mishandles suffix ranges; using explicit ranges", self.endpoint)
                self._suffix_ranges_ok = False
            return self._read_tail_explicit(key, info.size, length)
        self.stats.add(bytes_read=len(data))
        return data

    def _read_tail_explicit(self, key: str, size: int, length: int) -> bytes:
        """The tail by an explicit range, from the listed size (or a HEAD without one)."""
        if size <= 0:
            size = self._head_size(key)
            if size == 0:
                return b""
        start = max(0, size - length)
        return self._read_range_key(key, start, size - start)

    def _head(self, key: str) -> dict[str, Any]:
        what = f"HEAD s3://{self.bucket}/{key}"

        def call() -> dict[str, Any]:
            done, head = self._via_fast(lambda f: f.head(key, what))
            if done:
                return head  # type: ignore[return-value]
            return self.client.head_object(  # type: ignore[no-any-return]
                Bucket=self.bucket, Key=key, **self._sse_read)

        return self._request("gets", what, call, key)

    def _head_size(self, key: str) -> int:
        return int(self._head(key).get("ContentLength", 0))

    def read_many(
        self, requests: Sequence[tuple[FileInfo, int, int | None]],
    ) -> list[bytes]:
        """All ranges at once on the shared connection pool."""
        return self._map_parallel(lambda r: self.read_range(*r), requests)

    def stat_ltx(self, info: FileInfo) -> FileInfo:
        """HEAD one LTX file: its size and its header timestamp from metadata (falls
        back to LastModified), as Litestream does for accurate timestamps."""
        key = self.ltx_key(info.level, info.min_txid, info.max_txid)
        head = self._head(key)
        created = parse_timestamp(head.get("Metadata", {}).get(TIMESTAMP_METADATA, ""))
        if created is None:
            modified = head.get("LastModified")
            created = modified.timestamp() if modified is not None else info.created_at
        return FileInfo(info.level, info.min_txid, info.max_txid,
                        int(head.get("ContentLength", info.size)), created)

    # Writing -------------------------------------------------------------------------

    def _put_args(self, key: str, data: bytes, metadata: dict[str, str] | None) -> dict[str, Any]:
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": key, "Body": data}
        if metadata:
            args["Metadata"] = metadata
        cfg = self.config
        # Always: a server then refuses a body cut short (a writer killed mid-upload, a
        # dropped connection) instead of storing a torn or empty object (SeaweedFS keeps
        # a 0-byte object when the client dies after the headers; tested).
        args["ContentMD5"] = _b64(hashlib.md5(data).digest())
        if cfg.storage_class:
            args["StorageClass"] = cfg.storage_class
        if cfg.sse_kms_key_id:
            args["ServerSideEncryption"] = "aws:kms"
            args["SSEKMSKeyId"] = cfg.sse_kms_key_id
        args.update(self._sse_read)
        return args

    def _put(self, key: str, data: bytes, *, if_absent: bool,
             metadata: dict[str, str] | None = None, if_match: str | None = None,
             ) -> str | None:
        what = f"PUT s3://{self.bucket}/{key}"
        data = bytes(data)
        args = self._put_args(key, data, metadata)
        if if_match is not None:
            args["IfMatch"] = if_match
        elif if_absent:
            if not self._conditional_supported():
                self._put_guarded(key, data, args, what)
                self.stats.add(bytes_written=len(data))
                return None
            args["IfNoneMatch"] = "*"
        attempts = 0

        def call() -> Any:
            nonlocal attempts
            attempts += 1
            return self.client.put_object(**args)

        try:
            out = self._request("puts", what, call, key)
        except AlreadyExistsError:
            if if_match is not None:
                # 412 to If-Match: the object changed (or a retry met our own earlier
                # attempt; the caller tells the two apart by reading the object).
                raise PreconditionFailedError(
                    f"s3://{self.bucket}/{key} changed since it was read (If-Match)") from None
            # A retried conditional PUT can meet its own earlier attempt (the response was
            # lost, the write was not): that is success, not a conflict.
            if attempts > 1 and self._holds(key, data):
                self.stats.add(bytes_written=len(data))
                return None
            raise
        self.stats.add(bytes_written=len(data))
        etag = out.get("ETag") if isinstance(out, dict) else None
        return str(etag) if etag else None

    def _holds(self, key: str, data: bytes) -> bool:
        try:
            return self._read_range_key(key, 0, None) == data
        except NotFoundError:
            return False

    def _conditional_supported(self) -> bool:
        """Whether the server honours ``If-None-Match: *`` on PUT, probed once with a tiny
        object (two conditional PUTs of one fresh key: the second must fail). Servers that
        silently ignore the header would otherwise turn a conditional create into an
        overwrite."""
        if self._conditional is not None:
            return self._conditional
        if not self.config.probe_conditional_writes:
            self._conditional = True
            return True
        with self._conditional_lock:
            if self._conditional is None:
                import secrets  # once per process, for the probe's random key

                key = self.object_key(f".litevfs-probe-{secrets.token_hex(8)}")
                what = f"PUT probe s3://{self.bucket}/{key}"
                try:
                    body = b"litevfs conditional-write probe"
                    def put() -> Any:
                        return self.client.put_object(Bucket=self.bucket, Key=key, Body=body,
                                                      IfNoneMatch="*")

                    try:
                        self._request("puts", what, put, key)
                    except AlreadyExistsError:
                        pass  # a retry met our own first attempt: the key is fresh and random
                    try:
                        self._request("puts", what, put, key)
                        supported = False
                    except AlreadyExistsError:
                        supported = True
                    except StorageError as exc:
                        if "NotImplemented" not in str(exc):
                            raise
                        supported = False
                finally:
                    try:
                        self._delete_keys([key])
                    except StorageError:
                        pass
                if not supported:
                    _log().warning(
                        "%s ignores If-None-Match on PUT: conditional creates in %s fall back "
                        "to HEAD before and after the upload, which cannot exclude every race",
                        self.endpoint, self.url)
                self._conditional = supported
        return self._conditional

    def _put_guarded(self, key: str, data: bytes, args: dict[str, Any], what: str) -> None:
        """Best effort conditional create for servers without If-None-Match: refuse if the
        key exists, upload, then check the stored ETag is ours (a concurrent writer that
        overwrote us is reported as a conflict). A writer whose HEAD and PUT both fall
        between our HEAD and our PUT can still be overwritten unnoticed."""
        try:
            self._head(key)
            raise AlreadyExistsError(f"s3://{self.bucket}/{key} already exists")
        except NotFoundError:
            pass
        args = dict(args, IfNoneMatch="*")  # harmless, and right if the server learns it
        out = self._request("puts", what, lambda: self.client.put_object(**args), key)
        etag = out.get("ETag")
        if etag and self._head(key).get("ETag") != etag:
            raise AlreadyExistsError(
                f"s3://{self.bucket}/{key} was written concurrently by another writer")

    def write_ltx(
        self, level: int, min_txid: int, max_txid: int, data: bytes, *,
        if_absent: bool = False, timestamp_ms: int | None = None,
    ) -> FileInfo:
        check_ltx_args(level, min_txid, max_txid)
        ts = ltx_timestamp_ms(data) if timestamp_ms is None else timestamp_ms
        key = self.ltx_key(level, min_txid, max_txid)
        self._put(key, data, if_absent=if_absent,
                  metadata={TIMESTAMP_METADATA: format_timestamp(ts)})
        return FileInfo(level, min_txid, max_txid, len(data), ts / 1000.0)

    def get_object(self, name: str) -> bytes:
        return self._read_range_key(self.object_key(name), 0, None)

    def get_object_tagged(self, name: str) -> tuple[bytes, str]:
        data, etag, _ = self._get_conditional(self.object_key(name), None)
        if data is None:
            raise NotFoundError(f"s3://{self.bucket}/{self.object_key(name)} does not exist")
        return data, etag or ""

    def get_object_if_changed(self, name: str, etag: str | None
                              ) -> tuple[bytes | None, str | None, bool]:
        return self._get_conditional(self.object_key(name), etag)

    def _get_conditional(self, key: str, etag: str | None
                         ) -> tuple[bytes | None, str | None, bool]:
        """GET with ``If-None-Match: etag``: 304 -> (None, etag, False), 404 ->
        (None, None, True), else (body, new etag, True)."""
        what = f"GET s3://{self.bucket}/{key}"
        headers = {"if-none-match": etag} if etag else {}

        def call() -> tuple[bytes | None, str | None, bool]:
            fast = self._fast
            if fast is not None:
                resp = fast.request("GET", key, (), headers)
                if resp.status == 304:
                    return None, etag, False
                if resp.status == 404 and _fast_code(resp) != "NoSuchBucket":
                    return None, None, True
                fast.check(resp, what, key)
                return resp.body, resp.headers.get("etag"), True
            args = {"IfNoneMatch": etag} if etag else {}
            client = self.client  # builds botocore's client: its exceptions load with it
            try:
                out = client.get_object(Bucket=self.bucket, Key=key, **args, **self._sse_read)
            except client.exceptions.ClientError as exc:
                meta = exc.response.get("ResponseMetadata", {})
                status = int(meta.get("HTTPStatusCode", 0) or 0)
                code = str(exc.response.get("Error", {}).get("Code", ""))
                if status == 304:
                    return None, etag, False
                if status == 404 and code != "NoSuchBucket":
                    return None, None, True
                raise
            body = out["Body"]
            try:
                data = body.read()
            finally:
                body.close()
            return data, out.get("ETag"), True

        data, tag, changed = self._request("gets", what, call, key)
        if data is not None:
            self.stats.add(bytes_read=len(data))
        return data, tag, changed

    def put_object(self, name: str, data: bytes, *, if_absent: bool = False,
                   if_match: str | None = None) -> str | None:
        return self._put(self.object_key(name), data, if_absent=if_absent, if_match=if_match)

    # Deleting ------------------------------------------------------------------------

    def delete_ltx(self, infos: Iterable[FileInfo]) -> None:
        self._delete_keys([self.ltx_key(i.level, i.min_txid, i.max_txid) for i in infos])

    def delete_object(self, name: str) -> None:
        self._delete_keys([self.object_key(name)])

    def _delete_keys(self, keys: list[str]) -> None:
        for i in range(0, len(keys), MAX_DELETE_BATCH):
            batch = keys[i:i + MAX_DELETE_BATCH]
            request = {"Objects": [{"Key": k} for k in batch], "Quiet": True}
            out = self._request(
                "deletes", f"DELETE {len(batch)} objects",
                lambda r=request: self.client.delete_objects(Bucket=self.bucket, Delete=r))
            errors = [e for e in out.get("Errors", ()) if e.get("Code") != "NoSuchKey"]
            if errors:
                codes = {e.get("Code", "") for e in errors}
                first = ", ".join(f"{e.get('Key')}: {e.get('Code')}" for e in errors[:3])
                if codes & _ACCESS_CODES:
                    raise AccessDeniedError(
                        f"access denied deleting from bucket {self.bucket!r} at "
                        f"{self.endpoint}: {first}")
                raise StorageError(f"could not delete {len(errors)} objects from bucket "
                                   f"{self.bucket!r}: {first}")
