"""The outbox relay in one process, on the memory store and ``MemoryBus``: what it
publishes, what it skips, where it checkpoints, how it rides out a bus that refuses,
how many messages it keeps in flight, and how it stops."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import pytest

from eventcore import (
    Event,
    EventRegistry,
    EventStore,
    NewEvent,
    StoredEvent,
    StreamId,
    open_store,
)
from eventcore.errors import (
    BusError,
    BusRejected,
    BusUnavailable,
    InvalidInput,
    InvalidName,
    StoreClosed,
)
from eventcore.messaging import Bus, OutgoingMessage, TopicMap, decode_envelope
from eventcore.messaging import relay as relay_module
from eventcore.messaging.bus import Consumer, DeadLetterBox
from eventcore.messaging.memory import MemoryBus
from eventcore.messaging.relay import Relay
from eventcore.store.checkpoint import Checkpoint
from eventcore.testing import FaultPlan, FaultyBus, FaultyStore

SERVICE = "accounts"
#: Bounds waits for things that happen in milliseconds; only a hang reaches it.
PATIENCE = 10.0


class Deposited(Event):
    account: str
    amount: int


class Withdrawn(Event):
    account: str
    amount: int


class NoteAdded(Event):
    """Internal to the service: not in the topic map, never published."""

    text: str


registry = EventRegistry([Deposited, Withdrawn, NoteAdded])
TOPICS = TopicMap({Deposited: "deposits", Withdrawn: "withdrawals"})


class _TestBus:
    """A ``MemoryBus`` behind a wrapper that records every publish call, can refuse the
    first few (a failure-injection double: the messages behind it are really stored), can
    hold publishes until released, and tracks how many messages are in flight at once."""

    def __init__(self, inner: MemoryBus, *, refuse: int = 0, publish_delay: float = 0.0) -> None:
        self.inner = inner
        self.refuse = refuse
        #: When set, a publish whose messages it answers True for is refused (every time).
        self.refusing: Callable[[Sequence[OutgoingMessage]], bool] | None = None
        #: What a refused publish raises.
        self.refusal: type[Exception] = BusUnavailable
        #: Event-loop steps a cancelled publish takes to wind down, as a real bus
        #: finishing its write before it honours the cancellation.
        self.winding_down = 0
        self.publish_delay = publish_delay
        self.released = asyncio.Event()
        self.released.set()
        self.acknowledged: list[OutgoingMessage] = []
        self.refused_calls = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.saved: list[int] = []
        self.refuse_saves = 0
        self.refused_saves = 0
        #: Called with each position the relay saves, before it is saved.
        self.on_save: Any = None
        #: When set, a checkpoint save waits for this gate (after setting ``save_entered``).
        self.save_gate: asyncio.Event | None = None
        self.save_entered = asyncio.Event()

    @property
    def url(self) -> str:
        return self.inner.url

    @property
    def dead_letters(self) -> DeadLetterBox:
        return self.inner.dead_letters

    async def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        self.in_flight += len(messages)
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.refuse > 0 or (self.refusing is not None and self.refusing(messages)):
                self.refuse = max(self.refuse - 1, 0)
                self.refused_calls += 1
                raise self.refusal("refused by the test")
            await self.released.wait()
            if self.publish_delay:
                await asyncio.sleep(self.publish_delay)
            await self.inner.publish(messages)
            self.acknowledged.extend(messages)
        except asyncio.CancelledError:
            for _ in range(self.winding_down):
                await asyncio.sleep(0)
            raise
        finally:
            self.in_flight -= len(messages)

    async def consumer(self, topic: str, group: str, **options: Any) -> Consumer:
        return await self.inner.consumer(topic, group, **options)

    async def load_checkpoint(self, name: str) -> Checkpoint | None:
        return await self.inner.load_checkpoint(name)

    async def save_checkpoint(self, name: str, checkpoint: Checkpoint) -> None:
        position = checkpoint.position
        if self.refuse_saves > 0:
            self.refuse_saves -= 1
            self.refused_saves += 1
            raise BusUnavailable("checkpoint refused by the test")
        if self.on_save is not None:
            self.on_save(position)
        if self.save_gate is not None:
            self.save_entered.set()
            await self.save_gate.wait()
        self.saved.append(position)
        await self.inner.save_checkpoint(name, checkpoint)

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.fixture
async def store() -> AsyncIterator[EventStore]:
    store = await open_store("memory://")
    try:
        yield store
    finally:
        await store.aclose()


@pytest.fixture
async def memory_bus() -> AsyncIterator[MemoryBus]:
    bus = MemoryBus()
    try:
        yield bus
    finally:
        await bus.aclose()


def random_events(
    rng: random.Random, count: int, accounts: int = 20
) -> list[tuple[StreamId, Event]]:
    """(stream, event) pairs over ``accounts`` streams; about 15 % are internal notes."""
    events: list[tuple[StreamId, Event]] = []
    for _ in range(count):
        account = f"acc-{rng.randrange(accounts)}"
        kind = rng.random()
        event: Event
        if kind < 0.6:
            event = Deposited(account=account, amount=rng.randrange(1, 1000))
        elif kind < 0.85:
            event = Withdrawn(account=account, amount=rng.randrange(1, 1000))
        else:
            event = NoteAdded(text=f"about {account}")
        events.append((StreamId(f"account-{account}"), event))
    return events


async def append_events(
    store: EventStore, events: list[tuple[StreamId, Event]], per_append: int = 25
) -> int:
    """Append in chunks of several streams each; returns the last position."""
    last = 0
    for start in range(0, len(events), per_append):
        writes: dict[StreamId, list[NewEvent]] = {}
        for stream, event in events[start : start + per_append]:
            writes.setdefault(stream, []).append(registry.encode(event))
        expected = {stream: await store.stream_version(stream) for stream in writes}
        result = await store.append(writes, expected=expected)
        last = max(last, result.last_position)
    return last


async def saved_position(bus: MemoryBus) -> int | None:
    checkpoint = await bus.load_checkpoint(SERVICE)
    return None if checkpoint is None else checkpoint.position


async def stored_events(store: EventStore) -> list[StoredEvent]:
    return [event async for batch in store.read_all() for event in batch]


async def run_until_published(relay: Relay, position: int) -> None:
    task = asyncio.create_task(relay.run())
    try:
        async with asyncio.timeout(PATIENCE):
            await relay.published(position)
    finally:
        relay.stop()
        async with asyncio.timeout(PATIENCE):
            await task


async def wait_until(condition: Any) -> None:
    async with asyncio.timeout(PATIENCE):
        # Polling: the conditions are a relay's status fields, which signal nothing.
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.005)


async def bus_contents(bus: Bus, topic: str) -> list[OutgoingMessage]:
    """Every message stored on ``topic``, read by a fresh group (bodies included)."""
    consumer = await bus.consumer(topic, f"check-{random.randrange(10**9)}")
    seen: list[OutgoingMessage] = []
    try:
        while True:
            deliveries = await consumer.fetch(1000, timeout=0.05)
            if not deliveries:
                return seen
            seen.extend(OutgoingMessage(d.topic, d.message_id, d.key, d.body) for d in deliveries)
            await consumer.ack(deliveries)
    finally:
        await consumer.aclose()


async def test_every_mapped_event_is_published_once_as_its_envelope_and_others_are_skipped(
    store: EventStore, memory_bus: MemoryBus
) -> None:
    last = await append_events(store, random_events(random.Random(1), 600))
    bus = _TestBus(memory_bus)
    relay = Relay(store, bus, TOPICS, service=SERVICE, batch_size=64)

    await run_until_published(relay, last)

    events = await stored_events(store)
    mapped = [e for e in events if e.type != "NoteAdded"]
    ids = [message.message_id for message in bus.acknowledged]
    assert sorted(ids) == sorted(str(e.event_id) for e in mapped)  # each exactly once
    by_id = {message.message_id: message for message in bus.acknowledged}
    for event in mapped:
        message = by_id[str(event.event_id)]
        assert message.topic == TOPICS.topic_for(event.type)
        assert message.key == str(event.stream_id)
        envelope = decode_envelope(message.body)
        assert envelope.id == str(event.event_id)
        assert envelope.source == SERVICE
        assert envelope.type == event.type
        assert envelope.subject == str(event.stream_id)
        assert envelope.stream_version == event.version
        assert envelope.time == event.recorded_at
        assert envelope.payload == event.data
        assert registry.decode_payload(envelope.type, envelope.schema_version, envelope.payload)
    status = relay.status()
    assert status.skipped == len(events) - len(mapped) > 0
    assert status.published == len(mapped)
    assert status.position == status.checkpoint == last
    assert status.last_error is None
    assert status.republished_batches == 0
    # What the bus holds, read back as a consumer would: the same messages, once each.
    held = await bus_contents(memory_bus, "deposits") + await bus_contents(
        memory_bus, "withdrawals"
    )
    assert sorted(m.message_id for m in held) == sorted(ids)


async def publish_under_faults(
    store: EventStore, memory_bus: MemoryBus, seed: int, window: int
) -> tuple[list[StoredEvent], list[OutgoingMessage]]:
    """Runs a relay over a seeded fault schedule until it published 300 events; returns
    the mapped events and every message the bus holds."""
    last = await append_events(store, random_events(random.Random(seed), 300))
    # Publishes and checkpoint saves fail, lose their reply, stall and drop the
    # connection; the store's reads stall, so batches interleave differently per seed.
    bus = FaultyBus(
        memory_bus,
        FaultPlan(
            seed=seed,
            fail=0.15,
            lose_reply=0.15,
            delay=0.3,
            drop=0.05,
            calls={"publish", "save_checkpoint"},
        ),
    )
    slow_store = FaultyStore(store, FaultPlan(seed=seed, delay=0.5))
    relay = Relay(slow_store, bus, TOPICS, service=SERVICE, batch_size=16, window=window)

    await run_until_published(relay, last)

    assert {kind for _, kind in bus.faults} & {"fail", "lose_reply", "drop"}
    events = [e for e in await stored_events(store) if e.type != "NoteAdded"]
    published = [
        message
        for topic in ("deposits", "withdrawals")
        for message in await bus_contents(memory_bus, topic)
    ]
    return events, published


@pytest.mark.parametrize("seed", range(6))
async def test_under_seeded_faults_a_pipelined_relay_publishes_every_event_exactly_once(
    store: EventStore, memory_bus: MemoryBus, seed: int
) -> None:
    events, published = await publish_under_faults(store, memory_bus, seed, window=64)

    assert sorted(m.message_id for m in published) == sorted(str(e.event_id) for e in events)


@pytest.mark.parametrize("seed", range(6))
async def test_under_seeded_faults_a_one_batch_window_publishes_each_stream_in_order_once(
    store: EventStore, memory_bus: MemoryBus, seed: int
) -> None:
    # docs/delivery.md ("What can reorder", 3): only one batch in flight keeps a refused
    # batch from landing behind a later one.
    events, published = await publish_under_faults(store, memory_bus, seed, window=1)

    # Each (topic, stream): its events in log order, each once.
    in_log: dict[tuple[str | None, str], list[str]] = {}
    for event in events:
        in_log.setdefault((TOPICS.topic_for(event.type), event.stream_id), []).append(
            str(event.event_id)
        )
    on_bus: dict[tuple[str | None, str], list[str]] = {}
    for message in published:
        on_bus.setdefault((message.topic, message.key), []).append(message.message_id)
    assert on_bus == in_log


async def test_a_new_relay_starts_after_the_checkpoint_and_publishes_only_what_is_new(
    store: EventStore, memory_bus: MemoryBus
) -> None:
    rng = random.Random(2)
    first_last = await append_events(store, random_events(rng, 200))
    await run_until_published(Relay(store, memory_bus, TOPICS, service=SERVICE), first_last)
    assert await saved_position(memory_bus) == first_last

    bus = _TestBus(memory_bus)
    relay = Relay(store, bus, TOPICS, service=SERVICE)
    task = asyncio.create_task(relay.run())
    try:
        async with asyncio.timeout(PATIENCE):
            await relay.published(first_last)
        await wait_until(lambda: relay.status().head >= first_last)
        assert relay.status().position == first_last
        second_last = await append_events(store, random_events(rng, 150))
        async with asyncio.timeout(PATIENCE):
            await relay.published(second_last)
    finally:
        relay.stop()
        async with asyncio.timeout(PATIENCE):
            await task

    new = [e for e in await stored_events(store) if e.position > first_last]
    expected = sorted(str(e.event_id) for e in new if e.type != "NoteAdded")
    assert sorted(m.message_id for m in bus.acknowledged) == expected
    assert await saved_position(memory_bus) == second_last
    # Started again with nothing new, a relay publishes nothing at all.
    idle = _TestBus(memory_bus)
    await run_until_published(Relay(store, idle, TOPICS, service=SERVICE), second_last)
    assert idle.acknowledged == []
    assert idle.refused_calls == 0


async def test_a_refused_publish_is_retried_and_the_checkpoint_never_passes_it(
    store: EventStore, memory_bus: MemoryBus
) -> None:
    last = await append_events(store, random_events(random.Random(3), 500))
    events = await stored_events(store)
    bus = _TestBus(memory_bus, refuse=4)
    bus.released.clear()

    def check_checkpoint(position: int) -> None:
        acknowledged = {m.message_id for m in bus.acknowledged}
        for event in events:
            if event.position <= position and event.type != "NoteAdded":
                assert str(event.event_id) in acknowledged, (position, event.position)

    bus.on_save = check_checkpoint
    relay = Relay(store, bus, TOPICS, service=SERVICE, batch_size=50, window=200)
    task = asyncio.create_task(relay.run())
    try:
        await wait_until(lambda: bus.refused_calls == 4)
        await wait_until(lambda: relay.status().last_error is not None)
        failing = relay.status()
        assert "refused by the test" in (failing.last_error or "")
        assert failing.republished_batches >= 1
        assert failing.position == 0
        assert failing.checkpoint == 0
        bus.released.set()
        async with asyncio.timeout(PATIENCE):
            await relay.published(last)
    finally:
        relay.stop()
        async with asyncio.timeout(PATIENCE):
            await task

    status = relay.status()
    assert status.last_error is None
    assert status.republished_batches >= 1
    assert status.checkpoint == last
    mapped = {str(e.event_id) for e in events if e.type != "NoteAdded"}
    assert {m.message_id for m in bus.acknowledged} == mapped
    assert bus.saved == sorted(bus.saved)  # the checkpoint only moves forward
    held = await bus_contents(memory_bus, "deposits") + await bus_contents(
        memory_bus, "withdrawals"
    )
    assert sorted(m.message_id for m in held) == sorted(mapped)


async def test_a_message_the_bus_rejects_as_it_stands_ends_the_run_without_skipping_it(
    store: EventStore, memory_bus: MemoryBus
) -> None:
    # BusRejected (NATS: over max_payload or the stream's max_msg_size) would be refused
    # for ever: retrying hid it behind a growing lag.
    last = await append_events(store, random_events(random.Random(5), 50))
    bus = _TestBus(memory_bus)
    bus.refusal = BusRejected
    bus.refusing = lambda messages: True
    relay = Relay(store, bus, TOPICS, service=SERVICE, batch_size=10)

    with pytest.raises(BusRejected):
        async with asyncio.timeout(PATIENCE):
            await relay.run()

    assert last > 0
    assert bus.acknowledged == []
    checkpoint = await memory_bus.load_checkpoint(SERVICE)
    assert checkpoint is None or checkpoint.position == 0


async def test_a_checkpoint_the_bus_refused_is_saved_again_and_the_error_cleared(
    store: EventStore, memory_bus: MemoryBus
) -> None:
    last = await append_events(store, random_events(random.Random(8), 100))
    bus = _TestBus(memory_bus)
    bus.refuse_saves = 3
    relay = Relay(store, bus, TOPICS, service=SERVICE)
    task = asyncio.create_task(relay.run())
    try:
        await wait_until(lambda: relay.status().last_error is not None)
        assert "checkpoint refused by the test" in (relay.status().last_error or "")
        await wait_until(lambda: relay.status().checkpoint == last)
        assert await saved_position(memory_bus) == last
        # The bus took the checkpoint: the error is over.
        assert relay.status().last_error is None
    finally:
        relay.stop()
        async with asyncio.timeout(PATIENCE):
            await task


@pytest.mark.parametrize("window", [1, 40, 120])
async def test_no_more_messages_than_the_window_are_in_flight(
    store: EventStore, memory_bus: MemoryBus, window: int
) -> None:
    last = await append_events(store, random_events(random.Random(4), 800))
    bus = _TestBus(memory_bus, publish_delay=0.002)
    batch_size = 30
    relay = Relay(store, bus, TOPICS, service=SERVICE, window=window, batch_size=batch_size)

    await run_until_published(relay, last)

    # A batch larger than the window goes alone; otherwise the window bounds it.
    assert bus.max_in_flight <= max(window, batch_size)
    if window > 2 * batch_size:
        # The relay did pipeline: more than one batch was waiting at once.
        assert bus.max_in_flight > batch_size
    mapped = [e for e in await stored_events(store) if e.type != "NoteAdded"]
    assert len(bus.acknowledged) == len(mapped)


async def test_a_batch_sent_while_an_idle_checkpoint_is_saved_is_still_settled(
    store: EventStore, memory_bus: MemoryBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only idle saves: the relay saves when it has nothing in flight.
    monkeypatch.setattr(relay_module, "_CHECKPOINT_INTERVAL", 1e9)
    rng = random.Random(11)
    bus = _TestBus(memory_bus)
    relay = Relay(store, bus, TOPICS, service=SERVICE)
    task = asyncio.create_task(relay.run())
    try:
        first = await append_events(store, random_events(rng, 5))
        async with asyncio.timeout(PATIENCE):
            await relay.published(first)
        await wait_until(lambda: bus.saved and bus.saved[-1] == first)
        bus.save_gate = asyncio.Event()
        second = await append_events(store, random_events(rng, 5))
        async with asyncio.timeout(PATIENCE):
            await bus.save_entered.wait()  # the idle save of ``second`` is under way
        third = await append_events(store, random_events(rng, 5))
        mapped = [e for e in await stored_events(store) if e.type != "NoteAdded"]
        # The third batch is on the bus, its settling held up behind the save.
        await wait_until(lambda: len(bus.acknowledged) == len(mapped))
        bus.save_gate.set()

        async with asyncio.timeout(PATIENCE):
            await relay.published(third)
        await wait_until(lambda: bus.saved[-1] == third)
        assert second < third
    finally:
        relay.stop()
        async with asyncio.timeout(PATIENCE):
            await task


async def test_stop_returns_promptly_and_saves_the_checkpoint(
    store: EventStore, memory_bus: MemoryBus
) -> None:
    rng = random.Random(5)
    bus = _TestBus(memory_bus, publish_delay=0.001)
    relay = Relay(store, bus, TOPICS, service=SERVICE, batch_size=20)
    task = asyncio.create_task(relay.run())
    for _ in range(10):
        await append_events(store, random_events(rng, 40))
    # Stop mid-flight: some batches acknowledged, more on their way or not read yet.
    await wait_until(lambda: relay.status().published > 0)
    relay.stop()
    async with asyncio.timeout(PATIENCE):
        await task
    status = relay.status()
    assert status.in_flight == 0
    assert status.position > 0
    assert status.checkpoint == status.position == await saved_position(memory_bus)
    # Everything up to the checkpoint is on the bus; nothing past it was acknowledged
    # without being counted.
    published = {m.message_id for m in bus.acknowledged}
    for event in await stored_events(store):
        if event.position <= status.position and event.type != "NoteAdded":
            assert str(event.event_id) in published
    with pytest.raises(BusError):
        await relay.published(await store.last_position() + 1)


async def test_stop_while_the_bus_refuses_leaves_the_checkpoint_where_it_was(
    store: EventStore, memory_bus: MemoryBus
) -> None:
    last = await append_events(store, random_events(random.Random(6), 100))
    await memory_bus.save_checkpoint(
        SERVICE, Checkpoint(position=0, store_id=await store.store_id())
    )
    bus = _TestBus(memory_bus, refuse=1000)
    relay = Relay(store, bus, TOPICS, service=SERVICE)
    task = asyncio.create_task(relay.run())
    await wait_until(lambda: relay.status().last_error is not None)
    relay.stop()
    async with asyncio.timeout(PATIENCE):
        await task
    assert await saved_position(memory_bus) == 0
    assert relay.status().position == 0
    # The next run, on a bus that takes them, publishes every one.
    healthy = _TestBus(memory_bus)
    await run_until_published(Relay(store, healthy, TOPICS, service=SERVICE), last)
    mapped = [e for e in await stored_events(store) if e.type != "NoteAdded"]
    assert sorted(m.message_id for m in healthy.acknowledged) == sorted(
        str(e.event_id) for e in mapped
    )


async def test_a_relay_stopped_before_it_runs_returns_at_once(
    store: EventStore, memory_bus: MemoryBus
) -> None:
    await append_events(store, random_events(random.Random(7), 10))
    relay = Relay(store, memory_bus, TOPICS, service=SERVICE)
    relay.stop()
    async with asyncio.timeout(PATIENCE):
        await relay.run()
    assert relay.status().published == 0


def deposits(count: int) -> list[tuple[StreamId, Event]]:
    """``count`` published events (no internal notes): one message per event, so each
    batch of the follower is one publish call of exactly its size."""
    return [
        (StreamId(f"account-acc-{i % 5}"), Deposited(account=f"acc-{i % 5}", amount=i + 1))
        for i in range(count)
    ]


class _Clock:
    """The relay's ``time``, set by the test: the checkpoint interval counted exactly."""

    def __init__(self, now: float) -> None:
        self.now = now

    def monotonic(self) -> float:
        return self.now


def position_of(message: OutgoingMessage, events: list[StoredEvent]) -> int:
    return next(e.position for e in events if str(e.event_id) == message.message_id)


async def test_while_events_keep_coming_the_checkpoint_is_saved_once_per_interval(
    store: EventStore, memory_bus: MemoryBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No idle saves: a batch always follows within the idle delay.
    monkeypatch.setattr(relay_module, "_IDLE_SAVE_DELAY", 1e9)
    clock = _Clock(100.0)
    monkeypatch.setattr(relay_module, "time", clock)
    bus = _TestBus(memory_bus)
    relay = Relay(store, bus, TOPICS, service=SERVICE)
    interval = relay_module._CHECKPOINT_INTERVAL
    task = asyncio.create_task(relay.run())
    try:
        positions = []
        # At the first batch, at a quarter of the interval after the save (too soon),
        # exactly one interval after it, and a quarter of the interval after that.
        for offset in (0.0, interval / 4, interval, interval * 5 / 4):
            clock.now = 100.0 + offset
            positions.append(await append_events(store, deposits(5)))
            async with asyncio.timeout(PATIENCE):
                await relay.published(positions[-1])
        first, too_soon, on_time, too_soon_again = positions
        assert bus.saved == [first, on_time]
        assert relay.status().checkpoint == on_time < too_soon_again
    finally:
        relay.stop()
        async with asyncio.timeout(PATIENCE):
            await task
    assert too_soon not in bus.saved
    assert bus.saved[-1] == too_soon_again  # saved at the stop


async def test_an_idle_relay_saves_its_checkpoint_after_the_idle_delay(
    store: EventStore, memory_bus: MemoryBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No interval saves: only the relay's being idle saves the checkpoint.
    monkeypatch.setattr(relay_module, "_CHECKPOINT_INTERVAL", 1e9)
    bus = _TestBus(memory_bus)
    relay = Relay(store, bus, TOPICS, service=SERVICE)
    task = asyncio.create_task(relay.run())
    try:
        for _ in range(2):
            last = await append_events(store, deposits(5))
            await wait_until(lambda last=last: relay.status().checkpoint == last)
            assert await saved_position(memory_bus) == last
        assert relay.status().position == last
    finally:
        relay.stop()
        async with asyncio.timeout(PATIENCE):
            await task


async def test_batches_that_follow_within_the_idle_delay_postpone_the_idle_save(
    store: EventStore, memory_bus: MemoryBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every batch follows "within the idle delay"; only the stop saves.
    monkeypatch.setattr(relay_module, "_CHECKPOINT_INTERVAL", 1e9)
    monkeypatch.setattr(relay_module, "_IDLE_SAVE_DELAY", 1e9)
    bus = _TestBus(memory_bus)
    relay = Relay(store, bus, TOPICS, service=SERVICE)
    task = asyncio.create_task(relay.run())
    try:
        for _ in range(3):
            last = await append_events(store, deposits(5))
            async with asyncio.timeout(PATIENCE):
                await relay.published(last)
        assert bus.saved == []
    finally:
        relay.stop()
        async with asyncio.timeout(PATIENCE):
            await task
    assert bus.saved == [last]


async def test_a_stop_after_a_refused_batch_saves_up_to_what_was_acknowledged_and_keeps_the_refusal(
    store: EventStore, memory_bus: MemoryBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Neither interval nor idle saves: what is saved, the stop saved.
    monkeypatch.setattr(relay_module, "_CHECKPOINT_INTERVAL", 1e9)
    monkeypatch.setattr(relay_module, "_IDLE_SAVE_DELAY", 1e9)
    last = await append_events(store, deposits(30))
    events = await stored_events(store)
    bus = _TestBus(memory_bus)
    # The third batch (positions 21-30) is refused every time.
    bus.refusing = lambda messages: position_of(messages[0], events) > 20
    relay = Relay(store, bus, TOPICS, service=SERVICE, batch_size=10)
    task = asyncio.create_task(relay.run())
    try:
        await wait_until(lambda: relay.status().position == 20 and bus.refused_calls > 1)
        assert bus.saved == []
    finally:
        relay.stop()
        async with asyncio.timeout(PATIENCE):
            await task
    assert bus.saved == [20]
    assert await saved_position(memory_bus) == relay.status().checkpoint == 20 < last
    # One batch refused, however many times: one republished batch.
    assert bus.refused_calls > 1
    assert relay.status().republished_batches == 1
    # The save that went through is not the refused batch: the status still says why
    # the relay stopped short.
    assert relay.status().last_error == "BusUnavailable: refused by the test"


async def test_a_stop_while_the_window_is_full_and_the_bus_refuses_returns(
    store: EventStore, memory_bus: MemoryBus
) -> None:
    await append_events(store, deposits(50))
    bus = _TestBus(memory_bus, refuse=10**9)
    # One batch fills the window: the next waits for room the refused one never makes.
    relay = Relay(store, bus, TOPICS, service=SERVICE, batch_size=10, window=10)
    task = asyncio.create_task(relay.run())
    await wait_until(lambda: bus.refused_calls >= 2)
    relay.stop()
    async with asyncio.timeout(PATIENCE):
        await task
    status = relay.status()
    assert status.position == status.checkpoint == 0
    assert status.in_flight == 0
    assert await saved_position(memory_bus) is None
    with pytest.raises(BusError):
        await relay.published(10)


@pytest.mark.parametrize("ending", ["stopped", "cancelled"])
async def test_no_publish_is_left_running_when_run_ends(
    store: EventStore, memory_bus: MemoryBus, ending: str
) -> None:
    await append_events(store, deposits(30))
    events = await stored_events(store)
    bus = _TestBus(memory_bus)
    bus.winding_down = 3
    # The first batch is refused (and republished) for ever; the later ones are held
    # in the bus until released, which never happens.
    bus.refusing = lambda messages: position_of(messages[0], events) <= 10
    bus.released.clear()
    relay = Relay(store, bus, TOPICS, service=SERVICE, batch_size=10)
    task = asyncio.create_task(relay.run())
    await wait_until(lambda: bus.in_flight == 20 and bus.refused_calls >= 2)
    assert relay.status().in_flight == 30  # the refused batch's messages too
    if ending == "stopped":
        relay.stop()
    else:
        task.cancel()
    async with asyncio.timeout(PATIENCE):
        await asyncio.gather(task, return_exceptions=True)
    assert bus.in_flight == 0
    assert bus.acknowledged == []
    assert relay.status().in_flight == 0
    assert relay.status().position == 0


async def test_a_republish_in_flight_when_run_is_cancelled_is_cancelled_too(
    store: EventStore, memory_bus: MemoryBus
) -> None:
    last = await append_events(store, deposits(10))
    bus = _TestBus(memory_bus, refuse=1)
    bus.winding_down = 3
    bus.released.clear()  # the republish is held in the bus
    relay = Relay(store, bus, TOPICS, service=SERVICE, batch_size=10)
    task = asyncio.create_task(relay.run())
    await wait_until(lambda: bus.refused_calls == 1 and bus.in_flight == 10)
    task.cancel()
    async with asyncio.timeout(PATIENCE):
        await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled()
    assert bus.in_flight == 0
    bus.released.set()
    # Nothing left behind publishes once the bus lets it through.
    for _ in range(10):
        await asyncio.sleep(0)
    assert bus.acknowledged == []
    assert relay.status().position == 0 < last


@pytest.mark.parametrize(
    ("settings", "error"),
    [
        ({"window": 0}, InvalidInput),
        ({"batch_size": 0}, InvalidInput),
        ({"poll_interval": 0.0}, InvalidInput),
        ({"poll_interval": float("nan")}, InvalidInput),
        ({"service": "no spaces"}, InvalidName),
    ],
)
async def test_bad_relay_settings_are_refused(
    store: EventStore, memory_bus: MemoryBus, settings: dict[str, Any], error: type[Exception]
) -> None:
    options: dict[str, Any] = {"service": SERVICE, **settings}
    with pytest.raises(error):
        Relay(store, memory_bus, TOPICS, **options)


async def test_the_smallest_window_and_batch_publish_everything_one_at_a_time(
    store: EventStore, memory_bus: MemoryBus
) -> None:
    last = await append_events(store, deposits(5))
    bus = _TestBus(memory_bus)
    await run_until_published(
        Relay(store, bus, TOPICS, service=SERVICE, window=1, batch_size=1), last
    )
    assert len(bus.acknowledged) == 5
    assert bus.max_in_flight == 1


async def test_a_stop_gives_up_a_checkpoint_the_bus_keeps_refusing_after_three_tries(
    store: EventStore, memory_bus: MemoryBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(relay_module, "_CHECKPOINT_INTERVAL", 1e9)
    monkeypatch.setattr(relay_module, "_IDLE_SAVE_DELAY", 1e9)
    last = await append_events(store, deposits(10))
    bus = _TestBus(memory_bus)
    relay = Relay(store, bus, TOPICS, service=SERVICE)
    task = asyncio.create_task(relay.run())
    try:
        async with asyncio.timeout(PATIENCE):
            await relay.published(last)
        bus.refuse_saves = 10**9
    finally:
        relay.stop()
        async with asyncio.timeout(PATIENCE):
            await task
    assert bus.refused_saves == 3
    status = relay.status()
    # Published and acknowledged, but not saved: the next run republishes from 0.
    assert (status.position, status.checkpoint) == (last, 0)
    assert "checkpoint refused by the test" in (status.last_error or "")
    assert await saved_position(memory_bus) is None


async def test_a_relay_not_yet_run_reports_nothing_done(
    store: EventStore, memory_bus: MemoryBus
) -> None:
    await append_events(store, deposits(3))
    relay = Relay(store, memory_bus, TOPICS, service=SERVICE)
    status = relay.status()
    assert (status.position, status.checkpoint, status.head, status.lag_events) == (0, 0, 0, 0)
    assert (status.published, status.skipped, status.in_flight) == (0, 0, 0)
    assert (status.store_id, status.last_error) == (None, None)
    assert relay.position == 0
    async with asyncio.timeout(PATIENCE):
        await relay.published(0)  # nothing to wait for


@pytest.mark.parametrize("ending", ["stopped", "store closed"])
async def test_a_published_waiter_is_told_when_run_ends_short_of_its_position(
    store: EventStore, memory_bus: MemoryBus, ending: str
) -> None:
    last = await append_events(store, deposits(5))
    relay = Relay(store, memory_bus, TOPICS, service=SERVICE, poll_interval=0.01)
    task = asyncio.create_task(relay.run())
    async with asyncio.timeout(PATIENCE):
        await relay.published(last)
    waiter = asyncio.create_task(relay.published(last + 1))  # never appended
    await asyncio.sleep(0)
    if ending == "stopped":
        relay.stop()
        async with asyncio.timeout(PATIENCE):
            await task
    else:
        await store.aclose()
        async with asyncio.timeout(PATIENCE):
            # The store's error as itself, not wrapped in a group.
            with pytest.raises(StoreClosed):
                await task
    async with asyncio.timeout(PATIENCE):
        with pytest.raises(BusError, match=f"stopped at position {last}"):
            await waiter


async def test_the_lag_counts_events_appended_while_the_relay_runs(
    store: EventStore, memory_bus: MemoryBus
) -> None:
    first = await append_events(store, deposits(5))
    bus = _TestBus(memory_bus)
    relay = Relay(store, bus, TOPICS, service=SERVICE, poll_interval=0.01)
    task = asyncio.create_task(relay.run())
    try:
        async with asyncio.timeout(PATIENCE):
            await relay.published(first)
        bus.released.clear()  # what comes next stays in flight
        last = await append_events(store, deposits(5))
        await wait_until(lambda: relay.status().head == last)
        status = relay.status()
        assert (status.position, status.lag_events) == (first, last - first)
        bus.released.set()
        async with asyncio.timeout(PATIENCE):
            await relay.published(last)
        await wait_until(lambda: relay.status().lag_events == 0)
    finally:
        bus.released.set()
        relay.stop()
        async with asyncio.timeout(PATIENCE):
            await task
