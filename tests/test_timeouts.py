"""A stalled S3 endpoint (accepts connections, never answers) fails in about two read
timeouts, not 30 s, and every timeout error names the endpoint. ``connect_timeout``
and ``read_timeout`` are options like the others: keyword, URI parameter, environment
variable, CLI flag. Loopback only."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

import litevfs
from litevfs.config import Config
from litevfs.errors import ConfigError, EndpointUnreachableError, StorageError
from litevfs.storage import open_storage, open_storage_for


class StalledServer:
    """Accepts TCP connections on 127.0.0.1 and never sends a byte."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.held: list[socket.socket] = []
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.held.append(conn)

    def url(self) -> str:
        return f"s3://bucket/db?endpoint={self.endpoint}&region=us-east-1&forcePathStyle=true"

    def close(self) -> None:
        self._stop = True
        self.thread.join()
        for c in self.held:
            c.close()
        self.sock.close()


@pytest.fixture
def stalled(monkeypatch: pytest.MonkeyPatch) -> Iterator[StalledServer]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    server = StalledServer()
    yield server
    server.close()


def _assert_read_timeout(message: str, server: StalledServer, seconds: str) -> None:
    assert f"cannot reach S3 endpoint {server.endpoint}" in message, message
    assert f"read timeout after {seconds}" in message, message


def test_connect_fails_in_two_read_timeouts_naming_the_endpoint(stalled, core) -> None:
    started = time.monotonic()
    with pytest.raises(StorageError) as info:
        litevfs.connect(stalled.url(), impl=core, read_timeout="500ms")
    elapsed = time.monotonic() - started
    assert elapsed < 4, elapsed  # 2 attempts of 0.5 s, not 30 s
    _assert_read_timeout(str(info.value), stalled, "0.5s")


def test_read_timeout_from_the_environment_and_botocore_path(stalled, monkeypatch) -> None:
    monkeypatch.setenv("LITEVFS_READ_TIMEOUT", "0.4")
    for fast in (True, False):  # stdlib reads and botocore's
        storage = open_storage(stalled.url(), fast_reads=fast)
        try:
            assert storage.config.read_timeout == 0.4
            started = time.monotonic()
            with pytest.raises(StorageError) as info:
                storage.list_all()
            assert time.monotonic() - started < 4
            _assert_read_timeout(str(info.value), stalled, "0.4s")
        finally:
            storage.close()


def test_timeout_options_resolve_like_every_option() -> None:
    url = "s3://b/db?endpoint=http://127.0.0.1:9"
    cfg = Config.resolve({"replica_url": url, "connect_timeout": "250ms"},
                         {"read_timeout": "2s"}, {"LITEVFS_CONNECT_TIMEOUT": "9",
                                                   "LITEVFS_READ_TIMEOUT": "9"})
    assert (cfg.connect_timeout, cfg.read_timeout) == (0.25, 2.0)
    cfg = Config.resolve({"replica_url": url}, None, {"LITEVFS_READ_TIMEOUT": "7s"})
    assert (cfg.connect_timeout, cfg.read_timeout) == (3.0, 7.0)
    storage = open_storage_for(cfg._replace(connect_timeout=1.5))
    try:
        assert (storage.config.connect_timeout, storage.config.read_timeout) == (1.5, 7.0)
    finally:
        storage.close()
    open_storage_for(cfg._replace(replica_url="file:///tmp/x")).close()  # no S3 options there
    with pytest.raises(ConfigError, match="read_timeout"):
        Config.resolve({"replica_url": url, "read_timeout": "0"})
    from litevfs.storage.url import parse_replica_url, resolve_s3_config

    with pytest.raises(ConfigError, match="LITEVFS_CONNECT_TIMEOUT"):
        resolve_s3_config(parse_replica_url(url), {}, {"LITEVFS_CONNECT_TIMEOUT": "soon"})


def test_cli_read_timeout_flag(stalled) -> None:
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "litevfs", "ls", stalled.url(),
                           "--read-timeout", "500ms"], capture_output=True, text=True,
                          env={**os.environ}, timeout=60)
    assert time.monotonic() - started < 6
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    _assert_read_timeout(lines[0], stalled, "0.5s")


def test_connect_timeout_names_the_endpoint(monkeypatch) -> None:
    """A listener whose accept queue is full drops new SYNs: connecting times out."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    try:
        for _ in range(8):  # fill the backlog (never accepted)
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            fillers.append(s)
        time.sleep(0.1)
        probe = socket.socket()
        probe.settimeout(0.3)
        try:
            probe.connect(("127.0.0.1", port))
            pytest.skip("this kernel accepts connections beyond the backlog")
        except (TimeoutError, OSError):
            pass
        finally:
            probe.close()
        endpoint = f"http://127.0.0.1:{port}"
        storage = open_storage(f"s3://bucket/db?endpoint={endpoint}&region=us-east-1",
                               connect_timeout=0.3)
        try:
            started = time.monotonic()
            with pytest.raises(EndpointUnreachableError) as info:
                storage.list_all()
            assert time.monotonic() - started < 4
        finally:
            storage.close()
        message = str(info.value)
        assert f"cannot reach S3 endpoint {endpoint}" in message
        assert "connect timeout after 0.3s" in message
    finally:
        for s in fillers:
            s.close()
        server.close()
