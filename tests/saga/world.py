"""The order saga across real services, for the saga worker tests.

Three participants — inventory, payments, shipping — each with its own store, executor,
``CommandReceiver`` and relay; the owner, ``orders``, with its store, relay and
``SagaWorker``. Each participant's action writes an ``Effect`` to the order's stream in
its store and its compensation an ``Undone`` (or nothing when there is nothing to
undo: "already undone" is success), so a test counts effects where they happened.

``RULES`` makes a participant misbehave: ``refuse(command, times)`` has a command
refuse its next ``times`` runs (-1: every run until ``RULES.clear()``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

import msgspec

from eventcore import Command, CommandRejected, Event, EventRegistry, Executor, StreamId
from eventcore.command import Writes
from eventcore.lifecycle import running
from eventcore.messaging import TopicMap
from eventcore.messaging.bus import Bus
from eventcore.messaging.commands import COMMAND_EVENTS, CommandReceiver
from eventcore.retry import RetryPolicy
from eventcore.saga import Saga, SagaContext, SagaWorker, Send, Step
from eventcore.store import EventStore
from eventcore.testing import FaultPlan, Services

PARTICIPANTS = ("inventory", "payments", "shipping")
STEPS = ("reserve", "charge", "ship")
#: Long enough for a round trip through a loaded bus (NATS with PostgreSQL stores takes
#: a few hundred milliseconds under load), so only the deadline tests, which set their
#: own short timeouts, ever see one pass; no test waits for it.
TIMEOUT = 5.0
RETRY = RetryPolicy(max_attempts=3, initial_delay=0.02, max_delay=0.05)


class Effect(Event):
    order_id: str
    kind: str


class Undone(Event):
    order_id: str
    kind: str


class OrderPlaced(Event):
    """The owner's own event a saga starts on (published to ``PLACED``)."""

    order_id: str
    amount: int


PLACED = "orders-placed"
EVENTS = (Effect, Undone, OrderPlaced)


class Rules:
    """How many more runs of each command type refuse (-1: all)."""

    def __init__(self) -> None:
        self._refusals: dict[str, int] = {}

    def refuse(self, command: str, times: int = -1) -> None:
        self._refusals[command] = times

    def clear(self) -> None:
        self._refusals.clear()

    def check(self, command: str) -> None:
        left = self._refusals.get(command, 0)
        if left == 0:
            return
        if left > 0:
            self._refusals[command] = left - 1
        raise CommandRejected(f"{command} refused by the test")


RULES = Rules()


def order_stream(service: str, order_id: str) -> StreamId:
    return StreamId(f"{service}-order-{order_id}")


class _Act(Command[int]):
    """Do ``KIND`` once for the order (the state counts effects less undos)."""

    stream: StreamId
    order_id: str
    KIND: ClassVar[str] = ""

    def initial_state(self) -> int:
        return 0

    def apply(self, state: int, stream_id: StreamId, event: Event) -> int:
        if isinstance(event, Effect):
            return state + 1
        if isinstance(event, Undone):
            return state - 1
        return state

    def handle(self, state: int) -> Writes:
        RULES.check(type(self).__name__)
        return {self.stream: [Effect(order_id=self.order_id, kind=self.KIND)]}


class _Undo(_Act):
    def handle(self, state: int) -> Writes:
        RULES.check(type(self).__name__)
        if state <= 0:
            return {}  # nothing left to undo: that is success, not a refusal
        return {self.stream: [Undone(order_id=self.order_id, kind=self.KIND)]}


class HoldCredit(_Act):
    """A ``Local`` step's command: the owner holds the order's credit in its own store."""

    KIND: ClassVar[str] = "hold"


class ReleaseCredit(_Undo):
    KIND: ClassVar[str] = "hold"


class ReserveStock(_Act):
    KIND: ClassVar[str] = "reserve"


class ReleaseStock(_Undo):
    KIND: ClassVar[str] = "reserve"


class ChargeCard(_Act):
    KIND: ClassVar[str] = "charge"


class RefundPayment(_Undo):
    KIND: ClassVar[str] = "charge"


class BookShipment(_Act):
    KIND: ClassVar[str] = "ship"


class CancelShipment(_Undo):
    KIND: ClassVar[str] = "ship"


ACCEPTS: dict[str, tuple[type[_Act], type[_Act]]] = {
    "inventory": (ReserveStock, ReleaseStock),
    "payments": (ChargeCard, RefundPayment),
    "shipping": (BookShipment, CancelShipment),
}


def result_of(command: _Act, events: tuple[Event, ...]) -> dict[str, str]:
    return {"ref": f"{command.KIND}-{command.order_id}"}


class Order(msgspec.Struct, frozen=True):
    order_id: str
    amount: int


class Ref(msgspec.Struct, frozen=True):
    ref: str


def _send(service: str, command: type[_Act]) -> Send[Order]:
    def build(context: SagaContext[Order]) -> _Act:
        order = context.data.order_id
        return command(stream=order_stream(service, order), order_id=order)

    return Send(service, build)


def order_saga(
    *,
    timeout: float = TIMEOUT,
    timeouts: dict[str, float] | None = None,
    retry: RetryPolicy = RETRY,
    deadline: float | None = None,
    compensate_late_success: bool = False,
) -> Saga[Order]:
    steps: list[Step[Order, Any]] = []
    for index, (name, service) in enumerate(zip(STEPS, PARTICIPANTS, strict=True)):
        action, undo = ACCEPTS[service]
        steps.append(
            Step(
                name,
                action=_send(service, action),
                compensation=_send(service, undo),
                result=Ref,
                timeout=(timeouts or {}).get(name, timeout),
                compensate_late_success=compensate_late_success and index == 2,
            )
        )
    return Saga("place-order", data=Order, steps=steps, deadline=deadline, compensation_retry=retry)


@dataclass
class World:
    """The four services on one bus. ``services`` runs the relays and the receivers;
    ``worker()`` makes a saga worker of ``orders`` (not yet running)."""

    bus: Bus
    stores: dict[str, EventStore]
    services: Services
    receivers: dict[str, CommandReceiver] = field(default_factory=dict)
    registry: EventRegistry = field(default_factory=lambda: EventRegistry(EVENTS))

    def worker(self, *sagas: Saga[Any], **options: Any) -> SagaWorker:
        """A saga worker of ``orders``, to run with ``running``; ``until_idle`` waits
        for the replies it reads to be taken."""
        worker = SagaWorker(
            self.stores["orders"],
            self.services.bus,
            sagas,
            service="orders",
            registry=self.registry,
            poll_interval=0.05,
            **options,
        )
        replies = worker.status().reply_subscriber
        self.services.subscribers.append((worker, replies.topic, replies.group))
        return worker

    async def effects(self, service: str, order_id: str) -> list[str]:
        """What the participant did for the order: ``reserve``, ``undo reserve``…"""
        stored = await self.stores[service].read_stream(order_stream(service, order_id))
        return [("" if event.type == "Effect" else "undo ") + _kind(event.data) for event in stored]


def _kind(data: bytes) -> str:
    kind: str = msgspec.json.decode(data)["kind"]
    return kind


def participant_executor(store: EventStore) -> Executor:
    return Executor(store, EventRegistry([*EVENTS, *COMMAND_EVENTS]))


@asynccontextmanager
async def world(
    bus: Bus,
    stores: dict[str, EventStore],
    *,
    silent: frozenset[str] = frozenset(),
    faults: FaultPlan | None = None,
    ack_wait: float | None = None,
) -> AsyncIterator[World]:
    """The world, with its relays and receivers running (but those of ``silent``
    participants: they never answer until the test runs them); with ``faults``, on a
    bus that fails as the plan says."""
    RULES.clear()
    services = Services(bus, faults=faults)
    built = World(bus, stores, services)
    for service in ("orders", *PARTICIPANTS):
        topics = TopicMap({OrderPlaced: PLACED}) if service == "orders" else TopicMap()
        services.relay(stores[service], topics, service=service, poll_interval=0.05)
    for service in PARTICIPANTS:
        if service in silent:
            continue
        built.receivers[service] = services.receiver(
            participant_executor(stores[service]),
            dict.fromkeys(ACCEPTS[service], result_of),
            service=service,
            **({} if ack_wait is None else {"ack_wait": ack_wait}),
        )
    async with services.running():
        for receiver in built.receivers.values():
            await receiver.ready()
        yield built
    RULES.clear()


def late_receiver(built: World, service: str) -> CommandReceiver:
    """A receiver for a participant that was silent, to run with ``running``."""
    return CommandReceiver(
        built.services.bus,
        participant_executor(built.stores[service]),
        dict.fromkeys(ACCEPTS[service], result_of),
        service=service,
    )


__all__ = [
    "PARTICIPANTS",
    "RULES",
    "STEPS",
    "Order",
    "World",
    "late_receiver",
    "order_saga",
    "running",
    "world",
]
