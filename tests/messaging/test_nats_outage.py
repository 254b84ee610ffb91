"""The NATS server goes away for about ten seconds while service A keeps writing.

A's relay keeps running (the same object, never restarted): its publishes fail, it
says so in ``status().last_error``, and once the server is back (same port, same store
directory) it publishes the backlog on its own. A subscriber receives every event
written before, during and after the outage; duplicates are allowed at the bus level,
a missing event is not.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from eventcore import Event, EventRegistry, EventStore, StreamId, open_store
from eventcore.messaging import TopicMap, open_bus
from eventcore.messaging.inbox import Received
from eventcore.messaging.relay import Relay
from eventcore.messaging.subscriber import Subscriber
from tests.messaging.nats_server import ThrowawayNats

pytestmark = pytest.mark.slow

TOPIC = "payments"
#: A's write rate while the test runs.
PER_SECOND = 50
BEFORE = 2.0
OUTAGE = 10.0
AFTER = 2.0
#: Only a hang reaches it: the relay and subscriber recover within seconds.
RECOVERY_DEADLINE = 90.0


class PaymentMade(Event):
    account: str
    amount: int


registry = EventRegistry([PaymentMade])


class Producer:
    """Appends ``PER_SECOND`` payments a second to a few accounts until stopped."""

    def __init__(self, store: EventStore) -> None:
        self._store = store
        self._stopping = asyncio.Event()
        self._rng = random.Random(7)
        self.appended = 0

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        versions: dict[StreamId, int] = {}
        while not self._stopping.is_set():
            stream = StreamId(f"account-{self._rng.randrange(10)}")
            payment = PaymentMade(account=str(stream), amount=self._rng.randrange(1, 100))
            version = versions.get(stream, 0)
            await self._store.append(
                {stream: [registry.encode(payment)]}, expected={stream: version}
            )
            versions[stream] = version + 1
            self.appended += 1
            await asyncio.sleep(1 / PER_SECOND)


async def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + RECOVERY_DEADLINE
    # Polling: the conditions are status fields and counters, which signal nothing.
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {RECOVERY_DEADLINE:g} s: {what}")
        await asyncio.sleep(0.05)


async def test_the_relay_rides_out_a_nats_outage_and_every_event_arrives(tmp_path: Path) -> None:
    server = ThrowawayNats(tmp_path)  # skips (or fails under CI=true) without nats-server
    server.start()
    try:
        await outage_scenario(server)
    finally:
        server.stop()


async def outage_scenario(server: ThrowawayNats) -> None:
    url = f"{server.url}?namespace=outage{uuid.uuid4().hex[:8]}"
    store = await open_store("memory://")
    relay_bus = await open_bus(url)
    subscriber_bus = await open_bus(url)
    received: set[str] = set()
    deliveries = 0

    async def note(message: Received) -> None:
        nonlocal deliveries
        deliveries += 1
        received.add(message.envelope.id)

    relay = Relay(store, relay_bus, TopicMap({PaymentMade: TOPIC}), service="outage-a")
    subscriber = Subscriber(
        subscriber_bus, TOPIC, {PaymentMade: note}, group="outage-b", registry=registry
    )
    producer = Producer(store)
    errors_seen: list[str] = []
    try:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(relay.run())
            tasks.create_task(subscriber.run())
            producing = tasks.create_task(producer.run())

            await asyncio.sleep(BEFORE)
            before = await store.last_position()
            async with asyncio.timeout(RECOVERY_DEADLINE):
                await relay.published(before)
            assert relay.status().last_error is None

            await asyncio.to_thread(server.stop)
            down_until = time.monotonic() + OUTAGE
            while time.monotonic() < down_until:
                error = relay.status().last_error
                if error is not None and error not in errors_seen:
                    errors_seen.append(error)
                await asyncio.sleep(0.05)
            during = await store.last_position()
            stuck = relay.status()
            await asyncio.to_thread(server.start)

            await asyncio.sleep(AFTER)
            producer.stop()
            await producing
            last = await store.last_position()
            async with asyncio.timeout(RECOVERY_DEADLINE):
                await relay.published(last)
            await until(lambda: relay.status().checkpoint >= last, "the checkpoint saved")
            ids = {str(e.event_id) async for batch in store.read_all() for e in batch}
            await until(lambda: received >= ids, f"every event received ({len(ids)})")
            relay.stop()
            subscriber.stop()
    finally:
        await subscriber_bus.aclose()
        await relay_bus.aclose()
        await store.aclose()

    print(f"positions: {before} before, {during} at the end of the outage, {last} in all")
    print(f"errors the relay reported: {errors_seen}")
    print(f"relay at the end: {relay.status()}; {deliveries} deliveries of {len(ids)} events")
    assert 0 < before < during < last, (before, during, last)
    assert errors_seen, "the relay never reported the outage in last_error"
    assert stuck.position < during, "the relay acknowledged events while the server was down"
    status = relay.status()
    assert status.last_error is None, status.last_error
    assert status.republished_batches >= 1
    assert received == ids
    assert deliveries >= len(ids)
