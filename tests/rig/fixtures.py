"""pytest fixtures for the real components (SeaweedFS, litestream).

Registered as a plugin by ``tests/conftest.py``. Only this module imports pytest; the
rest of ``tests/rig`` is plain Python so benchmarks can use it too.

Fixtures:

* ``seaweed`` (session): one ``weed mini`` S3 server on 127.0.0.1 for the whole session;
  its credentials are exported to ``os.environ`` (AWS_ACCESS_KEY_ID/SECRET/REGION) while
  it runs, so library code under test finds them.
* ``s3_bucket`` (function): a fresh, uniquely named bucket on it.
* ``s3_url`` (function): ``s3://<bucket>/db?endpoint=http://127.0.0.1:P&region=us-east-1
  &forcePathStyle=true``, Litestream's replica URL form, in that fresh bucket.
* ``litestream_factory`` (function): ``make(db_path, replica, **kw) -> Litestream``,
  started; every one is stopped at teardown.
* ``scenario_factory`` (session): ``get(page_size=4096, kind="s3"|"file",
  version=None) -> Scenario`` (see ``tests/rig/scenarios.py``), built once per
  combination per session and shared: treat the replica as read-only.
* ``latency_proxy`` (function): ``make(target_port, delay_s=0.010) -> LatencyProxy``,
  started; stopped at teardown.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.rig.litestream import Litestream, Replica
from tests.rig.proxy import LatencyProxy
from tests.rig.scenarios import Scenario, build_scenario
from tests.rig.seaweed import SeaweedServer, s3_replica_url

S3_PREFIX = "db"


@pytest.fixture(scope="session")
def seaweed() -> Iterator[SeaweedServer]:
    server = SeaweedServer()
    server.start()
    saved = {k: os.environ.get(k) for k in (
        "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AWS_DEFAULT_REGION",
        "AWS_EC2_METADATA_DISABLED")}
    os.environ["AWS_ACCESS_KEY_ID"] = server.access_key
    os.environ["AWS_SECRET_ACCESS_KEY"] = server.secret_key
    os.environ["AWS_REGION"] = server.region
    os.environ["AWS_DEFAULT_REGION"] = server.region
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    os.environ.pop("AWS_CA_BUNDLE", None)
    try:
        yield server
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
def s3_bucket(seaweed: SeaweedServer) -> str:
    """A fresh, empty bucket, pre-warmed so its first PUT costs no volume allocation
    (left in place: the server and its data go at session end)."""
    return seaweed.warm_bucket()


@pytest.fixture
def s3_url(seaweed: SeaweedServer, s3_bucket: str) -> str:
    return s3_replica_url(s3_bucket, S3_PREFIX, seaweed.endpoint, seaweed.region)


@pytest.fixture
def litestream_factory(tmp_path: Path) -> Iterator[Callable[..., Litestream]]:
    started: list[Litestream] = []

    def make(db_path: str | os.PathLike[str], replica: Replica, **kw: Any) -> Litestream:
        kw.setdefault("workdir", tmp_path / f"litestream-{len(started)}")
        ls = Litestream(db_path, replica, **kw)
        started.append(ls)
        return ls.start()

    yield make
    for ls in started:
        ls.stop()


@pytest.fixture(scope="session")
def scenario_factory(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
) -> Callable[..., Scenario]:
    cache: dict[tuple[int, str, str | None], Scenario] = {}

    def get(page_size: int = 4096, kind: str = "s3", version: str | None = None) -> Scenario:
        key = (page_size, kind, version)
        if key not in cache:
            work = tmp_path_factory.mktemp(f"scenario-{kind}-{page_size}-{version or 'default'}")
            if kind == "s3":
                target: Any = request.getfixturevalue("seaweed")
            elif kind == "file":
                target = work / "replica"
            else:
                raise ValueError(f"kind must be 's3' or 'file', not {kind!r}")
            cache[key] = build_scenario(target, page_size, work / "work", version=version)
        return cache[key]

    return get


@pytest.fixture
def latency_proxy() -> Iterator[Callable[..., LatencyProxy]]:
    proxies: list[LatencyProxy] = []

    def make(target_port: int, delay_s: float = 0.010) -> LatencyProxy:
        p = LatencyProxy(target_port, delay_s).start()
        proxies.append(p)
        return p

    yield make
    for p in proxies:
        p.stop()
