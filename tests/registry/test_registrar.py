"""``Registrar``: registering and deregistering by call, as a runtime that owns no task
group for the registrations does; on every backend."""

from __future__ import annotations

import asyncio

import pytest

from eventcore.errors import InvalidName, InvalidUrl, RegistryUnavailable
from eventcore.registry import Instance, MemoryDirectory, Registrar, Registry
from eventcore.testing.registry import MakeRegistry

TTL = 2.0


async def test_register_lists_the_instance_and_deregister_takes_it_off(
    make_registry: MakeRegistry,
) -> None:
    registrar = Registrar(await make_registry(), ttl=TTL)
    elsewhere = await make_registry()

    await registrar.register(
        "payments", "pay-1", "http://127.0.0.1:8001", version="2", metadata={"zone": "a"}
    )

    assert await elsewhere.discover("payments") == [
        Instance.of(
            "payments",
            "http://127.0.0.1:8001",
            instance_id="pay-1",
            version="2",
            metadata={"zone": "a"},
        )
    ]
    [status] = registrar.statuses()
    assert status.registered
    await registrar.deregister("payments", "pay-1")
    assert await elsewhere.discover("payments") == []
    assert registrar.statuses() == []
    await registrar.deregister("payments", "pay-1")  # again: nothing


async def test_registering_again_replaces_what_the_instance_said(
    make_registry: MakeRegistry,
) -> None:
    registrar = Registrar(await make_registry(), ttl=TTL)
    await registrar.register("payments", "pay-1", "http://127.0.0.1:8001", version="1")
    await registrar.register("payments", "pay-1", "http://127.0.0.1:9001", version="2")

    [listed] = await registrar.registry.discover("payments")

    assert (listed.address, listed.version) == ("http://127.0.0.1:9001", "2")
    assert len(registrar.statuses()) == 1
    await registrar.deregister("payments", "pay-1")


async def test_closing_deregisters_everything_still_registered(
    make_registry: MakeRegistry,
) -> None:
    registrar = Registrar(await make_registry(), ttl=TTL)
    elsewhere = await make_registry()
    await registrar.register("payments", "pay-1", "http://127.0.0.1:8001")
    await registrar.register("orders", "ord-1", "http://127.0.0.1:9001")
    assert await elsewhere.services() == ["orders", "payments"]

    await registrar.aclose()

    if elsewhere is not registrar.registry:  # memory: one registry, closed with it
        assert await elsewhere.services() == []


@pytest.mark.parametrize(
    ("service", "instance", "address", "error"),
    [
        ("pay ments", "pay-1", "http://127.0.0.1:8001", InvalidName),
        ("payments", "pay/1", "http://127.0.0.1:8001", InvalidName),
        ("payments", "pay-1", "http://user:secret@127.0.0.1:8001", InvalidUrl),
    ],
)
async def test_bad_input_registers_nothing(
    make_registry: MakeRegistry,
    service: str,
    instance: str,
    address: str,
    error: type[Exception],
) -> None:
    registrar = Registrar(await make_registry(), ttl=TTL)

    with pytest.raises(error):
        await registrar.register(service, instance, address)

    assert registrar.statuses() == []
    assert await registrar.registry.services() == []


class Down(MemoryDirectory):
    """A directory that cannot be reached until ``up`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.up = False

    async def announce(self, instance: Instance, ttl: float) -> None:
        if not self.up:
            raise RegistryUnavailable("the registry is down (injected)")
        await super().announce(instance, ttl)


async def test_a_registry_that_cannot_be_reached_is_reported_and_tried_again() -> None:
    directory = Down()
    registrar = Registrar(Registry(directory, backend="memory"), ttl=0.4, wait=0.2)

    with pytest.raises(RegistryUnavailable, match="still trying"):
        await registrar.register("payments", "pay-1", "http://127.0.0.1:8001")
    directory.up = True

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while await registrar.registry.discover("payments") == []:
        assert loop.time() < deadline, "never registered once the registry came back"
        await asyncio.sleep(0.05)
    await registrar.aclose()
