"""Retrying a call that failed, only when doing it twice is safe.

``retry_call`` repeats a failed call after a jittered exponential wait
(``eventcore.retry.RetryPolicy``: full jitter, so callers that failed together do not
come back together), but only when the caller says the call is safe to repeat: a
request whose effect is the same however often it arrives. For HTTP that is what
``safe_to_repeat`` tells: an idempotent method (GET, HEAD, OPTIONS, PUT, DELETE) or a
request carrying an ``Idempotency-Key`` header, which the receiving service uses to
run it at most once.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Iterable
from typing import Final, TypeVar

from eventcore.retry import RetryPolicy

__all__ = [
    "CALL_RETRY",
    "IDEMPOTENCY_KEY",
    "IDEMPOTENT_METHODS",
    "retry_call",
    "safe_to_repeat",
]

T = TypeVar("T")

#: HTTP methods whose effect is the same however often a request is repeated (RFC 9110
#: §9.2.2). POST and PATCH are not among them.
IDEMPOTENT_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
#: The header that makes any request safe to repeat: the service runs a key once.
IDEMPOTENCY_KEY: Final = "Idempotency-Key"
#: How a service client retries by default: three attempts in all, waiting up to
#: 0.1 s, then up to 0.2 s; short enough to fit a call's deadline.
CALL_RETRY: Final = RetryPolicy(max_attempts=3, initial_delay=0.1, max_delay=2.0)

# One generator for every call that brings none: jitter needs spread, not reproducibility.
_RANDOM = random.Random()


def safe_to_repeat(method: str, headers: Iterable[tuple[str, str]] = ()) -> bool:
    """Whether an HTTP request may be sent again: an idempotent method, or a non-empty
    ``Idempotency-Key`` header among ``headers`` (name, value pairs; names in any case)."""
    if method.upper() in IDEMPOTENT_METHODS:
        return True
    key = IDEMPOTENCY_KEY.lower()
    return any(name.lower() == key and value.strip() for name, value in headers)


def _every_error(error: Exception) -> bool:
    return True


async def retry_call(
    attempt: Callable[[], Awaitable[T]],
    *,
    safe: bool,
    policy: RetryPolicy = CALL_RETRY,
    retry_on: Callable[[Exception], bool] = _every_error,
    deadline: float | None = None,
    rng: random.Random | None = None,
) -> T:
    """``await attempt()``, again after a failure while ``policy`` allows, ``retry_on``
    says the error is worth another try, and the call is ``safe`` to repeat.

    A call that is not safe runs once. ``deadline`` (the event loop's clock) is when the
    caller stops waiting: no wait that would end past it is begun, and the last error is
    raised instead. The last error is always raised as it was, never wrapped.
    """
    loop = asyncio.get_running_loop()
    jitter = rng if rng is not None else _RANDOM
    number = 1
    while True:
        try:
            return await attempt()
        except Exception as error:
            if not safe or number >= policy.max_attempts or not retry_on(error):
                raise
            delay = policy.delay(number, jitter)
            if deadline is not None and loop.time() + delay >= deadline:
                raise
        await asyncio.sleep(delay)
        number += 1
