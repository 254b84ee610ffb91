"""A member of a consumer group on a NATS bus in a process of its own, for
``test_nats_killed_member.py``.

Usage (it prints one JSON object, flushed at once)::

    python nats_bus_child.py hang URL GROUP MEMBER ACK_WAIT LEASE_TTL MOST
        joins GROUP as MEMBER, fetches one batch of up to MOST deliveries, prints
        {"fetched": [[id, attempt], ...]}, then holds it unacknowledged until killed
"""

from __future__ import annotations

import asyncio
import json
import sys

from eventcore.messaging.bus import Delivery
from eventcore.messaging.nats import NatsBus
from eventcore.messaging.url import BusUrl

TOPIC = "orders"


async def hang(
    url: str, group: str, member: str, ack_wait: float, lease_ttl: float, most: int
) -> None:
    bus = await NatsBus.connect(BusUrl.parse(url), lease_ttl=lease_ttl)
    consumer = await bus.consumer(TOPIC, group, member=member, ack_wait=ack_wait)
    deliveries: list[Delivery] = []
    while not deliveries:
        deliveries = await consumer.fetch(most, 1.0)
    fetched = [[delivery.message_id, delivery.attempt] for delivery in deliveries]
    print(json.dumps({"fetched": fetched}), flush=True)
    await asyncio.sleep(3600)


def main(argv: list[str]) -> None:
    mode, url, group, member, ack_wait, lease_ttl, most = argv
    if mode != "hang":
        raise SystemExit(f"unknown mode {mode!r}")
    asyncio.run(hang(url, group, member, float(ack_wait), float(lease_ttl), int(most)))


if __name__ == "__main__":
    main(sys.argv[1:])
