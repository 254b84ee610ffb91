"""Retrying only what is safe to repeat, with jittered backoff bounded by a deadline."""

from __future__ import annotations

import asyncio
import random

import pytest

from eventcore.resilience import CALL_RETRY, retry_call, safe_to_repeat
from eventcore.retry import RetryPolicy

QUICK = RetryPolicy(max_attempts=4, initial_delay=0.0)


class Flaky:
    """Fails ``failures`` times, then answers how many attempts it took."""

    def __init__(self, failures: int, error: Exception | None = None) -> None:
        self.failures = failures
        self.error = error or ConnectionError("refused")
        self.attempts = 0

    async def __call__(self) -> int:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise self.error
        return self.attempts


class Longest(random.Random):
    """Jitter that always draws the longest wait the policy allows."""

    def uniform(self, a: float, b: float) -> float:
        return b


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "get", "Put"])
def test_idempotent_methods_are_safe_to_repeat(method: str) -> None:
    assert safe_to_repeat(method)


@pytest.mark.parametrize("method", ["POST", "PATCH", "post", "CONNECT"])
def test_other_methods_are_not_safe_without_a_key(method: str) -> None:
    assert not safe_to_repeat(method, [("Content-Type", "application/json")])


@pytest.mark.parametrize("name", ["Idempotency-Key", "idempotency-key", "IDEMPOTENCY-KEY"])
def test_an_idempotency_key_makes_any_request_safe(name: str) -> None:
    assert safe_to_repeat("POST", [(name, "order-7")])


def test_an_empty_idempotency_key_is_no_key() -> None:
    assert not safe_to_repeat("POST", [("Idempotency-Key", "  ")])


async def test_a_safe_call_is_tried_again_until_it_succeeds() -> None:
    flaky = Flaky(failures=2)

    assert await retry_call(flaky, safe=True, policy=QUICK) == 3


async def test_an_unsafe_call_runs_once() -> None:
    flaky = Flaky(failures=1)

    with pytest.raises(ConnectionError):
        await retry_call(flaky, safe=False, policy=QUICK)

    assert flaky.attempts == 1


async def test_the_last_error_is_raised_as_it_was_after_the_last_attempt() -> None:
    error = ConnectionError("still refused")
    flaky = Flaky(failures=10, error=error)

    with pytest.raises(ConnectionError) as raised:
        await retry_call(flaky, safe=True, policy=QUICK)

    assert raised.value is error
    assert flaky.attempts == QUICK.max_attempts


async def test_an_error_retry_on_refuses_is_raised_at_once() -> None:
    flaky = Flaky(failures=1, error=ValueError("a bug, not an outage"))

    with pytest.raises(ValueError, match="a bug"):
        await retry_call(
            flaky,
            safe=True,
            policy=QUICK,
            retry_on=lambda error: isinstance(error, ConnectionError),
        )

    assert flaky.attempts == 1


async def test_no_wait_is_begun_that_would_end_past_the_deadline() -> None:
    policy = RetryPolicy(max_attempts=5, initial_delay=0.01, max_delay=60.0, multiplier=100)
    flaky = Flaky(failures=10)
    deadline = asyncio.get_running_loop().time() + 30.0

    # Waits of 0.01 s, then 1 s fit; the next, 100 s, would end past the deadline.
    with pytest.raises(ConnectionError):
        await retry_call(flaky, safe=True, policy=policy, deadline=deadline, rng=Longest())

    assert flaky.attempts == 3
    assert asyncio.get_running_loop().time() < deadline


def test_the_client_default_waits_briefly_and_tries_three_times() -> None:
    assert CALL_RETRY.max_attempts == 3
    assert [CALL_RETRY.ceiling(n) for n in (1, 2)] == [0.1, 0.2]
