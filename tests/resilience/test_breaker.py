"""The circuit breaker's rules, one at a time, on a fake clock (``call_timeout`` alone runs
on the event loop's clock)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from eventcore.errors import CallTimeout, CircuitOpen, CommandRejected, InvalidInput
from eventcore.resilience import (
    BreakerPolicy,
    BreakerState,
    CircuitBreaker,
    StateChange,
)
from tests.resilience.clock import FakeClock

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


class Down(Exception):
    """The target failed."""


async def ok() -> str:
    return "ok"


async def fail() -> None:
    raise Down("the target is down")


async def fail_times(breaker: CircuitBreaker, n: int) -> None:
    for _ in range(n):
        with pytest.raises(Down):
            await breaker.call(fail)


async def succeed_times(breaker: CircuitBreaker, n: int) -> None:
    for _ in range(n):
        assert await breaker.call(ok) == "ok"


def breaker_with(clock: FakeClock, **policy: Any) -> CircuitBreaker:
    settings = {"minimum_calls": 100, "consecutive_failures": 100, "max_samples": 100}
    return CircuitBreaker("payments", BreakerPolicy(**(settings | policy)), clock=clock)


async def opened(clock: FakeClock, **policy: Any) -> CircuitBreaker:
    breaker = breaker_with(clock, consecutive_failures=1, **policy)
    await fail_times(breaker, 1)
    assert breaker.state is OPEN
    return breaker


# --- closed: what opens the circuit ----------------------------------------------------


async def test_consecutive_failures_open_a_quiet_target(clock: FakeClock) -> None:
    breaker = breaker_with(clock, consecutive_failures=3)

    await fail_times(breaker, 2)
    assert breaker.state is CLOSED
    await fail_times(breaker, 1)

    assert breaker.state is OPEN


async def test_a_success_ends_a_run_of_failures(clock: FakeClock) -> None:
    breaker = breaker_with(clock, consecutive_failures=3)

    await fail_times(breaker, 2)
    await succeed_times(breaker, 1)
    await fail_times(breaker, 2)

    assert breaker.state is CLOSED
    assert breaker.stats().consecutive_failures == 2


async def test_the_failure_ratio_opens_once_the_window_holds_enough_calls(
    clock: FakeClock,
) -> None:
    breaker = breaker_with(clock, minimum_calls=4, failure_ratio=0.5)

    await succeed_times(breaker, 2)
    await fail_times(breaker, 1)
    assert breaker.state is CLOSED  # 3 calls: too few to judge
    await fail_times(breaker, 1)

    assert breaker.state is OPEN  # 2 of 4 failed


async def test_the_ratio_below_the_threshold_keeps_it_closed(clock: FakeClock) -> None:
    breaker = breaker_with(clock, minimum_calls=4, failure_ratio=0.5)

    await succeed_times(breaker, 3)
    await fail_times(breaker, 2)

    assert breaker.state is CLOSED  # 2 of 5 failed
    assert (breaker.stats().calls, breaker.stats().failures) == (5, 2)


async def test_failures_below_minimum_calls_do_not_open_on_ratio(clock: FakeClock) -> None:
    breaker = breaker_with(clock, minimum_calls=5, failure_ratio=0.5)

    await fail_times(breaker, 4)

    assert breaker.state is CLOSED


async def test_outcomes_leave_the_window_when_it_has_passed(clock: FakeClock) -> None:
    breaker = breaker_with(clock, window=10.0, consecutive_failures=3)

    await fail_times(breaker, 2)
    clock.advance(10.0)  # exactly the window: those two have left it
    await fail_times(breaker, 2)

    assert breaker.state is CLOSED
    assert breaker.stats().calls == 2
    await fail_times(breaker, 1)
    assert breaker.state is OPEN


async def test_outcomes_within_the_window_still_count(clock: FakeClock) -> None:
    breaker = breaker_with(clock, window=10.0, consecutive_failures=3)

    await fail_times(breaker, 2)
    clock.advance(9.5)
    await fail_times(breaker, 1)

    assert breaker.state is OPEN


async def test_the_window_keeps_at_most_max_samples(clock: FakeClock) -> None:
    breaker = breaker_with(
        clock, minimum_calls=4, failure_ratio=0.75, consecutive_failures=4, max_samples=4
    )

    await fail_times(breaker, 2)
    await succeed_times(breaker, 4)  # pushes both failures out
    await fail_times(breaker, 2)

    assert breaker.stats().calls == 4
    assert breaker.stats().failures == 2
    assert breaker.state is CLOSED


# --- open ------------------------------------------------------------------------------


async def test_an_open_circuit_fails_fast_without_calling(clock: FakeClock) -> None:
    breaker = await opened(clock, reset_timeout=10.0)
    called = False

    async def target() -> None:
        nonlocal called
        called = True

    clock.advance(4.0)
    with pytest.raises(CircuitOpen) as refused:
        await breaker.call(target)

    assert called is False
    assert refused.value.target == "payments"
    assert refused.value.state == "open"
    assert refused.value.retry_after == pytest.approx(6.0)
    assert "payments" in str(refused.value)
    assert "6 s" in str(refused.value)


async def test_it_half_opens_after_the_reset_timeout(clock: FakeClock) -> None:
    breaker = await opened(clock, reset_timeout=10.0)

    clock.advance(9.9)
    assert breaker.state is OPEN
    clock.advance(0.1)

    assert breaker.state is HALF_OPEN
    assert breaker.stats().retry_after == 0.0


# --- half-open -------------------------------------------------------------------------


async def test_half_open_lets_only_its_probes_through_at_a_time(clock: FakeClock) -> None:
    breaker = await opened(clock, reset_timeout=5.0, half_open_probes=2)
    clock.advance(5.0)

    first, second, third = breaker.guard(), breaker.guard(), breaker.guard()
    await first.__aenter__()
    await second.__aenter__()
    with pytest.raises(CircuitOpen) as refused:
        await third.__aenter__()

    assert refused.value.state == "half-open"
    assert refused.value.retry_after == 0.0
    assert breaker.stats().probes_in_flight == 2
    await first.__aexit__(None, None, None)
    await second.__aexit__(None, None, None)


async def test_a_failed_probe_opens_it_again_for_a_new_reset_timeout(clock: FakeClock) -> None:
    breaker = await opened(clock, reset_timeout=5.0)
    clock.advance(5.0)

    await fail_times(breaker, 1)

    assert breaker.state is OPEN
    clock.advance(4.0)
    assert breaker.state is OPEN
    clock.advance(1.0)
    assert breaker.state is HALF_OPEN


async def test_enough_successful_probes_close_it_with_an_empty_window(
    clock: FakeClock,
) -> None:
    breaker = await opened(clock, reset_timeout=5.0, half_open_probes=2)
    clock.advance(5.0)

    await succeed_times(breaker, 1)
    assert breaker.state is HALF_OPEN
    await succeed_times(breaker, 1)

    assert breaker.state is CLOSED
    assert breaker.stats().calls == 0


async def test_a_call_counts_only_in_the_state_it_was_let_in_under(clock: FakeClock) -> None:
    breaker = breaker_with(clock, consecutive_failures=1, reset_timeout=5.0)
    slow = breaker.guard()
    await slow.__aenter__()  # let in while closed
    await fail_times(breaker, 1)
    clock.advance(5.0)
    probe = breaker.guard()
    await probe.__aenter__()

    # The call let in while closed fails now: it says nothing about the half-open circuit.
    await slow.__aexit__(Down, Down("late"), None)

    assert breaker.state is HALF_OPEN
    assert breaker.stats().probes_in_flight == 1
    await probe.__aexit__(None, None, None)
    assert breaker.state is CLOSED


async def test_a_probe_ending_after_the_circuit_reopened_changes_nothing(
    clock: FakeClock,
) -> None:
    breaker = await opened(clock, reset_timeout=5.0, half_open_probes=2)
    clock.advance(5.0)
    late, failing = breaker.guard(), breaker.guard()
    await late.__aenter__()
    await failing.__aenter__()
    await failing.__aexit__(Down, Down("still down"), None)
    assert breaker.state is OPEN

    await late.__aexit__(None, None, None)

    assert breaker.state is OPEN
    assert breaker.stats().retry_after == pytest.approx(5.0)


# --- what counts -----------------------------------------------------------------------


async def test_ignored_error_types_count_as_neither_and_still_reach_the_caller(
    clock: FakeClock,
) -> None:
    breaker = CircuitBreaker(
        "payments",
        BreakerPolicy(consecutive_failures=2),
        ignore=(CommandRejected,),
        clock=clock,
    )

    async def refused() -> None:
        raise CommandRejected("insufficient funds")

    await fail_times(breaker, 1)
    for _ in range(5):
        with pytest.raises(CommandRejected):
            await breaker.call(refused)

    assert breaker.stats().calls == 1
    await fail_times(breaker, 1)  # the run of failures went on across the ignored ones
    assert breaker.state is OPEN


async def test_counts_as_failure_decides_for_each_error(clock: FakeClock) -> None:
    class Status(Exception):
        def __init__(self, code: int) -> None:
            self.code = code

    breaker = CircuitBreaker(
        "payments",
        BreakerPolicy(consecutive_failures=2),
        counts_as_failure=lambda error: not (isinstance(error, Status) and error.code < 500),
        clock=clock,
    )

    async def answer(code: int) -> None:
        raise Status(code)

    for code in (404, 409, 422, 404):
        with pytest.raises(Status):
            await breaker.call(answer, code)
    assert breaker.state is CLOSED
    assert breaker.stats().calls == 0
    for _ in range(2):
        with pytest.raises(Status):
            await breaker.call(answer, 503)

    assert breaker.state is OPEN


async def test_an_ignored_probe_gives_its_slot_back_and_decides_nothing(
    clock: FakeClock,
) -> None:
    breaker = CircuitBreaker(
        "payments",
        BreakerPolicy(consecutive_failures=1, reset_timeout=5.0),
        ignore=(CommandRejected,),
        clock=clock,
    )
    await fail_times(breaker, 1)
    clock.advance(5.0)

    async def refused() -> None:
        raise CommandRejected("no")

    with pytest.raises(CommandRejected):
        await breaker.call(refused)

    assert breaker.state is HALF_OPEN
    assert breaker.stats().probes_in_flight == 0
    await succeed_times(breaker, 1)
    assert breaker.state is CLOSED


# --- cancellation and timeouts ---------------------------------------------------------


@pytest.mark.parametrize("call_timeout", [None, 60.0])
async def test_a_cancelled_probe_gives_its_slot_back_and_counts_as_neither(
    clock: FakeClock, call_timeout: float | None
) -> None:
    breaker = await opened(clock, reset_timeout=5.0, call_timeout=call_timeout)
    clock.advance(5.0)
    entered = asyncio.Event()

    async def hangs() -> None:
        entered.set()
        await asyncio.Event().wait()

    probe = asyncio.create_task(breaker.call(hangs))
    await entered.wait()
    with pytest.raises(CircuitOpen):
        await breaker.call(ok)
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe

    assert breaker.state is HALF_OPEN
    assert breaker.stats().probes_in_flight == 0
    assert await breaker.call(ok) == "ok"
    assert breaker.state is CLOSED


async def test_a_call_past_call_timeout_is_cancelled_and_counts_as_a_failure(
    clock: FakeClock,
) -> None:
    breaker = breaker_with(clock, consecutive_failures=1, call_timeout=0.05)
    cancelled = asyncio.Event()

    async def hangs() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()

    with pytest.raises(CallTimeout) as timed_out:
        await breaker.call(hangs)

    assert cancelled.is_set()
    assert isinstance(timed_out.value, TimeoutError)
    assert (timed_out.value.target, timed_out.value.seconds) == ("payments", 0.05)
    assert breaker.state is OPEN


async def test_a_probe_past_its_timeout_gives_its_slot_back_and_reopens(
    clock: FakeClock,
) -> None:
    breaker = await opened(clock, reset_timeout=5.0, half_open_probes=2)
    clock.advance(5.0)

    with pytest.raises(CallTimeout):
        async with breaker.guard(timeout=0.02):
            await asyncio.Event().wait()

    assert breaker.state is OPEN
    assert breaker.stats().probes_in_flight == 0


async def test_a_guard_timeout_shortens_the_policy_s_but_never_lengthens_it(
    clock: FakeClock,
) -> None:
    breaker = breaker_with(clock, call_timeout=0.02)

    with pytest.raises(CallTimeout) as timed_out:
        async with breaker.guard(timeout=30.0):
            await asyncio.Event().wait()
    assert timed_out.value.seconds == 0.02
    with pytest.raises(CallTimeout) as timed_out:
        async with breaker_with(clock, call_timeout=30.0).guard(timeout=0.02):
            await asyncio.Event().wait()
    assert timed_out.value.seconds == 0.02


async def test_a_timeout_error_of_the_call_itself_is_an_ordinary_failure(
    clock: FakeClock,
) -> None:
    breaker = breaker_with(clock, consecutive_failures=1, call_timeout=30.0)

    async def gives_up() -> None:
        raise TimeoutError("the target's own timeout")

    with pytest.raises(TimeoutError) as raised:
        await breaker.call(gives_up)

    assert not isinstance(raised.value, CallTimeout)
    assert breaker.state is OPEN


# --- listeners -------------------------------------------------------------------------


async def test_listeners_hear_every_change_of_state_once(clock: FakeClock) -> None:
    heard: list[StateChange] = []
    breaker = CircuitBreaker(
        "payments",
        BreakerPolicy(consecutive_failures=2, reset_timeout=5.0),
        clock=clock,
        listeners=[heard.append],
    )

    await fail_times(breaker, 2)
    clock.advance(5.0)
    await succeed_times(breaker, 3)

    assert [(c.old, c.new) for c in heard] == [
        (CLOSED, OPEN),
        (OPEN, HALF_OPEN),
        (HALF_OPEN, CLOSED),
    ]
    assert [c.at for c in heard] == [1000.0, 1005.0, 1005.0]
    assert {c.target for c in heard} == {"payments"}


async def test_a_failing_listener_is_logged_and_breaks_nothing(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    heard: list[StateChange] = []

    def broken(change: StateChange) -> None:
        raise ValueError("the metrics hook is broken")

    breaker = CircuitBreaker(
        "payments",
        BreakerPolicy(consecutive_failures=1),
        clock=clock,
        listeners=[broken, heard.append],
    )

    with caplog.at_level(logging.ERROR, logger="eventcore.resilience"):
        await fail_times(breaker, 1)

    assert breaker.state is OPEN
    assert [c.new for c in heard] == [OPEN]
    assert "the metrics hook is broken" in caplog.text


async def test_a_removed_listener_hears_nothing_more(clock: FakeClock) -> None:
    heard: list[StateChange] = []
    breaker = breaker_with(clock, consecutive_failures=1, reset_timeout=1.0)
    breaker.add_listener(heard.append)
    await fail_times(breaker, 1)
    breaker.remove_listener(heard.append)

    clock.advance(1.0)

    assert breaker.state is HALF_OPEN
    assert [c.new for c in heard] == [OPEN]


# --- the ways to call through it -------------------------------------------------------


async def test_call_passes_arguments_and_returns_the_result(clock: FakeClock) -> None:
    breaker = breaker_with(clock)

    async def add(a: int, b: int, *, times: int) -> int:
        return (a + b) * times

    assert await breaker.call(add, 1, 2, times=3) == 9


async def test_async_with_counts_as_call_does(clock: FakeClock) -> None:
    breaker = breaker_with(clock, consecutive_failures=2)

    for _ in range(2):
        with pytest.raises(Down):
            async with breaker:
                raise Down("the target is down")

    assert breaker.state is OPEN
    with pytest.raises(CircuitOpen):
        async with breaker:
            pytest.fail("the body ran while the circuit was open")


async def test_async_with_keeps_concurrent_calls_apart(clock: FakeClock) -> None:
    breaker = breaker_with(clock, consecutive_failures=1, reset_timeout=1.0)
    old_inside, old_may_leave = asyncio.Event(), asyncio.Event()
    probe_inside, probe_may_leave = asyncio.Event(), asyncio.Event()

    async def old_call() -> None:
        async with breaker:
            old_inside.set()
            await old_may_leave.wait()
            raise Down("late")

    async def probe() -> None:
        async with breaker:
            probe_inside.set()
            await probe_may_leave.wait()

    old = asyncio.create_task(old_call())  # let in while closed
    await old_inside.wait()
    await fail_times(breaker, 1)
    clock.advance(1.0)
    probing = asyncio.create_task(probe())  # let in while half-open
    await probe_inside.wait()

    # The call let in first leaves first. Were the exits crossed, its failure would be
    # the probe's, and the circuit would open again.
    old_may_leave.set()
    with pytest.raises(Down):
        await old
    assert breaker.state is HALF_OPEN
    probe_may_leave.set()
    await probing
    assert breaker.state is CLOSED


async def test_a_guard_guards_one_call(clock: FakeClock) -> None:
    guard = breaker_with(clock).guard()
    async with guard:
        pass

    with pytest.raises(RuntimeError, match="one call"):
        await guard.__aenter__()


# --- the policy ------------------------------------------------------------------------


def test_the_defaults_are_those_documented() -> None:
    policy = BreakerPolicy()

    assert (policy.window, policy.minimum_calls, policy.failure_ratio) == (30.0, 10, 0.5)
    assert (policy.consecutive_failures, policy.reset_timeout) == (5, 10.0)
    assert (policy.half_open_probes, policy.call_timeout, policy.max_samples) == (1, None, 1000)


@pytest.mark.parametrize(
    "settings",
    [
        {"window": 0},
        {"window": float("nan")},
        {"window": float("inf")},
        {"failure_ratio": 0},
        {"failure_ratio": 1.5},
        {"reset_timeout": -1},
        {"call_timeout": 0},
        {"call_timeout": float("inf")},
        {"minimum_calls": 0},
        {"consecutive_failures": 0},
        {"half_open_probes": 0},
        {"max_samples": 4, "minimum_calls": 5},
        {"max_samples": 4, "consecutive_failures": 5},
    ],
)
def test_a_policy_that_makes_no_sense_is_refused(settings: dict[str, float]) -> None:
    with pytest.raises(InvalidInput):
        BreakerPolicy(**settings)  # type: ignore[arg-type]


@pytest.mark.parametrize("timeout", [0, -1, float("nan"), float("inf")])
def test_a_guard_timeout_that_makes_no_sense_is_refused(clock: FakeClock, timeout: float) -> None:
    breaker = breaker_with(clock)

    with pytest.raises(InvalidInput):
        breaker.guard(timeout=timeout)
