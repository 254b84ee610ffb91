"""One instance of a service that keeps the order summary as a single-leader worker.

    python -m tests.projection.leader_child STORE_URL TARGET_URL LEASES_BUS_URL TTL

The leases are those of the bus at LEASES_BUS_URL (a SQLite bus file, or a NATS
namespace). Prints ``leader`` when it becomes the leader, ``follower <reason>`` when it
stops being one, ``ready`` once it knows its part; SIGTERM stops it cleanly (the leader
releases the lease on the way out).
"""

from __future__ import annotations

import asyncio
import signal
import sys

from eventcore import open_store
from eventcore.instrumentation import Hooks, LeadershipChanged
from eventcore.messaging import bus_leases, open_bus
from eventcore.projection import ProjectionRunner, Source, open_target
from eventcore.singleton import Singleton
from tests.projection.orders import OrderSummary, registry


class Announce(Hooks):
    def leadership_changed(self, event: LeadershipChanged) -> None:
        print("leader" if event.leader else f"follower {event.reason}", flush=True)


async def main(store_url: str, target_url: str, bus_url: str, ttl: float) -> None:
    store = await open_store(store_url, create=False)
    target = await open_target(target_url)
    bus = await open_bus(bus_url)
    leases = bus_leases(bus)
    try:
        singleton = Singleton(
            "order_summary",
            leases,
            # Small batches: a kill lands between many commits, not after one big one.
            lambda: ProjectionRunner(
                OrderSummary(), target, Source("orders", store, registry), batch_size=50
            ),
            ttl=ttl,
            hooks=Announce(),
        )
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, singleton.stop)
        running = asyncio.create_task(singleton.run())
        await singleton.ready()
        print("ready", flush=True)
        await running
    finally:
        await bus.aclose()
        await target.aclose()
        await store.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])))
