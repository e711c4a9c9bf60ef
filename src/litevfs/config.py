"""Connection options: one FIELDS table, parsers, and the precedence rule.

Every option has a keyword name (also its URI parameter) and optionally
environment variables; the value is taken from, in order of precedence, the
keyword argument, the URI parameter, the environment, the default. Unknown
options and malformed values raise ConfigError naming the option and its source.
Stdlib only, and light (no ``re``, no ``dataclasses``): a cold open resolves its
options before its first request.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Mapping
TYPE_CHECKING = False  # not typing's: importing typing costs ~5 ms on the open's path
if TYPE_CHECKING:
    from typing import Any

from .errors import ConfigError

# SQLite's own URI parameters: never ours, never an error.
SQLITE_URI_KEYS = frozenset({"vfs", "mode", "cache", "immutable", "nolock", "psow", "modeof"})

# Per-connection S3 credentials: keyword arguments only (a URI ends up in logs and process
# listings), never shown in a repr, a log line or an error.
KEYWORD_ONLY = frozenset({"access_key_id", "secret_access_key", "session_token"})
SECRET_OPTIONS = frozenset({"secret_access_key", "session_token"})
# Where the replica lives: folded into the replica URL's query (as Litestream spells
# them), so one URL names one replica for sharing, buffers and messages.
URL_OPTIONS = ("endpoint", "region")

_DURATION_UNITS = {
    "ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0,
}
_DURATION_UNITS_LONGEST_FIRST = sorted(_DURATION_UNITS, key=len, reverse=True)
_DIGITS = frozenset("0123456789")

_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 1024, "kib": 1024, "kb": 1000,
    "m": 1024**2, "mib": 1024**2, "mb": 1000**2,
    "g": 1024**3, "gib": 1024**3, "gb": 1000**3,
}

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _number(text: str, pos: int, *, trailing_dot: bool) -> tuple[str | None, int]:
    """The decimal number at ``text[pos:]`` (digits, optionally a point and digits;
    ``.5`` too, and ``5.`` when ``trailing_dot``) and the position after it."""
    end = pos
    while end < len(text) and text[end] in _DIGITS:
        end += 1
    whole = end > pos
    if end < len(text) and text[end] == ".":
        frac = end + 1
        while frac < len(text) and text[frac] in _DIGITS:
            frac += 1
        if frac > end + 1 or (whole and trailing_dot):
            end = frac
        elif not whole:
            return None, pos
    elif not whole:
        return None, pos
    return text[pos:end], end


def parse_duration(value: Any) -> float:
    """Seconds from a Go-style duration (``1s``, ``500ms``, ``1m30s``) or a number."""
    if isinstance(value, bool):
        raise ValueError("expected a duration, got a boolean")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = str(value).strip()
        if text in ("0", "-0", "+0"):
            return 0.0
        sign = -1.0 if text.startswith("-") else 1.0
        body = text.lstrip("+-")
        pos, seconds = 0, 0.0
        while pos < len(body):
            number, pos = _number(body, pos, trailing_dot=True)
            unit = next((u for u in _DURATION_UNITS_LONGEST_FIRST
                         if body.startswith(u, pos)), None)
            if number is None or unit is None:
                raise ValueError(f"invalid duration {text!r} (expected e.g. 1s, 500ms, 1m30s)")
            seconds += float(number) * _DURATION_UNITS[unit]
            pos += len(unit)
        if not body:
            raise ValueError("empty duration")
        seconds *= sign
    if seconds < 0:
        raise ValueError(f"negative duration {value!r}")
    return seconds


def parse_wait(value: Any) -> float:
    """A duration, or a boolean / ``forever``: true and ``forever`` wait without a bound
    (what Litestream's VFS does), false is 0 (fail at once)."""
    if isinstance(value, bool):
        return float("inf") if value else 0.0
    text = str(value).strip().lower()
    if text in ("true", "yes", "on", "forever", "inf", "infinite"):
        return float("inf")
    if text in ("false", "no", "off"):
        return 0.0
    return parse_duration(value)


def parse_optional_wait(value: Any) -> float | None:
    return None if value is None else parse_wait(value)


def parse_timeout(value: Any) -> float:
    """A positive duration; a bare number is seconds (``5``, ``0.5``), as the S3
    options always took it."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    seconds = parse_duration(value)
    if not 0 < seconds < float("inf"):
        raise ValueError(f"a timeout must be a positive, finite duration, got {value!r}")
    return seconds


def parse_duration_list(value: Any) -> tuple[float, ...]:
    """``"30s,5m,1h"`` (or a sequence) -> durations; ``off``/empty -> ()."""
    if isinstance(value, (list, tuple)):
        parts = list(value)
    else:
        text = str(value).strip().lower()
        parts = [] if text in ("", "off", "none", "false", "0") else text.split(",")
    out = tuple(parse_duration(p) for p in parts)
    if len(out) > 8 or any(d <= 0 for d in out):
        raise ValueError(f"expected up to 8 positive durations, got {value!r}")
    return out


def parse_size(value: Any) -> int:
    """Bytes from ``64MiB``, ``10MB``, ``4096``, ``1.5GiB`` (K/M/G alone are binary)."""
    if isinstance(value, bool):
        raise ValueError("expected a size, got a boolean")
    if isinstance(value, int):
        size = value
    else:
        text = str(value).strip()
        number, end = _number(text, 0, trailing_dot=False)
        unit = text[end:].strip().lower()
        if number is None or unit not in _SIZE_UNITS:
            raise ValueError(f"invalid size {value!r} (expected e.g. 64MiB, 10MB, 4096)")
        size = int(float(number) * _SIZE_UNITS[unit])
    if size < 0:
        raise ValueError(f"negative size {value!r}")
    return size


def parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"invalid boolean {value!r} (expected true/false, 1/0, on/off)")


def parse_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("expected an integer, got a boolean")
    try:
        number = int(str(value).strip()) if not isinstance(value, int) else value
    except ValueError:
        raise ValueError(f"invalid integer {value!r}") from None
    if number < 0:
        raise ValueError(f"negative integer {value!r}")
    return number


def parse_str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {type(value).__name__}")
    return value


def parse_log_level(value: Any) -> str:
    text = str(value).strip().upper()
    text = {"WARN": "WARNING"}.get(text, text)
    if text not in LOG_LEVELS:
        raise ValueError(f"invalid log level {value!r} (expected one of {', '.join(LOG_LEVELS)})")
    return text


BOOT_SET_MODES = ("off", "local", "shared")


def parse_boot_set(value: Any) -> str:
    text = str(value).strip().lower()
    if text not in BOOT_SET_MODES:
        raise ValueError(f"invalid boot set mode {value!r} (expected off, local or shared)")
    return text


VERIFY_MODES = ("background", "strict")


def parse_verify_mode(value: Any) -> str:
    text = str(value).strip().lower()
    if text not in VERIFY_MODES:
        raise ValueError(f"invalid verify mode {value!r} (expected background or strict)")
    return text


VERIFY_RECORDS = ("shared", "local")


def parse_verify_record(value: Any) -> str:
    text = str(value).strip().lower()
    if text not in VERIFY_RECORDS:
        raise ValueError(f"invalid verify record {value!r} (expected shared or local)")
    return text


def parse_share(value: Any) -> float:
    """A non-negative fraction or ratio: 0.25, 25%, 1."""
    text = str(value).strip()
    try:
        share = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise ValueError(f"invalid share {value!r} (expected a number like 0.25 or 25%)") from None
    if not share >= 0 or share == float("inf"):
        raise ValueError(f"invalid share {value!r} (expected a number >= 0)")
    return share


class Field(namedtuple("Field", ("name", "parse", "default", "env", "doc"))):
    """One option: ``name`` is the keyword argument and URI parameter, ``env`` the
    environment variables (the first one set wins)."""

    __slots__ = ()


FIELDS: tuple[Field, ...] = (
    Field("replica_url", parse_str, None, ("LITESTREAM_REPLICA_URL", "LITEVFS_REPLICA_URL"),
          "Replica URL (s3://bucket/path?endpoint=..., file:///dir, memory://name)."),
    Field("poll_interval", parse_duration, 1.0, ("LITEVFS_POLL_INTERVAL",),
          "How often new LTX files are looked for."),
    Field("cache_size", parse_size, 64 * 1024**2, ("LITEVFS_CACHE_SIZE",),
          "Byte budget of the in-memory page cache shared by a replica's connections."),
    Field("wait_for_replica", parse_wait, 0.0, ("LITEVFS_WAIT_FOR_REPLICA",),
          "Read-only opens of an empty replica (no LTX files yet) wait this long for the "
          "first file (a duration; true/forever: no bound, as Litestream's VFS; 0: fail "
          "at once). Write mode never waits: it starts a new database."),
    Field("open_timeout", parse_optional_wait, None, ("LITEVFS_OPEN_TIMEOUT",),
          "Deprecated name of wait_for_replica (used when that is not set)."),
    Field("connect_timeout", parse_timeout, 3.0, ("LITEVFS_CONNECT_TIMEOUT",),
          "S3: how long connecting to the endpoint (TCP and TLS) may take; the error "
          "names the endpoint."),
    Field("read_timeout", parse_timeout, 30.0, ("LITEVFS_READ_TIMEOUT",),
          "S3: how long a request may wait for the endpoint's next bytes (a timed-out "
          "request is tried once more; the error names the endpoint)."),
    Field("read_ahead", parse_size, 2 * 1024**2, ("LITEVFS_READ_AHEAD",),
          "Largest ranged GET issued when SQLite reads pages sequentially (0: one frame)."),
    Field("join_prefetch", parse_bool, True, ("LITEVFS_JOIN_PREFETCH",),
          "Key-driven prefetch: on a slow network, run a join's lookups ahead of SQLite "
          "over raw pages, fetching the leaves its next rows need a level at a time for "
          "all rows together (false: off)."),
    Field("fetch_retries", parse_int, 4, ("LITEVFS_FETCH_RETRIES",),
          "Retries of a failed page fetch before SQLITE_IOERR."),
    Field("hedge_after", parse_duration, 0.1, ("LITEVFS_HEDGE_AFTER",),
          "A page GET still unanswered after max(this, 3x the recent p50 of similar GETs) "
          "is sent once more and the first answer wins (0: never)."),
    Field("hedge_max", parse_int, 4, ("LITEVFS_HEDGE_MAX",),
          "At most this many hedged (duplicate) GETs in flight per replica."),
    Field("verify", parse_verify_mode, "background", ("LITEVFS_VERIFY",),
          "LTX files larger than verify_max_size: background (served at once, CRC-64 "
          "checked once in the background) or strict (checked before any page is served)."),
    Field("verify_max_size", parse_size, 4 * 1024**2, ("LITEVFS_VERIFY_MAX_SIZE",),
          "LTX files up to this size are fetched whole and CRC-64-verified before any of "
          "their pages is served."),
    Field("verify_bandwidth", parse_size, None, ("LITEVFS_VERIFY_BANDWIDTH",),
          "Bytes per second the background verification of large files may read or hash "
          "(0: unbounded, and verify_share does not apply either; unset: 16 MiB/s with the "
          "compiled core, 2 MiB/s with the pure one, whose CRC-64 runs at ~15 MB/s)."),
    Field("verify_share", parse_share, 0.15, ("LITEVFS_VERIFY_SHARE",),
          "Background verification reads at most this many bytes per byte the process's "
          "queries read (0: no such bound); it goes on where earlier processes stopped."),
    Field("verify_record", parse_verify_record, "shared", ("LITEVFS_VERIFY_RECORD",),
          "Where verified large objects are recorded: shared (the cache_dir and "
          "<path>/litevfs/verified, so other machines skip them) or local (cache_dir only)."),
    Field("cache_dir", parse_str, None, ("LITEVFS_CACHE_DIR",),
          "Persistent page cache directory (opt-in; shared by processes, reused after a "
          "restart; pages are immutable and xxhash-checked on read)."),
    Field("cache_dir_size", parse_size, 1024**3, ("LITEVFS_CACHE_DIR_SIZE",),
          "Size bound of the persistent page cache (least recently used entries go)."),
    Field("cache_compress", parse_bool, False, ("LITEVFS_CACHE_COMPRESS",),
          "zstandard-compress pages in the persistent cache."),
    Field("boot_set", parse_boot_set, "local", ("LITEVFS_BOOT_SET",),
          "Learned boot set: off, local (kept in cache_dir) or shared (also a small object "
          "under <path>/litevfs/ so new machines benefit)."),
    Field("poll_max_interval", parse_duration, 6.0, ("LITEVFS_POLL_MAX_INTERVAL",),
          "Replicas with a litevfs head object: idle polling backs off up to this interval "
          "(one conditional GET per poll) and speeds up again after a change."),
    Field("log_level", parse_log_level, None, ("LITESTREAM_LOG_LEVEL", "LITEVFS_LOG_LEVEL"),
          "Level of the 'litevfs' logger; unset leaves logging configuration alone."),
    Field("hydration", parse_bool, False,
          ("LITESTREAM_HYDRATION_ENABLED", "LITEVFS_HYDRATION_ENABLED"),
          "Download the whole database to a local file in the background and serve "
          "pages from it as they arrive."),
    Field("hydration_path", parse_str, None,
          ("LITESTREAM_HYDRATION_PATH", "LITEVFS_HYDRATION_PATH"),
          "Keep the hydrated file at this path (with a sidecar) so a restart resumes; "
          "unset: a temporary file removed on close."),
    Field("hydration_concurrency", parse_int, 16, ("LITEVFS_HYDRATION_CONCURRENCY",),
          "Parallel ranged GETs of the hydrator."),
    Field("write", parse_bool, False, ("LITESTREAM_WRITE_ENABLED", "LITEVFS_WRITE_ENABLED"),
          "Write mode: commits go to a local crash-safe buffer and are uploaded as one "
          "L0 LTX file per sync interval (one writer per replica)."),
    Field("sync_interval", parse_duration, 1.0,
          ("LITESTREAM_SYNC_INTERVAL", "LITEVFS_SYNC_INTERVAL"),
          "Write mode: how often buffered commits are uploaded (0: only on sync/close)."),
    Field("buffer_path", parse_str, None, ("LITESTREAM_BUFFER_PATH", "LITEVFS_BUFFER_PATH"),
          "Write mode: the local write buffer file; unset: one per replica under "
          "$XDG_STATE_HOME/litevfs/write-buffers (~/.local/state; 0700, found again after "
          "a crash or a reboot)."),
    Field("buffer_fsync", parse_bool, False, ("LITEVFS_BUFFER_FSYNC",),
          "Write mode: fdatasync the buffer at every COMMIT (survives power loss, slower)."),
    Field("compaction_levels", parse_duration_list, (30.0, 300.0, 3600.0),
          ("LITEVFS_COMPACTION_LEVELS",),
          "Write mode: compaction interval of levels 1, 2, 3... (e.g. 30s,5m,1h; off)."),
    Field("snapshot_interval", parse_duration, 86400.0, ("LITEVFS_SNAPSHOT_INTERVAL",),
          "Write mode: how often a level-9 snapshot is written (0: never)."),
    Field("l0_retention", parse_duration, 300.0, ("LITEVFS_L0_RETENTION",),
          "Write mode: L0 files covered by level 1 are deleted after this long."),
    Field("snapshot_retention", parse_duration, 86400.0, ("LITEVFS_SNAPSHOT_RETENTION",),
          "Write mode: snapshots older than this are deleted (the newest stays)."),
    Field("endpoint", parse_str, None, (),
          "S3: the endpoint URL (e.g. http://127.0.0.1:9000); the same as the replica URL's "
          "endpoint= and wins over it. Unset: the URL's, then LITESTREAM_S3_ENDPOINT and "
          "the AWS SDK settings."),
    Field("region", parse_str, None, (),
          "S3: the bucket's region; the same as the replica URL's region= and wins over it."),
    Field("profile", parse_str, None, (),
          "S3: the AWS profile whose credentials and settings this connection uses "
          "(instead of AWS_PROFILE and the AWS_* credential variables)."),
    Field("anonymous", parse_bool, False, (),
          "S3: send unsigned requests (a public bucket); no credentials are looked up."),
    Field("access_key_id", parse_str, None, (),
          "S3: access key id of this connection (keyword only, with secret_access_key; "
          "wins over AWS_ACCESS_KEY_ID and the profile)."),
    Field("secret_access_key", parse_str, None, (),
          "S3: the secret of access_key_id (keyword only; never logged or shown)."),
    Field("session_token", parse_str, None, (),
          "S3: session token of temporary credentials (keyword only; never logged or shown)."),
)
FIELDS_BY_NAME = {f.name: f for f in FIELDS}


class Config(namedtuple("Config", [f.name for f in FIELDS],
                        defaults=[f.default for f in FIELDS[1:]])):
    """Resolved options, one attribute per entry of ``FIELDS`` (``replica_url`` first,
    required; the rest default to the table's defaults). Immutable."""

    __slots__ = ()

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={'REDACTED' if k in SECRET_OPTIONS and v else repr(v)}"
                          for k, v in zip(self._fields, self))
        return f"Config({shown})"

    @classmethod
    def resolve(
        cls,
        keywords: Mapping[str, Any] | None = None,
        uri_params: Mapping[str, str] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Config:
        """Merge keyword > URI > environment > default; validate every value."""
        keywords = dict(keywords or {})
        uri_params = {k: v for k, v in (uri_params or {}).items() if k not in SQLITE_URI_KEYS}
        for source, given in (("keyword", keywords), ("URI parameter", uri_params)):
            unknown = sorted(set(given) - set(FIELDS_BY_NAME))
            if unknown:
                from difflib import get_close_matches  # an error path: never on an open

                near = get_close_matches(unknown[0], FIELDS_BY_NAME, n=1)
                hint = f"did you mean {near[0]!r}? " if near else ""
                raise ConfigError(
                    f"unknown litevfs option {unknown[0]!r} ({source}); {hint}"
                    f"valid options: {', '.join(FIELDS_BY_NAME)}")
        in_uri = sorted(KEYWORD_ONLY & set(uri_params))
        if in_uri:
            raise ConfigError(
                f"option {in_uri[0]!r} is not accepted as a URI parameter (URIs end up in "
                "logs and process listings): pass it as a keyword argument")
        env = env if env is not None else {}
        values: dict[str, Any] = {}
        given: set[str] = set()  # options set by the caller (not defaults)
        for f in FIELDS:
            if f.name in keywords and keywords[f.name] is not None:
                raw, source = keywords[f.name], f"keyword {f.name}"
            elif f.name in uri_params:
                raw, source = uri_params[f.name], f"URI parameter {f.name}"
            else:
                env_name = next((n for n in f.env if env.get(n)), None)
                if env_name is None:
                    values[f.name] = f.default
                    continue
                raw, source = env[env_name], f"environment variable {env_name}"
            try:
                values[f.name] = f.parse(raw)
            except (ValueError, TypeError) as exc:
                raise ConfigError(f"invalid value for option {f.name!r} ({source}): {exc}") from None
            given.add(f.name)
        if "open_timeout" in given and "wait_for_replica" not in given:
            values["wait_for_replica"] = values["open_timeout"]  # the deprecated spelling
        if not values["replica_url"]:
            raise ConfigError(
                "no replica URL: pass replica_url (keyword or URI parameter) "
                "or set LITESTREAM_REPLICA_URL")
        if any(values[name] for name in URL_OPTIONS):
            values["replica_url"] = with_url_options(
                values["replica_url"], {n: values[n] for n in URL_OPTIONS if values[n]})
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        return dict(self._asdict())


def with_url_options(url: str, options: Mapping[str, str]) -> str:
    """``url`` with ``options`` set in its query (replacing any spelling of the same
    option: ``endpoint``, ``Endpoint``...), the rest of the URL untouched. Only s3://
    replicas take them."""
    from urllib.parse import parse_qsl, quote  # off the cold open's import path

    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme != "s3":
        name = next(iter(options))
        where = f"{scheme}://" if scheme else "a plain path"
        raise ConfigError(f"option {name!r} applies to s3:// replica URLs only, not {where}")
    base, _, query = url.partition("?")
    canon = {n.replace("-", "").replace("_", "").lower() for n in options}
    kept = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True)
            if k.replace("-", "").replace("_", "").lower() not in canon]
    kept += [(k, str(v)) for k, v in options.items()]
    return base + "?" + "&".join(f"{quote(k, safe='')}={quote(v, safe=':/')}" for k, v in kept)


def describe_options() -> list[dict[str, Any]]:
    """The option table (for docs and ``litevfs info``)."""
    return [
        {"option": f.name, "env": list(f.env), "default": f.default, "doc": f.doc}
        for f in FIELDS
    ]
