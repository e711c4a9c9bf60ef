"""The one background pattern (``_worker.Worker``): a thread around ``step()``."""

from __future__ import annotations

import threading
import time

from litevfs._worker import Worker


class Recorder(Worker):
    def __init__(self, waits: list[float | None], first_wait: float = 0.0) -> None:
        super().__init__("test-worker")
        self.first_wait = first_wait
        self.waits = list(waits)
        self.calls: list[float] = []
        self.errors: list[Exception] = []
        self.done = threading.Event()

    def step(self) -> float | None:
        self.calls.append(time.monotonic())
        if not self.waits:
            self.done.set()
            return None
        wait = self.waits.pop(0)
        if wait is None:
            self.done.set()
            return None
        if wait < 0:
            raise RuntimeError("boom")
        return wait

    def on_error(self, exc: Exception) -> float:
        self.errors.append(exc)
        return 0.0


def test_steps_run_until_one_returns_none() -> None:
    w = Recorder([0.0, 0.0, None])
    w.start()
    assert w.done.wait(5)
    w.stop()
    assert len(w.calls) == 3


def test_an_error_goes_to_on_error_and_the_loop_goes_on() -> None:
    w = Recorder([-1, 0.0, None])
    w.start()
    assert w.done.wait(5)
    w.stop()
    assert len(w.errors) == 1 and len(w.calls) == 3


def test_wake_cuts_a_wait_short_but_not_the_first_wait() -> None:
    """The verifier's start delay keeps a cold open's first queries ahead of the
    background CRC stream; schedule() wakes the worker, which must not skip it."""
    w = Recorder([30.0, None], first_wait=0.4)
    started = time.monotonic()
    w.start()
    w.wake()  # during the first wait: ignored
    time.sleep(0.1)
    assert not w.calls
    deadline = time.monotonic() + 5
    while not w.calls and time.monotonic() < deadline:
        time.sleep(0.01)
    assert w.calls and w.calls[0] - started >= 0.35
    w.wake()  # during the 30 s wait: the next step runs now
    assert w.done.wait(5)
    w.stop()


def test_stop_ends_the_first_wait_and_joins() -> None:
    w = Recorder([None], first_wait=30.0)
    w.start()
    t0 = time.monotonic()
    w.stop()
    assert time.monotonic() - t0 < 2 and not w.calls
