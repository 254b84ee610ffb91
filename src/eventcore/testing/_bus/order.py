"""Every bus: within a group, each key's messages are handled in publish order — also
when some of them fail and are nak'ed."""

from __future__ import annotations

import time
from collections import defaultdict

import pytest

from eventcore.messaging.bus import Bus, Consumer
from eventcore.testing._bus_steps import PATIENCE, TOPIC, consume, outgoing

COUNT = 60
KEYS = 7


async def _handle_all(consumer: Consumer, fail_every: int) -> list[int]:
    """Run the subscriber loop until every message was handled; the first delivery of
    every ``fail_every``-th message fails and is nak'ed. Returns the handled indexes in
    handling order."""
    handled: list[int] = []
    deadline = time.monotonic() + PATIENCE
    while len(handled) < COUNT:
        assert time.monotonic() < deadline, f"only {len(handled)} of {COUNT} handled"
        failed: set[int] = set()
        for delivery in await consumer.fetch(KEYS, timeout=0.5):
            if delivery.partition in failed:
                continue  # it comes again after the failed one
            index = int(delivery.body)
            if fail_every and index % fail_every == 0 and delivery.attempt == 1:
                await consumer.nak(delivery)
                failed.add(delivery.partition)
                continue
            await consumer.ack([delivery])
            handled.append(index)
    return handled


class OrderContract:
    """Part of :class:`BusContract`: within a group, each key's messages are
    handled in publish order — also when some of them fail and are nak'ed."""

    @pytest.mark.parametrize("fail_every", [0, 4], ids=["no-failures", "with-naks"])
    @pytest.mark.asyncio
    async def test_each_keys_messages_are_handled_in_publish_order(
        self, bus: Bus, fail_every: int
    ) -> None:
        sent = outgoing(COUNT, keys=KEYS)
        for start in range(0, COUNT, 20):
            await bus.publish(sent[start : start + 20])
        consumer = await bus.consumer(TOPIC, "billing")

        handled = await _handle_all(consumer, fail_every)

        assert sorted(handled) == list(range(COUNT))
        by_key: dict[int, list[int]] = defaultdict(list)
        for index in handled:
            by_key[index % KEYS].append(index)
        for indexes in by_key.values():
            assert indexes == sorted(indexes)

    @pytest.mark.asyncio
    async def test_sequences_grow_in_publish_order_within_a_partition(self, bus: Bus) -> None:
        await bus.publish(outgoing(10, keys=1))
        await bus.publish(outgoing(10, keys=1, start=10))
        consumer = await bus.consumer(TOPIC, "billing")

        deliveries = await consume(consumer, 20, batch=20)

        assert [int(d.body) for d in deliveries] == list(range(20))
        sequences = [d.sequence for d in deliveries]
        assert sequences == sorted(set(sequences))
