"""A consumer group's offsets never outlive the messages they count, on any bus.

The relay's checkpoint could outlive its store (issue 9, defect 13) because the two
live in different places. A group's offsets count the bus's own sequence, and on every
backend they live and die with the topic's messages:

* memory: both are in the ``MemoryBus`` object;
* SQLite: both are tables of the one bus file (``bus_offsets`` beside ``bus_messages``),
  and a partition's sequence is never reused while the file lives (messages are never
  deleted); a wiped file takes both;
* NATS: a group's progress is its durable consumers, which JetStream keeps inside the
  topic's stream; deleting the stream deletes them, and the group starts again at the
  beginning of the new stream, even though the key-value buckets (leases, dead letters,
  checkpoints) stay.

Each test replaces the topic's messages the one way its backend allows, with fewer new
messages than the group had acknowledged, and checks that the group gets every one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from eventcore.messaging.bus import Bus
from eventcore.messaging.memory import MemoryBus
from eventcore.messaging.sqlite import SqliteBus
from eventcore.messaging.url import BusUrl
from tests.messaging.buses import NATS_URL
from tests.messaging.helpers import PATIENCE, TOPIC, consume, ids, outgoing

GROUP = "billing"
MEMBER = "billing-1"

#: ``replace(bus)`` → a bus on which the topic's messages were replaced by an empty log.
Replace = Callable[[Bus], Awaitable[Bus]]


async def _group_reads(bus: Bus, count: int) -> list[str]:
    consumer = await bus.consumer(TOPIC, GROUP, member=MEMBER)
    try:
        return ids(await consume(consumer, count))
    finally:
        await consumer.aclose()


async def _nothing_more(bus: Bus) -> None:
    consumer = await bus.consumer(TOPIC, GROUP, member=MEMBER)
    try:
        assert await consumer.fetch(100, timeout=0.3) == []
    finally:
        await consumer.aclose()


async def _check(bus: Bus, replace: Replace) -> None:
    await bus.publish(outgoing(10, keys=1, prefix="old"))
    assert await _group_reads(bus, 10) == [f"old{i}" for i in range(10)]

    bus = await replace(bus)
    try:
        await bus.publish(outgoing(4, keys=1, prefix="new"))
        assert await _group_reads(bus, 4) == [f"new{i}" for i in range(4)]
        await _nothing_more(bus)
    finally:
        await bus.aclose()


async def test_a_new_memory_bus_starts_its_groups_over() -> None:
    async def replace(old: Bus) -> Bus:
        await old.aclose()
        return MemoryBus(partitions=2, lease_ttl=1.0)

    await _check(MemoryBus(partitions=2, lease_ttl=1.0), replace)


async def test_a_wiped_sqlite_bus_file_takes_the_offsets_with_it(tmp_path: Path) -> None:
    path = tmp_path / "bus.db"
    url = BusUrl.parse(f"sqlite://{path.as_posix()}?partitions=2")

    async def replace(old: Bus) -> Bus:
        await old.aclose()
        for suffix in ("", "-wal", "-shm"):
            (tmp_path / f"bus.db{suffix}").unlink(missing_ok=True)
        return await SqliteBus.open(url, lease_ttl=1.0)

    await _check(await SqliteBus.open(url, lease_ttl=1.0), replace)


async def test_a_deleted_nats_topic_stream_takes_the_offsets_with_it(namespace: str) -> None:
    import nats

    from eventcore.messaging.nats import NatsBus

    url = BusUrl.parse(f"{NATS_URL}?namespace={namespace}&partitions=2")

    async def replace(old: Bus) -> Bus:
        await old.aclose()
        # What an operator's `nats stream rm` does: the key-value buckets stay.
        client = await nats.connect(NATS_URL, connect_timeout=PATIENCE)
        try:
            await client.jsm().delete_stream(f"{namespace}_{TOPIC}")
            streams = {info.config.name for info in await client.jsm().streams_info()}
        finally:
            await client.close()
        assert f"KV_{namespace}_leases" in streams
        return await NatsBus.connect(url, lease_ttl=1.0)

    await _check(await NatsBus.connect(url, lease_ttl=1.0), replace)
