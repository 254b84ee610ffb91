"""The service-registry contract: every guarantee a registry backend owes the services
that register in it and the clients that look them up, as one pytest test class.

A backend runs it by subclassing :class:`RegistryContract` and providing a
``make_registry`` fixture: each ``await make_registry()`` opens one more handle on one
fresh, empty registry, the way another process would (an in-process registry may hand
out the same object each time); the fixture closes every handle when the test ends::

    class TestMyRegistry(RegistryContract):
        @pytest_asyncio.fixture
        async def make_registry(self, tmp_path): ...

A registration whose task is cancelled stands for a process killed with ``kill -9``:
it neither renews nor deregisters. Needs pytest and pytest-asyncio (the ``testing``
extra).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import pytest_asyncio

from eventcore.errors import InvalidInput, InvalidInstance, InvalidName, InvalidUrl
from eventcore.registry import Instance, Registration, Registry

__all__ = ["TTL", "MakeRegistry", "RegistryContract"]

#: The TTL of the contract's registrations: short, so that a killed instance's
#: disappearance is waited for briefly, and long enough that a loaded machine's pauses
#: do not drop a live one; nothing asserts how long anything took.
TTL = 2.0
#: Seconds a test waits for what must happen within a few TTLs before it fails.
PATIENCE = 30.0

#: ``await make_registry()`` opens one more handle on the test's registry.
MakeRegistry = Callable[[], Awaitable[Registry]]


def _instance(
    service: str = "payments",
    number: int = 1,
    *,
    version: str = "",
    metadata: dict[str, str] | None = None,
) -> Instance:
    return Instance.of(
        service,
        f"http://127.0.0.1:{8000 + number}",
        instance_id=f"{service}-{number}",
        version=version,
        metadata=metadata,
    )


async def _until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Look again every tenth of a second until ``check`` holds; fail after PATIENCE."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PATIENCE
    while not await check():
        if loop.time() > deadline:
            pytest.fail(f"never happened: {what}")
        await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def _killable(registration: Registration) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``registration`` until ready; the block may cancel the task (a kill)."""
    task = asyncio.create_task(registration.run())
    try:
        await registration.ready()
        yield task
    finally:
        registration.stop()
        await asyncio.gather(task, return_exceptions=True)


class RegistryContract:
    """Every part of the registry contract; subclass it and provide ``make_registry``."""

    @pytest_asyncio.fixture
    async def registry(self, make_registry: MakeRegistry) -> Registry:
        return await make_registry()

    # --- registering and finding -----------------------------------------------------

    @pytest.mark.asyncio
    async def test_a_registered_instance_is_discovered_as_it_was_registered(
        self, registry: Registry, make_registry: MakeRegistry
    ) -> None:
        instance = _instance(version="1.4.2", metadata={"zone": "eu-1", "weight": "3"})
        async with registry.register(instance, ttl=TTL):
            elsewhere = await make_registry()
            assert await elsewhere.discover("payments") == [instance]
            assert await elsewhere.services() == ["payments"]

    @pytest.mark.asyncio
    async def test_two_instances_from_two_handles_are_both_listed(
        self, registry: Registry, make_registry: MakeRegistry
    ) -> None:
        other = await make_registry()
        first, second = _instance(number=1), _instance(number=2)
        async with registry.register(first, ttl=TTL), other.register(second, ttl=TTL):
            assert await registry.discover("payments") == [first, second]
            assert await other.discover("payments") == [first, second]

    @pytest.mark.asyncio
    async def test_services_lists_each_service_with_a_live_instance_once(
        self, registry: Registry
    ) -> None:
        async with (
            registry.register(_instance("payments", 1), ttl=TTL),
            registry.register(_instance("payments", 2), ttl=TTL),
            registry.register(_instance("orders", 3), ttl=TTL),
        ):
            assert await registry.services() == ["orders", "payments"]
            assert [i.service for i in await registry.discover("orders")] == ["orders"]

    @pytest.mark.asyncio
    async def test_a_service_nobody_registered_has_no_instances(self, registry: Registry) -> None:
        assert await registry.discover("nobody") == []
        assert await registry.services() == []

    @pytest.mark.asyncio
    async def test_registering_the_same_instance_again_replaces_what_it_said(
        self, registry: Registry
    ) -> None:
        async with registry.register(_instance(version="1"), ttl=TTL):
            pass
        again = _instance(version="2", metadata={"zone": "b"})
        async with registry.register(again, ttl=TTL):
            assert await registry.discover("payments") == [again]

    # --- staying, leaving and dying --------------------------------------------------

    @pytest.mark.asyncio
    async def test_a_running_registration_stays_listed_past_its_ttl(
        self, registry: Registry
    ) -> None:
        instance = _instance()
        async with registry.register(instance, ttl=TTL) as registration:
            # Renewed every TTL/4: eight renewals span two TTLs.
            await _until(_true_when(lambda: registration.status().renewals >= 8), "eight renewals")
            assert await registry.discover("payments") == [instance]
            assert registration.status().registered

    @pytest.mark.asyncio
    async def test_a_clean_stop_deregisters_at_once(
        self, registry: Registry, make_registry: MakeRegistry
    ) -> None:
        staying, leaving = _instance(number=1), _instance(number=2)
        async with registry.register(staying, ttl=TTL):
            async with registry.register(leaving, ttl=TTL) as registration:
                pass
            assert not registration.status().registered
            assert await (await make_registry()).discover("payments") == [staying]

    @pytest.mark.asyncio
    async def test_a_killed_instance_disappears_once_its_ttl_runs_out(
        self, registry: Registry, make_registry: MakeRegistry
    ) -> None:
        staying, killed = _instance(number=1), _instance(number=2)
        other = await make_registry()
        async with registry.register(staying, ttl=TTL):
            async with _killable(other.register(killed, ttl=TTL)) as task:
                assert await registry.discover("payments") == [staying, killed]
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

                async def gone() -> bool:
                    return await registry.discover("payments") == [staying]

                await _until(gone, "the killed instance dropped out")
            assert await registry.services() == ["payments"]

    @pytest.mark.asyncio
    async def test_a_service_whose_instances_all_died_is_no_longer_listed(
        self, registry: Registry
    ) -> None:
        async with _killable(registry.register(_instance("orders"), ttl=TTL)) as task:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

            async def unlisted() -> bool:
                return await registry.services() == []

            await _until(unlisted, "the service dropped out")
            assert await registry.discover("orders") == []

    @pytest.mark.asyncio
    async def test_a_registration_stopped_before_it_ran_registers_nothing(
        self, registry: Registry
    ) -> None:
        registration = registry.register(_instance(), ttl=TTL)
        registration.stop()
        await registration.run()
        assert await registry.discover("payments") == []

    # --- bad input -------------------------------------------------------------------

    @pytest.mark.asyncio
    @pytest.mark.parametrize("service", ["", "pay ments", "payments.eu", "x" * 65, "-x", "a*"])
    async def test_a_name_that_is_no_service_name_is_refused(
        self, registry: Registry, service: str
    ) -> None:
        with pytest.raises(InvalidName):
            await registry.discover(service)
        with pytest.raises(InvalidName):
            Instance.of(service, "http://127.0.0.1:8000")

    @pytest.mark.asyncio
    @pytest.mark.parametrize("ttl", [0, -1, float("nan"), float("inf"), 10_000, True, "5"])
    async def test_a_ttl_that_is_no_usable_number_of_seconds_is_refused(
        self, registry: Registry, ttl: object
    ) -> None:
        with pytest.raises(InvalidInput):
            registry.register(_instance(), ttl=ttl)  # type: ignore[arg-type]
        assert await registry.discover("payments") == []

    @pytest.mark.asyncio
    async def test_an_instance_the_registry_cannot_hold_is_refused_before_anything_is_written(
        self, registry: Registry
    ) -> None:
        with pytest.raises(InvalidInstance):
            _instance(metadata={f"k{n}": "v" for n in range(33)})
        with pytest.raises(InvalidInstance):
            _instance(metadata={"big": "x" * 513})
        with pytest.raises(InvalidInstance):
            _instance(metadata={"a.b": "line\nbreak"})
        with pytest.raises(InvalidInstance):
            _instance(version="v" * 65)
        with pytest.raises(InvalidName):
            Instance.of("payments", "http://127.0.0.1:8000", instance_id="a/b")
        with pytest.raises(InvalidUrl):
            Instance.of("payments", "http://user:secret@127.0.0.1:8000")
        with pytest.raises(InvalidUrl):
            Instance.of("payments", "tcp://127.0.0.1:8000")
        assert await registry.services() == []


def _true_when(condition: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return condition()

    return check
