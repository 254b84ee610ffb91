"""Typed handlers: ``Received[E]`` carries an ``E``, and a subscriber given a list of
handlers reads the event class each one is for from its annotation (the dict form
keeps working: tests/messaging/test_subscriber_input.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from eventcore import Event, EventRegistry, InvalidInput, StoredEvent, StreamId, open_store
from eventcore.messaging import Bus, OutgoingMessage, Received, Subscriber
from eventcore.messaging.envelope import encode_envelope, envelope_of
from eventcore.messaging.inbox import Handler, event_type_of
from eventcore.messaging.memory import MemoryBus

TOPIC = "ledger-events"
#: Bounds a wait for something that happens in milliseconds; only a hang reaches it.
PATIENCE = 10.0


class Deposited(Event):
    amount: int


class Withdrawn(Event):
    amount: int


class Unregistered(Event):
    amount: int


registry = EventRegistry([Deposited, Withdrawn])


class Ledger:
    """Handlers as bound methods and as a callable object, each annotated with its event."""

    def __init__(self, expected: int = 0) -> None:
        self.deposits: list[Deposited] = []
        self.withdrawals: list[Withdrawn] = []
        self.expected = expected
        self.all_seen = asyncio.Event()

    async def on_deposited(self, received: Received[Deposited]) -> None:
        self.deposits.append(received.event)
        self._count()

    async def __call__(self, received: Received[Withdrawn]) -> None:
        self.withdrawals.append(received.event)
        self._count()

    def _count(self) -> None:
        if len(self.deposits) + len(self.withdrawals) >= self.expected:
            self.all_seen.set()


async def on_deposited(received: Received[Deposited]) -> None:
    pass


async def untyped(received) -> None:  # type: ignore[no-untyped-def]
    pass


async def bare(received: Received) -> None:  # type: ignore[type-arg]
    pass


async def of_a_non_event(received: Received[int]) -> None:  # type: ignore[type-var]
    pass


async def no_parameter() -> None:
    pass


def _local_event_handler() -> Handler:
    class Local(Event):
        amount: int

    # Under ``from __future__ import annotations`` the annotation is the string
    # "Received[Local]", which cannot be resolved outside this function.
    async def on_local(received: Received[Local]) -> None:
        pass

    return on_local


@pytest.fixture
async def bus() -> AsyncIterator[Bus]:
    async with MemoryBus() as memory:
        yield memory


async def _publish(bus: Bus, events: Sequence[Event]) -> None:
    store = await open_store("memory://")
    async with store:
        stream = StreamId("account-a")
        await store.append(
            {stream: [registry.encode(event) for event in events]}, expected={stream: 0}
        )
        stored: list[StoredEvent] = await store.read_stream(stream)
    await bus.publish(
        [
            OutgoingMessage(
                TOPIC,
                str(event.event_id),
                event.stream_id,
                encode_envelope(envelope_of(event, source="bank")),
            )
            for event in stored
        ]
    )


async def test_a_list_of_handlers_runs_each_event_through_the_handler_annotated_for_it(
    bus: Bus,
) -> None:
    ledger = Ledger(expected=3)
    await _publish(bus, [Deposited(amount=5), Withdrawn(amount=2), Deposited(amount=7)])
    subscriber = Subscriber(
        bus, TOPIC, [ledger.on_deposited, ledger], group="ledger", registry=registry
    )

    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(subscriber.run())
        async with asyncio.timeout(PATIENCE):
            await ledger.all_seen.wait()
        subscriber.stop()

    assert ledger.deposits == [Deposited(amount=5), Deposited(amount=7)]
    assert ledger.withdrawals == [Withdrawn(amount=2)]


@pytest.mark.parametrize(
    ("handler", "event_type"),
    [
        pytest.param(on_deposited, Deposited, id="function"),
        pytest.param(Ledger().on_deposited, Deposited, id="bound-method"),
        pytest.param(Ledger(), Withdrawn, id="callable-object"),
    ],
)
def test_the_event_type_comes_from_the_first_parameters_annotation(
    handler: Handler, event_type: type[Event]
) -> None:
    assert event_type_of(handler) is event_type


@pytest.mark.parametrize(
    ("handlers", "words"),
    [
        pytest.param([untyped], "does not say which event", id="no-annotation"),
        pytest.param([bare], "does not say which event", id="bare-received"),
        pytest.param([of_a_non_event], "does not say which event", id="not-an-event"),
        pytest.param([no_parameter], "does not say which event", id="no-parameter"),
        pytest.param([_local_event_handler()], "cannot read the event type", id="unresolvable"),
        pytest.param(["not callable"], "must be callable", id="not-callable"),
        pytest.param([on_deposited, Ledger().on_deposited], "two handlers", id="same-type"),
        pytest.param([], "at least one handler", id="empty"),
    ],
)
async def test_a_handler_list_that_does_not_say_the_types_is_refused_by_name(
    bus: Bus, handlers: list[Any], words: str
) -> None:
    with pytest.raises(InvalidInput, match=words):
        Subscriber(bus, TOPIC, handlers, group="ledger", registry=registry)


async def test_a_listed_handler_for_a_type_the_registry_does_not_know_is_refused(
    bus: Bus,
) -> None:
    async def on_unregistered(received: Received[Unregistered]) -> None:
        pass

    with pytest.raises(InvalidInput, match="registry does not know"):
        Subscriber(bus, TOPIC, [on_unregistered], group="ledger", registry=registry)


def test_the_refusal_names_the_handler() -> None:
    with pytest.raises(InvalidInput, match="untyped"):
        event_type_of(untyped)
