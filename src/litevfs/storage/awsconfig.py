"""The AWS SDK settings that decide where S3 requests go and which CAs they trust, read
from the same places and in the same order as botocore (``configprovider.py``,
``configloader.py``, ``session.py``), with the stdlib only.

Both S3 request paths use what this resolves: the stdlib fast read path directly, and
botocore through explicit client arguments (``endpoint_url``, ``verify``, the us-east-1
endpoint style). So reads and writes reach one server and trust one CA set, even where
botocore's own lookup would have drifted. Settings the fast path cannot reproduce (FIPS
and dual-stack endpoints, transfer acceleration, partitions outside ``aws``) are named
in ``botocore_only``; reads then go through botocore as well.

Sources, first match wins (botocore's order):

* endpoint: ``AWS_ENDPOINT_URL_S3``, ``AWS_ENDPOINT_URL``, the profile's ``services``
  section (``s3 = endpoint_url = ...``), the profile's ``endpoint_url``; none of them
  when ``AWS_IGNORE_CONFIGURED_ENDPOINT_URLS`` / ``ignore_configured_endpoint_urls`` is
  true. (The replica URL's ``endpoint=`` and ``LITESTREAM_S3_ENDPOINT`` come first; see
  ``url.py``.)
* CA bundle: ``AWS_CA_BUNDLE``, the profile's ``ca_bundle``, ``REQUESTS_CA_BUNDLE``,
  else certifi's bundle when certifi is installed, else the one botocore ships (what
  botocore itself falls back to).
* profile: ``AWS_DEFAULT_PROFILE``, ``AWS_PROFILE``, else ``default``; config file
  ``AWS_CONFIG_FILE`` (``~/.aws/config``), whose profiles the credentials file
  ``AWS_SHARED_CREDENTIALS_FILE`` (``~/.aws/credentials``) extends, as in botocore.
"""

from __future__ import annotations

import os
from collections import namedtuple
from collections.abc import Mapping

from ..errors import ConfigError

TYPE_CHECKING = False  # not typing's: importing typing costs ~5 ms on the open's path
if TYPE_CHECKING:
    from typing import Any


class AWSSettings(namedtuple("AWSSettings", (
        "profile", "endpoint", "endpoint_source", "region", "ca_bundle", "ca_source",
        "us_east_1_regional", "botocore_only"))):
    """``endpoint``/``ca_bundle``: None when nothing configures them (``*_source`` names
    where a value came from, for messages); ``region``: the profile's; ``us_east_1_regional``:
    us-east-1 requests use ``s3.us-east-1.amazonaws.com`` rather than the global
    ``s3.amazonaws.com``; ``botocore_only``: why only botocore can send these requests
    (None when the fast path can)."""

    __slots__ = ()


_TRUE = "true"  # botocore's ensure_boolean: only "true" (any case) is true
_DEFAULTS_MODES = ("legacy", "auto", "standard", "in-region", "cross-region", "mobile")


def _is_true(value: Any) -> bool:
    return isinstance(value, str) and value.lower() == _TRUE


def _file_path(environ: Mapping[str, str], var: str, default: str) -> str:
    path = environ[var] if var in environ else default
    return os.path.expanduser(os.path.expandvars(path))


def _read_ini(path: str) -> dict[str, dict[str, Any]]:
    """Sections of an AWS INI file, indented blocks (``s3 =\\n  key = value``) parsed as
    one level of nesting; {} when the file does not exist. One-line ConfigError when it
    does not parse (botocore would raise ConfigParseError on every request)."""
    if not os.path.isfile(path):
        return {}
    import configparser  # only when the file exists: ~2 ms, on the open's path

    parser = configparser.RawConfigParser()
    try:
        parser.read([path])
    except (configparser.Error, UnicodeDecodeError) as exc:
        detail = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        raise ConfigError(f"cannot parse AWS config file {path}: {detail}") from None
    sections: dict[str, dict[str, Any]] = {}
    for name in parser.sections():
        values: dict[str, Any] = {}
        for option in parser.options(name):
            value = parser.get(name, option)
            if value.startswith("\n"):
                nested = {}
                for line in value.splitlines():
                    if line.strip():
                        key, eq, val = line.partition("=")
                        if not eq:
                            raise ConfigError(
                                f"cannot parse AWS config file {path}: [{name}] {option}: "
                                f"{line.strip()!r} is not 'key = value'")
                        nested[key.strip()] = val.strip()
                value = nested
            values[option] = value
        sections[name] = values
    return sections


def _named_section(name: str) -> str | None:
    """``profile x`` / ``services "x y"`` -> the name after the keyword (shell-quoted, as
    botocore splits it), or None when the header is not exactly two words."""
    import shlex  # profile headers with quotes only: rare, not worth ~1 ms on every open

    try:
        parts = shlex.split(name)
    except ValueError:
        return None
    return parts[1] if len(parts) == 2 else None


def _profiles(config_path: str, credentials_path: str
              ) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """(profiles, services sections): ``[default]`` and ``[profile x]`` from the config
    file, extended (and created) by the credentials file's sections, as botocore does."""
    profiles: dict[str, dict[str, Any]] = {}
    services: dict[str, dict[str, Any]] = {}
    for name, values in _read_ini(config_path).items():
        if name.startswith("profile"):
            key = _named_section(name)
            if key is not None:
                profiles[key] = values
        elif name.startswith("services"):
            key = _named_section(name)
            if key is not None:
                services[key] = values
        elif name == "default":
            profiles[name] = values
    for name, values in _read_ini(credentials_path).items():
        profiles.setdefault(name, {}).update(values)
    return profiles, services


def load_aws_settings(environ: Mapping[str, str], profile: str | None = None) -> AWSSettings:
    """The AWS SDK settings for S3 from ``environ`` and the shared files. No network
    I/O; files are read only when they exist. A broken setting (unknown profile, missing
    services section, bad value) is a one-line ConfigError, where botocore would fail
    every request. ``profile``: the one a connection names (wins over AWS_PROFILE)."""
    env = environ
    profile_var = "option 'profile'" if profile is not None else ""
    for var in ("AWS_DEFAULT_PROFILE", "AWS_PROFILE"):
        if profile is None and var in env:
            profile, profile_var = env[var], var
            break
    config_path = _file_path(env, "AWS_CONFIG_FILE", "~/.aws/config")
    credentials_path = _file_path(env, "AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials")
    profiles, services = _profiles(config_path, credentials_path)
    if profile is not None and profile not in profiles:
        raise ConfigError(
            f"AWS profile {profile!r} (from {profile_var}) is not defined in {config_path} "
            f"or {credentials_path}")
    scoped = profiles.get(profile if profile is not None else "default", {})
    where = f"profile {profile or 'default'!r} in {config_path}"
    s3_section = scoped.get("s3")
    s3_opts: dict[str, Any] = s3_section if isinstance(s3_section, dict) else {}

    def setting(var: str | None, key: str, s3_key: str | None = None) -> tuple[Any, str]:
        """(value, source): the environment variable when set (even empty, as
        botocore), else the profile key, else ``s3_key`` in the profile's s3 block."""
        if var is not None and var in env:
            return env[var], var
        if key in scoped:
            return scoped[key], f"{key} of {where}"
        if s3_key is not None and s3_key in s3_opts:
            return s3_opts[s3_key], f"s3.{s3_key} of {where}"
        return None, ""

    # Endpoint (botocore: ConfiguredEndpointProvider).
    endpoint, endpoint_source = None, ""
    ignore, _ = setting("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "ignore_configured_endpoint_urls")
    if not _is_true(ignore):
        if env.get("AWS_ENDPOINT_URL_S3"):
            endpoint, endpoint_source = env["AWS_ENDPOINT_URL_S3"], "AWS_ENDPOINT_URL_S3"
        elif env.get("AWS_ENDPOINT_URL"):
            endpoint, endpoint_source = env["AWS_ENDPOINT_URL"], "AWS_ENDPOINT_URL"
        else:
            section_name = scoped.get("services")
            if section_name is not None:
                section = services.get(section_name)
                if not section:
                    raise ConfigError(
                        f"{where} uses services section {section_name!r}, which is not "
                        f"defined in {config_path}")
                s3 = section.get("s3")
                if isinstance(s3, dict) and s3.get("endpoint_url"):
                    endpoint = s3["endpoint_url"]
                    endpoint_source = f"s3.endpoint_url of services {section_name!r} in {config_path}"
            if endpoint is None and scoped.get("endpoint_url"):
                endpoint, endpoint_source = scoped["endpoint_url"], f"endpoint_url of {where}"
        if endpoint is not None and not str(endpoint).startswith(("http://", "https://")):
            raise ConfigError(
                f"{endpoint_source} is {endpoint!r}: an endpoint URL starts with http:// or "
                "https://")

    # CA bundle; botocore also honours REQUESTS_CA_BUNDLE when nothing else names one.
    # An empty value is an error (recent botocore refuses it, boto/botocore#3751; older
    # ones silently skipped verification): only skipVerify=true turns checks off.
    ca_bundle, ca_source = setting("AWS_CA_BUNDLE", "ca_bundle")
    if ca_bundle is None and "REQUESTS_CA_BUNDLE" in env:
        ca_bundle, ca_source = env["REQUESTS_CA_BUNDLE"], "REQUESTS_CA_BUNDLE"
    if ca_bundle is not None and not str(ca_bundle).strip():
        raise ConfigError(f"{ca_source} is empty: name a PEM file of trusted CA "
                          "certificates, or unset it")

    # us-east-1: the global endpoint ("legacy") unless configured "regional"; any
    # defaults mode other than legacy makes "regional" the default (botocore's
    # sdk-default-configuration.json).
    regional, regional_source = setting("AWS_S3_US_EAST_1_REGIONAL_ENDPOINT",
                                        "s3_us_east_1_regional_endpoint",
                                        "us_east_1_regional_endpoint")
    if regional is None:
        mode, mode_source = setting("AWS_DEFAULTS_MODE", "defaults_mode")
        mode = "legacy" if mode is None else str(mode).lower()
        if mode not in _DEFAULTS_MODES:
            raise ConfigError(f"{mode_source} is {mode!r}: use one of "
                              + ", ".join(_DEFAULTS_MODES))
        us_east_1_regional = mode != "legacy"
    elif str(regional) in ("legacy", "regional"):
        us_east_1_regional = regional == "regional"
    else:
        raise ConfigError(f"{regional_source} is {regional!r}: use legacy or regional")

    # What only botocore does: endpoint variants the fast path does not build.
    reasons: dict[str, str] = {}
    for what, (value, source) in (
            ("FIPS endpoints", setting("AWS_USE_FIPS_ENDPOINT", "use_fips_endpoint")),
            ("dual-stack endpoints",
             setting("AWS_USE_DUALSTACK_ENDPOINT", "use_dualstack_endpoint")),
            ("dual-stack endpoints", (s3_opts.get("use_dualstack_endpoint"),
                                      f"s3.use_dualstack_endpoint of {where}")),
            ("transfer acceleration", (s3_opts.get("use_accelerate_endpoint"),
                                       f"s3.use_accelerate_endpoint of {where}"))):
        if _is_true(value):
            reasons.setdefault(what, f"{what} ({source})")
    region = scoped.get("region") or None
    return AWSSettings(profile, endpoint, endpoint_source, region, ca_bundle, ca_source,
                       us_east_1_regional, "; ".join(reasons.values()) or None)


def default_ca_bundle() -> str | None:
    """The CA file botocore trusts when nothing is configured: certifi's bundle when
    certifi is installed, else the ``cacert.pem`` botocore ships (found without importing
    botocore). None only when neither exists (then both paths use the system store)."""
    from importlib.util import find_spec  # once per process: the CA file to verify with

    try:
        spec = find_spec("certifi")
    except (ImportError, ValueError):
        spec = None
    if spec is not None:
        import certifi  # type: ignore[import-not-found,unused-ignore]

        return str(certifi.where())
    try:
        spec = find_spec("botocore")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.origin:
        path = os.path.join(os.path.dirname(spec.origin), "cacert.pem")
        if os.path.isfile(path):
            return path
    return None
