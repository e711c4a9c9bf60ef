"""A latency proxy that records every HTTP request it carries (for ``queries.py``).

On top of ``tests.rig.proxy.LatencyProxy`` (a delay each way, pipelined), it parses both
directions of each connection as HTTP/1.1 and records, per request: the method, the
path, when the request reached the proxy, when the last byte of its answer is delivered
to the client, and the body bytes. From that:

* ``requests`` and ``bytes`` of a window;
* ``rounds``: sequential request rounds, the longest chain of requests in which each
  one started after the previous one's answer had been delivered (requests that run
  in parallel share a round; background requests that overlap do not add any).

Only 127.0.0.1 is ever contacted (the base class refuses anything else).
"""

from __future__ import annotations

import bisect
import contextvars
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from tests.rig.proxy import LatencyProxy

_CONN: contextvars.ContextVar[_Conn | None] = contextvars.ContextVar("timeline_conn",
                                                                     default=None)
EPSILON = 0.0005  # s: a request sent on receipt of an answer counts as after it


@dataclass
class Request:
    method: str
    path: str
    start: float
    end: float | None = None
    bytes: int = 0


@dataclass
class Window:
    requests: list[Request] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.requests)

    @property
    def bytes(self) -> int:
        return sum(r.bytes for r in self.requests)

    def kinds(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.requests:
            kind = "LIST" if r.method == "GET" and ("list-type" in r.path or r.path.endswith("/")
                                                    and "?" in r.path) else r.method
            out[kind] = out.get(kind, 0) + 1
        return out

    @property
    def rounds(self) -> int:
        return sequential_rounds(self.requests)


def sequential_rounds(requests: list[Request]) -> int:
    """Length of the longest chain of requests, each started after the previous ended."""
    reqs = sorted(requests, key=lambda r: r.start)
    done_ends: list[float] = []  # ends of requests whose depth is known, sorted
    best_upto: list[int] = []  # running max of depth over done_ends (same order)
    depth_of: dict[int, int] = {}
    waiting = sorted(range(len(reqs)), key=lambda i: reqs[i].end or float("inf"))
    w = 0
    longest = 0
    for i, r in enumerate(reqs):
        # every request that ended before r started has its depth computed already
        while w < len(waiting) and (reqs[waiting[w]].end or float("inf")) <= r.start + EPSILON:
            j = waiting[w]
            if j not in depth_of:  # started after r (a sub-millisecond answer): later
                break
            done_ends.append(reqs[j].end or 0.0)
            best_upto.append(max(best_upto[-1] if best_upto else 0, depth_of[j]))
            w += 1
        pos = bisect.bisect_right(done_ends, r.start + EPSILON)
        d = 1 + (best_upto[pos - 1] if pos else 0)
        depth_of[i] = d
        longest = max(longest, d)
    return longest


class _Http:
    """Incremental HTTP/1.1 message splitter for one direction of one connection."""

    def __init__(self, requests: bool) -> None:
        self.requests = requests
        self.buf = bytearray()
        self.state = "head"
        self.remaining = 0  # body bytes left (state "body"), or chunk bytes left
        self.status = 0

    def feed(self, data: bytes, on_head: Any, on_done: Any) -> None:
        pos = 0
        if self.state == "body" and not self.buf:  # the common case: count, never copy
            take = min(self.remaining, len(data))
            self.remaining -= take
            self.body += take
            pos = take
            if self.remaining:
                return
            self.state = "head"
            on_done(self.body)
            if pos == len(data):
                return
        self.buf += data[pos:] if pos else data
        while True:
            if self.state == "head":
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = bytes(self.buf[:end]).decode("latin-1")
                del self.buf[:end + 4]
                lines = head.split("\r\n")
                headers = {}
                for line in lines[1:]:
                    k, _, v = line.partition(":")
                    headers[k.strip().lower()] = v.strip()
                length, chunked = on_head(lines[0], headers)
                self.body = 0
                if chunked:
                    self.state = "chunk-size"
                elif length:
                    self.state, self.remaining = "body", length
                else:
                    on_done(0)
            elif self.state == "body":
                take = min(self.remaining, len(self.buf))
                del self.buf[:take]
                self.remaining -= take
                self.body += take
                if self.remaining:
                    return
                self.state = "head"
                on_done(self.body)
            elif self.state == "chunk-size":
                end = self.buf.find(b"\r\n")
                if end < 0:
                    return
                size = int(bytes(self.buf[:end]).split(b";")[0] or b"0", 16)
                del self.buf[:end + 2]
                if size == 0:
                    self.state = "trailers"
                else:
                    self.state, self.remaining = "chunk", size + 2  # data + CRLF
            elif self.state == "chunk":
                take = min(self.remaining, len(self.buf))
                del self.buf[:take]
                self.remaining -= take
                self.body += max(0, take - max(0, 2 - self.remaining))
                if self.remaining:
                    return
                self.state = "chunk-size"
            elif self.state == "trailers":
                end = self.buf.find(b"\r\n")
                if end < 0:
                    return
                line = bytes(self.buf[:end])
                del self.buf[:end + 2]
                if not line:
                    self.state = "head"
                    on_done(self.body)


class _Conn:
    def __init__(self, proxy: TimelineProxy) -> None:
        self.proxy = proxy
        self.pending: deque[Request] = deque()
        self.up = _Http(True)
        self.down = _Http(False)

    def client_bytes(self, data: bytes, now: float) -> None:
        def head(line: str, headers: dict[str, str]) -> tuple[int, bool]:
            method, _, rest = line.partition(" ")
            req = Request(method, rest.rpartition(" ")[0], now)
            self.pending.append(req)
            self.proxy._add(req)
            return (int(headers.get("content-length", 0) or 0),
                    "chunked" in headers.get("transfer-encoding", ""))
        self.up.feed(data, head, lambda n: None)

    def server_bytes(self, data: bytes, due: float) -> None:
        state: dict[str, Any] = {}

        def head(line: str, headers: dict[str, str]) -> tuple[int, bool]:
            status = int(line.split(" ")[1])
            state["interim"] = 100 <= status < 200
            req = self.pending[0] if self.pending else None
            if state["interim"] or status in (204, 304) or (req and req.method == "HEAD"):
                return 0, False
            return (int(headers.get("content-length", 0) or 0),
                    "chunked" in headers.get("transfer-encoding", ""))

        def done(nbytes: int) -> None:
            if state.get("interim") or not self.pending:
                return
            req = self.pending.popleft()
            req.end, req.bytes = due, nbytes

        self.down.feed(data, head, done)


class _Tap:
    def __init__(self, reader: Any, conn: _Conn, up: bool, delay: Any) -> None:
        self._reader, self._conn, self._up, self._delay = reader, conn, up, delay

    async def read(self, n: int = -1) -> bytes:
        chunk = await self._reader.read(n)
        now = time.monotonic()
        if chunk:
            try:
                if self._up:
                    self._conn.client_bytes(chunk, now)
                else:
                    self._conn.server_bytes(chunk, now + self._delay())
            except Exception:  # noqa: BLE001 - a parse problem never breaks the traffic
                pass
        return chunk

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reader, name)


class TimelineProxy(LatencyProxy):
    """``LatencyProxy`` + a timeline of HTTP requests (see the module docstring)."""

    def __init__(self, target_port: int, delay_s: float = 0.010, **kw: Any) -> None:
        super().__init__(target_port, delay_s, **kw)
        self._requests: list[Request] = []
        self._mark = 0
        self._tl_lock = threading.Lock()

    @property
    def requests(self) -> int:
        return len(self._requests)

    def _add(self, req: Request) -> None:
        with self._tl_lock:
            self._requests.append(req)

    def take(self) -> Window:
        """The requests that started since the last ``take()``."""
        with self._tl_lock:
            out = self._requests[self._mark:]
            self._mark = len(self._requests)
        return Window(out)

    async def _handle(self, creader: Any, cwriter: Any) -> None:
        token = _CONN.set(_Conn(self))
        try:
            await super()._handle(creader, cwriter)
        except BaseException:  # noqa: BLE001 - stop() cancels open connections
            pass
        finally:
            _CONN.reset(token)

    async def _pump(self, reader: Any, writer: Any, *, up: bool) -> None:
        conn = _CONN.get()
        if conn is not None:
            reader = _Tap(reader, conn, up, lambda: self.delay_s)
        await super()._pump(reader, writer, up=up)


def start_proxy(target_port: int, rtt_ms: float) -> TimelineProxy:
    return TimelineProxy(target_port, rtt_ms / 2000).start()
