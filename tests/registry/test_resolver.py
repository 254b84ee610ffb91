"""``RegistryResolver``: the service client's view of the registry, kept for
``refresh`` seconds, and the last answer used again while the registry is down."""

from __future__ import annotations

import pytest

from eventcore.errors import InvalidInput, RegistryClosed
from eventcore.registry import Instance, Registry, RegistryResolver, open_registry
from tests.resilience.clock import FakeClock


@pytest.fixture
async def registry() -> Registry:
    return await open_registry("memory://")


def _instance(number: int) -> Instance:
    return Instance.of("payments", f"http://127.0.0.1:{8000 + number}", instance_id=f"p{number}")


async def test_the_addresses_of_the_live_instances(registry: Registry) -> None:
    resolver = RegistryResolver(registry, refresh=0)
    async with registry.register(_instance(1)), registry.register(_instance(2)):
        assert list(await resolver("payments")) == [
            "http://127.0.0.1:8001",
            "http://127.0.0.1:8002",
        ]
    assert list(await resolver("payments")) == []


async def test_an_answer_is_kept_for_refresh_seconds(registry: Registry) -> None:
    clock = FakeClock()
    resolver = RegistryResolver(registry, refresh=1.0, clock=clock)
    async with registry.register(_instance(1)):
        assert list(await resolver("payments")) == ["http://127.0.0.1:8001"]
        async with registry.register(_instance(2)):
            assert list(await resolver("payments")) == ["http://127.0.0.1:8001"]
            clock.advance(1.0)
            assert len(await resolver("payments")) == 2


async def test_the_last_answer_is_used_while_the_registry_fails(registry: Registry) -> None:
    clock = FakeClock()
    resolver = RegistryResolver(registry, refresh=1.0, clock=clock)
    async with registry.register(_instance(1)):
        assert list(await resolver("payments")) == ["http://127.0.0.1:8001"]
    await registry.aclose()
    clock.advance(5.0)

    assert list(await resolver("payments")) == ["http://127.0.0.1:8001"]
    with pytest.raises(RegistryClosed):
        await resolver("orders")  # never answered: nothing to fall back on


@pytest.mark.parametrize("refresh", [-1, float("nan"), True, "1"])
def test_a_refresh_that_is_no_number_of_seconds_is_refused(
    registry: Registry, refresh: object
) -> None:
    with pytest.raises(InvalidInput):
        RegistryResolver(registry, refresh=refresh)  # type: ignore[arg-type]
