"""Three services that one request runs through, for the tracing tests: an order placed
in ``shop`` is published on ``orders``; ``stock`` reserves it (a command of its own) and
publishes the reservation on ``reservations``; ``shipping`` schedules the shipment.

``wire`` builds one service's executor, relay and subscriber on a store and a bus; the
single-process test wires all three on one memory bus, ``service_process.py`` one per
process."""

from __future__ import annotations

from dataclasses import dataclass

from eventcore import Command, Event, EventRegistry, EventStore, Executor, StreamId, Writes
from eventcore.instrumentation import Hooks
from eventcore.messaging import Bus
from eventcore.messaging.relay import Relay
from eventcore.messaging.subscriber import Received, Subscriber
from eventcore.messaging.topics import TopicMap

SERVICES = ("shop", "stock", "shipping")


class OrderPlaced(Event):
    order: str


class StockReserved(Event):
    order: str


class ShipmentScheduled(Event):
    order: str


registry = EventRegistry([OrderPlaced, StockReserved, ShipmentScheduled])


class _Once(Command[bool]):
    """Writes its event once per stream (a repeat writes nothing)."""

    stream: StreamId
    order: str

    def initial_state(self) -> bool:
        return False

    def apply(self, state: bool, stream_id: StreamId, event: Event) -> bool:
        return True

    def event(self) -> Event:
        raise NotImplementedError

    def handle(self, state: bool) -> Writes:
        return {} if state else {self.stream: [self.event()]}


class PlaceOrder(_Once):
    def event(self) -> Event:
        return OrderPlaced(order=self.order)


class ReserveStock(_Once):
    def event(self) -> Event:
        return StockReserved(order=self.order)


class ScheduleShipment(_Once):
    def event(self) -> Event:
        return ShipmentScheduled(order=self.order)


@dataclass
class Service:
    executor: Executor
    relay: Relay | None
    subscriber: Subscriber | None


def wire(name: str, store: EventStore, bus: Bus, hooks: Hooks | None = None) -> Service:
    """Service ``name`` (one of ``SERVICES``) on ``store`` and ``bus``; ``hooks`` None
    takes the process default."""
    executor = Executor(store, registry, hooks=hooks)
    options = {"registry": registry, "retry_backoff": (0.01, 0.05), "hooks": hooks}
    if name == "shop":
        relay = Relay(store, bus, TopicMap({OrderPlaced: "orders"}), service=name, hooks=hooks)
        return Service(executor, relay, None)
    if name == "stock":

        async def reserve(received: Received[OrderPlaced]) -> None:
            order = received.event.order
            await received.run(
                executor, ReserveStock(stream=StreamId(f"stock-{order}"), order=order)
            )

        relay = Relay(
            store, bus, TopicMap({StockReserved: "reservations"}), service=name, hooks=hooks
        )
        return Service(executor, relay, Subscriber(bus, "orders", [reserve], group=name, **options))
    if name == "shipping":

        async def schedule(received: Received[StockReserved]) -> None:
            order = received.event.order
            await received.run(
                executor, ScheduleShipment(stream=StreamId(f"shipment-{order}"), order=order)
            )

        return Service(
            executor, None, Subscriber(bus, "reservations", [schedule], group=name, **options)
        )
    raise ValueError(f"no service {name!r}")
