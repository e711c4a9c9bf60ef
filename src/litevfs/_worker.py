"""The thin thread around a background step (poll, sync, hydrate): start, wake, stop.

Subclasses implement ``_run`` as a loop that waits on ``self._wake`` and returns once
``self._stop`` is set; the step itself stays a plain method testable without threads.
"""

from __future__ import annotations

import threading

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
    def __init__(self) -> None:
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def _run(self) -> None:  # pragma: no cover - always overridden
        raise NotImplementedError

    def _start_thread(self, name: str) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=name, daemon=True)
            self._thread.start()

    def wake(self) -> None:
        """Run the step now instead of at the next interval."""
        self._wake.set()

    def _stop_thread(self, timeout: float) -> None:
        """Ask the loop to end and wait for it (never from the loop's own thread)."""
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=timeout)
