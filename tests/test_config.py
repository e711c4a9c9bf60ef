"""Option parsing and precedence (keyword > URI > environment > default)."""

from __future__ import annotations

import pytest

from litevfs.config import FIELDS, Config, parse_duration, parse_size
from litevfs.errors import ConfigError

URL = "memory://db"


def test_defaults_match_the_table() -> None:
    config = Config.resolve({"replica_url": URL})
    defaults = {k: v for k, v in Config(URL).as_dict().items() if k != "replica_url"}
    table = {f.name: f.default for f in FIELDS if f.name != "replica_url"}
    assert defaults == table
    assert config.poll_interval == 1.0 and config.cache_size == 64 * 1024**2


@pytest.mark.parametrize("text, seconds", [
    ("1s", 1.0), ("500ms", 0.5), ("1m30s", 90.0), ("1.5s", 1.5), ("2h", 7200.0),
    ("250us", 0.00025), ("0", 0.0), (2, 2.0), (0.25, 0.25),
])
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["1", "abc", "1x", "s", "-1s", "", True])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


@pytest.mark.parametrize("text, size", [
    ("64MiB", 64 << 20), ("10MB", 10_000_000), ("4096", 4096), ("1GiB", 1 << 30),
    ("512k", 512 << 10), ("1.5KiB", 1536), (100, 100),
])
def test_sizes(text: object, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["64 parsecs", "MiB", "-5", "1e3", False])
def test_bad_sizes(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_size(bad)


def test_precedence_keyword_uri_env_default() -> None:
    env = {"LITEVFS_POLL_INTERVAL": "3s", "LITEVFS_CACHE_SIZE": "1MiB", "LITESTREAM_REPLICA_URL": URL}
    uri = {"poll_interval": "2s", "read_ahead": "0"}
    config = Config.resolve({"poll_interval": "1s"}, uri, env)
    assert config.poll_interval == 1.0  # keyword beats URI and env
    assert config.read_ahead == 0  # URI beats default
    assert config.cache_size == 1 << 20  # env beats default
    assert config.replica_url == URL  # LITESTREAM_REPLICA_URL honoured
    assert Config.resolve(None, uri, env).poll_interval == 2.0  # URI beats env


def test_litestream_env_names() -> None:
    env = {"LITESTREAM_REPLICA_URL": "s3://b/p", "LITESTREAM_LOG_LEVEL": "debug"}
    config = Config.resolve(env=env)
    assert config.replica_url == "s3://b/p" and config.log_level == "DEBUG"


def test_sqlite_uri_keys_pass_through() -> None:
    config = Config.resolve(None, {"vfs": "litevfs", "mode": "ro", "replica_url": URL})
    assert config.replica_url == URL


@pytest.mark.parametrize("kind", ["keyword", "uri"])
def test_unknown_option_is_named(kind: str) -> None:
    given = {"replica_url": URL, "pol_interval": "1s"}
    with pytest.raises(ConfigError, match="pol_interval"):
        Config.resolve(given) if kind == "keyword" else Config.resolve(None, given)


@pytest.mark.parametrize("source", ["keyword", "uri", "env"])
def test_malformed_value_is_named(source: str) -> None:
    if source == "env":
        with pytest.raises(ConfigError, match="LITEVFS_CACHE_SIZE"):
            Config.resolve({"replica_url": URL}, env={"LITEVFS_CACHE_SIZE": "lots"})
    else:
        given = {"replica_url": URL, "cache_size": "lots"}
        with pytest.raises(ConfigError, match="cache_size"):
            Config.resolve(given) if source == "keyword" else Config.resolve(None, given)


def test_missing_replica_url() -> None:
    with pytest.raises(ConfigError, match="LITESTREAM_REPLICA_URL"):
        Config.resolve({}, {}, {})
