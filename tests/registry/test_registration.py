"""``Registration`` as a ``Worker``: an outage pauses it (the instance is registered
once the backend answers again), a closed registry ends it, and ``status`` says what
it has done. The outage is injected by a directory that fails while told to."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from eventcore.errors import RegistryClosed, RegistryUnavailable, WorkerStopped
from eventcore.instrumentation import Hooks, RegistrationRenewed
from eventcore.lifecycle import Worker, running
from eventcore.registry import Instance, MemoryDirectory, Registry

TTL = 0.4
PATIENCE = 30.0


class Flaky(MemoryDirectory):
    """A memory directory whose ``announce`` fails while ``down`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.failed = asyncio.Event()

    async def announce(self, instance: Instance, ttl: float) -> None:
        if self.down:
            self.failed.set()
            raise RegistryUnavailable("the registry is down (injected)")
        await super().announce(instance, ttl)


INSTANCE = Instance.of("payments", "http://127.0.0.1:8001", instance_id="p1")


async def _until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PATIENCE
    while not await check():
        if loop.time() > deadline:
            pytest.fail(f"never happened: {what}")
        await asyncio.sleep(0.05)


async def test_it_is_a_worker() -> None:
    registry = Registry(MemoryDirectory(), backend="memory")
    assert isinstance(registry.register(INSTANCE, ttl=TTL), Worker)


async def test_an_outage_at_start_delays_readiness_until_the_registry_answers() -> None:
    directory = Flaky()
    directory.down = True
    registry = Registry(directory, backend="memory")
    registration = registry.register(INSTANCE, ttl=TTL)
    task = asyncio.create_task(registration.run())
    await directory.failed.wait()
    assert registration.status().last_error == "the registry is down (injected)"
    assert not registration.status().registered

    directory.down = False
    await registration.ready()

    assert await registry.discover("payments") == [INSTANCE]
    assert registration.status().last_error is None
    registration.stop()
    await task
    assert await registry.discover("payments") == []


async def test_an_outage_while_running_pauses_it_and_it_comes_back() -> None:
    directory = Flaky()
    registry = Registry(directory, backend="memory")
    registration = registry.register(INSTANCE, ttl=TTL)
    async with running(registration):
        directory.down = True

        async def dropped_out() -> bool:
            return await registry.discover("payments") == []

        await _until(dropped_out, "the instance dropped out during the outage")
        assert not registration.status().registered
        directory.down = False

        async def back() -> bool:
            return await registry.discover("payments") == [INSTANCE]

        await _until(back, "the instance is listed again")
        assert registration.status().registered


async def test_a_closed_registry_ends_it_with_registry_closed() -> None:
    registry = Registry(MemoryDirectory(), backend="memory")
    registration = registry.register(INSTANCE, ttl=TTL)
    task = asyncio.create_task(registration.run())
    await registration.ready()

    await registry.aclose()

    with pytest.raises(RegistryClosed):
        await task


async def test_stopped_before_it_is_ready_ready_raises_worker_stopped() -> None:
    directory = Flaky()
    directory.down = True
    registration = Registry(directory, backend="memory").register(INSTANCE, ttl=TTL)
    task = asyncio.create_task(registration.run())
    await directory.failed.wait()

    registration.stop()
    await task

    with pytest.raises(WorkerStopped):
        await registration.ready()


class Recorder(Hooks):
    def __init__(self) -> None:
        self.heard: list[RegistrationRenewed] = []

    def registration_renewed(self, event: RegistrationRenewed) -> None:
        self.heard.append(event)


async def test_each_attempt_is_reported_to_the_hooks() -> None:
    directory = Flaky()
    directory.down = True
    recorder = Recorder()
    registration = Registry(directory, backend="memory").register(INSTANCE, ttl=TTL, hooks=recorder)
    task = asyncio.create_task(registration.run())
    await directory.failed.wait()
    directory.down = False
    await registration.ready()
    registration.stop()
    await task

    failed, succeeded = recorder.heard[0], recorder.heard[-1]
    assert isinstance(failed.error, RegistryUnavailable)
    assert succeeded.error is None
    assert (succeeded.service, succeeded.instance_id, succeeded.backend) == (
        "payments",
        "p1",
        "memory",
    )
