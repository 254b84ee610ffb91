"""Every bus: at-least-once delivery — unacknowledged and nak'ed messages come again,
with ``attempt`` counting, and a partition waits for its unsettled deliveries."""

from __future__ import annotations

import pytest

from eventcore.messaging.bus import Bus, OutgoingMessage
from eventcore.testing._bus_steps import TOPIC, consume, ids, outgoing

#: Short, so the tests that wait for it are quick; the tests that check nothing came
#: *before* it look right after the fetch, far sooner than this.
ACK_WAIT = 1.0


def _one_key(count: int) -> list[OutgoingMessage]:
    return outgoing(count, keys=1)


class RedeliveryContract:
    """Part of :class:`BusContract`: at-least-once delivery — unacknowledged and
    nak'ed messages come again, with ``attempt`` counting, and a partition waits for its
    unsettled deliveries."""

    @pytest.mark.asyncio
    async def test_an_unacknowledged_message_comes_again_after_the_ack_wait(self, bus: Bus) -> None:
        await bus.publish(_one_key(1))
        consumer = await bus.consumer(TOPIC, "billing", ack_wait=ACK_WAIT)
        [first] = await consume(consumer, 1, ack=False)

        [second] = await consume(consumer, 1, ack=False)

        assert (second.message_id, second.sequence) == (first.message_id, first.sequence)
        assert (first.attempt, second.attempt) == (1, 2)
        await consumer.ack([second])
        assert await consumer.fetch(10, timeout=ACK_WAIT + 0.5) == []

    @pytest.mark.asyncio
    async def test_a_partition_gives_nothing_while_an_earlier_delivery_is_unsettled(
        self, bus: Bus
    ) -> None:
        await bus.publish(_one_key(1))
        consumer = await bus.consumer(TOPIC, "billing")
        [first] = await consume(consumer, 1, ack=False)
        await bus.publish(_one_key(2)[1:])

        assert await consumer.fetch(10, timeout=0.3) == []
        await consumer.ack([first])
        assert ids(await consume(consumer, 1)) == ["m1"]

    @pytest.mark.asyncio
    async def test_everything_unsettled_comes_again_in_order(self, bus: Bus) -> None:
        await bus.publish(_one_key(3))
        consumer = await bus.consumer(TOPIC, "billing", ack_wait=ACK_WAIT)
        first = await consume(consumer, 3, ack=False)
        await consumer.ack(first[:1])

        again = await consume(consumer, 2)

        assert ids(again) == ["m1", "m2"]
        assert [d.attempt for d in again] == [2, 2]

    @pytest.mark.asyncio
    async def test_a_nak_without_delay_sends_the_message_again_at_once(self, bus: Bus) -> None:
        await bus.publish(_one_key(1))
        consumer = await bus.consumer(TOPIC, "billing")
        [first] = await consume(consumer, 1, ack=False)

        await consumer.nak(first)
        [second] = await consume(consumer, 1)

        assert (second.message_id, second.attempt) == ("m0", 2)

    @pytest.mark.asyncio
    async def test_a_nak_with_delay_holds_the_message_back_then_sends_it(self, bus: Bus) -> None:
        await bus.publish(_one_key(1))
        consumer = await bus.consumer(TOPIC, "billing")
        [first] = await consume(consumer, 1, ack=False)

        await consumer.nak(first, delay=1.5)

        assert await consumer.fetch(10, timeout=0) == []
        [second] = await consume(consumer, 1)
        assert (second.message_id, second.attempt) == ("m0", 2)

    @pytest.mark.asyncio
    async def test_a_nak_brings_the_later_unacknowledged_deliveries_of_its_partition_back_after_it(
        self,
        bus: Bus,
    ) -> None:
        await bus.publish(_one_key(4))
        consumer = await bus.consumer(TOPIC, "billing")
        first = await consume(consumer, 4, ack=False)
        await consumer.ack(first[:1])

        await consumer.nak(first[1])
        again = await consume(consumer, 3)

        assert ids(again) == ["m1", "m2", "m3"]
        assert [d.attempt for d in again] == [2, 2, 2]

    @pytest.mark.asyncio
    async def test_attempts_keep_counting_over_naks(self, bus: Bus) -> None:
        await bus.publish(_one_key(1))
        consumer = await bus.consumer(TOPIC, "billing")
        attempts = []
        for _ in range(3):
            [delivery] = await consume(consumer, 1, ack=False)
            attempts.append(delivery.attempt)
            await consumer.nak(delivery)

        assert attempts == [1, 2, 3]

    @pytest.mark.asyncio
    async def test_attempts_are_counted_per_group(self, bus: Bus) -> None:
        await bus.publish(_one_key(1))
        billing = await bus.consumer(TOPIC, "billing")
        shipping = await bus.consumer(TOPIC, "shipping")
        [billed] = await consume(billing, 1, ack=False)
        await billing.nak(billed)
        await consume(billing, 1)

        [shipped] = await consume(shipping, 1)

        assert shipped.attempt == 1

    @pytest.mark.asyncio
    async def test_an_unsettled_delivery_comes_again_to_the_next_member_after_close(
        self,
        bus: Bus,
    ) -> None:
        await bus.publish(_one_key(2))
        leaving = await bus.consumer(TOPIC, "billing", member="leaving")
        first = await consume(leaving, 2, ack=False)
        await leaving.ack(first[:1])

        await leaving.aclose()
        staying = await bus.consumer(TOPIC, "billing", member="staying")
        [again] = await consume(staying, 1)

        assert (again.message_id, again.attempt) == ("m1", 2)
