"""Fixtures of the resilience tests: a fake clock and real HTTP instances on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from tests.resilience.clock import FakeClock
from tests.resilience.servers import Instance


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def instances() -> AsyncIterator[Callable[[str], Awaitable[Instance]]]:
    """Start instances of a service by name; every one is stopped when the test ends."""
    started: list[Instance] = []

    async def start(name: str) -> Instance:
        instance = await Instance(name).start()
        started.append(instance)
        return instance

    yield start
    for instance in started:
        await instance.stop()
