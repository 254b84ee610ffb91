"""The subscriber on a real bus (memory; SQLite where it is cheap): handlers in per-stream
order, the inbox, poison messages parked next to valid ones, in-process retries, dead
letters run again, two members sharing a group, and stopping or cancelling mid-batch."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

from eventcore import (
    Command,
    CommandRejected,
    Event,
    EventRegistry,
    EventStore,
    Executor,
    Metadata,
    StoredEvent,
    StreamId,
    Writes,
    open_store,
)
from eventcore.errors import BusClosed, BusUnavailable, StoreClosed, StoreUnavailable
from eventcore.messaging import Bus, DeadLetter, OutgoingMessage
from eventcore.messaging import _subscriber_handling as subscriber_handling
from eventcore.messaging import subscriber as subscriber_module
from eventcore.messaging.bus import partition_of
from eventcore.messaging.envelope import encode_envelope, envelope_of
from eventcore.messaging.memory import MemoryBus
from eventcore.messaging.subscriber import Received, Subscriber
from eventcore.testing import FaultPlan, Services
from tests.backends import skip_or_fail
from tests.messaging.buses import BUSES, unavailable_reason

TOPIC = "deposits"
GROUP = "ledger"
PARTITIONS = 4
#: Bounds waits for things that happen in milliseconds; only a hang reaches it.
PATIENCE = 10.0
#: The seeded-fault runs wait out lost acks (ack_wait) again and again; they take 3-8 s on
#: a quiet machine and more on a loaded one, so only a hang should reach this bound.
FAULT_PATIENCE = 50.0
FAST = (0.001, 0.005)


class Deposited(Event):
    account: str
    amount: int


class Flagged(Event):
    """Known to the subscriber, but it has no handler for it: acked and ignored."""

    note: str


class Closed(Event):
    """Published by the producer, unknown to the subscriber's registry."""

    account: str


producer_registry = EventRegistry([Deposited, Flagged, Closed])
registry = EventRegistry([Deposited, Flagged])


# --- building messages -------------------------------------------------------------------


class Producer:
    """A service's store whose events become messages, as the relay would publish them."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self._ids = itertools.count(1)

    async def record(
        self, stream: str, *events: Event, metadata: Metadata | None = None
    ) -> list[StoredEvent]:
        stream_id = StreamId(stream)
        version = await self.store.stream_version(stream_id)
        new = [producer_registry.encode(event, metadata=metadata or Metadata()) for event in events]
        await self.store.append({stream_id: new}, expected={stream_id: version})
        return (await self.store.read_stream(stream_id, from_version=version + 1))[: len(new)]

    async def message(self, stream: str, event: Event) -> OutgoingMessage:
        (stored,) = await self.record(stream, event)
        return as_message(stored)


def as_message(stored: StoredEvent, *, message_id: str | None = None) -> OutgoingMessage:
    body = encode_envelope(envelope_of(stored, source="bank"))
    return OutgoingMessage(TOPIC, message_id or str(stored.event_id), stored.stream_id, body)


def raw(key: str, body: bytes, message_id: str) -> OutgoingMessage:
    return OutgoingMessage(TOPIC, message_id, key, body)


@pytest.fixture
async def producer() -> AsyncIterator[Producer]:
    store = await open_store("memory://")
    try:
        yield Producer(store)
    finally:
        await store.aclose()


# --- buses -------------------------------------------------------------------------------


@asynccontextmanager
async def _bus_on(name: str, workdir: Path) -> AsyncIterator[Bus]:
    backend = BUSES[name]
    reason = unavailable_reason(backend)
    if reason is not None:
        skip_or_fail(reason, "every bus must run")
    async with backend.site(workdir, partitions=PARTITIONS, lease_ttl=1.0) as connect:
        yield await connect()


@pytest.fixture(params=["memory", "sqlite"])
async def any_bus(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Bus]:
    """A fresh bus on each backend that is cheap to run the subscriber on."""
    async with _bus_on(request.param, tmp_path) as bus:
        yield bus


@pytest.fixture
async def bus() -> AsyncIterator[Bus]:
    memory = MemoryBus(partitions=PARTITIONS, lease_ttl=1.0)
    try:
        yield memory
    finally:
        await memory.aclose()


# --- running -----------------------------------------------------------------------------


async def until(condition: Callable[[], bool], what: str) -> None:
    async with asyncio.timeout(PATIENCE):
        # The subscriber's status has no event to wait on; polling it is the point.
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.005)
    assert condition(), what


async def assert_the_next_member_handles_it(bus: Bus) -> None:
    """The one message left on the bus (a deposit of 1) was neither acked nor parked: a
    fresh member of the group receives it and handles it once."""
    recorder = Recorder()
    later = subscriber(bus, {Deposited: recorder})
    async with running(later):
        await until(lambda: later.status().handled == 1, "handled by the next member")
    assert recorder.amounts() == [1]


@asynccontextmanager
async def running(*subscribers: Subscriber) -> AsyncIterator[list[asyncio.Task[None]]]:
    tasks = [asyncio.create_task(subscriber.run()) for subscriber in subscribers]
    try:
        yield tasks
    finally:
        for subscriber in subscribers:
            subscriber.stop()
        async with asyncio.timeout(PATIENCE):
            await asyncio.gather(*tasks)


#: The subscriber settings of these tests.
SETTINGS: dict[str, Any] = {
    "group": GROUP,
    "registry": registry,
    "retry_backoff": FAST,
    "retry_poll": 0.02,
}


def subscriber(bus: Bus, handlers: dict[Any, Any], **options: Any) -> Subscriber:
    return Subscriber(bus, TOPIC, handlers, **(SETTINGS | options))


def services_with(bus: Bus, handlers: dict[Any, Any], **options: Any) -> Services:
    """One subscriber on ``bus``, run and waited on as ``Services``; publish through
    ``services.bus``."""
    services = Services(bus)
    services.subscriber(TOPIC, handlers, **(SETTINGS | options))
    return services


class Recorder:
    """A handler that records (stream, version, amount) of every event it is given."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int, int]] = []
        self.message_ids: list[str] = []

    async def __call__(self, received: Received) -> None:
        assert isinstance(received.event, Deposited)
        envelope = received.envelope
        self.seen.append((envelope.subject, envelope.stream_version, received.event.amount))
        self.message_ids.append(received.delivery.message_id)

    def amounts(self) -> list[int]:
        return [amount for _, _, amount in self.seen]


# --- order and the inbox -----------------------------------------------------------------


async def test_handlers_see_each_stream_in_order(any_bus: Bus, producer: Producer) -> None:
    messages = []
    for round_ in range(1, 6):
        for name in ("a", "b", "c", "d", "e", "f"):
            messages.append(
                await producer.message(f"account-{name}", Deposited(account=name, amount=round_))
            )
    recorder = Recorder()
    services = services_with(any_bus, {Deposited: recorder})
    await services.bus.publish(messages)
    flagged = await producer.message("account-a", Flagged(note="ignored"))
    await services.bus.publish([flagged])
    (sub,) = [sub for sub, _, _ in services.subscribers]

    async with services.running():
        await services.until_idle(timeout=PATIENCE)

    by_stream: dict[str, list[int]] = {}
    for stream, version, _ in recorder.seen:
        by_stream.setdefault(stream, []).append(version)
    assert by_stream == {f"account-{name}": [1, 2, 3, 4, 5] for name in "abcdef"}
    status = sub.status()
    assert (status.handled, status.ignored, status.dead_lettered) == (30, 1, 0)
    assert await any_bus.dead_letters.count() == 0


class Credit(Command[int]):
    ledger: StreamId
    amount: int

    def initial_state(self) -> int:
        return 0

    def apply(self, state: int, stream_id: StreamId, event: Event) -> int:
        return state + 1

    def handle(self, state: int) -> Writes:
        return {self.ledger: [Deposited(account=str(self.ledger), amount=self.amount)]}


async def test_a_republished_event_runs_its_command_once(bus: Bus, producer: Producer) -> None:
    store = await open_store("memory://")
    executor = Executor(store, registry)
    results = []

    async def credit(received: Received) -> None:
        assert isinstance(received.event, Deposited)
        command = Credit(
            ledger=StreamId(f"ledger-{received.event.account}"), amount=received.event.amount
        )
        results.append(await received.run(executor, command))

    (stored,) = await producer.record(
        "account-a", Deposited(account="a", amount=7), metadata=Metadata(correlation_id="c-1")
    )
    first = as_message(stored)
    # The relay published it again past the bus's dedupe window: a new message id,
    # the same envelope.
    again = as_message(stored, message_id="republished-1")
    services = services_with(bus, {Deposited: credit})
    await services.bus.publish([first, again])
    async with services.running():
        await services.until_idle(timeout=PATIENCE)

    written = await store.read_stream(StreamId("ledger-a"))
    assert [registry.decode(event) for event in written] == [
        Deposited(account="ledger-a", amount=7)
    ]
    assert [result.deduplicated for result in results] == [False, True]
    metadata = written[0].metadata
    assert metadata.causation_id == str(stored.event_id)
    assert metadata.correlation_id == "c-1"
    await store.aclose()


@pytest.mark.parametrize("seed", range(5))
async def test_under_seeded_bus_faults_every_message_takes_effect_once(
    bus: Bus, producer: Producer, seed: int
) -> None:
    # Fetches, acks and naks fail, lose their reply, stall, drop the connection, and
    # fetched deliveries come again: the inbox must keep every effect single.
    plan = FaultPlan(
        seed=seed,
        fail=0.1,
        lose_reply=0.1,
        delay=0.2,
        drop=0.03,
        duplicate=0.2,
        calls={"fetch", "ack", "nak"},
    )
    services = Services(bus, faults=plan)
    store = await open_store("memory://")
    executor = Executor(store, registry)

    async def credit(received: Received) -> None:
        assert isinstance(received.event, Deposited)
        ledger = StreamId(f"ledger-{received.event.account}")
        await received.run(executor, Credit(ledger=ledger, amount=received.event.amount))

    messages = [
        await producer.message(f"account-{n % 7}", Deposited(account=str(n % 7), amount=n))
        for n in range(1, 61)
    ]
    services.subscriber(
        TOPIC,
        {Deposited: credit},
        group=GROUP,
        registry=registry,
        retry_backoff=FAST,
        retry_poll=0.01,
        ack_wait=1.0,
        max_deliveries=50,
        batch_size=4,
    )
    async with services.running():
        await services.bus.publish(messages)
        await services.until_idle(timeout=FAULT_PATIENCE)

    faults = {kind for _, kind in services.faults}
    assert "duplicate" in faults
    assert faults & {"fail", "lose_reply", "drop"}
    credited = [
        registry.decode(event).amount  # type: ignore[attr-defined]
        for n in range(7)
        for event in await store.read_stream(StreamId(f"ledger-{n}"))
    ]
    assert sorted(credited) == list(range(1, 61))
    assert await bus.dead_letters.count() == 0
    await store.aclose()


async def test_named_steps_run_several_commands_for_one_event_each_once(
    bus: Bus, producer: Producer
) -> None:
    store = await open_store("memory://")
    executor = Executor(store, registry)

    async def credit_twice(received: Received) -> None:
        assert isinstance(received.event, Deposited)
        for ledger in ("main", "audit"):
            command = Credit(ledger=StreamId(f"{ledger}-{received.event.account}"), amount=1)
            await received.run(executor, command, step=ledger)

    (stored,) = await producer.record("account-s", Deposited(account="s", amount=1))
    services = services_with(bus, {Deposited: credit_twice})
    await services.bus.publish([as_message(stored), as_message(stored, message_id="republished-2")])
    async with services.running():
        await services.until_idle(timeout=PATIENCE)

    assert await store.stream_version(StreamId("main-s")) == 1
    assert await store.stream_version(StreamId("audit-s")) == 1
    await store.aclose()


# --- poison messages ---------------------------------------------------------------------


async def test_poison_messages_are_parked_and_their_neighbours_handled(
    any_bus: Bus, producer: Producer
) -> None:
    key = "account-p"
    recorder = Recorder()

    async def handle(received: Received) -> None:
        assert isinstance(received.event, Deposited)
        if received.event.amount == -1:
            raise RuntimeError("the ledger service is on fire")
        if received.event.amount == -2:
            raise CommandRejected("amount must be positive")
        await recorder(received)

    before = await producer.message(key, Deposited(account="p", amount=1))
    (stored,) = await producer.record(key, Deposited(account="p", amount=2))
    envelope = envelope_of(stored, source="bank")
    bad_payload = encode_envelope(
        msgspec.structs.replace(envelope, data=msgspec.Raw(b'{"amount":"x"}'))
    )
    poison = [
        raw(key, b"{not json", "not-json"),
        raw(key, b'{"hello":"world"}', "not-an-envelope"),
        raw(key, b" " * 5000 + encode_envelope(envelope), "too-large"),
        await producer.message(key, Closed(account="p")),
        raw(key, bad_payload, "bad-payload"),
        await producer.message(key, Deposited(account="p", amount=-1)),
        await producer.message(key, Deposited(account="p", amount=-2)),
    ]
    after = await producer.message(key, Deposited(account="p", amount=3))
    await any_bus.publish([before, *poison, after])
    sub = subscriber(any_bus, {Deposited: handle}, max_deliveries=3, max_message_bytes=4096)

    async with running(sub):
        await until(lambda: sub.status().dead_lettered == 7 and sub.status().handled == 2, "done")

    assert recorder.amounts() == [1, 3]
    letters = {letter.message_id: letter for letter in await any_bus.dead_letters.letters()}
    unknown, always_fails, rejected = (poison[i].message_id for i in (3, 5, 6))
    expected = {
        "not-json": ("InvalidMessage", "not valid JSON", 1),
        "not-an-envelope": ("InvalidMessage", "not a valid envelope", 1),
        "too-large": ("MessageTooLarge", "at most 4096", 1),
        unknown: ("UnknownEventType", "'Closed'", 1),
        "bad-payload": ("DecodeError", "does not match its class", 1),
        always_fails: ("RuntimeError", "on fire", 3),
        rejected: ("CommandRejected", "must be positive", 1),
    }
    assert set(letters) == set(expected)
    for message_id, (error_type, words, attempts) in expected.items():
        letter = letters[message_id]
        assert letter.error_type == error_type, message_id
        assert letter.reason.startswith(f"{error_type}: "), letter.reason
        assert words in letter.reason, letter.reason
        assert letter.attempts == attempts, message_id
        assert letter.letter_id == DeadLetter.id_for(GROUP, TOPIC, message_id)
        assert (letter.group, letter.topic, letter.key, letter.status) == (
            GROUP,
            TOPIC,
            key,
            "dead",
        )
    assert letters["not-json"].body == b"{not json"
    status = sub.status()
    assert status.retried == 2
    assert status.last_error is not None


@pytest.fixture(params=["memory", "sqlite", "nats"])
async def every_bus(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Bus]:
    """A fresh bus on every backend, NATS included."""
    async with _bus_on(request.param, tmp_path) as bus:
        yield bus


async def test_deeply_nested_data_is_parked_and_the_message_behind_it_handled(
    every_bus: Bus, producer: Producer
) -> None:
    # The scenario: a valid envelope whose data is a thousand nested arrays, then a
    # valid message of the same stream (the same partition).
    key = "account-n"
    (stored,) = await producer.record(key, Deposited(account="n", amount=1))
    envelope = envelope_of(stored, source="bank")
    nested = msgspec.structs.replace(envelope, data=msgspec.Raw(b"[" * 1000 + b"]" * 1000))
    after = await producer.message(key, Deposited(account="n", amount=2))
    await every_bus.publish([raw(key, encode_envelope(nested), "deep"), after])
    recorder = Recorder()
    sub = subscriber(every_bus, {Deposited: recorder}, max_deliveries=2)

    async with running(sub) as (task,):
        await until(lambda: sub.status().handled == 1 or task.done(), "the neighbour handled")
        assert not task.done(), task.exception()

    assert recorder.amounts() == [2]
    (letter,) = await every_bus.dead_letters.letters()
    assert (letter.message_id, letter.error_type, letter.attempts) == ("deep", "InvalidMessage", 1)
    assert "deeper than" in letter.reason


@pytest.mark.parametrize("backend", ["memory", "sqlite", "nats"])
async def test_unreadable_messages_from_another_producer_each_get_their_own_letter(
    backend: str, tmp_path: Path, producer: Producer
) -> None:
    # On NATS they come without a Nats-Msg-Id: their three letters were one, overwritten
    # twice, and could not be fetched, retried or dropped.
    bodies = [b"garbage 1", b"garbage 2", b"garbage 3"]
    async with _bus_on(backend, tmp_path) as bus:
        await BUSES[backend].foreign(bus, TOPIC, "account-f", bodies)
        await bus.publish([await producer.message("account-f", Deposited(account="f", amount=1))])
        recorder = Recorder()
        sub = subscriber(bus, {Deposited: recorder})
        box = bus.dead_letters
        async with running(sub):
            await until(lambda: sub.status().dead_lettered == 3, "three parked")
            await until(lambda: sub.status().handled == 1, "the valid one handled")
            letters = await box.letters()
            assert sorted(letter.body for letter in letters) == bodies
            assert len({letter.letter_id for letter in letters}) == 3
            for letter in letters:
                assert await box.get(letter.letter_id) == letter
            await box.request_retry(letters[0].letter_id)
            await until(lambda: sub.status().dead_lettered == 4, "retried, parked again")
            await box.drop(letters[1].letter_id)
        assert sorted(letter.body for letter in await box.letters()) == sorted(
            letter.body for letter in (letters[0], letters[2])
        )
        assert recorder.amounts() == [1]


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("cannot print this")


async def test_any_exception_from_a_handler_parks_only_its_message(
    any_bus: Bus, producer: Producer
) -> None:
    failures: dict[int, Exception] = {
        -1: RecursionError("maximum recursion depth exceeded"),
        -2: _Unprintable(),
        -3: ValueError("x" * 1_000_000),
        -4: MemoryError(),
    }
    recorder = Recorder()

    async def handle(received: Received) -> None:
        assert isinstance(received.event, Deposited)
        failure = failures.get(received.event.amount)
        if failure is not None:
            raise failure
        await recorder(received)

    key = "account-e"
    messages = [
        await producer.message(key, Deposited(account="e", amount=n))
        for n in (1, -1, -2, -3, -4, 2)
    ]
    await any_bus.publish(messages)
    sub = subscriber(any_bus, {Deposited: handle}, max_deliveries=2)
    async with running(sub) as (task,):
        await until(lambda: sub.status().handled == 2 or task.done(), "the valid ones handled")
        assert not task.done(), task.exception()

    assert recorder.amounts() == [1, 2]
    letters = {letter.message_id: letter for letter in await any_bus.dead_letters.letters()}
    types = [letters[m.message_id].error_type for m in messages[1:5]]
    assert types == ["RecursionError", "_Unprintable", "ValueError", "MemoryError"]
    unprintable, huge = (letters[m.message_id] for m in messages[2:4])
    assert unprintable.reason == "_Unprintable: (its message could not be shown)"
    assert huge.reason.startswith("ValueError: xxx")
    # A letter keeps a bounded reason: every bus must be able to store it.
    assert len(huge.reason) <= 2000
    assert huge.reason.endswith("more characters)")


class _ProcessDeath(BaseException):
    """What no subscriber can contain: the process dies in a handler (killed, aborted)."""


async def test_a_message_that_kills_the_process_is_parked_alone(
    any_bus: Bus, producer: Producer
) -> None:
    key = "account-k"
    before = await producer.message(key, Deposited(account="k", amount=0))
    killer = await producer.message(key, Deposited(account="k", amount=-9))
    behind = [await producer.message(key, Deposited(account="k", amount=n)) for n in (1, 2)]
    await any_bus.publish([before, killer, *behind])
    recorder = Recorder()

    async def handle(received: Received) -> None:
        assert isinstance(received.event, Deposited)
        if received.event.amount == -9:
            raise _ProcessDeath()
        await recorder(received)

    async def one_life() -> bool:
        """Run a subscriber until its process dies (True) or it has handled the last
        message or parked more than the killer (False)."""
        sub = subscriber(any_bus, {Deposited: handle}, max_deliveries=2, member="m")
        task = asyncio.create_task(sub.run())
        await until(
            lambda: (
                task.done() or recorder.amounts()[-1:] == [2] or sub.status().dead_lettered > 1
            ),  # more than the killer: the defect
            "died, or done",
        )
        if not task.done():
            sub.stop()
            await task
            return False
        try:
            await task
        except BaseExceptionGroup as died:  # raised inside the batch's TaskGroup
            return died.subgroup(_ProcessDeath) is not None
        except _ProcessDeath:
            return True
        pytest.fail("run() returned by itself")

    deaths = 0
    while deaths < 6 and await one_life():  # restarted after each death, as by a supervisor
        deaths += 1

    # Killed twice (max_deliveries), then parked unread; the messages around it, which
    # were delivered as often but never failed, are handled and never parked.
    assert deaths == 2
    (letter,) = await any_bus.dead_letters.letters()
    assert (letter.message_id, letter.error_type) == (killer.message_id, "TooManyDeliveries")
    assert sorted(set(recorder.amounts())) == [0, 1, 2]
    assert recorder.amounts()[-2:] == [1, 2]


async def test_a_failure_that_clears_on_the_third_try_is_not_parked(
    any_bus: Bus, producer: Producer
) -> None:
    calls = Counter[str]()
    recorder = Recorder()

    async def flaky(received: Received) -> None:
        calls[received.envelope.id] += 1
        if calls[received.envelope.id] < 3:
            raise ConnectionError("the database blinked")
        await recorder(received)

    await any_bus.publish(
        [
            await producer.message("account-t", Deposited(account="t", amount=1)),
            await producer.message("account-t", Deposited(account="t", amount=2)),
        ]
    )
    sub = subscriber(any_bus, {Deposited: flaky}, max_deliveries=3)
    async with running(sub):
        await until(lambda: sub.status().handled == 2, "both handled")

    assert recorder.amounts() == [1, 2]
    assert sub.status().retried == 4
    assert sub.status().dead_lettered == 0
    assert await any_bus.dead_letters.count() == 0


@pytest.mark.parametrize(
    "outage",
    [StoreUnavailable("the billing database is restarting"), BusUnavailable("no route")],
    ids=["store down", "bus down"],
)
async def test_an_outage_pauses_the_stream_and_parks_nothing(
    bus: Bus, producer: Producer, outage: Exception
) -> None:
    # Far more failures than max_deliveries allows: an outage is not the message's fault.
    failures = 6
    calls = Counter[str]()
    recorder = Recorder()
    seen_during_outage: list[str | None] = []

    async def needs_the_store(received: Received) -> None:
        calls[received.envelope.id] += 1
        if received.event.amount == 1 and calls[received.envelope.id] <= failures:
            seen_during_outage.append(sub.status().last_error)
            raise outage
        await recorder(received)

    await bus.publish(
        [
            await producer.message("account-o", Deposited(account="o", amount=1)),
            await producer.message("account-o", Deposited(account="o", amount=2)),
        ]
    )
    sub = subscriber(bus, {Deposited: needs_the_store}, max_deliveries=2)
    async with running(sub):
        await until(lambda: sub.status().handled == 2, "both handled after the outage")

    assert recorder.amounts() == [1, 2]  # the later event waited behind the paused one
    assert await bus.dead_letters.count() == 0
    assert sub.status().dead_lettered == 0
    assert type(outage).__name__ in str(seen_during_outage[-1])
    assert sub.status().last_error is None or type(outage).__name__ not in sub.status().last_error


async def test_a_message_delivered_too_often_is_parked_without_a_call(
    bus: Bus, producer: Producer
) -> None:
    recorder = Recorder()
    await bus.publish([await producer.message("account-x", Deposited(account="x", amount=1))])
    # Two deliveries that were never settled (as if the handler killed the process).
    consumer = await bus.consumer(TOPIC, GROUP, ack_wait=30)
    for _ in range(2):
        (delivery,) = await consumer.fetch(10, timeout=1)
        await consumer.nak(delivery)
    await consumer.aclose()

    sub = subscriber(bus, {Deposited: recorder}, max_deliveries=2)
    async with running(sub):
        await until(lambda: sub.status().dead_lettered == 1, "parked")
    (letter,) = await bus.dead_letters.letters()
    assert letter.error_type == "TooManyDeliveries"
    assert letter.attempts == 3
    assert recorder.seen == []
    assert sub.status().retried == 0


async def test_a_message_that_waited_behind_one_delivered_too_often_gets_one_call(
    bus: Bus, producer: Producer
) -> None:
    # Both delivered twice and never settled; only the first can be to blame, so it is
    # parked unread. The second was delivered as often: it still gets a call, but one
    # only, as its tries are spent.
    calls = Counter[int]()

    async def always_fails(received: Received) -> None:
        assert isinstance(received.event, Deposited)
        calls[received.event.amount] += 1
        raise RuntimeError("always")

    first, second = [
        await producer.message("account-w", Deposited(account="w", amount=n)) for n in (1, 2)
    ]
    await bus.publish([first, second])
    consumer = await bus.consumer(TOPIC, GROUP, ack_wait=30)
    for _ in range(2):
        deliveries = await consumer.fetch(10, timeout=1)
        assert len(deliveries) == 2
        await consumer.nak(deliveries[0])
    await consumer.aclose()

    sub = subscriber(bus, {Deposited: always_fails}, max_deliveries=2)
    async with running(sub):
        await until(lambda: sub.status().dead_lettered == 2, "both parked")
    letters = {letter.message_id: letter for letter in await bus.dead_letters.letters()}
    assert letters[first.message_id].error_type == "TooManyDeliveries"
    assert (letters[second.message_id].error_type, letters[second.message_id].attempts) == (
        "RuntimeError",
        3,
    )
    assert calls == {2: 1}


# --- dead letters run again --------------------------------------------------------------


async def test_a_letter_marked_for_retry_is_handled_again(any_bus: Bus, producer: Producer) -> None:
    fixed = False
    recorder = Recorder()

    async def handle(received: Received) -> None:
        if not fixed:
            raise RuntimeError("bug 42")
        await recorder(received)

    message = await producer.message("account-r", Deposited(account="r", amount=5))
    await any_bus.publish([message])
    box = any_bus.dead_letters
    sub = subscriber(any_bus, {Deposited: handle}, max_deliveries=2)
    letter_id = DeadLetter.id_for(GROUP, TOPIC, message.message_id)
    async with running(sub):
        await until(lambda: sub.status().dead_lettered == 1, "parked")
        assert (await box.get(letter_id)).attempts == 2

        # Retried before the fix: it fails a full round again and comes back dead.
        await box.request_retry(letter_id)
        await until(lambda: sub.status().dead_lettered == 2, "parked again")
        again = await box.get(letter_id)
        assert (again.status, again.attempts, again.reason) == ("dead", 4, "RuntimeError: bug 42")

        fixed = True
        await box.request_retry(letter_id)
        await until(lambda: sub.status().handled == 1, "handled after the fix")
        assert await box.count() == 0

    assert recorder.amounts() == [5]
    assert recorder.message_ids == [message.message_id]


@pytest.mark.parametrize("backend", ["memory", "sqlite", "nats"])
async def test_a_letter_claimed_by_a_member_that_died_is_retried_once_the_claim_runs_out(
    backend: str, tmp_path: Path, producer: Producer
) -> None:
    # Claimed letters used to leave the box at once: a member dying before it handled
    # one lost it for good.
    message = await producer.message("account-c", Deposited(account="c", amount=7))
    letter_id = DeadLetter.id_for(GROUP, TOPIC, message.message_id)
    async with _bus_on(backend, tmp_path) as bus:
        box = bus.dead_letters
        await box.put(
            DeadLetter(
                letter_id=letter_id,
                group=GROUP,
                topic=TOPIC,
                message_id=message.message_id,
                key=message.key,
                body=message.body,
                reason="RuntimeError: bug 42",
                error_type="RuntimeError",
                attempts=5,
                failed_at=datetime.now(UTC),
            )
        )
        await box.request_retry(letter_id)
        # The member that claims it dies without handling it or giving it back.
        (held,) = await box.claim_retries(GROUP, TOPIC, holder="dead-member", lease=0.3)
        recorder = Recorder()
        sub = subscriber(bus, {Deposited: recorder})
        async with running(sub):
            await until(lambda: sub.status().handled == 1, "retried after the claim ran out")
        assert held.claimed_until is not None
        assert datetime.now(UTC) >= held.claimed_until
        assert await box.count() == 0
        assert recorder.message_ids == [message.message_id]


# --- members, stopping, cancelling -------------------------------------------------------


async def test_two_members_share_the_work_and_handle_each_message_once(
    bus: Bus, producer: Producer
) -> None:
    first, second = Recorder(), Recorder()
    one = subscriber(bus, {Deposited: first}, member="one")
    two = subscriber(bus, {Deposited: second}, member="two")
    async with running(one, two):
        await until(
            lambda: len(one.status().partitions) == len(two.status().partitions) == 2,
            "partitions split",
        )
        names = [f"s{n}" for n in range(24)]
        # Streams in every partition, so both members have work.
        assert {partition_of(f"account-{name}", PARTITIONS) for name in names} == set(
            range(PARTITIONS)
        )
        messages = []
        for round_ in range(1, 4):
            for name in names:
                messages.append(
                    await producer.message(
                        f"account-{name}", Deposited(account=name, amount=round_)
                    )
                )
        await bus.publish(messages)
        await until(lambda: len(first.seen) + len(second.seen) == len(messages), "all handled")

    assert first.seen
    assert second.seen
    handled = first.message_ids + second.message_ids
    assert sorted(handled) == sorted(m.message_id for m in messages)
    mine = {stream for stream, _, _ in first.seen}
    theirs = {stream for stream, _, _ in second.seen}
    assert mine.isdisjoint(theirs)


async def test_stop_ends_run_and_it_leaves_the_group(bus: Bus, producer: Producer) -> None:
    sub = subscriber(bus, {Deposited: Recorder()}, member="leaving")
    task = asyncio.create_task(sub.run())
    await until(lambda: len(sub.status().partitions) == PARTITIONS, "joined")
    status = sub.status()
    assert (status.topic, status.group, status.member) == (TOPIC, GROUP, "leaving")
    sub.stop()
    async with asyncio.timeout(PATIENCE):
        await task
    assert sub.status().partitions == ()
    # Stopped before it ran: run returns at once.
    await sub.run()


async def test_stop_during_backoff_leaves_the_message_for_later(
    bus: Bus, producer: Producer
) -> None:
    failing = asyncio.Event()

    async def slow_failure(received: Received) -> None:
        failing.set()
        raise RuntimeError("down")

    await bus.publish([await producer.message("account-s", Deposited(account="s", amount=1))])
    sub = subscriber(bus, {Deposited: slow_failure}, retry_backoff=(5.0, 5.0), max_deliveries=2)
    async with running(sub):
        await failing.wait()
    assert sub.status().dead_lettered == 0

    await assert_the_next_member_handles_it(bus)


async def test_cancelled_mid_batch_acks_only_what_was_handled(bus: Bus, producer: Producer) -> None:
    release = asyncio.Event()
    entered = asyncio.Event()
    recorder = Recorder()

    async def blocks_on_second(received: Received) -> None:
        assert isinstance(received.event, Deposited)
        if received.event.amount == 2:
            entered.set()
            await release.wait()
        await recorder(received)

    await bus.publish(
        [await producer.message("account-c", Deposited(account="c", amount=n)) for n in (1, 2, 3)]
    )
    sub = subscriber(bus, {Deposited: blocks_on_second})
    task = asyncio.create_task(sub.run())
    async with asyncio.timeout(PATIENCE):
        await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert recorder.amounts() == [1]

    release.set()
    again = Recorder()
    later = subscriber(bus, {Deposited: again})
    async with running(later):
        await until(lambda: later.status().handled == 2, "the rest handled")
    assert again.amounts() == [2, 3]


async def test_a_retry_claimed_when_stopping_goes_back_to_the_box(
    bus: Bus, producer: Producer
) -> None:
    message = await producer.message("account-k", Deposited(account="k", amount=1))
    letter = DeadLetter(
        letter_id=DeadLetter.id_for(GROUP, TOPIC, message.message_id),
        group=GROUP,
        topic=TOPIC,
        message_id=message.message_id,
        key=message.key,
        body=message.body,
        reason="RuntimeError: earlier",
        error_type="RuntimeError",
        attempts=5,
        failed_at=(await producer.store.read_stream(StreamId("account-k")))[0].recorded_at,
        status="retry",
    )
    await bus.dead_letters.put(letter)
    entered = asyncio.Event()

    async def hangs(received: Received) -> None:
        entered.set()
        await asyncio.Event().wait()

    sub = subscriber(bus, {Deposited: hangs})
    task = asyncio.create_task(sub.run())
    async with asyncio.timeout(PATIENCE):
        await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await bus.dead_letters.get(letter.letter_id) == letter


class _RefusingBox:
    """A dead-letter box whose first ``refuse`` puts fail with ``error`` (a
    failure-injection double: the puts after it really store)."""

    def __init__(self, inner: Any, refuse: int, error: Exception) -> None:
        self._inner = inner
        self._refuse = refuse
        self._error = error

    async def put(self, letter: DeadLetter) -> None:
        if self._refuse > 0:
            self._refuse -= 1
            raise self._error
        await self._inner.put(letter)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _RefusingBus:
    def __init__(self, inner: Bus, refuse: int, error: Exception) -> None:
        self._inner = inner
        self.dead_letters = _RefusingBox(inner.dead_letters, refuse, error)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@pytest.mark.parametrize(
    "error",
    [BusUnavailable("the dead-letter table is locked"), KeyError("a defect in the box")],
    ids=["outage", "defect"],
)
async def test_a_letter_that_cannot_be_parked_is_not_acked(
    bus: Bus, producer: Producer, error: Exception
) -> None:
    recorder = Recorder()
    failed_calls = 0

    async def handle(received: Received) -> None:
        nonlocal failed_calls
        assert isinstance(received.event, Deposited)
        if received.event.amount == 1:
            failed_calls += 1
            raise RuntimeError("always")
        await recorder(received)

    await bus.publish(
        [await producer.message("account-u", Deposited(account="u", amount=n)) for n in (1, 2)]
    )
    refusing: Any = _RefusingBus(bus, refuse=1, error=error)
    sub = subscriber(refusing, {Deposited: handle}, max_deliveries=3)
    async with running(sub):
        await until(lambda: sub.status().dead_lettered == 1, "parked on the second delivery")
        await until(lambda: sub.status().handled == 1, "the next message handled")

    (letter,) = await bus.dead_letters.letters()
    # The first delivery used its three calls but its letter was refused, so it was
    # nak'ed; the second delivery (the first counts as one call) had two calls left.
    assert (letter.error_type, letter.attempts) == ("RuntimeError", 3)
    assert recorder.amounts() == [2]
    # Tried and given back: its delivery counts, so it was not given a fresh budget.
    assert failed_calls == 5


# --- closed resources, outages, stopping mid-outage --------------------------------------


async def test_a_bus_closed_under_a_running_subscriber_stops_it_with_bus_closed(
    every_bus: Bus, producer: Producer
) -> None:
    recorder = Recorder()
    await every_bus.publish([await producer.message("account-z", Deposited(account="z", amount=1))])
    sub = subscriber(every_bus, {Deposited: recorder})
    task = asyncio.create_task(sub.run())
    await until(lambda: sub.status().handled == 1, "handled while the bus was open")
    await every_bus.aclose()
    async with asyncio.timeout(PATIENCE):
        with pytest.raises(BusClosed):
            await task


async def _closed_store() -> EventStore:
    store = await open_store("memory://")
    await store.aclose()
    return store


async def _closed_bus() -> Bus:
    closed = MemoryBus()
    await closed.aclose()
    return closed


@pytest.mark.parametrize(
    ("use", "closed_error"),
    [
        (lambda store, bus: store.stream_version(StreamId("account-q")), StoreClosed),
        (lambda store, bus: bus.publish([raw("account-q", b"{}", "echo")]), BusClosed),
    ],
    ids=["its store", "its bus"],
)
async def test_a_handler_meeting_a_closed_store_or_bus_stops_the_subscriber_with_that_error(
    bus: Bus,
    producer: Producer,
    use: Callable[[EventStore, Bus], Awaitable[object]],
    closed_error: type[Exception],
) -> None:
    # A closed resource is not an outage: waiting would never end it.
    store, own_bus = await _closed_store(), await _closed_bus()
    calls = 0

    async def needs_them(received: Received) -> None:
        nonlocal calls
        calls += 1
        await use(store, own_bus)

    await bus.publish([await producer.message("account-q", Deposited(account="q", amount=1))])
    sub = subscriber(bus, {Deposited: needs_them})
    task = asyncio.create_task(sub.run())
    async with asyncio.timeout(PATIENCE):
        with pytest.raises(closed_error):
            await task
    assert calls == 1
    status = sub.status()
    assert (status.handled, status.dead_lettered) == (0, 0)
    assert await bus.dead_letters.count() == 0
    # Neither acked nor parked: the message comes again to the next member.
    await assert_the_next_member_handles_it(bus)


async def test_an_outage_does_not_use_up_the_tries_of_a_message(
    bus: Bus, producer: Producer
) -> None:
    # Outages, then one failure of the message's own, then success: with two tries, the
    # outages must not have counted as tries.
    script: list[Exception | None] = [
        *(StoreUnavailable("restarting") for _ in range(5)),
        RuntimeError("its own fault"),
        None,
    ]
    recorder = Recorder()

    async def handle(received: Received) -> None:
        failure = script.pop(0)
        if failure is not None:
            raise failure
        await recorder(received)

    await bus.publish([await producer.message("account-p", Deposited(account="p", amount=1))])
    sub = subscriber(bus, {Deposited: handle}, max_deliveries=2)
    async with running(sub):
        await until(lambda: sub.status().handled == 1, "handled after the outage")
    assert recorder.amounts() == [1]
    status = sub.status()
    assert (status.retried, status.dead_lettered) == (1, 0)
    assert await bus.dead_letters.count() == 0


async def test_a_stop_during_an_outage_neither_acks_nor_counts_the_message_as_handled(
    bus: Bus, producer: Producer
) -> None:
    in_outage = asyncio.Event()

    async def store_down(received: Received) -> None:
        in_outage.set()
        raise StoreUnavailable("the billing database is restarting")

    await bus.publish([await producer.message("account-d", Deposited(account="d", amount=1))])
    sub = subscriber(bus, {Deposited: store_down})
    async with running(sub):
        async with asyncio.timeout(PATIENCE):
            await in_outage.wait()
    status = sub.status()
    assert (status.handled, status.ignored, status.dead_lettered) == (0, 0, 0)
    assert await bus.dead_letters.count() == 0

    await assert_the_next_member_handles_it(bus)


# --- dead letters taken back for retry ---------------------------------------------------


async def test_letters_taken_back_for_retry_are_dropped_only_once_handled(
    bus: Bus, producer: Producer
) -> None:
    # Two letters marked for retry: the first is handled (dropped from the box); the
    # subscriber stops while the second is in its backoff: it goes back, as it was.
    box = bus.dead_letters
    letters = []
    for amount in (1, 2):
        message = await producer.message(
            f"account-l{amount}", Deposited(account="l", amount=amount)
        )
        letter = DeadLetter(
            letter_id=DeadLetter.id_for(GROUP, TOPIC, message.message_id),
            group=GROUP,
            topic=TOPIC,
            message_id=message.message_id,
            key=message.key,
            body=message.body,
            reason="RuntimeError: earlier",
            error_type="RuntimeError",
            attempts=2,
            failed_at=datetime(2026, 1, 1, 0, 0, amount, tzinfo=UTC),  # in this order
            status="retry",
        )
        await box.put(letter)
        letters.append(letter)
    recorder = Recorder()
    failing = asyncio.Event()

    async def handle(received: Received) -> None:
        assert isinstance(received.event, Deposited)
        if received.event.amount == 2:
            failing.set()
            raise RuntimeError("still broken")
        await recorder(received)

    sub = subscriber(bus, {Deposited: handle}, retry_backoff=(5.0, 5.0), ack_wait=60.0)
    async with running(sub):
        async with asyncio.timeout(PATIENCE):
            await failing.wait()
    assert recorder.amounts() == [1]
    assert sub.status().handled == 1
    assert await box.letters() == [letters[1]]


# --- the time a batch may take -----------------------------------------------------------


class _Clock:
    """The subscriber's ``time``, moved by the handlers: the deadline counted exactly."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.mark.parametrize("delivered_before", [False, True], ids=["first", "repeat"])
async def test_a_partition_starts_no_delivery_once_half_of_ack_wait_has_passed(
    bus: Bus, producer: Producer, monkeypatch: pytest.MonkeyPatch, delivered_before: bool
) -> None:
    clock = _Clock()
    monkeypatch.setattr(subscriber_module, "time", clock)
    ack_wait = 10.0
    # The first message takes exactly half of ack_wait: the second still starts (the
    # deadline is not passed yet); it takes a little more, so the third does not start
    # in this batch and comes again at once, untried.
    takes = {1: ack_wait / 2, 2: 0.5, 3: 0.0}
    seen: list[tuple[int, int]] = []

    async def slow(received: Received) -> None:
        assert isinstance(received.event, Deposited)
        seen.append((received.event.amount, received.delivery.attempt))
        clock.now += takes[received.event.amount]

    await bus.publish(
        [await producer.message("account-h", Deposited(account="h", amount=n)) for n in (1, 2, 3)]
    )
    before = 0
    if delivered_before:
        # Delivered once and never settled: the batch is handled the careful way.
        consumer = await bus.consumer(TOPIC, GROUP, ack_wait=30)
        deliveries = await consumer.fetch(10, timeout=1)
        assert len(deliveries) == 3
        await consumer.nak(deliveries[0])
        await consumer.aclose()
        before = 1
    sub = subscriber(bus, {Deposited: slow}, ack_wait=ack_wait)
    async with running(sub):
        await until(lambda: sub.status().handled == 3, "all handled")
    assert seen == [(1, 1 + before), (2, 1 + before), (3, 2 + before)]
    assert sub.status().dead_lettered == 0


async def test_a_redelivered_message_gets_only_the_tries_left_of_its_budget(
    bus: Bus, producer: Producer
) -> None:
    calls = 0

    async def always_fails(received: Received) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("always")

    await bus.publish([await producer.message("account-b", Deposited(account="b", amount=1))])
    # Delivered once before and never settled: one of its three tries may have been spent.
    consumer = await bus.consumer(TOPIC, GROUP, ack_wait=30)
    (delivery,) = await consumer.fetch(10, timeout=1)
    await consumer.nak(delivery)
    await consumer.aclose()
    sub = subscriber(bus, {Deposited: always_fails}, max_deliveries=3)
    async with running(sub):
        await until(lambda: sub.status().dead_lettered == 1, "parked")
    (letter,) = await bus.dead_letters.letters()
    assert (calls, letter.attempts, sub.status().retried) == (2, 3, 1)


async def test_deliveries_given_back_untried_do_not_count_against_their_tries(
    bus: Bus, producer: Producer, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = _Clock()
    monkeypatch.setattr(subscriber_module, "time", clock)
    ack_wait = 10.0
    calls: list[tuple[int, int]] = []

    async def handle(received: Received) -> None:
        assert isinstance(received.event, Deposited)
        if received.event.amount == 1:
            clock.now += ack_wait  # past the batch's deadline: the others are given back
            return
        calls.append((received.event.amount, received.delivery.attempt))
        raise RuntimeError("always")

    await bus.publish(
        [await producer.message("account-g", Deposited(account="g", amount=n)) for n in (1, 2, 3)]
    )
    sub = subscriber(bus, {Deposited: handle}, ack_wait=ack_wait, max_deliveries=2)
    async with running(sub):
        await until(lambda: sub.status().dead_lettered == 2, "both parked")
    # Their first delivery was given back untried, both together: each of them (not
    # only the last given back) still gets both tries on its second.
    assert calls == [(2, 2), (2, 2), (3, 2), (3, 2)]
    assert [letter.attempts for letter in await bus.dead_letters.letters()] == [2, 2]


class _RecordingBackoff:
    """An outage backoff that waits no time and records which step it was asked for."""

    def __init__(self) -> None:
        self.steps: list[int] = []

    def delay(self, attempt: int, rng: object) -> float:
        self.steps.append(attempt)
        return 0.0


async def test_an_outage_backs_off_a_step_further_each_time_up_to_the_sixteenth(
    bus: Bus, producer: Producer, monkeypatch: pytest.MonkeyPatch
) -> None:
    backoff = _RecordingBackoff()
    monkeypatch.setattr(subscriber_handling, "_OUTAGE_BACKOFF", backoff)
    outages = 18

    async def store_down_a_while(received: Received) -> None:
        if len(backoff.steps) < outages:
            raise StoreUnavailable("restarting")

    await bus.publish([await producer.message("account-v", Deposited(account="v", amount=1))])
    sub = subscriber(bus, {Deposited: store_down_a_while})
    async with running(sub):
        await until(lambda: sub.status().handled == 1, "handled after the outage")
    assert backoff.steps == [*range(1, 17), 16, 16]
