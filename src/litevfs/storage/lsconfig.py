"""Litestream's configuration file (``litestream.yml``) as a source of replica URLs and
credentials, read as ``litestream replicate -config`` reads it (facts from Litestream's
``cmd/litestream/main.go``, 0.5.x), so one file configures both:

* the whole text is expanded first, ``$VAR`` and ``${VAR}`` with Go's ``os.Expand`` rules
  (``$PID`` is the process id; an unset variable is empty), unless ``expand_env=False``
  (Litestream's ``-no-expand-env``);
* ``dbs:`` entries are matched by ``path`` after Litestream's path expansion (``~``,
  a ``sqlite://``/``sqlite3://`` prefix stripped, made absolute); a ``dir:`` entry covers
  the databases under it, its replica path extended by the database's relative path;
* each entry has one ``replica:`` (or a one-element ``replicas:`` list): ``url:``, or
  ``type:`` with ``bucket``/``path``/``endpoint``/``region``/``force-path-style``/...
  (both forms merged as Litestream merges them: the keys win over the URL's parts);
* top-level replica settings (``access-key-id``, ``secret-access-key``, ``region``,
  ``endpoint``, ``bucket``, ...) are defaults for every replica.

Stricter than Litestream on purpose: a key this reader uses whose value names an unset
variable is an error naming the key and the variable (Litestream would silently read an
empty string), and so is a missing entry.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

from ..errors import ConfigError
from .url import go_path_clean

# Replica keys this reader turns into replica URL query options (Litestream's spelling
# on the left, the URL option on the right).
_S3_QUERY_KEYS = {
    "region": "region", "endpoint": "endpoint", "force-path-style": "forcePathStyle",
    "skip-verify": "skipVerify", "sign-payload": "signPayload",
    "require-content-md5": "requireContentMD5", "storage-class": "storageClass",
    "part-size": "partSize", "concurrency": "concurrency",
    "sse-customer-algorithm": "sseCustomerAlgorithm", "sse-customer-key": "sseCustomerKey",
    "sse-kms-key-id": "sseKmsKeyId",
}
# Settings a top-level (global) section gives every replica that does not set them.
_GLOBAL_KEYS = ("access-key-id", "secret-access-key", "region", "bucket", "endpoint",
                "force-path-style", "sign-payload", "require-content-md5", "skip-verify",
                "storage-class", "sse-customer-algorithm", "sse-customer-key",
                "sse-customer-key-path", "sse-kms-key-id")
_USED = frozenset({"url", "type", "path", "bucket", "access-key-id", "secret-access-key",
                   "sse-customer-key-path", *_S3_QUERY_KEYS})
_LITESTREAM_ONLY = ("gs", "abs", "sftp", "webdav", "nats", "oss")


def _special(c: str) -> bool:
    return c in "*#$@!?-0123456789"


def _alnum(c: str) -> bool:
    return c == "_" or c.isascii() and c.isalnum()


def _shell_name(s: str) -> tuple[str, int]:
    """Go's ``getShellName``: the variable name at the start of ``s`` (after a ``$``)
    and how many characters it used (a name of "" with a width eats bad syntax)."""
    if s[0] == "{":
        if len(s) > 2 and _special(s[1]) and s[2] == "}":
            return s[1], 3
        end = s.find("}", 1)
        if end < 0:
            return "", 1
        if end == 1:
            return "", 2
        return s[1:end], end + 1
    if _special(s[0]):
        return s[0], 1
    i = 0
    while i < len(s) and _alnum(s[i]):
        i += 1
    return s[:i], i


def expand(text: str, lookup: Any) -> str:
    """Go's ``os.Expand(text, lookup)``."""
    out: list[str] = []
    i = j = 0
    while j < len(text):
        if text[j] == "$" and j + 1 < len(text):
            out.append(text[i:j])
            name, width = _shell_name(text[j + 1:])
            if name:
                out.append(lookup(name))
            elif width == 0:
                out.append("$")  # "$" not followed by a name stays
            j += width
            i = j + 1
        j += 1
    out.append(text[i:])
    return "".join(out)


def variables(text: str) -> list[str]:
    """The variable names ``expand`` would look up in ``text``."""
    names: list[str] = []
    expand(text, lambda name: names.append(name) or "")
    return names


def _env_lookup(environ: Mapping[str, str]) -> Any:
    def lookup(name: str) -> str:
        if name == "PID":
            return str(os.getpid())
        return environ.get(name, "")

    return lookup


def expand_path(path: str) -> str:
    """Litestream's ``expand``: strip ``sqlite://``/``sqlite3://``, expand a leading
    ``~``, make it absolute."""
    for prefix in ("sqlite3://", "sqlite://"):
        if path.startswith(prefix):
            path = path[len(prefix):]
            break
    if path == "~" or path.startswith("~" + os.sep):
        path = os.path.expanduser(path)
    return os.path.abspath(path)


def _yaml() -> Any:
    try:
        import yaml  # PyYAML only when a config file is read
    except ImportError:  # pragma: no cover - a declared dependency
        raise ConfigError("reading a Litestream config file needs PyYAML "
                          "(pip install pyyaml)") from None
    return yaml


class LitestreamConfig:
    """One parsed configuration file: ``replica_for(db)`` -> (url, credential options)."""

    def __init__(self, path: str, expand_env: bool = True,
                 environ: Mapping[str, str] | None = None) -> None:
        self.environ = os.environ if environ is None else environ
        self.path = expand_path(os.fspath(path))
        try:
            with open(self.path, encoding="utf-8") as f:
                raw = f.read()
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {self.path}") from None
        except OSError as exc:
            raise ConfigError(f"cannot read config file {self.path}: {exc.strerror}") from None
        yaml = _yaml()
        text = expand(raw, _env_lookup(self.environ)) if expand_env else raw
        self.expanded = expand_env
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            detail = " ".join(str(exc).split())
            raise ConfigError(f"config file {self.path} is not valid YAML: {detail}") from None
        self.data: dict[str, Any] = data if isinstance(data, dict) else {}
        if data is not None and not isinstance(data, dict):
            raise ConfigError(f"config file {self.path}: expected a mapping at the top level")
        # The same file unexpanded, to name the variable behind an empty value.
        self.raw: dict[str, Any] = {}
        if expand_env:
            try:
                loaded = yaml.safe_load(raw)
                self.raw = loaded if isinstance(loaded, dict) else {}
            except yaml.YAMLError:
                self.raw = {}

    # -- helpers ---------------------------------------------------------------------
    def _where(self, key: str) -> str:
        return f"config file {self.path}: {key}"

    def _raw_at(self, keys: tuple[Any, ...]) -> Any:
        node: Any = self.raw
        for k in keys:
            if isinstance(node, dict):
                node = node.get(k)
            elif isinstance(node, list) and isinstance(k, int) and k < len(node):
                node = node[k]
            else:
                return None
        return node

    def _value(self, node: Mapping[str, Any], key: str, keys: tuple[Any, ...],
               label: str) -> Any:
        """``node[key]``, refusing one whose raw text names an unset variable."""
        value = node.get(key)
        raw = self._raw_at(keys + (key,))
        if self.expanded and isinstance(raw, str):
            unset = [n for n in variables(raw) if n != "PID" and n not in self.environ]
            if unset:
                raise ConfigError(f"{self._where(f'{label}.{key}')} uses ${unset[0]}, which "
                                  "is not set in the environment")
        return value

    def db_entries(self) -> list[dict[str, Any]]:
        dbs = self.data.get("dbs")
        if dbs is None:
            raise ConfigError(f"{self._where('dbs')}: no databases configured (missing 'dbs')")
        if not isinstance(dbs, list):
            raise ConfigError(f"{self._where('dbs')}: expected a list of databases")
        return [d if isinstance(d, dict) else {} for d in dbs]

    # -- lookup ----------------------------------------------------------------------
    def find_db(self, db: str | None) -> tuple[int, dict[str, Any], str]:
        """(index, entry, relative path under a ``dir:`` entry or "") for ``db``."""
        entries = self.db_entries()
        if db is None:
            if len(entries) == 1:
                return 0, entries[0], ""
            paths = [str(e.get("path") or e.get("dir")) for e in entries]
            raise ConfigError(f"config file {self.path} has {len(entries)} databases: pass "
                              f"db= (one of: {', '.join(paths)})")
        wanted = expand_path(db)
        for i, entry in enumerate(entries):
            path = entry.get("path")
            if path and expand_path(str(path)) == wanted:
                self._value(entry, "path", ("dbs", i), f"dbs[{i}]")
                return i, entry, ""
        for i, entry in enumerate(entries):
            folder = entry.get("dir")
            if folder:
                base = expand_path(str(folder))
                if wanted.startswith(base.rstrip(os.sep) + os.sep):
                    return i, entry, os.path.relpath(wanted, base).replace(os.sep, "/")
        known = [str(e.get("path") or e.get("dir")) for e in entries]
        raise ConfigError(f"{self._where('dbs')}: no entry has path {wanted!r} "
                          f"(configured: {', '.join(known) or 'none'})")

    def replica_for(self, db: str | None) -> tuple[str, dict[str, Any]]:
        """The replica URL for ``db`` and the credential options it carries."""
        index, entry, rel = self.find_db(db)
        label = f"dbs[{index}]"
        keys: tuple[Any, ...] = ("dbs", index)
        single, many = entry.get("replica"), entry.get("replicas")
        if single is None and not many:
            raise ConfigError(f"{self._where(label)}: no replica configured (missing "
                              "'replica')")
        if single is not None and many:
            raise ConfigError(f"{self._where(label)}: cannot specify 'replica' and "
                              "'replicas' on a database")
        if single is not None:
            replica, label, keys = single, f"{label}.replica", keys + ("replica",)
        else:
            if not isinstance(many, list) or len(many) > 1:
                raise ConfigError(f"{self._where(label + '.replicas')}: multiple replicas "
                                  "on a single database are not supported (Litestream 0.5 "
                                  "refuses them too)")
            replica, label, keys = many[0], f"{label}.replicas[0]", keys + ("replicas", 0)
        if not isinstance(replica, dict):
            raise ConfigError(f"{self._where(label)}: expected a mapping")
        settings = self._merged(replica, keys, label)
        return self._url(settings, label, rel)

    def _merged(self, replica: dict[str, Any], keys: tuple[Any, ...],
                label: str) -> dict[str, tuple[Any, str]]:
        """The replica's keys, then the top-level defaults for the ones it leaves empty
        (Litestream's ``SetDefaults``): key -> (value, the key's name for messages)."""
        out: dict[str, tuple[Any, str]] = {}
        for key in replica:
            # Only the keys read here must not name an unset variable.
            value = (self._value(replica, key, keys, label) if key in _USED
                     else replica.get(key))
            if value not in (None, ""):
                out[key] = (value, f"{label}.{key}")
        for key in _GLOBAL_KEYS:
            if key not in out:
                value = self._value(self.data, key, (), "(top level)")
                if value not in (None, ""):
                    out[key] = (value, key)
        return out

    def _url(self, settings: dict[str, tuple[Any, str]], label: str,
             rel: str) -> tuple[str, dict[str, Any]]:
        def get(key: str) -> Any:
            return settings[key][0] if key in settings else None

        url, rtype = get("url"), get("type")
        if url:
            scheme = urlsplit(str(url)).scheme.lower()
            rtype = scheme or rtype
        rtype = str(rtype or "file").lower()
        if rtype in _LITESTREAM_ONLY:
            raise ConfigError(f"{self._where(label + '.type')}: replica type {rtype!r} is "
                              "supported by Litestream, not by litevfs (use s3 or file)")
        if rtype not in ("s3", "file"):
            raise ConfigError(f"{self._where(label + '.type')}: unknown replica type "
                              f"{rtype!r}")
        if url and get("path"):
            raise ConfigError(f"{self._where(label)}: cannot specify url & path for {rtype} "
                              "replica")
        if rtype == "file":
            if url:
                path = urlsplit(str(url)).path
            else:
                path = get("path")
            if not path:
                raise ConfigError(f"{self._where(label + '.path')}: file replica path "
                                  "required")
            path = expand_path(str(path))
            if rel:
                path = os.path.join(path, rel)
            return "file://" + quote(path), {}
        return self._s3_url(settings, label, rel)

    def _s3_url(self, settings: dict[str, tuple[Any, str]], label: str,
                rel: str) -> tuple[str, dict[str, Any]]:
        def get(key: str) -> Any:
            return settings[key][0] if key in settings else None

        url = get("url")
        if url and "bucket" in settings and settings["bucket"][1].startswith(label):
            raise ConfigError(f"{self._where(label)}: cannot specify url & bucket for s3 "
                              "replica")
        query: dict[str, str] = {}
        if url:
            parts = urlsplit(str(url))
            host, path = parts.netloc.rsplit("@", 1)[-1], parts.path

            query.update(parse_qsl(parts.query, keep_blank_values=True))
        else:
            host = str(get("bucket") or "")
            if not host:
                raise ConfigError(f"{self._where(label + '.bucket')}: bucket required for s3 "
                                  "replica (set 'bucket' or 'url')")
            path = str(get("path") or "")
            if path != go_path_clean("/" + path).lstrip("/") and path != "":
                raise ConfigError(f"{self._where(label + '.path')}: {path!r} is not a clean "
                                  "key prefix (litevfs reads the keys of a cleaned path: "
                                  "write it without leading, trailing or double slashes)")
            path = "/" + path
        if rel:
            path = "/" + go_path_clean(path.rstrip("/") + "/" + rel).lstrip("/")
        # Keys win over the URL's parts (Litestream: "only apply URL parts to fields that
        # have not been overridden"); force-path-style is true if either side says so.
        config_style = get("force-path-style")
        for key, option in _S3_QUERY_KEYS.items():
            value = get(key)
            if value is None or option == "forcePathStyle":
                continue
            if key == "skip-verify" and "skipVerify" in query:
                continue  # the URL's skipVerify wins (Litestream reads it last)
            query = {k: v for k, v in query.items() if k.lower() != option.lower()}
            query[option] = _text(value)
        path_key = get("sse-customer-key-path")
        if path_key and "sseCustomerKey" not in query:
            try:
                with open(os.path.expanduser(str(path_key)), encoding="utf-8") as f:
                    query["sseCustomerKey"] = f.read().strip()
            except OSError as exc:
                raise ConfigError(f"{self._where(settings['sse-customer-key-path'][1])}: "
                                  f"cannot read {path_key!r}: {exc.strerror}") from None
        if config_style is None and get("endpoint") and url:
            config_style = True  # Litestream: a configured endpoint implies path style
        if config_style is not None:
            style = _truthy(config_style, settings.get("force-path-style", ("", "endpoint"))[1],
                            self)
            if style or not url:
                query = {k: v for k, v in query.items() if k.lower() != "forcepathstyle"}
                query["forcePathStyle"] = "true" if style else "false"
        credentials: dict[str, Any] = {}
        key_id, secret = get("access-key-id"), get("secret-access-key")
        if bool(key_id) != bool(secret):
            missing = "secret-access-key" if key_id else "access-key-id"
            raise ConfigError(f"{self._where(label + '.' + missing)}: missing (access-key-id "
                              "and secret-access-key are given together)")
        if key_id:
            credentials = {"access_key_id": _text(key_id), "secret_access_key": _text(secret)}
        query_text = "&".join(f"{quote(k, safe='')}={quote(v, safe=':/')}"
                              for k, v in query.items())
        return urlunsplit(("s3", host, quote(path), query_text, "")), credentials


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _truthy(value: Any, key: str, config: LitestreamConfig) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "on", "1"):
        return True
    if text in ("false", "no", "off", "0"):
        return False
    raise ConfigError(f"{config._where(key)}: expected true or false, not {value!r}")


def replica_from_config(config_path: Any, db: str | None, url: str | None,
                        options: Mapping[str, Any], *, expand_env: bool = True,
                        environ: Mapping[str, str] | None = None
                        ) -> tuple[str, dict[str, Any]]:
    """(replica URL, options) for ``connect(config=..., db=...)``: the file's replica and
    credentials, with the caller's own keywords winning. ``url`` must be None;
    ``config_path`` None means ``$LITESTREAM_CONFIG`` (Litestream's default)."""
    env = os.environ if environ is None else environ
    if url is not None:
        raise ConfigError("pass either a replica URL or config=, not both")
    if config_path is None:
        config_path = env.get("LITESTREAM_CONFIG")
        if not config_path:
            raise ConfigError("db= names a database of a Litestream config file: pass "
                              "config= too (or set LITESTREAM_CONFIG)")
    parsed = LitestreamConfig(os.fspath(config_path), expand_env, env)
    replica_url, credentials = parsed.replica_for(db)
    merged = dict(options)
    explicit = any(merged.get(k) for k in ("access_key_id", "secret_access_key", "profile",
                                           "anonymous"))
    if not explicit:
        merged.update(credentials)
    return replica_url, merged
