"""Every bus: checkpoints, closing, and names refused before anything happens."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from eventcore.errors import BusClosed, InvalidInput, InvalidName
from eventcore.messaging.bus import Bus, OutgoingMessage
from eventcore.store.checkpoint import Checkpoint
from eventcore.testing._bus_fixtures import Connect
from eventcore.testing._bus_steps import TOPIC, outgoing

BAD_NAMES = ["", "has space", "dot.ted", "sub>ject", "x" * 65, "é"]


STORE_A = "0d3c6a52-5f7e-4d3a-9b7c-2f1e8a4b6c01"
STORE_B = "7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"


def _publish(bus: Bus) -> Awaitable[object]:
    return bus.publish(outgoing(1))


def _consumer(bus: Bus) -> Awaitable[object]:
    return bus.consumer(TOPIC, "billing")


def _load_checkpoint(bus: Bus) -> Awaitable[object]:
    return bus.load_checkpoint("relay")


def _save_checkpoint(bus: Bus) -> Awaitable[object]:
    return bus.save_checkpoint("relay", Checkpoint(position=1, store_id=STORE_A))


def _count_letters(bus: Bus) -> Awaitable[object]:
    return bus.dead_letters.count()


class LifecycleContract:
    """Part of :class:`BusContract`: checkpoints, closing, and names refused
    before anything happens."""

    @pytest.mark.asyncio
    async def test_a_checkpoint_is_none_until_saved_and_keeps_its_position_and_store(
        self,
        bus: Bus,
    ) -> None:
        assert await bus.load_checkpoint("relay-orders") is None

        await bus.save_checkpoint("relay-orders", Checkpoint(position=42, store_id=STORE_A))
        await bus.save_checkpoint("relay-users", Checkpoint(position=7, store_id=STORE_B))
        await bus.save_checkpoint("relay-orders", Checkpoint(position=43, store_id=STORE_A))

        assert await bus.load_checkpoint("relay-orders") == Checkpoint(
            position=43, store_id=STORE_A
        )
        assert await bus.load_checkpoint("relay-users") == Checkpoint(position=7, store_id=STORE_B)

    @pytest.mark.asyncio
    async def test_a_checkpoint_saved_for_another_store_replaces_the_store_too(
        self, bus: Bus
    ) -> None:
        await bus.save_checkpoint("relay-orders", Checkpoint(position=900, store_id=STORE_A))
        await bus.save_checkpoint("relay-orders", Checkpoint(position=3, store_id=STORE_B))

        assert await bus.load_checkpoint("relay-orders") == Checkpoint(position=3, store_id=STORE_B)

    @pytest.mark.asyncio
    async def test_a_checkpoint_is_seen_by_another_handle(
        self, bus: Bus, make_bus: Connect
    ) -> None:
        await bus.save_checkpoint("relay-orders", Checkpoint(position=42, store_id=STORE_A))
        other = await make_bus()

        assert await other.load_checkpoint("relay-orders") == Checkpoint(
            position=42, store_id=STORE_A
        )

    @pytest.mark.parametrize("checkpoint", [42, None, (42, STORE_A)], ids=["int", "none", "tuple"])
    @pytest.mark.asyncio
    async def test_a_checkpoint_that_is_not_one_is_refused_and_nothing_saved(
        self, bus: Bus, checkpoint: object
    ) -> None:
        with pytest.raises(InvalidInput):
            await bus.save_checkpoint("relay-orders", checkpoint)  # type: ignore[arg-type]

        assert await bus.load_checkpoint("relay-orders") is None

    @pytest.mark.parametrize(
        "ack_wait",
        [0, -1.0, float("nan"), True, "5"],
        ids=["zero", "negative", "nan", "bool", "text"],
    )
    @pytest.mark.asyncio
    async def test_an_ack_wait_that_is_not_a_positive_number_of_seconds_is_refused(
        self, bus: Bus, ack_wait: object
    ) -> None:
        with pytest.raises(InvalidInput):
            await bus.consumer(TOPIC, "billing", ack_wait=ack_wait)  # type: ignore[arg-type]

    @pytest.mark.asyncio
    async def test_closing_twice_is_fine(self, bus: Bus) -> None:
        await bus.aclose()
        await bus.aclose()

    @pytest.mark.asyncio
    async def test_async_with_gives_the_bus_and_closes_it_however_the_block_ends(
        self, bus: Bus
    ) -> None:
        async with bus as entered:
            assert entered is bus
            await bus.save_checkpoint("relay-orders", Checkpoint(position=1, store_id=STORE_A))
        with pytest.raises(BusClosed):
            await bus.load_checkpoint("relay-orders")

    @pytest.mark.asyncio
    async def test_async_with_closes_the_bus_when_the_block_raises(self, bus: Bus) -> None:
        with pytest.raises(LookupError):
            async with bus:
                raise LookupError("the caller's own failure")
        with pytest.raises(BusClosed):
            await bus.load_checkpoint("relay-orders")

    @pytest.mark.parametrize(
        "operation",
        [_publish, _consumer, _load_checkpoint, _save_checkpoint, _count_letters],
        ids=["publish", "consumer", "load_checkpoint", "save_checkpoint", "dead_letters"],
    )
    @pytest.mark.asyncio
    async def test_a_closed_bus_refuses_work(
        self, bus: Bus, operation: Callable[[Bus], Awaitable[object]]
    ) -> None:
        await bus.aclose()

        with pytest.raises(BusClosed):
            await operation(bus)

    @pytest.mark.asyncio
    async def test_a_closed_consumer_refuses_to_fetch(self, bus: Bus) -> None:
        consumer = await bus.consumer(TOPIC, "billing")
        await consumer.aclose()
        await consumer.aclose()

        with pytest.raises(BusClosed):
            await consumer.fetch(1, timeout=0)

    @pytest.mark.parametrize("name", BAD_NAMES)
    @pytest.mark.asyncio
    async def test_a_bad_topic_name_is_refused_and_nothing_is_published(
        self, bus: Bus, name: str
    ) -> None:
        good = outgoing(1)
        bad = OutgoingMessage(topic=name, message_id="bad", key="k", body=b"{}")

        with pytest.raises(InvalidName):
            await bus.publish([*good, bad])

        consumer = await bus.consumer(TOPIC, "billing")
        assert await consumer.fetch(10, timeout=0.2) == []

    @pytest.mark.parametrize("name", BAD_NAMES)
    @pytest.mark.parametrize("which", ["topic", "group"])
    @pytest.mark.asyncio
    async def test_a_bad_topic_or_group_name_is_refused_by_consumer(
        self, bus: Bus, name: str, which: str
    ) -> None:
        names = {"topic": TOPIC, "group": "billing", which: name}

        with pytest.raises(InvalidName):
            await bus.consumer(names["topic"], names["group"])

    @pytest.mark.parametrize("which", ["group", "topic"])
    @pytest.mark.asyncio
    async def test_a_bad_name_is_refused_by_the_dead_letter_box(self, bus: Bus, which: str) -> None:
        names = {"group": "billing", "topic": TOPIC, which: "has space"}

        with pytest.raises(InvalidName):
            await bus.dead_letters.claim_retries(names["group"], names["topic"])
