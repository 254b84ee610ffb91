"""Every bus: checkpoints, closing, and names refused before anything happens."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from eventcore.errors import BusClosed, InvalidName
from eventcore.messaging.bus import Bus, OutgoingMessage
from tests.messaging.buses import Connect
from tests.messaging.helpers import TOPIC, outgoing

BAD_NAMES = ["", "has space", "dot.ted", "sub>ject", "x" * 65, "é"]


async def test_a_checkpoint_starts_at_zero_and_keeps_what_was_saved(bus: Bus) -> None:
    assert await bus.load_checkpoint("relay-orders") == 0

    await bus.save_checkpoint("relay-orders", 42)
    await bus.save_checkpoint("relay-users", 7)
    await bus.save_checkpoint("relay-orders", 43)

    assert await bus.load_checkpoint("relay-orders") == 43
    assert await bus.load_checkpoint("relay-users") == 7


async def test_a_checkpoint_is_seen_by_another_handle(bus: Bus, make_bus: Connect) -> None:
    await bus.save_checkpoint("relay-orders", 42)
    other = await make_bus()

    assert await other.load_checkpoint("relay-orders") == 42


async def test_closing_twice_is_fine(bus: Bus) -> None:
    await bus.aclose()
    await bus.aclose()


async def test_async_with_gives_the_bus_and_closes_it_however_the_block_ends(bus: Bus) -> None:
    async with bus as entered:
        assert entered is bus
        await bus.save_checkpoint("relay-orders", 1)
    with pytest.raises(BusClosed):
        await bus.load_checkpoint("relay-orders")


async def test_async_with_closes_the_bus_when_the_block_raises(bus: Bus) -> None:
    with pytest.raises(LookupError):
        async with bus:
            raise LookupError("the caller's own failure")
    with pytest.raises(BusClosed):
        await bus.load_checkpoint("relay-orders")


def _publish(bus: Bus) -> Awaitable[object]:
    return bus.publish(outgoing(1))


def _consumer(bus: Bus) -> Awaitable[object]:
    return bus.consumer(TOPIC, "billing")


def _load_checkpoint(bus: Bus) -> Awaitable[object]:
    return bus.load_checkpoint("relay")


def _save_checkpoint(bus: Bus) -> Awaitable[object]:
    return bus.save_checkpoint("relay", 1)


def _count_letters(bus: Bus) -> Awaitable[object]:
    return bus.dead_letters.count()


@pytest.mark.parametrize(
    "operation",
    [_publish, _consumer, _load_checkpoint, _save_checkpoint, _count_letters],
    ids=["publish", "consumer", "load_checkpoint", "save_checkpoint", "dead_letters"],
)
async def test_a_closed_bus_refuses_work(
    bus: Bus, operation: Callable[[Bus], Awaitable[object]]
) -> None:
    await bus.aclose()

    with pytest.raises(BusClosed):
        await operation(bus)


async def test_a_closed_consumer_refuses_to_fetch(bus: Bus) -> None:
    consumer = await bus.consumer(TOPIC, "billing")
    await consumer.aclose()
    await consumer.aclose()

    with pytest.raises(BusClosed):
        await consumer.fetch(1, timeout=0)


@pytest.mark.parametrize("name", BAD_NAMES)
async def test_a_bad_topic_name_is_refused_and_nothing_is_published(bus: Bus, name: str) -> None:
    good = outgoing(1)
    bad = OutgoingMessage(topic=name, message_id="bad", key="k", body=b"{}")

    with pytest.raises(InvalidName):
        await bus.publish([*good, bad])

    consumer = await bus.consumer(TOPIC, "billing")
    assert await consumer.fetch(10, timeout=0.2) == []


@pytest.mark.parametrize("name", BAD_NAMES)
@pytest.mark.parametrize("which", ["topic", "group"])
async def test_a_bad_topic_or_group_name_is_refused_by_consumer(
    bus: Bus, name: str, which: str
) -> None:
    names = {"topic": TOPIC, "group": "billing", which: name}

    with pytest.raises(InvalidName):
        await bus.consumer(names["topic"], names["group"])


@pytest.mark.parametrize("which", ["group", "topic"])
async def test_a_bad_name_is_refused_by_the_dead_letter_box(bus: Bus, which: str) -> None:
    names = {"group": "billing", "topic": TOPIC, which: "has space"}

    with pytest.raises(InvalidName):
        await bus.dead_letters.claim_retries(names["group"], names["topic"])
