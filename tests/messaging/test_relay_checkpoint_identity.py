"""The relay's checkpoint is bound to the store it counts, on every bus (issue 9, defect 13).

A service keeps its bus while its store is replaced — a wiped SQLite file, a move to a
PostgreSQL schema. The checkpoint the bus holds counted the old store's log; taken as a
position in the new one it would skip that store's first events. The relay starts over
from the beginning of the new log instead, reports it, and never shows a lag of 0 while
the store holds events it has not published.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from eventcore import Event, EventRegistry, EventStore, StoredEvent, StreamId
from eventcore.errors import BusUnavailable
from eventcore.messaging import Bus, TopicMap
from eventcore.messaging.relay import Relay
from eventcore.store.checkpoint import Checkpoint
from tests.messaging.buses import Connect
from tests.messaging.helpers import PATIENCE, consume, ids
from tests.service_stores import ServiceStores

SERVICE = "accounts"
TOPIC = "deposits"


class Deposited(Event):
    account: str
    amount: int


registry = EventRegistry([Deposited])
TOPICS = TopicMap({Deposited: TOPIC})


@pytest.fixture
async def stores(tmp_path: Path) -> AsyncIterator[ServiceStores]:
    async with ServiceStores.in_directory(tmp_path) as opened:
        yield opened


class HeldReads:
    """A store whose log reads wait until ``release`` is set (a gate on a real store:
    what is read then is the store's own log). ``reading`` is set at the first read."""

    def __init__(self, inner: EventStore) -> None:
        self.inner = inner
        self.reading = asyncio.Event()
        self.release = asyncio.Event()

    async def store_id(self) -> str:
        return await self.inner.store_id()

    async def last_position(self) -> int:
        return await self.inner.last_position()

    async def settled_position(self) -> int:
        return await self.inner.settled_position()

    async def wait_for_events(self, after: int, timeout: float) -> bool:  # noqa: ASYNC109
        return await self.inner.wait_for_events(after, timeout)

    async def read_all(self, **options: Any) -> AsyncIterator[list[StoredEvent]]:
        self.reading.set()
        await self.release.wait()
        async for batch in self.inner.read_all(**options):
            yield batch


class RefusedSaves:
    """A bus that refuses to save checkpoints (``BusUnavailable``, as a bus that is down
    would) until ``accept`` is set; everything else is ``inner``'s own."""

    def __init__(self, inner: Bus) -> None:
        self.inner = inner
        self.accept = asyncio.Event()
        self.refused = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def save_checkpoint(self, name: str, checkpoint: Checkpoint) -> None:
        if not self.accept.is_set():
            self.refused += 1
            raise BusUnavailable("refused by the test")
        await self.inner.save_checkpoint(name, checkpoint)


async def deposit(store: EventStore, count: int) -> list[str]:
    """Append ``count`` deposits over a few streams; their event ids, in log order."""
    ids: list[str] = []
    for n in range(count):
        stream = StreamId(f"account-{n % 7}")
        version = await store.stream_version(stream)
        event = registry.encode(Deposited(account=str(stream), amount=n + 1))
        await store.append({stream: [event]}, expected={stream: version})
        ids.append(str(event.event_id))
    return ids


@asynccontextmanager
async def running(relay: Relay, *gates: asyncio.Event) -> AsyncIterator[None]:
    """``relay`` runs inside the block; on leaving, ``gates`` are opened (so nothing
    stays held) and the relay is stopped and its run awaited."""
    task = asyncio.create_task(relay.run())
    try:
        yield
    finally:
        for gate in gates:
            gate.set()
        relay.stop()
        async with asyncio.timeout(PATIENCE):
            await task


async def publish_all(store: EventStore, bus: Bus) -> Relay:
    """Run a relay until everything in ``store`` now is published; the stopped relay."""
    relay = Relay(store, bus, TOPICS, service=SERVICE)
    async with running(relay), asyncio.timeout(PATIENCE):
        await relay.published(await store.last_position())
    return relay


async def a_smaller_log_replaces_a_published_one(
    stores: ServiceStores, make_bus: Connect
) -> tuple[list[str], EventStore, list[str]]:
    """120 events published from a SQLite file, which is then wiped and given 40 new
    ones: the ids of both, and the new store."""
    old = await stores.sqlite()
    first = await deposit(old, 120)
    await publish_all(old, await make_bus())
    new = await stores.wiped(old)
    return first, new, await deposit(new, 40)


async def on_the_bus(bus: Bus, count: int) -> list[str]:
    """The ids of the ``count`` messages the topic holds, read by a fresh group (which
    then finds nothing more)."""
    consumer = await bus.consumer(TOPIC, f"check{uuid.uuid4().hex[:8]}")
    try:
        seen = ids(await consume(consumer, count))
        seen += ids(await consumer.fetch(1000, timeout=0.3))
    finally:
        await consumer.aclose()
    return seen


@pytest.mark.parametrize("replacement", ["wiped-sqlite-file", "sqlite-to-postgres"])
async def test_a_relay_on_a_replaced_store_publishes_every_event_of_the_new_store(
    stores: ServiceStores, make_bus: Connect, replacement: str
) -> None:
    old = await stores.sqlite()
    old_id = await old.store_id()
    first = await deposit(old, 120)
    await publish_all(old, await make_bus())

    new = await stores.replacement(replacement, old)
    # More events than the old checkpoint: no look at positions alone can tell.
    second = await deposit(new, 200)
    bus = await make_bus()  # the service restarted: same bus, new store
    relay = await publish_all(new, bus)

    assert sorted(await on_the_bus(bus, 320)) == sorted(first + second)
    status = relay.status()
    new_id = await new.store_id()
    assert new_id != old_id
    assert status.store_id == new_id
    assert status.foreign_checkpoint == Checkpoint(position=120, store_id=old_id)
    assert status.position == status.checkpoint == 200
    assert status.lag_events == 0
    assert await bus.load_checkpoint(SERVICE) == Checkpoint(position=200, store_id=new_id)


async def test_a_relay_on_a_store_holding_fewer_events_than_the_checkpoint_reports_the_lag(
    stores: ServiceStores, make_bus: Connect
) -> None:
    first, new, second = await a_smaller_log_replaces_a_published_one(stores, make_bus)
    held = HeldReads(new)
    bus = await make_bus()
    relay = Relay(held, bus, TOPICS, service=SERVICE)  # type: ignore[arg-type]
    async with running(relay, held.release), asyncio.timeout(PATIENCE):
        await held.reading.wait()
        # Started, and nothing of the new store read yet: all 40 events are behind.
        status = relay.status()
        assert status.position == status.checkpoint == 0
        assert status.head == 40
        assert status.lag_events == 40
        held.release.set()
        await relay.published(40)

    assert sorted(await on_the_bus(bus, 160)) == sorted(first + second)


async def test_while_the_bus_refuses_the_new_checkpoint_the_lag_already_counts_the_new_log(
    stores: ServiceStores, make_bus: Connect
) -> None:
    _, new, _ = await a_smaller_log_replaces_a_published_one(stores, make_bus)
    bus = RefusedSaves(await make_bus())
    relay = Relay(new, bus, TOPICS, service=SERVICE)  # type: ignore[arg-type]
    async with running(relay, bus.accept), asyncio.timeout(PATIENCE):
        # Polling: the count is a plain attribute, which signals nothing.
        while bus.refused < 2:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        # The relay set the old checkpoint aside and is trying to save its new start.
        status = relay.status()
        assert status.position == 0
        assert status.lag_events == 40
        assert "refused by the test" in (status.last_error or "")
        bus.accept.set()
        await relay.published(40)


@pytest.mark.parametrize(
    ("events", "legacy", "published_from"),
    [
        # 500 events of some other log: past the head, so proof of another log.
        pytest.param(30, 500, 0, id="above-the-head-starts-over"),
        # Published up to 60 from this log: taken, continued from.
        pytest.param(100, 60, 60, id="within-the-log-is-continued"),
        # Nothing left to publish: bound all the same, so that a store replaced before
        # the next event is seen for what it is.
        pytest.param(50, 50, 50, id="at-the-head-is-bound-at-once"),
    ],
)
async def test_a_legacy_checkpoint_is_judged_by_the_head_and_bound_to_the_store(
    stores: ServiceStores, bus: Bus, events: int, legacy: int, published_from: int
) -> None:
    store = await stores.sqlite()
    written = await deposit(store, events)
    # Saved by an eventcore that did not keep the store.
    await bus.save_checkpoint(SERVICE, Checkpoint(position=legacy))

    relay = await publish_all(store, bus)

    expected = written[published_from:]
    assert sorted(await on_the_bus(bus, len(expected))) == sorted(expected)
    set_aside = Checkpoint(position=legacy) if published_from == 0 else None
    assert relay.status().foreign_checkpoint == set_aside
    assert await bus.load_checkpoint(SERVICE) == Checkpoint(
        position=events, store_id=await store.store_id()
    )


async def test_a_checkpoint_of_this_store_is_continued_from_without_a_word(
    stores: ServiceStores, bus: Bus
) -> None:
    store = await stores.sqlite()
    before = await deposit(store, 40)
    await publish_all(store, bus)
    more = await deposit(store, 25)

    relay = await publish_all(store, bus)

    assert sorted(await on_the_bus(bus, 65)) == sorted(before + more)
    status = relay.status()
    assert status.foreign_checkpoint is None
    assert status.published == 25  # the second run sent only what was new
