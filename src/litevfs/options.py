"""The keyword options of ``litevfs.connect`` (and ``litevfs.dbapi2.connect``) as a
``TypedDict``, so editors complete them and type checkers catch a misspelt or mistyped
option. Each key is a row of the README's Options table (``litevfs.config.FIELDS``; a
test keeps the two equal). Strings are accepted wherever the URI form of an option would
be (``"500ms"``, ``"64MiB"``, ``"true"``).
"""

from __future__ import annotations

from typing import TypedDict


class ConnectOptions(TypedDict, total=False):
    """``litevfs.connect(url, **options)``; see ``litevfs.config.FIELDS`` for each one."""

    replica_url: str
    poll_interval: float | str
    cache_size: int | str
    wait_for_replica: float | bool | str
    open_timeout: float | bool | str
    connect_timeout: float | str
    read_timeout: float | str
    read_ahead: int | str
    join_prefetch: bool | str
    fetch_retries: int | str
    hedge_after: float | str
    hedge_max: int | str
    verify: str
    verify_max_size: int | str
    verify_bandwidth: int | str
    verify_share: float | str
    verify_record: str
    cache_dir: str
    cache_dir_size: int | str
    cache_compress: bool | str
    boot_set: str
    poll_max_interval: float | str
    log_level: str
    hydration: bool | str
    hydration_path: str
    hydration_concurrency: int | str
    write: bool | str
    sync_interval: float | str
    buffer_path: str
    buffer_fsync: bool | str
    compaction_levels: str | tuple[float, ...] | list[float]
    snapshot_interval: float | str
    l0_retention: float | str
    snapshot_retention: float | str
    endpoint: str
    region: str
    profile: str
    anonymous: bool | str
    access_key_id: str
    secret_access_key: str
    session_token: str
