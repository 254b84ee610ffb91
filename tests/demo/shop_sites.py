"""Where the shop tests run it: a bus and a store per service, opened by the test suite's
backends (memory; SQLite, the embedded default; NATS JetStream with PostgreSQL stores,
a schema per service), against the real servers; one unavailable is skipped (fails
under ``CI=true``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

from eventcore.demo.shop.gateway import GatewayFaults
from eventcore.demo.shop.runner import SERVICES, RunningShop, running_shop_on
from eventcore.projection import open_target
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


@asynccontextmanager
async def shop_on(
    site: str, workdir: Path, faults: GatewayFaults | None = None, **options: Any
) -> AsyncIterator[RunningShop]:
    """The shop running on ``site``'s backends, in ``workdir``; ``options`` go to
    ``running_shop_on``."""
    bus_name, store_name = SITES[site]
    bus_backend, store_backend = BUSES[bus_name], BACKENDS[store_name]
    reason = bus_unavailable(bus_backend) or store_unavailable(store_backend)
    if reason is not None:
        skip_or_fail(reason)
    async with AsyncExitStack() as stack:
        bus_dir = workdir / "bus"
        bus_dir.mkdir()
        connect = await stack.enter_async_context(
            bus_backend.site(bus_dir, partitions=PARTITIONS, lease_ttl=LEASE_TTL)
        )
        bus = await connect()
        stores: dict[str, EventStore] = {}
        for service in SERVICES:
            store_dir = workdir / service
            store_dir.mkdir()
            stores[service] = await stack.enter_async_context(store_backend.open(store_dir))
        views = await open_target(f"sqlite://{workdir / 'views.db'}")
        stack.push_async_callback(views.aclose)
        yield await stack.enter_async_context(
            running_shop_on(bus, stores, views, faults=faults, **options)
        )
