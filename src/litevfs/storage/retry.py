"""The one retry policy for storage requests: exponential backoff with equal jitter,
bounded both in attempts and in total time.

botocore's own retries are switched off in the S3 backend so this is the only policy:
one place decides what is retryable, and every retry is counted in ``stats.retries``.
"""

from __future__ import annotations

import time
from collections import namedtuple
from collections.abc import Callable

from ..errors import TransientStorageError

TYPE_CHECKING = False  # not typing's: importing typing costs ~5 ms on the open's path
if TYPE_CHECKING:
    import random
    from typing import TypeVar

    T = TypeVar("T")


class Retryable(Exception):
    """Raised inside a retried operation to ask for another attempt. ``cause`` is what
    went wrong (shown in the final TransientStorageError); ``retry`` False means give up
    at once (e.g. a short read that the object's size proves deterministic)."""

    def __init__(self, message: str, *, retry: bool = True, timeout: bool = False) -> None:
        super().__init__(message)
        self.retry = retry
        self.timeout = timeout  # the endpoint did not answer in time


MAX_TIMEOUTS = 2  # a request that timed out twice is not tried again: a stalled endpoint
# would otherwise cost every attempt's full read timeout before anyone hears of it


class RetryPolicy(namedtuple("RetryPolicy", ("max_attempts", "base_delay", "max_delay",
                                             "max_elapsed"), defaults=(5, 0.05, 2.0, 20.0))):
    """``base_delay``: seconds before the first retry (before jitter); ``max_delay``:
    cap of one backoff sleep; ``max_elapsed``: no new attempt starts after this many
    seconds. (A named tuple: this module is imported before a cold open's first
    request, and ``dataclasses`` costs more to import than that request to build.)"""

    __slots__ = ()

    def delay(self, retry_number: int, rng: random.Random | None = None) -> float:
        """Sleep before retry ``retry_number`` (1-based): "equal jitter", a uniform draw
        from half the exponential ceiling up to the ceiling. The random half keeps many
        clients failing together from retrying in lock-step; the fixed half keeps a retry
        from following its failure almost at once (full jitter, ``uniform(0, c)``, can
        draw ~0 and spend an attempt on a server that has not recovered)."""
        ceiling = min(self.max_delay, self.base_delay * (2 ** (retry_number - 1)))
        if rng is None:
            import random  # lazy: only retries need it (cold-start import time)

            return random.uniform(ceiling / 2, ceiling)
        return rng.uniform(ceiling / 2, ceiling)


DEFAULT_POLICY = RetryPolicy()
NO_RETRY = RetryPolicy(max_attempts=1)


def call_with_retry(
    operation: Callable[[], T],
    *,
    what: str,
    policy: RetryPolicy = DEFAULT_POLICY,
    on_retry: Callable[[], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Run ``operation`` until it returns; it raises :class:`Retryable` for transient
    failures. Any other exception propagates at once. When attempts or time run out the
    last transient failure becomes a :class:`TransientStorageError` naming ``what``."""
    start = clock()
    attempt = timeouts = 0
    while True:
        attempt += 1
        try:
            return operation()
        except Retryable as exc:
            last = exc
        timeouts += last.timeout
        out_of_attempts = attempt >= policy.max_attempts or timeouts >= MAX_TIMEOUTS
        delay = policy.delay(attempt)
        out_of_time = clock() - start + delay > policy.max_elapsed
        if not last.retry or out_of_attempts or out_of_time:
            if attempt == 1:
                message = f"{what}: {last}"
            else:
                message = f"{what} failed after {attempt} attempts: {last}"
            raise TransientStorageError(message) from (last.__cause__ or last)
        if on_retry is not None:
            on_retry()
        sleep(delay)
