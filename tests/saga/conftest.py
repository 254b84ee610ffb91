"""Sites the saga worker tests run on: a bus and the four services' stores.

``memory`` (memory bus, memory stores), ``sqlite`` (a SQLite bus, SQLite stores: the
embedded default) and ``nats`` (NATS JetStream, PostgreSQL stores), against the real
servers; an unavailable one is skipped (fails under ``CI=true``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from eventcore.messaging.bus import Bus
from eventcore.store import EventStore
from eventcore.testing.bus import LEASE_TTL, PARTITIONS
from tests.backends import BACKENDS, skip_or_fail
from tests.backends import unavailable_reason as store_unavailable
from tests.messaging.buses import BUSES
from tests.messaging.buses import unavailable_reason as bus_unavailable

#: site → (bus backend, store backend)
SITES = {
    "memory": ("memory", "memory"),
    "sqlite": ("sqlite", "sqlite"),
    "nats": ("nats", "postgres"),
}

Site = tuple[Bus, dict[str, EventStore]]


async def open_site(name: str, workdir: Path, stack: AsyncExitStack) -> Site:
    bus_name, store_name = SITES[name]
    bus_backend, store_backend = BUSES[bus_name], BACKENDS[store_name]
    reason = bus_unavailable(bus_backend) or store_unavailable(store_backend)
    if reason is not None:
        skip_or_fail(reason)
    bus_dir = workdir / "bus"
    bus_dir.mkdir()
    connect = await stack.enter_async_context(
        bus_backend.site(bus_dir, partitions=PARTITIONS, lease_ttl=LEASE_TTL)
    )
    bus = await connect()
    stores: dict[str, EventStore] = {}
    for service in ("orders", "inventory", "payments", "shipping"):
        store_dir = workdir / service
        store_dir.mkdir()
        stores[service] = await stack.enter_async_context(store_backend.open(store_dir))
    return bus, stores


@pytest.fixture(params=list(SITES))
async def site(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Site]:
    """Every site in turn."""
    async with AsyncExitStack() as stack:
        yield await open_site(request.param, tmp_path, stack)


@pytest.fixture
async def memory_site(tmp_path: Path) -> AsyncIterator[Site]:
    """The memory site alone: for what does not depend on the backends."""
    async with AsyncExitStack() as stack:
        yield await open_site("memory", tmp_path, stack)
