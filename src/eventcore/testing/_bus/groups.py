"""Every bus: the members of a consumer group share its partitions — each owned by one
member at a time, handed over without losing or repeating a message."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict

import pytest

from eventcore.messaging.bus import Bus, Consumer, Delivery
from eventcore.testing._bus_fixtures import Connect
from eventcore.testing._bus_steps import PARTITIONS as TEST_PARTITIONS
from eventcore.testing._bus_steps import PATIENCE, TOPIC, consume, ids, outgoing, settle


class _Log:
    """Who handled what, in handling order."""

    def __init__(self) -> None:
        self.handled: list[tuple[str, Delivery]] = []

    def ids(self) -> list[str]:
        return [delivery.message_id for _, delivery in self.handled]

    def by(self, member: str) -> list[str]:
        return [d.message_id for who, d in self.handled if who == member]


async def _step(consumer: Consumer, log: _Log, pause: float = 0.0) -> None:
    """One turn of the subscriber loop: fetch, handle (slowly, if ``pause``), ack."""
    batch = await consumer.fetch(4, timeout=0.1)
    owned = consumer.partitions
    for delivery in batch:
        assert delivery.partition in owned, "a delivery from a partition the member does not own"
        log.handled.append((consumer.member, delivery))
    if pause:
        await asyncio.sleep(pause)
    await consumer.ack(batch)


def _assert_disjoint(consumers: list[Consumer]) -> None:
    seen: set[int] = set()
    for consumer in consumers:
        assert not seen & consumer.partitions, "a partition owned by two members at once"
        seen |= consumer.partitions


def _assert_each_once_in_key_order(log: _Log, published: list[str]) -> None:
    assert sorted(log.ids()) == sorted(published)
    assert {d.attempt for _, d in log.handled} == {1}
    by_key: dict[str, list[int]] = defaultdict(list)
    for _, delivery in log.handled:
        by_key[delivery.key].append(int(delivery.body))
    for indexes in by_key.values():
        assert indexes == sorted(indexes)


async def _two_members(bus: Bus, make_bus: Connect) -> tuple[Consumer, Consumer]:
    """Members "a" and "b" of one group, on two handles of the bus, settled."""
    a = await bus.consumer(TOPIC, "billing", member="a")
    b = await (await make_bus()).consumer(TOPIC, "billing", member="b")
    await settle([a, b], TEST_PARTITIONS)
    return a, b


async def _everything_without_acking(consumer: Consumer) -> list[Delivery]:
    """What ``consumer`` hands out before it wants acks (a bus may give only the first
    message of each partition until it is settled)."""
    got = await consume(consumer, 1, ack=False)
    while batch := await consumer.fetch(100, timeout=0.3):
        got.extend(batch)
    return got


class GroupsContract:
    """Part of :class:`BusContract`: the members of a consumer group share its
    partitions — each owned by one member at a time, handed over without losing or
    repeating a message."""

    @pytest.mark.asyncio
    async def test_two_members_split_the_partitions_and_each_message_goes_to_one(
        self, bus: Bus, make_bus: Connect
    ) -> None:
        a, b = await _two_members(bus, make_bus)
        sent = outgoing(40, keys=10)
        await bus.publish(sent)

        log = _Log()
        deadline = time.monotonic() + PATIENCE
        while len(log.handled) < len(sent):
            assert time.monotonic() < deadline, f"only {len(log.handled)} handled"
            await asyncio.gather(_step(a, log), _step(b, log))
            _assert_disjoint([a, b])

        _assert_each_once_in_key_order(log, [m.message_id for m in sent])
        assert log.by("a")
        assert log.by("b")

    @pytest.mark.asyncio
    async def test_when_a_member_leaves_another_takes_over_its_unacknowledged_rest(
        self, bus: Bus, make_bus: Connect
    ) -> None:
        a, b = await _two_members(bus, make_bus)
        sent = outgoing(40, keys=10)
        await bus.publish(sent)
        fetched_by_a = await _everything_without_acking(a)
        assert len(fetched_by_a) >= 2
        acked_by_a = fetched_by_a[: len(fetched_by_a) // 2]
        await a.ack(acked_by_a)

        await a.aclose()
        got = await consume(b, len(sent) - len(acked_by_a))

        assert sorted(ids(got)) == sorted({m.message_id for m in sent} - set(ids(acked_by_a)))
        assert set(b.partitions) == set(range(TEST_PARTITIONS))
        left_by_a = set(ids(fetched_by_a)) - set(ids(acked_by_a))
        assert all(d.attempt == 2 for d in got if d.message_id in left_by_a)
        assert all(d.attempt == 1 for d in got if d.message_id not in left_by_a)

    @pytest.mark.asyncio
    async def test_a_new_member_takes_partitions_from_a_busy_one_without_loss_or_repeats(
        self, bus: Bus, make_bus: Connect
    ) -> None:
        a = await bus.consumer(TOPIC, "billing", member="a")
        await settle([a], TEST_PARTITIONS)
        published = outgoing(12, keys=10)
        await bus.publish(published)
        log = _Log()
        await _step(a, log)
        b = await (await make_bus()).consumer(TOPIC, "billing", member="b")

        deadline = time.monotonic() + PATIENCE
        while not (log.by("b") and len(log.handled) >= len(published)):
            assert time.monotonic() < deadline, f"b never took over: {a.partitions}, {b.partitions}"
            if not log.by("b"):
                # Keep a busy until b has taken some of its partitions, however fast a is.
                more = outgoing(4, keys=10, start=len(published))
                await bus.publish(more)
                published += more
            await asyncio.gather(_step(a, log, pause=0.02), _step(b, log))
            _assert_disjoint([a, b])

        _assert_each_once_in_key_order(log, [m.message_id for m in published])
        assert a.partitions
        assert b.partitions
