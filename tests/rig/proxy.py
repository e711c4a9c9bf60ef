"""A TCP proxy on 127.0.0.1 that adds latency, for honest cold-start benchmarks.

    proxy = LatencyProxy(target_port=s3.port, delay_s=0.010).start()   # 20 ms RTT
    endpoint = f"http://127.0.0.1:{proxy.port}"
    ...
    proxy.stop()

Every chunk read from one side is written to the other ``delay_s`` later (each
direction separately), in order. Chunks are pipelined, so the delay models latency,
not bandwidth: a stream of chunks arrives ``delay_s`` late but at full speed. The
proxy runs an asyncio loop in a daemon thread and only ever connects to 127.0.0.1.

Counters: ``connections`` (accepted so far), ``active``, ``bytes_up`` (client to
target), ``bytes_down``. Fault hooks: ``delay_s`` may be changed while running;
``reset_connections()`` aborts every open connection; ``refuse`` = True closes new
connections at once.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from typing import Any

HOST = "127.0.0.1"
MAX_BUFFERED = 8 << 20  # per direction and connection


class LatencyProxy:
    def __init__(self, target_port: int, delay_s: float = 0.010, *, port: int = 0,
                 target_host: str = HOST) -> None:
        if target_host not in ("127.0.0.1", "localhost"):
            raise ValueError("the proxy only forwards to 127.0.0.1")
        self.target_host = HOST
        self.target_port = target_port
        self.delay_s = delay_s
        self.refuse = False
        self._want_port = port
        self.port: int | None = None
        self.connections = 0
        self.active = 0
        self.bytes_up = 0
        self.bytes_down = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._conns: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter | None]] = set()
        self._lock = threading.Lock()

    # -- public ---------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> "LatencyProxy":
        if self._thread is not None:
            raise RuntimeError("already started")
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True,
                                        name=f"LatencyProxy->{self.target_port}")
        self._thread.start()
        ready.wait()
        fut = asyncio.run_coroutine_threadsafe(self._start_server(), self._loop)
        fut.result(timeout=10)
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=10)
        except Exception:
            pass
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
        self._loop = self._thread = None

    def reset_connections(self) -> None:
        """Abort every open connection (both sides see a reset/EOF)."""
        if self._loop is None:
            return

        def abort() -> None:
            for cw, uw in list(self._conns):
                for w in (cw, uw):
                    if w is not None:
                        w.transport.abort()
        self._loop.call_soon_threadsafe(abort)

    def reset_counters(self) -> None:
        with self._lock:
            self.connections = 0
            self.bytes_up = self.bytes_down = 0

    def stats(self) -> dict[str, Any]:
        return {"connections": self.connections, "active": self.active,
                "bytes_up": self.bytes_up, "bytes_down": self.bytes_down,
                "delay_s": self.delay_s}

    def __enter__(self) -> "LatencyProxy":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- loop side ------------------------------------------------------------------

    def _run(self, ready: threading.Event) -> None:
        assert self._loop is not None
        asyncio.set_event_loop(self._loop)
        self._loop.call_soon(ready.set)
        self._loop.run_forever()

    async def _start_server(self) -> None:
        self._server = await asyncio.start_server(self._handle, HOST, self._want_port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for cw, uw in list(self._conns):
            for w in (cw, uw):
                if w is not None:
                    w.transport.abort()
        if self._server is not None:
            try:
                await asyncio.wait_for(self._server.wait_closed(), 2)
            except (asyncio.TimeoutError, Exception):
                pass
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _handle(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        with self._lock:
            self.connections += 1
        if self.refuse:
            cwriter.transport.abort()
            return
        try:
            ureader, uwriter = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            cwriter.transport.abort()
            return
        entry = (cwriter, uwriter)
        self._conns.add(entry)
        self.active += 1
        try:
            await asyncio.gather(
                self._pump(creader, uwriter, up=True),
                self._pump(ureader, cwriter, up=False),
            )
        finally:
            self.active -= 1
            self._conns.discard(entry)
            for w in (cwriter, uwriter):
                w.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    *, up: bool) -> None:
        """Read chunks, deliver each ``delay_s`` after it arrived, in order."""
        queue: deque[tuple[float, bytes | None]] = deque()
        wake = asyncio.Event()
        room = asyncio.Event()  # backpressure: at most MAX_BUFFERED bytes in flight
        room.set()
        buffered = 0

        async def deliver() -> None:
            nonlocal buffered
            while True:
                while not queue:
                    wake.clear()
                    await wake.wait()
                due, chunk = queue[0]
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                queue.popleft()
                if chunk is not None:
                    buffered -= len(chunk)
                    if buffered <= MAX_BUFFERED:
                        room.set()
                if chunk is None:
                    if writer.can_write_eof() and not writer.transport.is_closing():
                        try:
                            writer.write_eof()
                        except OSError:
                            pass
                    return
                writer.write(chunk)
                try:
                    await writer.drain()
                except (ConnectionError, OSError):
                    return

        sender = asyncio.ensure_future(deliver())
        try:
            while True:
                try:
                    chunk = await reader.read(65536)
                except (ConnectionError, OSError):
                    chunk = b""
                due = time.monotonic() + self.delay_s
                if not chunk:
                    queue.append((due, None))
                    wake.set()
                    break
                with self._lock:
                    if up:
                        self.bytes_up += len(chunk)
                    else:
                        self.bytes_down += len(chunk)
                queue.append((due, chunk))
                buffered += len(chunk)
                wake.set()
                if buffered > MAX_BUFFERED:
                    room.clear()
                    await room.wait()
            await sender
        finally:
            if not sender.done():
                sender.cancel()
