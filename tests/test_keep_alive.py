"""``KeepAlive``: the one renewal schedule of every lease holder (the bus consumers on
memory, SQLite and NATS; their conformance suites hold the consumers to it)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from eventcore.errors import BusClosed, BusUnavailable, StoreClosed
from eventcore.leases import KeepAlive

#: A guard against hanging, not a speed requirement.
PATIENCE = 10.0
#: Short, so the renewals (every quarter of it) come quickly.
TTL = 0.08


async def until(condition: Callable[[], bool], what: str) -> None:
    try:
        async with asyncio.timeout(PATIENCE):
            # KeepAlive's state has no event to wait on; polling it is the point.
            while not condition():  # noqa: ASYNC110
                await asyncio.sleep(TTL / 8)
    except TimeoutError:
        pytest.fail(f"never: {what}")


class Renewals:
    """A renewal that counts its calls and fails with ``error`` while one is set."""

    def __init__(self) -> None:
        self.calls = 0
        self.error: Exception | None = None

    async def __call__(self) -> None:
        self.calls += 1
        if self.error is not None:
            raise self.error


async def test_renews_in_the_background_until_closed() -> None:
    renewals = Renewals()
    keep = KeepAlive(renewals, ttl=TTL, name="test")
    keep.start()
    await until(lambda: renewals.calls >= 3, "three renewals")

    await keep.aclose()
    calls = renewals.calls
    await asyncio.sleep(TTL)

    assert renewals.calls == calls


async def test_an_outage_is_retried_and_a_lease_it_outlasts_is_reported_lost() -> None:
    renewals = Renewals()
    renewals.error = BusUnavailable("the server is away")
    keep = KeepAlive(renewals, ttl=TTL, name="test")
    keep.start()
    try:
        await until(lambda: keep.lost, "the lease reported lost")
        assert keep.last_error is renewals.error
        failed_calls = renewals.calls

        renewals.error = None
        await until(lambda: not keep.lost, "the lease renewed again")
        assert renewals.calls > failed_calls
        assert keep.last_error is None
    finally:
        await keep.aclose()


@pytest.mark.parametrize("closed", [BusClosed, StoreClosed])
async def test_a_closed_resource_ends_the_renewals(closed: type[Exception]) -> None:
    renewals = Renewals()
    renewals.error = closed()
    keep = KeepAlive(renewals, ttl=TTL, name="test")
    keep.start()
    await until(lambda: renewals.calls == 1, "a renewal")

    await asyncio.sleep(TTL)

    assert renewals.calls == 1
    assert keep.failure is None
    await keep.aclose()


async def test_a_defect_in_the_renewal_ends_it_and_is_kept() -> None:
    renewals = Renewals()
    renewals.error = RuntimeError("a bug")
    keep = KeepAlive(renewals, ttl=TTL, name="test")
    keep.start()

    await until(lambda: keep.failure is not None, "the failure kept")

    assert keep.failure is renewals.error
    await keep.aclose()


async def test_closing_ends_the_renewals_even_when_one_swallows_the_cancel() -> None:
    # As nats-py does inside some of its calls: the loop must end by its own flag.
    calls = 0
    entered = asyncio.Event()

    async def stubborn() -> None:
        nonlocal calls
        calls += 1
        entered.set()
        try:
            await asyncio.sleep(PATIENCE)
        except asyncio.CancelledError:
            await asyncio.sleep(TTL / 4)

    keep = KeepAlive(stubborn, ttl=TTL, name="test")
    keep.start()
    async with asyncio.timeout(PATIENCE):
        await entered.wait()
        await keep.aclose()
    await asyncio.sleep(TTL)

    assert calls == 1
