"""A result computed on another thread: the part of ``concurrent.futures.Future`` a cold
open uses before its first request is sent (``concurrent.futures`` imports ``logging``,
which imports traceback, tokenize and more: milliseconds that would delay that request)."""

from __future__ import annotations

import threading

TYPE_CHECKING = False  # not typing's: importing typing costs ~5 ms on the open's path
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


class Pending:
    """Set once (result or exception) by its worker, read by any number of waiters."""

    __slots__ = ("_done", "_value", "_error")

    def __init__(self) -> None:
        self._done = threading.Event()
        self._value: Any = None
        self._error: BaseException | None = None

    def set_result(self, value: Any) -> None:
        self._value = value
        self._done.set()

    def set_exception(self, error: BaseException) -> None:
        self._error = error
        self._done.set()

    def done(self) -> bool:
        return self._done.is_set()

    def cancel(self) -> bool:
        """Always False: a request already on its way is never taken back; an unwanted
        result is simply dropped."""
        return False

    def result(self, timeout: float | None = None) -> Any:
        if not self._done.wait(timeout):
            raise TimeoutError(f"no result within {timeout:g} s")
        if self._error is not None:
            raise self._error
        return self._value


def run_on_thread(fn: Callable[..., Any], *args: Any, name: str) -> Pending:
    """``fn(*args)`` on a new daemon thread, started now."""
    pending = Pending()

    def run() -> None:
        try:
            result = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to whoever waits
            pending.set_exception(exc)
        else:
            pending.set_result(result)

    threading.Thread(target=run, name=name, daemon=True).start()
    return pending
