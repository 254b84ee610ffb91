"""The federation workload (issue 15), eventcore only: the eventsourcing library has no hub.

o: hub throughput — the source topic holds ``relay_events`` envelopes (the ~300-byte
   ``OrderPlaced`` events of j, published untimed); a ``Hub`` with one rule that renames
   the type and hashes one field routes them all to a target topic on the same bus
   (events/s, from the hub's start until it acknowledged the last batch at the source,
   which it does only after the target acknowledged every copy). The raw column holds
   the relay's throughput (j's measure, same event count) in the same repetition: the
   target is a share of it.
"""

from __future__ import annotations

import asyncio

from bench.common import Context, Sizes, Stopwatch
from bench.messaging_side import TOPIC, _messages, j_relay_throughput
from eventcore.federation import Hub, parse_config
from eventcore.instrumentation import FederationBatch, Hooks
from eventcore.messaging import open_bus

__all__ = ["describe", "measure", "measure_relay"]

#: Messages per publish while filling the source (untimed).
_FILL_BATCH = 1_000
_KEY_ENV = "BENCH_HUB_KEY"
_CONFIG = f"""
[buses]
main = "memory://"

[[rules]]
name = "orders-to-analytics"
source = {{ bus = "main", topic = "{TOPIC}" }}
type = "OrderPlaced"
targets = [{{ bus = "main", topic = "analytics" }}]
transforms = [
    {{ op = "rename-type", to = "OrderReceived" }},
    {{ op = "hash", fields = ["customer"], key_env = "{_KEY_ENV}" }},
]
"""


class _Counter(Hooks):
    """Sets ``reached`` once the hub settled ``count`` events (no polling)."""

    def __init__(self, count: int) -> None:
        self._left = count
        self.reached = asyncio.Event()

    def federation_batch(self, event: FederationBatch) -> None:
        self._left -= event.events
        if self._left <= 0:
            self.reached.set()


async def o_hub_throughput(ctx: Context) -> float:
    count = ctx.sizes.relay_events
    messages = _messages(count)
    stopwatch = Stopwatch()
    bus = await open_bus(ctx.backend.bus_url(ctx.workdir))
    try:
        for start in range(0, count, _FILL_BATCH):
            await bus.publish(messages[start : start + _FILL_BATCH])
        # The alias's URL is not opened: the hub is handed the bus above.
        config = parse_config(_CONFIG, file="bench-hub.toml", environ={_KEY_ENV: "k" * 32})
        counter = _Counter(count)
        hub = Hub(config, {"main": bus}, hooks=counter)
        with stopwatch.running():
            running = asyncio.create_task(hub.run())
            reached = asyncio.ensure_future(counter.reached.wait())
            # A stuck hub fails the measurement instead of hanging the run.
            async with asyncio.timeout(60 + count / 1_000):
                await asyncio.wait({running, reached}, return_when=asyncio.FIRST_COMPLETED)
        reached.cancel()
        hub.stop()
        await running
        status = hub.status()
        if status.routed != count or status.dead_lettered:
            raise RuntimeError(f"the hub routed {status.routed} of {count}: {status}")
    finally:
        await bus.aclose()
    return stopwatch.rate(count)


def measure(ctx: Context) -> float:
    return asyncio.run(o_hub_throughput(ctx))


def measure_relay(ctx: Context) -> float:
    """j's measure, for the raw column of o."""
    return asyncio.run(j_relay_throughput(ctx))


def describe(sizes: Sizes) -> str:
    return (
        f"{sizes.relay_events:,} envelopes of j's ~300-byte OrderPlaced events published "
        "untimed to a source topic; then one Hub (default batch 500, one member) with one "
        "rule (rename-type + keyed hash of one field) routes them to a target topic on the "
        "same bus, until the hub acknowledged the last batch at the source (after the "
        "target acknowledged its copies); raw column = the relay (j) with the same event "
        "count in the same repetition, which the target is a share of; eventsourcing has "
        "no hub"
    )
