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
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.rig.seaweed import SeaweedServer, s3_replica_url, unique_bucket_name

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
    """A fresh bucket (left in place: the server and its data go at session end)."""
    return seaweed.create_bucket(unique_bucket_name())


@pytest.fixture
def s3_url(seaweed: SeaweedServer, s3_bucket: str) -> str:
    return s3_replica_url(s3_bucket, S3_PREFIX, seaweed.endpoint, seaweed.region)
