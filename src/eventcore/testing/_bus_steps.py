"""Small steps the bus contract is written in."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import pytest

from eventcore.messaging.bus import Consumer, Delivery, OutgoingMessage

#: How long a test waits for something that must happen before it gives up. A guard
#: against hanging, not a speed requirement: everything here normally takes far less.
PATIENCE = 15.0
TOPIC = "orders"
#: The partitions a contract bus has unless a test asks for others (``make_site(partitions=..)``).
PARTITIONS = 4
#: Short enough that members take over from each other quickly, long enough that a busy
#: test machine does not let a live member's lease run out.
LEASE_TTL = 1.0


def outgoing(
    count: int, *, topic: str = TOPIC, keys: int = 4, prefix: str = "m", start: int = 0
) -> list[OutgoingMessage]:
    """``count`` messages with ids ``{prefix}{i}``, keys ``k{i % keys}``, body ``i``."""
    return [
        OutgoingMessage(topic=topic, message_id=f"{prefix}{i}", key=f"k{i % keys}", body=b"%d" % i)
        for i in range(start, start + count)
    ]


def ids(deliveries: Sequence[Delivery]) -> list[str]:
    return [delivery.message_id for delivery in deliveries]


async def consume(
    consumer: Consumer, want: int, *, batch: int = 100, ack: bool = True
) -> list[Delivery]:
    """Fetch (and ack, unless ``ack=False``) until ``want`` deliveries came."""
    got: list[Delivery] = []
    deadline = time.monotonic() + PATIENCE
    while len(got) < want:
        if time.monotonic() > deadline:
            pytest.fail(f"only {len(got)} of {want} deliveries came: {ids(got)}")
        fetched = await consumer.fetch(min(batch, want - len(got)), timeout=0.5)
        if ack and fetched:
            await consumer.ack(fetched)
        got.extend(fetched)
    return got


async def settle(consumers: Sequence[Consumer], partitions: int) -> None:
    """Let the members of one group rebalance (fetching nothing is published yet) until
    they own every partition between them, each owned once."""
    deadline = time.monotonic() + PATIENCE
    while True:
        for consumer in consumers:
            assert await consumer.fetch(1, timeout=0.05) == []
        owned = [consumer.partitions for consumer in consumers]
        covered = frozenset().union(*owned) == frozenset(range(partitions))
        if covered and sum(map(len, owned)) == partitions and all(owned):
            return
        if time.monotonic() > deadline:
            pytest.fail(f"the members never split the partitions: {owned}")
        await asyncio.sleep(0.05)
