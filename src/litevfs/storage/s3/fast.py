"""The stdlib S3 read path: SigV4 signed with hashlib/hmac over pooled keep-alive
sockets, for LIST, GET and HEAD on a cold open (botocore costs ~150 ms to import and build).

It must send each request where botocore would, trusting the same CAs: endpoint, CA
bundle and the us-east-1 endpoint style come resolved in ``S3Config`` (``url.py`` and
``awsconfig.py``, which botocore is given too), and the host, addressing style and proxy
rules below follow botocore's. Whatever it does not reproduce, ``usable()`` refuses
(``S3Config.botocore_only``, other partitions, S3 Express buckets, proxies, ARNs, SSE-C,
endpoints with a path) and ``S3Storage`` (``client.py``) uses botocore instead; an answer
it cannot handle (a region redirect) raises ``_FastUnsupported`` and switches that
storage to botocore for good.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import socket
import sys
import threading
import time
from urllib.parse import quote, urlsplit

from ..._version import __version__
from ...errors import EndpointUnreachableError, StorageError
from ..retry import Retryable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

    from .client import S3Storage
    from ..url import S3Config

_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")



class _FastUnsupported(Exception):
    """The fast path met something only botocore handles (e.g. a region redirect)."""


class _Stale(Exception):
    """A pooled keep-alive connection turned out to be closed by the server."""


_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
# botocore's endpoint rules (endpoint_provider.py): a host label, an IPv4 address, and
# the regions of the partitions whose S3 hosts end in amazonaws.com (partitions.json).
_HOST_LABEL = r"^(?!-)[a-zA-Z\d-]{1,63}(?<!-)$"
_IPV4 = r"^((25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$"
_AWS_REGION = r"^((us|eu|ap|sa|ca|me|af|il|mx)-\w+-\d+|us-gov-\w+-\d+)$"
_XML_TAGS: dict[bytes, re.Pattern[bytes]] = {}
_XML_ENTITY = r"&(#x[0-9a-fA-F]+|#[0-9]+|amp|lt|gt|quot|apos);"
_ENTITIES = {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "apos": "'"}
_PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy")


def _xml_text(xml: bytes, tag: bytes) -> str | None:
    """Text of the first ``<tag>`` (S3's answers are flat enough that a regex suffices;
    xml.etree would cost more to import than the whole fast path)."""
    pattern = _XML_TAGS.get(tag)
    if pattern is None:
        pattern = _XML_TAGS[tag] = re.compile(b"<" + tag + b">(.*?)</" + tag + b">", re.S)
    m = pattern.search(xml)
    if m is None:
        return None
    text = m.group(1).decode("utf-8")
    return re.sub(_XML_ENTITY, _unescape, text) if "&" in text else text


def _unescape(m: re.Match[str]) -> str:
    name = m.group(1)
    if name.startswith("#x"):
        return chr(int(name[2:], 16))
    if name.startswith("#"):
        return chr(int(name[1:]))
    return _ENTITIES[name]


def _quote(text: str, safe: str = "") -> str:
    return quote(text, safe="-_.~" + safe)


def _virtual_hostable(bucket: str, allow_dots: bool) -> bool:
    """botocore's test for ``bucket.host`` addressing: 3-63 characters, lowercase, host
    labels (dot-separated ones only over plain HTTP: a dotted name would not match a TLS
    wildcard certificate), and not an IPv4 address."""
    if len(bucket) < 3 or len(bucket) > 63 or bucket.lower() != bucket:
        return False
    if re.match(_IPV4, bucket) is not None:
        return False
    labels = bucket.split(".") if allow_dots else [bucket]
    return all(re.match(_HOST_LABEL, label) is not None for label in labels)


def aws_endpoint(cfg: S3Config) -> str:
    """The endpoint botocore uses when none is configured: the global one for us-east-1
    unless ``us_east_1_regional`` (botocore's "legacy" default), else the regional one."""
    if cfg.region == "us-east-1" and not cfg.us_east_1_regional:
        return "https://s3.amazonaws.com"
    return f"https://s3.{cfg.region}.amazonaws.com"


def _env_proxies(environ: Any) -> dict[str, str]:
    """``scheme -> proxy`` from ``<scheme>_proxy`` variables, as urllib (and so botocore)
    reads them: any case, lowercase names win, an empty lowercase name unsets, and a CGI
    process ignores an uppercase HTTP_PROXY (httpoxy)."""
    proxies: dict[str, str] = {}
    for name, value in environ.items():
        if value and name.lower().endswith("_proxy"):
            proxies[name.lower()[:-6]] = value
    if "REQUEST_METHOD" in environ:
        proxies.pop("http", None)
    for name, value in environ.items():
        if name.endswith("_proxy"):
            if value:
                proxies[name.lower()[:-6]] = value
            else:
                proxies.pop(name.lower()[:-6], None)
    return proxies


def _proxied(endpoint: str, environ: Any) -> bool:
    """True when botocore would send requests to ``endpoint`` through a proxy (the fast
    path does not speak to proxies; botocore does): a proxy for the endpoint's scheme and
    no ``no_proxy`` entry matching its host[:port]. On macOS (and Windows) urllib also
    reads the system's proxy settings when no variable is set: any proxy there hands
    over too, since their bypass lists are not reproduced here."""
    scheme, _, rest = endpoint.partition("://")
    netloc = rest.split("/", 1)[0].lower()
    proxies = _env_proxies(environ)
    if not proxies:
        return _system_proxy(scheme)
    if not proxies.get(scheme):
        return False
    no_proxy = proxies.get("no")
    if no_proxy is None:
        return True
    if no_proxy == "*":
        return False
    host_only = netloc
    m = re.match(r"^(.*):([0-9]*)$", netloc)
    if m is not None:
        host_only = m.group(1)
    for entry in no_proxy.split(","):
        name = entry.strip().lstrip(".").lower()
        if name and (name in (host_only, netloc) or host_only.endswith("." + name)
                     or netloc.endswith("." + name)):
            return False
    return True


def _system_proxy(scheme: str) -> bool:
    if sys.platform == "darwin":
        try:
            from _scproxy import _get_proxies  # what urllib.request.getproxies() asks
        except ImportError:  # pragma: no cover - a Python built without it
            return False
        return bool(_get_proxies().get(scheme))
    if sys.platform == "win32":  # pragma: no cover - litevfs is POSIX-only
        return True
    return False


class _Response:
    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body


class _Connection:
    """One keep-alive HTTP/1.1 connection on a plain socket (http.client alone costs
    ~30 ms to import, for parsing this small subset of HTTP)."""

    def __init__(self, host: str, port: int, tls: Any, connect_timeout: float,
                 read_timeout: float) -> None:
        # An ASCII host as bytes: a str host makes getaddrinfo import the idna codec
        # (~3 ms, on the open's critical path).
        sock = socket.create_connection((host.encode() if host.isascii() else host, port),
                                        timeout=connect_timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if tls is not None:
                sock = tls.wrap_socket(sock, server_hostname=host)
            sock.settimeout(read_timeout)
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self.rfile = sock.makefile("rb")

    def close(self) -> None:
        try:
            self.rfile.close()
        finally:
            self.sock.close()

    def roundtrip(self, request: bytes, method: str, reused: bool,
                  sent: threading.Event | None = None) -> tuple[_Response, bool]:
        """Send one request, read the whole answer: (response, keep the connection?).
        ``sent`` is set once the request is written."""
        try:
            self.sock.sendall(request)
            if sent is not None:
                sent.set()
            line = self.rfile.readline(65537)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            if reused:
                raise _Stale from None
            raise
        if not line:
            if reused:
                raise _Stale
            raise ConnectionResetError("server closed the connection without answering")
        while True:
            parts = line.split(None, 2)
            if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
                raise ConnectionError(f"malformed HTTP status line {line[:80]!r}")
            status = int(parts[1])
            headers: dict[str, str] = {}
            while True:
                h = self.rfile.readline(65537)
                if h in (b"\r\n", b"\n", b""):
                    break
                name, _, value = h.decode("latin-1").partition(":")
                name = name.strip().lower()
                value = value.strip()
                headers[name] = f"{headers[name]}, {value}" if name in headers else value
            if status != 100:
                break
            line = self.rfile.readline(65537)  # "100 Continue": the real answer follows
        keep = parts[0] == b"HTTP/1.1" and headers.get("connection", "").lower() != "close"
        if method == "HEAD" or status in (204, 304):
            body = b""
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            body = self._read_chunked()
        elif "content-length" in headers:
            n = int(headers["content-length"])
            body = self.rfile.read(n)
            if len(body) < n:
                raise ConnectionResetError(f"body cut short: {len(body)} of {n} bytes")
        else:
            body = self.rfile.read()
            keep = False
        return _Response(status, headers, body), keep

    def _read_chunked(self) -> bytes:
        chunks = []
        while True:
            size_line = self.rfile.readline(65537)
            if not size_line:
                raise ConnectionResetError("chunked body cut short")
            size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            chunk = self.rfile.read(size + 2)
            if len(chunk) < size + 2:
                raise ConnectionResetError("chunked body cut short")
            chunks.append(chunk[:size])


class _FastReader:
    """LIST, GET and HEAD signed with SigV4 by hand, over pooled keep-alive sockets.
    Raises only our errors (or Retryable / _FastUnsupported)."""

    def __init__(self, cfg: S3Config, owner: S3Storage) -> None:
        self.cfg = cfg
        self.owner = owner
        u = urlsplit(cfg.endpoint or aws_endpoint(cfg))
        self.tls_wanted = u.scheme == "https"
        host = (u.hostname or "").lower()  # an IPv6 literal without its brackets
        self.port = u.port or (443 if self.tls_wanted else 80)
        default_port = self.port == (443 if self.tls_wanted else 80)
        ip = ":" in host or re.match(_IPV4, host) is not None
        if not cfg.force_path_style and not ip and _virtual_hostable(
                cfg.bucket, allow_dots=not self.tls_wanted):
            host = f"{cfg.bucket}.{host}"
            self.base = ""
        else:
            self.base = "/" + _quote(cfg.bucket)
        self.host = host  # what the socket connects to and TLS checks
        named = f"[{host}]" if ":" in host else host  # Host: [::1]:9000, as RFC 3986 writes it
        self.host_header = named if default_port else f"{named}:{self.port}"
        self._tls: Any = None
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()
        self._signing_key: tuple[str, bytes] = ("", b"")
        self.closed = False

    @staticmethod
    def unusable(cfg: S3Config, environ: Any) -> str | None:
        """Why this configuration needs botocore for reads too, or None when the fast
        path sends every read where botocore would."""
        if not cfg.fast_reads:
            return "fast_reads=False"
        if not (cfg.access_key_id and cfg.secret_access_key):
            return "credentials from the default AWS chain"
        if cfg.sse_customer_key:
            return "SSE-C"
        if cfg.bucket.lower().startswith("arn:"):
            return "an access point ARN"
        if cfg.botocore_only:
            return cfg.botocore_only
        if cfg.bucket.endswith(("--x-s3", "--xa-s3", "--op-s3")):
            return "an S3 Express or Outposts bucket"
        endpoint = cfg.endpoint or ""
        if endpoint:
            u = urlsplit(endpoint)
            if u.path not in ("", "/") or u.query or u.scheme not in ("http", "https"):
                return "an endpoint URL with a path or query"
        elif re.match(_AWS_REGION, cfg.region) is None:
            return f"region {cfg.region!r} outside the aws partition"
        if _proxied(endpoint or aws_endpoint(cfg), environ):
            return "an HTTP proxy"
        return None

    @staticmethod
    def usable(cfg: S3Config, environ: Any) -> bool:
        return _FastReader.unusable(cfg, environ) is None

    # HTTP --------------------------------------------------------------------------

    def _tls_context(self) -> Any:
        if self._tls is None and self.tls_wanted:
            import ssl  # https endpoints only (~10 ms): a plain-http endpoint never pays it
            # The CA file botocore is given too (S3Config.trust_store): one trust store.
            ctx = ssl.create_default_context(cafile=self.cfg.trust_store)
            if self.cfg.skip_verify:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            self._tls = ctx
        return self._tls

    def _connect(self) -> _Connection:
        try:
            return _Connection(self.host, self.port, self._tls_context(),
                               self.cfg.connect_timeout, self.cfg.read_timeout)
        except OSError as exc:
            if type(exc).__name__.startswith("SSL"):
                raise StorageError(
                    f"TLS error talking to {self.owner.endpoint}: {exc} "
                    "(skipVerify=true disables certificate checks)") from exc
            why = (f"connect timeout after {self.cfg.connect_timeout:g}s"
                   if isinstance(exc, TimeoutError) else str(exc))
            raise EndpointUnreachableError(
                f"cannot reach S3 endpoint {self.owner.endpoint} "
                f"(bucket {self.cfg.bucket!r}): {why}") from exc

    def close(self) -> None:
        self.closed = True
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def _sign(self, method: str, path: str, query: str, headers: dict[str, str],
              now: Any = None) -> None:
        """Add SigV4 headers (``now``: a ``time.struct_time`` in UTC; tests pin it)."""
        if now is None:
            now = time.gmtime()
        amz_date = time.strftime("%Y%m%dT%H%M%SZ", now)
        day = amz_date[:8]
        headers["host"] = self.host_header
        headers["x-amz-date"] = amz_date
        headers["x-amz-content-sha256"] = _EMPTY_SHA256
        if self.cfg.session_token:
            headers["x-amz-security-token"] = self.cfg.session_token
        names = sorted(headers)
        canonical = "\n".join([
            method, path, query,
            "".join(f"{n}:{' '.join(headers[n].split())}\n" for n in names),
            ";".join(names), _EMPTY_SHA256,
        ])
        scope = f"{day}/{self.cfg.region}/s3/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                             hashlib.sha256(canonical.encode()).hexdigest()])
        cached_day, key = self._signing_key
        if cached_day != day:
            key = ("AWS4" + (self.cfg.secret_access_key or "")).encode()
            for part in (day, self.cfg.region, "s3", "aws4_request"):
                key = hmac.new(key, part.encode(), hashlib.sha256).digest()
            self._signing_key = (day, key)
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        headers["authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={self.cfg.access_key_id}/{scope}, "
            f"SignedHeaders={';'.join(names)}, Signature={signature}")

    def prepare(self, method: str, key: str | None, query: Sequence[tuple[str, str]] = (),
                headers: dict[str, str] | None = None, now: Any = None
                ) -> tuple[str, dict[str, str]]:
        """(request target, signed headers) of one request. The path is sent as signed:
        S3 does not normalise it (``//`` and dot-segments are part of the key)."""
        path = self.base + "/" + _quote(key, "/") if key is not None else (self.base or "/")
        qs = "&".join(f"{k}={v}" for k, v in sorted(
            (_quote(k), _quote(v)) for k, v in query))
        hdrs = {k.lower(): v for k, v in (headers or {}).items()}
        if self.cfg.is_tigris:
            hdrs["x-tigris-consistent"] = "true"
        self._sign(method, path, qs, hdrs, now)
        return path + ("?" + qs if qs else ""), hdrs

    def request(self, method: str, key: str | None, query: Sequence[tuple[str, str]] = (),
                headers: dict[str, str] | None = None) -> _Response:
        target, hdrs = self.prepare(method, key, query, headers)
        head = [f"{method} {target} HTTP/1.1"]
        head += [f"{k}: {v}" for k, v in hdrs.items()]
        head.append(f"user-agent: litevfs/{__version__}")
        raw = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
        for attempt in (0, 1):
            with self._lock:
                conn = self._idle.pop() if (self._idle and attempt == 0) else None
            reused = conn is not None
            if conn is None:
                conn = self._connect()
            try:
                resp, keep = conn.roundtrip(raw, method, reused, self.owner.request_sent)
            except _Stale:
                conn.close()
                continue  # the server dropped an idle connection: reconnect, not a retry
            except (OSError, ValueError, ConnectionError) as exc:
                conn.close()
                if isinstance(exc, TimeoutError):
                    raise Retryable(
                        f"cannot reach S3 endpoint {self.owner.endpoint}: no answer (read "
                        f"timeout after {self.cfg.read_timeout:g}s)", timeout=True) from exc
                raise Retryable(f"{type(exc).__name__}: {exc}") from exc
            if keep and not self.closed:
                with self._lock:
                    if len(self._idle) < self.cfg.max_pool_connections:
                        self._idle.append(conn)
                        conn = None
            if conn is not None:
                conn.close()
            self.owner.clock.note(resp.headers.get("date"))
            return resp
        raise Retryable("connection closed by the server twice")  # pragma: no cover

    def check(self, resp: _Response, what: str, key: str | None,
              ok: tuple[int, ...] = (200,)) -> _Response:
        if resp.status in ok:
            return resp
        if resp.status in (301, 302, 307, 308):
            raise _FastUnsupported(f"redirect {resp.status}")
        code = _xml_text(resp.body, b"Code") or ""
        if code in ("PermanentRedirect", "AuthorizationHeaderMalformed", "TemporaryRedirect",
                    "IllegalLocationConstraintException"):
            raise _FastUnsupported(code)
        message = _xml_text(resp.body, b"Message") or ""
        raise self.owner._map_status(code, resp.status, message, what, key)

    # S3 operations, answering in botocore's shapes ---------------------------------

    def list_page(self, prefix: str, token: str | None, max_keys: int, what: str
                  ) -> dict[str, Any]:
        query = [("list-type", "2"), ("prefix", prefix), ("max-keys", str(max_keys))]
        if token:
            query.append(("continuation-token", token))
        body = self.check(self.request("GET", None, query), what, None).body
        from datetime import datetime  # parsing the answer: after the request is out

        contents = []
        for m in re.finditer(rb"<Contents>(.*?)</Contents>", body, re.S):
            item = m.group(1)
            modified = _xml_text(item, b"LastModified")
            contents.append({
                "Key": _xml_text(item, b"Key") or "",
                "Size": int(_xml_text(item, b"Size") or 0),
                "LastModified": datetime.fromisoformat(modified) if modified else None,
            })
        return {"Contents": contents,
                "IsTruncated": (_xml_text(body, b"IsTruncated") or "") == "true",
                "NextContinuationToken": _xml_text(body, b"NextContinuationToken")}

    def get(self, key: str, rng: str | None, what: str) -> tuple[bytes, int, int | None, int]:
        resp = self.check(self.request("GET", key, (), {"range": rng} if rng else None),
                          what, key, ok=(200, 206))
        start, total = 0, None
        m = _CONTENT_RANGE.match(resp.headers.get("content-range", ""))
        if m:
            start = int(m.group(1))
            total = None if m.group(3) == "*" else int(m.group(3))
        elif resp.status == 200:
            total = len(resp.body)
        return resp.body, start, total, resp.status

    def head(self, key: str, what: str) -> dict[str, Any]:
        resp = self.check(self.request("HEAD", key), what, key)
        h = resp.headers
        modified = None
        if h.get("last-modified"):
            from email.utils import parsedate_to_datetime  # HEAD only: ~30 ms cold
            try:
                modified = parsedate_to_datetime(h["last-modified"])
            except (TypeError, ValueError):
                modified = None
        return {
            "ContentLength": int(h.get("content-length", 0)),
            "ETag": h.get("etag"),
            "LastModified": modified,
            "Metadata": {k[len("x-amz-meta-"):]: v for k, v in h.items()
                         if k.startswith("x-amz-meta-")},
        }
