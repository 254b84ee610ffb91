"""Every bus: what is published is consumed, once per group, and stored once per id."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from eventcore.messaging.bus import Bus, OutgoingMessage, partition_of
from eventcore.testing._bus_fixtures import Connect
from eventcore.testing._bus_steps import PARTITIONS as TEST_PARTITIONS
from eventcore.testing._bus_steps import TOPIC, consume, ids, outgoing


def _twice_in_one_batch(message: OutgoingMessage) -> list[list[OutgoingMessage]]:
    return [[message, message]]


def _twice_in_two_calls(message: OutgoingMessage) -> list[list[OutgoingMessage]]:
    return [[message], [message]]


def _again_with_another_body_and_key(message: OutgoingMessage) -> list[list[OutgoingMessage]]:
    changed = OutgoingMessage(
        topic=message.topic, message_id=message.message_id, key="other", body=b"changed"
    )
    return [[message], [changed]]


class PublishContract:
    """Part of :class:`BusContract`: what is published is consumed, once per
    group, and stored once per id."""

    @pytest.mark.asyncio
    async def test_a_published_message_arrives_as_it_was_sent(self, bus: Bus) -> None:
        sent = OutgoingMessage(topic=TOPIC, message_id="m-1", key="order-7", body=b'{"n": 1}')
        await bus.publish([sent])
        consumer = await bus.consumer(TOPIC, "billing")

        [delivery] = await consume(consumer, 1)

        assert (delivery.topic, delivery.message_id, delivery.key, delivery.body) == (
            TOPIC,
            "m-1",
            "order-7",
            b'{"n": 1}',
        )
        assert delivery.partition == partition_of("order-7", TEST_PARTITIONS)
        assert delivery.attempt == 1
        assert delivery.sequence >= 1
        assert delivery.published_at.tzinfo is not None

    @pytest.mark.asyncio
    async def test_acknowledged_messages_never_come_again(self, bus: Bus) -> None:
        sent = outgoing(20, keys=5)
        await bus.publish(sent)
        consumer = await bus.consumer(TOPIC, "billing")

        got = await consume(consumer, 20)

        assert sorted(ids(got)) == sorted(m.message_id for m in sent)
        assert {d.attempt for d in got} == {1}
        assert await consumer.fetch(100, timeout=0.3) == []
        await consumer.aclose()
        again = await bus.consumer(TOPIC, "billing")
        assert await again.fetch(100, timeout=0.3) == []

    @pytest.mark.asyncio
    async def test_messages_published_on_one_handle_are_consumed_on_another(
        self, bus: Bus, make_bus: Connect
    ) -> None:
        other = await make_bus()
        consumer = await other.consumer(TOPIC, "billing")
        await bus.publish(outgoing(5))

        got = await consume(consumer, 5)

        assert sorted(ids(got)) == [f"m{i}" for i in range(5)]

    @pytest.mark.asyncio
    async def test_each_group_reads_the_whole_topic_on_its_own(self, bus: Bus) -> None:
        await bus.publish(outgoing(12))
        billing = await bus.consumer(TOPIC, "billing")
        shipping = await bus.consumer(TOPIC, "shipping")

        billed = await consume(billing, 12)
        shipped = await consume(shipping, 12)

        assert sorted(ids(billed)) == sorted(ids(shipped)) == sorted(f"m{i}" for i in range(12))
        assert {d.attempt for d in billed + shipped} == {1}

    @pytest.mark.asyncio
    async def test_a_group_created_late_starts_at_the_beginning(self, bus: Bus) -> None:
        early = await bus.consumer(TOPIC, "early")
        await bus.publish(outgoing(3))
        await consume(early, 3)

        late = await bus.consumer(TOPIC, "late")

        assert sorted(ids(await consume(late, 3))) == ["m0", "m1", "m2"]

    @pytest.mark.asyncio
    async def test_topics_are_separate(self, bus: Bus) -> None:
        await bus.publish(outgoing(3, topic="orders") + outgoing(2, topic="users", prefix="u"))
        users = await bus.consumer("users", "billing")

        assert sorted(ids(await consume(users, 2))) == ["u0", "u1"]
        assert await users.fetch(10, timeout=0.3) == []

    @pytest.mark.parametrize(
        "batches",
        [_twice_in_one_batch, _twice_in_two_calls, _again_with_another_body_and_key],
        ids=["one-batch", "two-calls", "another-body"],
    )
    @pytest.mark.asyncio
    async def test_a_message_id_published_again_is_stored_once(
        self, bus: Bus, batches: Callable[[OutgoingMessage], list[list[OutgoingMessage]]]
    ) -> None:
        first = OutgoingMessage(topic=TOPIC, message_id="dup", key="k", body=b"first")
        for batch in batches(first):
            await bus.publish(batch)
        await bus.publish(outgoing(1, prefix="after"))
        consumer = await bus.consumer(TOPIC, "billing")

        got = await consume(consumer, 2)

        assert sorted(ids(got)) == ["after0", "dup"]
        [dup] = [d for d in got if d.message_id == "dup"]
        assert (dup.key, dup.body) == ("k", b"first")
        assert await consumer.fetch(10, timeout=0.3) == []

    @pytest.mark.asyncio
    async def test_the_same_message_id_on_two_topics_is_two_messages(self, bus: Bus) -> None:
        await bus.publish(outgoing(1, topic="orders") + outgoing(1, topic="users"))
        orders = await bus.consumer("orders", "billing")
        users = await bus.consumer("users", "billing")

        assert ids(await consume(orders, 1)) == ids(await consume(users, 1)) == ["m0"]

    @pytest.mark.asyncio
    async def test_publishing_nothing_is_fine(self, bus: Bus) -> None:
        await bus.publish([])
