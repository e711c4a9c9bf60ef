"""Replica URL parsing and S3 option resolution (stdlib only: no boto3 here).

Litestream's spelling of URLs and query options is the contract: a URL that works in
``LITESTREAM_REPLICA_URL`` must open the same bucket and key prefix here. Facts come from
``litestream: replica_url.go`` and ``s3/replica_client.go`` (see the reference, section 2).
"""

from __future__ import annotations

import os
import re
from collections import namedtuple
from collections.abc import Mapping
TYPE_CHECKING = False  # not typing's: importing typing costs ~5 ms on the open's path
if TYPE_CHECKING:
    from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from ..config import parse_timeout
from ..errors import ConfigError
from .awsconfig import default_ca_bundle, load_aws_settings

SCHEMES = ("s3", "file", "memory")
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_LITESTREAM_ONLY_SCHEMES = ("gs", "abs", "oss", "sftp", "nats", "webdav", "webdavs")

DEFAULT_REGION = "us-east-1"


def go_path_clean(p: str) -> str:
    """Go's ``path.Clean``: Litestream cleans the URL path with it, and Python's
    ``posixpath.normpath`` differs (it keeps a leading ``//`` and never returns "/..")."""
    if p == "":
        return "."
    rooted = p.startswith("/")
    out: list[str] = []
    for part in p.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if out and out[-1] != "..":
                out.pop()
            elif not rooted:
                out.append("..")
            # ".." at the root of a rooted path is dropped
            continue
        out.append(part)
    cleaned = "/".join(out)
    if rooted:
        return "/" + cleaned
    return cleaned or "."


def s3_key_prefix(url_path: str) -> str:
    """The key prefix Litestream derives from an S3 URL path: ``path.Clean`` then drop
    one leading slash. Quirks kept on purpose so we read the same keys Litestream wrote:
    ``s3://b`` gives "." (keys ``./0000/...``), ``s3://b/`` gives "" (keys ``/0000/...``)."""
    cleaned = go_path_clean(url_path)
    return cleaned[1:] if cleaned.startswith("/") else cleaned


# --------------------------------------------------------------------------------------
# Options


def canonical_option(name: str) -> str:
    """One spelling for camelCase, kebab-case and snake_case (``forcePathStyle``,
    ``force-path-style``, ``force_path_style`` are the same option)."""
    return name.replace("-", "").replace("_", "").lower()


# Query options Litestream's S3 client accepts (canonical name -> Litestream's spelling).
S3_URL_OPTIONS: dict[str, str] = {
    canonical_option(n): n
    for n in (
        "endpoint", "region", "forcePathStyle", "skipVerify", "signPayload",
        "requireContentMD5", "concurrency", "partSize", "storageClass",
        "sseCustomerAlgorithm", "sseCustomerKey", "sseCustomerKeyMD5", "sseKmsKeyId",
    )
}
# Options only accepted as keyword arguments: secrets and tuning never belong in a URL
# (URLs end up in logs and process listings).
S3_KWARG_OPTIONS: dict[str, str] = {
    canonical_option(n): n
    for n in (
        "access_key_id", "secret_access_key", "session_token", "profile", "anonymous",
        "connect_timeout",
        "read_timeout", "max_pool_connections", "retry", "probe_conditional_writes",
        "fast_reads",
    )
}
_SECRET_OPTIONS = {canonical_option("sseCustomerKey")}


class ReplicaURL(namedtuple("ReplicaURL", ("scheme", "bucket", "path", "host", "options",
                                           "raw_options"), defaults=("", None, None))):
    """A parsed replica location. ``path`` is the S3 key prefix (Litestream-cleaned), the
    absolute directory for ``file``, or the store name for ``memory``; ``host`` the raw
    URL host (s3), used to infer endpoint and region like Litestream; ``options`` maps
    canonical option names to raw values, ``raw_options`` to the spelling used."""

    __slots__ = ()

    def __new__(cls, scheme: str, bucket: str, path: str, host: str = "",
                options: dict[str, str] | None = None,
                raw_options: dict[str, str] | None = None) -> ReplicaURL:
        return super().__new__(cls, scheme, bucket, path, host,
                               {} if options is None else options,
                               {} if raw_options is None else raw_options)

    def redacted(self) -> str:
        """The URL without credentials or secret options (safe for messages and logs)."""
        if self.scheme == "file":
            base = "file://" + quote(self.path)
        elif self.scheme == "memory":
            base = "memory://" + self.path
        else:
            base = f"s3://{self.host or self.bucket}/{self.path}"
        if self.options:
            parts = []
            for key, value in self.options.items():
                shown = "REDACTED" if key in _SECRET_OPTIONS else value
                parts.append(f"{self.raw_options.get(key, key)}={quote(shown, safe=':/')}")
            base += "?" + "&".join(parts)
        return base


def parse_replica_url(url: str) -> ReplicaURL:
    """Split a replica URL (or a plain directory path) into scheme, bucket, path, options.

    Options are kept raw here (validated per scheme by the backend resolvers); an option
    given twice with different values is an error rather than a silent first-wins.
    """
    if not isinstance(url, str) or not url.strip():
        raise ConfigError("replica URL is empty")
    url = url.strip()
    m = _SCHEME_RE.match(url)
    if m is None:
        if url[:5].lower() == "file:" and url[5:6] == "/":
            # file:/abs/dir (one slash) is a valid file URL, and Litestream reads it so.
            return parse_replica_url("file://" + url[5:])
        _check_not_a_mistyped_url(url)
        # A plain directory path means Litestream's file layout.
        return ReplicaURL("file", "", os.path.abspath(os.path.expanduser(url)))
    scheme = m.group(1).lower()
    if scheme not in SCHEMES:
        hint = " (Litestream supports it, litevfs does not)" if scheme in _LITESTREAM_ONLY_SCHEMES else ""
        raise ConfigError(
            f"unsupported replica URL scheme {scheme!r}{hint}; use one of: "
            + ", ".join(f"{s}://" for s in SCHEMES))

    if scheme == "s3" and url[5:].lower().startswith("arn:"):
        return _parse_s3_access_point(url)

    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - validates the port now (ValueError), not at first use
    except ValueError as exc:  # e.g. an unbalanced '[' (found by tests/test_fuzz.py)
        raise ConfigError(f"malformed replica URL: {exc}") from None
    if "#" in url:
        # A raw '#' starts a fragment: everything after it (the rest of the path, the
        # endpoint) would be dropped silently and the SDK would then go to AWS itself.
        raise ConfigError(
            f"replica URL has a '#' at character {url.index('#') + 1}: a URL fragment "
            "cuts off the rest of the URL (the endpoint too); write '#' in a path as %23")
    options, spelled = _parse_query(parts.query)
    if scheme == "memory":
        name = url[len("memory://"):].split("?", 1)[0].split("#", 1)[0]
        return ReplicaURL("memory", "", unquote(name), options=options, raw_options=spelled)
    if scheme == "file":
        host = parts.hostname or ""
        if host not in ("", "localhost"):
            # Litestream would silently turn file://data/x into /data/x; say so instead.
            raise ConfigError(
                f"file URL {url!r} has a host part {host!r}: write file:///absolute/dir "
                "(three slashes) or a plain directory path")
        path = unquote(parts.path)
        if not path:
            raise ConfigError("file replica path required")
        return ReplicaURL("file", "", go_path_clean(path), options=options, raw_options=spelled)

    # s3
    host = parts.netloc.rsplit("@", 1)[-1]  # drop userinfo: Litestream ignores it for S3
    return ReplicaURL("s3", host, s3_key_prefix(unquote(parts.path)), host=host,
                      options=options, raw_options=spelled)


_EXAMPLES = {"s3": "s3://bucket/path?endpoint=...", "file": "file:///absolute/dir",
             "memory": "memory://name"}


def _check_not_a_mistyped_url(url: str) -> None:
    """``s3:/bucket`` or ``s3:bucket`` (one slash or none) would otherwise be read as a
    local directory named "s3:" and fail much later as an empty replica: say so now."""
    scheme, colon, _ = url.partition(":")
    scheme = scheme.lower()
    known = SCHEMES + _LITESTREAM_ONLY_SCHEMES + ("http", "https")
    if not colon or scheme not in known:
        return
    shown = url.split("?", 1)[0]  # the query may hold an SSE-C key: never echo it
    if scheme in ("http", "https"):
        raise ConfigError(f"malformed replica URL {shown!r}: expected "
                          "s3://bucket/path?endpoint=<the S3 endpoint's http(s) URL>")
    if scheme in _LITESTREAM_ONLY_SCHEMES:
        raise ConfigError(f"unsupported replica URL scheme {scheme!r} in {shown!r} (Litestream "
                          "supports it, litevfs does not)")
    rule = "file:// then the absolute path" if scheme == "file" else f"two slashes after '{scheme}:'"
    raise ConfigError(f"malformed replica URL {shown!r}: expected {_EXAMPLES[scheme]} ({rule})")


def _parse_query(query: str) -> tuple[dict[str, str], dict[str, str]]:
    options: dict[str, str] = {}
    spelled: dict[str, str] = {}
    if not query:
        return options, spelled
    for key, value in parse_qsl(query, keep_blank_values=True):
        canon = canonical_option(key)
        if canon in options and options[canon] != value:
            raise ConfigError(
                f"URL option {key!r} given twice with different values "
                f"({spelled[canon]}={options[canon]!r} and {key}={value!r})")
        options[canon] = value
        spelled.setdefault(canon, key)
    return options, spelled


def _parse_s3_access_point(url: str) -> ReplicaURL:
    """``s3://arn:aws:s3:<region>:<acct>:accesspoint/<name>/<path>``: the bucket is the
    ARN up to the access point name (boto3 accepts an ARN as Bucket)."""
    rest = url[len("s3://"):]
    query = ""
    if "?" in rest:
        rest, query = rest.split("?", 1)
    idx = rest.lower().find(":accesspoint/")
    if idx < 0 or idx + len(":accesspoint/") >= len(rest):
        raise ConfigError(f"invalid S3 access point ARN in {url!r}")
    name_start = idx + len(":accesspoint/")
    slash = rest.find("/", name_start)
    bucket, key = (rest, "") if slash < 0 else (rest[:slash], rest[slash + 1:])
    # Litestream's CleanReplicaURLPath: clean as rooted, drop the slash, "." -> "".
    prefix = go_path_clean("/" + key).lstrip("/") if key else ""
    options, spelled = _parse_query(query)
    return ReplicaURL("s3", bucket, prefix, host=bucket, options=options, raw_options=spelled)


# --------------------------------------------------------------------------------------
# S3 configuration


_S3_FIELDS = (  # (name, default); the first five are required
    ("bucket", None), ("prefix", None), ("endpoint", None), ("region", None),
    ("force_path_style", None), ("skip_verify", False), ("sign_payload", None),
    ("require_content_md5", False), ("concurrency", None), ("part_size", None),
    ("storage_class", None), ("sse_customer_algorithm", None), ("sse_customer_key", None),
    ("sse_customer_key_md5", None), ("sse_kms_key_id", None), ("access_key_id", None),
    ("secret_access_key", None), ("session_token", None),
    ("credential_source", "default AWS credential chain"), ("connect_timeout", 3.0),
    ("read_timeout", 30.0), ("max_pool_connections", 32),
    ("retry", None),  # a retry.RetryPolicy (untyped: keeps this module light)
    ("probe_conditional_writes", True),
    ("fast_reads", True),  # stdlib SigV4 reads, no botocore on the cold path (see s3/fast.py)
    ("profile", None),  # an AWS profile named by this connection (botocore resolves it)
    ("anonymous", False),  # unsigned requests: no credentials at all
    ("redacted_url", ""),
    # Resolved from the AWS SDK settings (awsconfig.py) and given to both request paths:
    ("endpoint_source", ""),  # where ``endpoint`` came from, for messages
    ("ca_bundle", None),  # AWS_CA_BUNDLE, profile ca_bundle, REQUESTS_CA_BUNDLE (or None)
    ("us_east_1_regional", False),  # us-east-1 without endpoint: s3.us-east-1.amazonaws.com
    ("botocore_only", None),  # why reads need botocore (FIPS, dual-stack, ...), or None
)
_S3_SECRETS = frozenset({"sse_customer_key", "secret_access_key", "session_token"})


class S3Config(namedtuple("S3Config", [n for n, _ in _S3_FIELDS],
                          defaults=[d for _, d in _S3_FIELDS[5:]])):
    """Everything the S3 backend needs (immutable). Secrets never appear in its repr."""

    __slots__ = ()

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in zip(self._fields, self)
                          if k not in _S3_SECRETS)
        return f"S3Config({shown})"

    @property
    def trust_store(self) -> str | None:
        """The CA file both request paths verify TLS against: the configured bundle, else
        the one botocore would pick (certifi's or its own); None: the system store."""
        if self.ca_bundle:
            return str(self.ca_bundle)
        return default_ca_bundle()

    @property
    def is_tigris(self) -> bool:
        return _endpoint_host(self.endpoint or "") in ("fly.storage.tigris.dev", "t3.storage.dev")


# Patterns as strings: compiled on first use (re caches them), not at import.
_AWS_HOST = r"^(.+)\.s3(?:\.([^.]+))?\.amazonaws\.com$"
_DO_HOST = r"^(?:(.+)\.)?([^.]+)\.digitaloceanspaces\.com$"
_B2_HOST = r"^(?:(.+)\.)?s3\.([^.]+)\.backblazeb2\.com$"
_FILEBASE_HOST = r"^(?:(.+)\.)?s3\.filebase\.com$"
_SCALEWAY_HOST = r"^(?:(.+)\.)?s3\.([^.]+)\.scw\.cloud$"


def parse_s3_host(host: str) -> tuple[str, str, str, bool]:
    """(bucket, region, endpoint, force_path_style) from an S3 URL host, following
    Litestream's ``ParseHost``: ``bucket.host:port`` is a MinIO-style local endpoint;
    provider virtual-host names carry bucket and region; anything else is the bucket."""
    if ":" in host and ".com" not in host:
        bucket, dot, rest = host.partition(".")
        if dot:
            return bucket, DEFAULT_REGION, "http://" + rest, True
        return "", "", "http://" + host, True
    if m := re.match(_AWS_HOST, host):
        return m.group(1), m.group(2) or "", "", False
    if m := re.match(_DO_HOST, host):
        return m.group(1) or "", m.group(2), f"https://{m.group(2)}.digitaloceanspaces.com", False
    if m := re.match(_B2_HOST, host):
        return m.group(1) or "", m.group(2), f"https://s3.{m.group(2)}.backblazeb2.com", True
    if m := re.match(_FILEBASE_HOST, host):
        return m.group(1) or "", "", "https://s3.filebase.com", True
    if m := re.match(_SCALEWAY_HOST, host):
        return m.group(1) or "", m.group(2), f"https://s3.{m.group(2)}.scw.cloud", False
    return host, "", "", False


def _endpoint_host(endpoint: str) -> str:
    e = endpoint.strip().lower()
    if "://" in e:
        e = e.split("://", 1)[1]
    return e.split("/", 1)[0]


def is_local_endpoint(endpoint: str) -> bool:
    host = _endpoint_host(endpoint)
    if host.startswith("["):
        host = host.split("]", 1)[0] + "]"
    elif ":" in host:
        host = host.rsplit(":", 1)[0]
    if host in ("localhost", "127.0.0.1", "[::1]") or host.endswith((".local", ".localhost")):
        return True
    if host.startswith(("10.", "192.168.")):
        return True
    m = re.match(r"^172\.(\d+)\.", host)
    return bool(m and 16 <= int(m.group(1)) <= 31)


def ensure_endpoint_scheme(endpoint: str) -> str:
    """Litestream's rule: a bare host gets http:// when local/private, else https://."""
    if endpoint.startswith(("http://", "https://")):
        return endpoint
    return ("http://" if is_local_endpoint(endpoint) else "https://") + endpoint


_TRUE = ("true", "1", "t", "yes")
_FALSE = ("false", "0", "f", "no")


def _bool_option(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    # Litestream silently reads anything else as false; a typo should not flip behaviour.
    raise ConfigError(f"option {name!r} must be true or false, not {value!r}")


def _int_option(name: str, value: Any) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if isinstance(value, bool) or n <= 0:
        raise ConfigError(f"option {name!r} must be a positive integer, not {value!r}")
    return n


def _timeout_option(name: str, opts: Mapping[str, Any], env: Mapping[str, str],
                    default: float) -> float:
    """A timeout in seconds: keyword (a number or a duration such as ``500ms``), else
    ``LITEVFS_<NAME>`` from the environment, else ``default``."""
    env_name = "LITEVFS_" + name.upper()
    if canonical_option(name) in opts:
        raw, source = opts[canonical_option(name)], f"option {name!r}"
    elif env.get(env_name):
        raw, source = env[env_name], f"environment variable {env_name}"
    else:
        return default
    try:
        return parse_timeout(raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid {source}: {exc}") from None


def merge_options(parsed: ReplicaURL, kwargs: Mapping[str, Any],
                  allowed_url: Mapping[str, str],
                  allowed_kwargs: Mapping[str, str]) -> dict[str, Any]:
    """URL query options plus keyword options (keywords win), by canonical name.
    Unknown names raise ConfigError naming them. Empty query values count as unset
    (``?forcePathStyle`` alone), as in Go's ``query.Get``."""
    merged: dict[str, Any] = {}
    for canon, value in parsed.options.items():
        if canon not in allowed_url:
            spelled = parsed.raw_options.get(canon, canon)
            if canon in allowed_kwargs:
                raise ConfigError(
                    f"option {spelled!r} is not accepted in a {parsed.scheme}:// URL; "
                    "pass it as a keyword argument")
            known = ", ".join(sorted(allowed_url.values())) or "none"
            raise ConfigError(
                f"unknown {parsed.scheme}:// URL option {spelled!r} (known: {known})")
        if value != "":
            merged[canon] = value
    for name, value in kwargs.items():
        canon = canonical_option(name)
        if canon not in allowed_url and canon not in allowed_kwargs:
            raise ConfigError(f"unknown {parsed.scheme} storage option {name!r}")
        if value is not None:
            merged[canon] = value
    return merged


def resolve_s3_config(parsed: ReplicaURL, kwargs: Mapping[str, Any] | None = None,
                      environ: Mapping[str, str] | None = None) -> S3Config:
    """Everything the S3 backend needs, resolved without any network I/O."""
    env = os.environ if environ is None else environ
    opts = merge_options(parsed, kwargs or {}, S3_URL_OPTIONS, S3_KWARG_OPTIONS)
    c = canonical_option

    if parsed.host.lower().startswith("arn:"):
        bucket = parsed.bucket
        arn_parts = bucket.split(":", 5)
        region = arn_parts[3] if len(arn_parts) >= 4 else ""
        endpoint, path_style = "", False
    else:
        bucket, region, endpoint, path_style = parse_s3_host(parsed.host)
    if not bucket:
        raise ConfigError(f"bucket required for s3 replica URL {parsed.redacted()!r}")

    explicit_style = c("forcePathStyle") in opts
    endpoint_source = "replica URL host" if endpoint else ""
    if c("endpoint") in opts:
        endpoint = ensure_endpoint_scheme(str(opts[c("endpoint")]))
        endpoint_source = "replica URL"
        path_style = True  # custom endpoints default to path style (explicit value wins below)
    if c("region") in opts:
        region = str(opts[c("region")])
    if explicit_style:
        path_style = _bool_option("forcePathStyle", opts[c("forcePathStyle")])
    if not endpoint and env.get("LITESTREAM_S3_ENDPOINT"):
        endpoint = ensure_endpoint_scheme(env["LITESTREAM_S3_ENDPOINT"])
        endpoint_source = "LITESTREAM_S3_ENDPOINT"
        if not explicit_style:
            path_style = True
    if endpoint and not endpoint.startswith(("http://", "https://")):
        endpoint = "https://" + endpoint
    # The AWS SDK's own settings (AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, the profile):
    # botocore would honour them for writes, so reads must go to the same place.
    profile = opts.get(c("profile")) or None
    aws = load_aws_settings(env, profile=None if profile is None else str(profile))
    litestream_endpoint = bool(endpoint)
    if not endpoint and aws.endpoint:
        endpoint, endpoint_source = str(aws.endpoint), aws.endpoint_source
        if not explicit_style and not parsed.host.lower().startswith("arn:"):
            path_style = True  # as every custom endpoint here (S3-compatible servers)
    if not region:
        # Litestream asks GetBucketLocation here; we do no I/O at open. botocore follows
        # S3's region redirects, so a wrong guess costs one extra round trip on AWS only.
        # A custom endpoint from the URL gets Litestream's us-east-1; otherwise the SDK's
        # region settings apply.
        region = (DEFAULT_REGION if litestream_endpoint else
                  env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or aws.region
                  or DEFAULT_REGION)

    # Credentials: pairs, not single variables, so a key never meets another's secret.
    key_id = opts.get(c("access_key_id"))
    secret = opts.get(c("secret_access_key"))
    token = opts.get(c("session_token"))
    anonymous = bool(_bool_option("anonymous", opts[c("anonymous")])
                     if c("anonymous") in opts else False)
    source = "keyword arguments"
    given = [n for n, v in (("access_key_id", key_id), ("secret_access_key", secret),
                            ("session_token", token)) if v is not None]
    if anonymous and (given or profile):
        raise ConfigError(f"option 'anonymous' cannot be combined with "
                          f"{(given or ['profile'])[0]!r}: unsigned requests carry no "
                          "credentials")
    if profile and given:
        raise ConfigError(f"option 'profile' cannot be combined with {given[0]!r}: "
                          "credentials come from one source")
    if anonymous:
        source = "anonymous (unsigned requests)"
    elif profile:
        # As botocore with an explicit profile: the AWS_* credential variables are skipped.
        source = f"AWS profile {profile!r}"
    elif key_id is None and secret is None:
        if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
            key_id, secret = env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]
            # Unlike Litestream, keep the session token: temporary credentials need it.
            token = token or env.get("AWS_SESSION_TOKEN") or None
            source = "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
        elif env.get("LITESTREAM_ACCESS_KEY_ID") and env.get("LITESTREAM_SECRET_ACCESS_KEY"):
            key_id = env["LITESTREAM_ACCESS_KEY_ID"]
            secret = env["LITESTREAM_SECRET_ACCESS_KEY"]
            source = "LITESTREAM_ACCESS_KEY_ID/LITESTREAM_SECRET_ACCESS_KEY"
        else:
            source = "default AWS credential chain"
    elif not (key_id and secret):
        raise ConfigError("access_key_id and secret_access_key must be given together")

    def opt_bool(name: str, default: bool | None) -> bool | None:
        return _bool_option(name, opts[c(name)]) if c(name) in opts else default

    def opt_int(name: str) -> int | None:
        return _int_option(name, opts[c(name)]) if c(name) in opts else None

    def opt_str(name: str) -> str | None:
        v = opts.get(c(name))
        return None if v is None else str(v)

    sse_key = opt_str("sseCustomerKey")
    sse_alg = opt_str("sseCustomerAlgorithm")
    if sse_key and not sse_alg:
        sse_alg = "AES256"
    if sse_key and endpoint.startswith("http://") and not is_local_endpoint(endpoint):
        raise ConfigError("sseCustomerKey requires an HTTPS endpoint")
    skip_verify = bool(opt_bool("skipVerify", False))
    if (aws.ca_bundle and not skip_verify and not endpoint.startswith("http://")
            and not os.path.isfile(aws.ca_bundle)):
        # botocore would fail every HTTPS request with a longer story; say it once, here.
        raise ConfigError(f"{aws.ca_source} names {aws.ca_bundle!r}, which is not a file "
                          "(a PEM bundle of trusted CA certificates)")
    concurrency = opt_int("concurrency")
    pool = opt_int("max_pool_connections") or max(32, concurrency or 0)
    retry = opts.get(c("retry"))

    return S3Config(
        bucket=bucket,
        prefix=parsed.path,
        endpoint=endpoint or None,
        region=region,
        force_path_style=path_style,
        skip_verify=skip_verify,
        sign_payload=opt_bool("signPayload", None),
        require_content_md5=bool(opt_bool("requireContentMD5", False)),
        concurrency=concurrency,
        part_size=opt_int("partSize"),
        storage_class=opt_str("storageClass"),
        sse_customer_algorithm=sse_alg if sse_key else None,
        sse_customer_key=sse_key,
        sse_customer_key_md5=opt_str("sseCustomerKeyMD5"),
        sse_kms_key_id=opt_str("sseKmsKeyId"),
        access_key_id=key_id,
        secret_access_key=secret,
        session_token=token,
        credential_source=source,
        connect_timeout=_timeout_option("connect_timeout", opts, env, 3.0),
        read_timeout=_timeout_option("read_timeout", opts, env, 30.0),
        max_pool_connections=pool,
        retry=retry,
        probe_conditional_writes=bool(opt_bool("probe_conditional_writes", True)),
        fast_reads=bool(opt_bool("fast_reads", True)),
        profile=None if profile is None else str(profile),
        anonymous=anonymous,
        redacted_url=parsed.redacted(),
        endpoint_source=endpoint_source,
        ca_bundle=aws.ca_bundle,
        us_east_1_regional=aws.us_east_1_regional,
        botocore_only=aws.botocore_only,
    )
