"""An HTTP-aware fault-injecting proxy on 127.0.0.1, in front of the SeaweedFS rig.

    proxy = FaultProxy(seaweed.port, seed=1).start()
    proxy.add(Rule("503", method="GET", probability=0.3, count=20))
    proxy.add(Rule("reset", path=r"/0000/", count=3))
    url = s3_replica_url(bucket, "db", proxy.endpoint)
    ...
    proxy.injected       # Counter: fault kind -> times injected
    proxy.stop()

It reads each request (head and body; answers ``Expect: 100-continue`` itself), asks
the rules whether to inject a fault, and otherwise forwards the request to the server on
a fresh upstream connection (``Connection: close``) and relays the whole answer, keeping
the client's connection alive. Faults:

* ``500`` / ``503`` / ``slowdown``: an S3 XML error answer (InternalError,
  ServiceUnavailable, SlowDown) instead of forwarding;
* ``reset``: the client connection is aborted (RST) before any answer;
* ``stall``: nothing is answered for ``stall_s`` seconds (past the client's read
  timeout), then the connection is aborted;
* ``truncate``: the real answer's head (with its full Content-Length) and only part of
  its body, then an abort;
* ``cut_request``: the request's head and only its first ``keep_bytes`` body bytes go
  to the server, then both connections are aborted: a client killed mid-upload, or a
  network path cut while a PUT's body was on its way;
* ``down`` (proxy attribute, not a rule): every new connection is aborted at once, like
  a server that is not running.

Rules match by method and a regex on the request target, fire with a probability (from
the proxy's seeded RNG), after ``skip`` matching requests, at most ``count`` times, so
every fault test is bounded. Only ever connects to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import random
import re
import socket
import ssl
import struct
import threading
from collections import Counter
from dataclasses import dataclass, field

HOST = "127.0.0.1"
FAULTS = ("500", "503", "slowdown", "reset", "stall", "truncate", "cut_request")
_ERRORS = {
    "500": (500, "InternalError", "We encountered an internal error. Please try again."),
    "503": (503, "ServiceUnavailable", "Service is unable to handle request."),
    "slowdown": (503, "SlowDown", "Please reduce your request rate."),
}
MAX_HEAD = 64 * 1024


@dataclass
class Rule:
    fault: str
    method: str | None = None  # GET, PUT, HEAD, DELETE, POST; None: any
    path: str | None = None  # regex searched in the request target (path and query)
    probability: float = 1.0
    count: int | None = None  # most injections; None: unlimited
    skip: int = 0  # let this many matching requests through first
    stall_s: float = 5.0
    keep_bytes: int = 0  # cut_request: body bytes that still reach the server
    seen: int = field(default=0, init=False)
    injected: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.fault not in FAULTS:
            raise ValueError(f"unknown fault {self.fault!r} (one of {FAULTS})")
        self._re = re.compile(self.path) if self.path else None

    def matches(self, method: str, target: str) -> bool:
        return ((self.method is None or self.method == method)
                and (self._re is None or self._re.search(target) is not None))


def _error_answer(status: int, code: str, message: str) -> bytes:
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
            f"<Message>{message}</Message><RequestId>fault</RequestId></Error>").encode()
    reason = {500: "Internal Server Error", 503: "Service Unavailable"}[status]
    head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    return head + body


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close with an RST (SO_LINGER 0), as a crashed or overloaded server would."""
    sock = writer.get_extra_info("socket")
    try:
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    writer.transport.abort()


def _parse_head(raw: bytes) -> tuple[str, list[tuple[str, str]]]:
    lines = raw.decode("latin-1").split("\r\n")
    headers = []
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers.append((name.strip(), value.strip()))
    return lines[0], headers


def _get(headers: list[tuple[str, str]], name: str) -> str | None:
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


class FaultProxy:
    def __init__(self, target_port: int, *, seed: int = 0, port: int = 0,
                 tls: ssl.SSLContext | None = None) -> None:
        self.target_port = target_port  # may be changed while running (server restart)
        self.tls = tls  # serve HTTPS to the client (plain HTTP to the server)
        self.heads: list[str] = []  # raw request heads, newest last (at most 200)
        self.rules: list[Rule] = []
        self.down = False
        self.rng = random.Random(seed)
        self.requests = 0
        self.injected: Counter[str] = Counter()
        self.events: list[tuple[str, str, str]] = []  # (fault, method, target)
        self._want_port = port
        self.port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._lock = threading.Lock()

    # -- public ---------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        return f"{'https' if self.tls else 'http'}://{HOST}:{self.port}"

    @property
    def total_injected(self) -> int:
        return sum(self.injected.values())

    def add(self, rule: Rule) -> Rule:
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def start(self) -> FaultProxy:
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True,
                                        name="FaultProxy")
        self._thread.start()
        ready.wait()
        asyncio.run_coroutine_threadsafe(self._start_server(), self._loop).result(10)
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(10)
        except Exception:  # noqa: BLE001 - best effort at teardown
            pass
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        self._loop = self._thread = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- loop side ------------------------------------------------------------------
    def _run(self, ready: threading.Event) -> None:
        assert self._loop is not None
        asyncio.set_event_loop(self._loop)
        default = self._loop.default_exception_handler

        def quiet(loop: asyncio.AbstractEventLoop, context: dict) -> None:
            if not isinstance(context.get("exception"), asyncio.CancelledError):
                default(context)  # connections cancelled at stop() are expected
        self._loop.set_exception_handler(quiet)
        self._loop.call_soon(ready.set)
        self._loop.run_forever()

    async def _start_server(self) -> None:
        self._server = await asyncio.start_server(self._handle, HOST, self._want_port,
                                                  ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def _choose(self, method: str, target: str) -> Rule | None:
        with self._lock:
            self.requests += 1
            for rule in self.rules:
                if not rule.matches(method, target):
                    continue
                if rule.count is not None and rule.injected >= rule.count:
                    continue
                rule.seen += 1
                if rule.seen <= rule.skip or self.rng.random() >= rule.probability:
                    continue
                rule.injected += 1
                self.injected[rule.fault] += 1
                self.events.append((rule.fault, method, target))
                return rule
        return None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.down:
            _abort(writer)
            return
        try:
            while await self._one(reader, writer):
                pass
        except (ConnectionError, OSError, asyncio.IncompleteReadError, ssl.SSLError,
                asyncio.LimitOverrunError, ValueError):
            _abort(writer)
        except asyncio.CancelledError:
            _abort(writer)
            raise
        else:
            writer.close()

    async def _read_body(self, reader: asyncio.StreamReader,
                         headers: list[tuple[str, str]]) -> bytes:
        if "chunked" in (_get(headers, "transfer-encoding") or "").lower():
            parts = []
            while True:
                size_line = await reader.readuntil(b"\r\n")
                parts.append(size_line)
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while True:
                        line = await reader.readuntil(b"\r\n")
                        parts.append(line)
                        if line == b"\r\n":
                            return b"".join(parts)
                parts.append(await reader.readexactly(size + 2))
        length = int(_get(headers, "content-length") or 0)
        return await reader.readexactly(length) if length else b""

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one request; False when the connection is finished."""
        try:
            raw = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return False  # the client closed its idle connection
        if len(raw) > MAX_HEAD:
            raise ValueError("request head too large")
        if self.down:  # kept-alive connections die too
            _abort(writer)
            return False
        with self._lock:
            self.heads = self.heads[-199:] + [raw.decode("latin-1")]
        line, headers = _parse_head(raw[:-4])
        method, target = line.split(" ", 2)[:2]
        if (_get(headers, "expect") or "").lower() == "100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            await writer.drain()
            headers = [(k, v) for k, v in headers if k.lower() != "expect"]
        body = await self._read_body(reader, headers)
        rule = self._choose(method, target)
        fault = rule.fault if rule is not None else None
        if fault in _ERRORS:
            writer.write(_error_answer(*_ERRORS[fault]))
            await writer.drain()
            return True
        if fault == "reset":
            _abort(writer)
            return False
        if fault == "stall":
            assert rule is not None
            await asyncio.sleep(rule.stall_s)
            _abort(writer)
            return False
        if fault == "cut_request":
            assert rule is not None
            await self._cut(line, headers, body[:rule.keep_bytes])
            _abort(writer)
            return False
        answer = await self._forward(line, headers, body, method)
        if fault == "truncate":
            head_end = answer.index(b"\r\n\r\n") + 4
            body_len = len(answer) - head_end
            writer.write(answer[:head_end + body_len // 2])
            await writer.drain()
            _abort(writer)
            return False
        writer.write(answer)
        await writer.drain()
        return True

    async def _cut(self, line: str, headers: list[tuple[str, str]], part: bytes) -> None:
        """The head and ``part`` of the body upstream, then the connection dies (the
        server decides what, if anything, to store)."""
        up_r, up_w = await asyncio.open_connection(HOST, self.target_port)
        out = [line] + [f"{k}: {v}" for k, v in headers if k.lower() != "connection"]
        up_w.write(("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + part)
        await up_w.drain()
        await asyncio.sleep(0.2)  # the server has read what it got
        up_w.close()  # FIN, as the kernel closes the sockets of a killed process
        try:
            await up_r.read()
        except (ConnectionError, OSError):
            pass

    async def _forward(self, line: str, headers: list[tuple[str, str]], body: bytes,
                       method: str) -> bytes:
        """Send the request upstream on its own connection; the answer, re-framed for a
        keep-alive client connection."""
        up_r, up_w = await asyncio.open_connection(HOST, self.target_port)
        try:
            out = [line] + [f"{k}: {v}" for k, v in headers if k.lower() != "connection"]
            out.append("Connection: close")
            up_w.write(("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + body)
            await up_w.drain()
            data = await up_r.read()
        finally:
            up_w.close()
        while data.startswith(b"HTTP/1.1 100"):  # an interim answer: drop it
            data = data[data.index(b"\r\n\r\n") + 4:]
        head_end = data.index(b"\r\n\r\n")
        status_line, rheaders = _parse_head(data[:head_end])
        rbody = data[head_end + 4:]
        status = int(status_line.split()[1])
        rheaders = [(k, v) for k, v in rheaders if k.lower() != "connection"]
        chunked = "chunked" in (_get(rheaders, "transfer-encoding") or "").lower()
        if (not chunked and _get(rheaders, "content-length") is None and method != "HEAD"
                and status not in (204, 304)):
            rheaders.append(("Content-Length", str(len(rbody))))
        head = "\r\n".join([status_line] + [f"{k}: {v}" for k, v in rheaders])
        return head.encode("latin-1") + b"\r\n\r\n" + rbody
