"""Background work: ``Worker`` (a thread around a testable step, for polling, syncing,
hydration, compaction, verification and the disk cache's writes) and ``settle`` (hand an
in-flight fetch's outcome to its waiters)."""

from __future__ import annotations

import threading
import time

TYPE_CHECKING = False  # typing stays off the cold-open import path
if TYPE_CHECKING:
    from collections.abc import Callable
    from concurrent.futures import Future
    from typing import TypeVar

    T = TypeVar("T")


def settle(pending: Future[T], fn: Callable[[], T]) -> T:
    """Run ``fn`` for the owner of an in-flight fetch and hand its outcome (result or
    exception) to every waiter on ``pending``."""
    try:
        result = fn()
    except BaseException as exc:
        pending.set_exception(exc)
        raise
    pending.set_result(result)
    return result


class Worker:
    """The one background pattern: a daemon thread around a plain, testable ``step()``.

    ``step()`` does one unit of work and returns how long to wait before the next one
    (0: at once; None: the loop ends). A step that raises goes to ``on_error()``, which
    logs and returns the wait before retrying (backoff lives there). ``wake()`` ends a
    wait early; ``stop()`` ends the loop and joins the thread (never from the loop's own
    thread). Tests call ``step()`` directly, without threads.
    """

    first_wait = 0.0  # seconds before the first step (only stop() cuts it short, not wake())
    stop_timeout = 10.0  # longest stop() waits for a step in progress

    def __init__(self, name: str = "") -> None:
        self.thread_name = name
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def step(self) -> float | None:  # pragma: no cover - always overridden
        raise NotImplementedError

    def on_error(self, exc: Exception) -> float | None:
        """A step raised ``exc``: the wait before the next attempt (default: one second)."""
        return 1.0

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def start(self) -> None:
        if self._thread is None and not self._stop.is_set():
            self._thread = threading.Thread(target=self._run, name=self.thread_name,
                                            daemon=True)
            self._thread.start()

    def wait_until(self, idle: Callable[[], bool], timeout: float, lock: object = None,
                   tick: float = 0.005) -> bool:
        """For tests: until ``idle()`` (called under ``lock`` when given) is true, or
        ``timeout`` seconds passed (False)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if lock is None:
                if idle():
                    return True
            else:
                with lock:  # type: ignore[attr-defined]
                    if idle():
                        return True
            time.sleep(tick)
        return False

    def wake(self) -> None:
        """Run the next step now instead of after the current wait."""
        self._wake.set()

    def stop(self) -> None:
        """End the loop and wait (at most ``stop_timeout``) for the thread."""
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=self.stop_timeout)

    def _run(self) -> None:
        if self.first_wait and self._stop.wait(self.first_wait):
            return
        wait: float | None = 0.0
        while not self._stop.is_set():
            if wait:
                self._wake.wait(wait)
                self._wake.clear()
                if self._stop.is_set():
                    return
            try:
                wait = self.step()
            except Exception as exc:  # noqa: BLE001 - on_error decides (log, back off)
                if self._stop.is_set():
                    return
                wait = self.on_error(exc)
            if wait is None:
                return
