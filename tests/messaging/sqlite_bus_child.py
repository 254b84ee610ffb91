"""A second process on a SQLite bus file, for ``test_sqlite_bus.py``.

Usage (every line it prints is one JSON object, flushed at once)::

    python sqlite_bus_child.py publish URL COUNT PREFIX
        publishes COUNT messages (ids PREFIX0...), 50 per batch; prints {"published": n}
    python sqlite_bus_child.py consume URL GROUP
        joins GROUP (prints {"joined": true}), then consumes and acks until killed,
        printing {"ids": [...]} per batch
    python sqlite_bus_child.py hang URL GROUP ACK_WAIT LEASE_TTL
        fetches one batch, prints {"fetched": [...]}, then holds it unacknowledged
        until killed
    python sqlite_bus_child.py claim URL GROUP LEASE
        claims GROUP's dead letters marked for retry (holder "child"), prints
        {"claimed": [letter ids]}, then holds them unhandled until killed
"""

from __future__ import annotations

import asyncio
import json
import sys

from eventcore.messaging.bus import Delivery, OutgoingMessage
from eventcore.messaging.sqlite import SqliteBus
from eventcore.messaging.url import BusUrl

TOPIC = "orders"


def say(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


async def publish(url: str, count: int, prefix: str) -> None:
    bus = await SqliteBus.open(BusUrl.parse(url))
    try:
        for start in range(0, count, 50):
            await bus.publish(
                [
                    OutgoingMessage(
                        topic=TOPIC, message_id=f"{prefix}{i}", key=f"k{i % 7}", body=b"%d" % i
                    )
                    for i in range(start, min(start + 50, count))
                ]
            )
        say(published=count)
    finally:
        await bus.aclose()


async def consume(url: str, group: str) -> None:
    bus = await SqliteBus.open(BusUrl.parse(url), lease_ttl=1.0)
    consumer = await bus.consumer(TOPIC, group, ack_wait=5.0)
    say(joined=True)
    while True:
        deliveries = await consumer.fetch(50, 0.2)
        if deliveries:
            await consumer.ack(deliveries)
            say(ids=[delivery.message_id for delivery in deliveries])


async def hang(url: str, group: str, ack_wait: float, lease_ttl: float) -> None:
    bus = await SqliteBus.open(BusUrl.parse(url), lease_ttl=lease_ttl)
    consumer = await bus.consumer(TOPIC, group, ack_wait=ack_wait)
    deliveries: list[Delivery] = []
    while not deliveries:
        deliveries = await consumer.fetch(1000, 1.0)
    say(fetched=[delivery.message_id for delivery in deliveries])
    await asyncio.sleep(3600)


async def claim(url: str, group: str, lease: float) -> None:
    bus = await SqliteBus.open(BusUrl.parse(url))
    letters = await bus.dead_letters.claim_retries(group, TOPIC, holder="child", lease=lease)
    say(claimed=[letter.letter_id for letter in letters])
    await asyncio.sleep(3600)


def main(argv: list[str]) -> None:
    mode, url, *rest = argv
    if mode == "publish":
        asyncio.run(publish(url, int(rest[0]), rest[1]))
    elif mode == "consume":
        asyncio.run(consume(url, rest[0]))
    elif mode == "hang":
        asyncio.run(hang(url, rest[0], float(rest[1]), float(rest[2])))
    elif mode == "claim":
        asyncio.run(claim(url, rest[0], float(rest[1])))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
