"""Shipping: books a carrier for an order's parcel (stream ``shipment-<order id>``).

Carriers deliver to some countries only; an order to anywhere else is refused, and the
order saga compensates: the payment is refunded, the stock released.
"""

from __future__ import annotations

from eventcore import Command, CommandRejected, Event, EventRegistry, Executor, StreamId, Writes
from eventcore.messaging import Bus
from eventcore.messaging.commands import CommandReceiver

__all__ = [
    "CARRIERS",
    "EVENTS",
    "SERVICE",
    "BookShipment",
    "CancelShipment",
    "ShipmentBooked",
    "ShipmentCancelled",
    "shipment_stream",
    "shipping_receiver",
    "shipping_registry",
]

SERVICE = "shipping"

#: The carrier that delivers to each country; no carrier goes anywhere else.
CARRIERS: dict[str, str] = {
    "FR": "La Poste",
    "DE": "DHL",
    "NL": "PostNL",
    "IT": "Poste Italiane",
    "ES": "Correos",
}


def shipment_stream(order_id: str) -> StreamId:
    return StreamId(f"shipment-{order_id}")


class ShipmentBooked(Event):
    order_id: str
    carrier: str
    country: str


class ShipmentCancelled(Event):
    order_id: str


EVENTS = (ShipmentBooked, ShipmentCancelled)


def shipping_registry() -> EventRegistry:
    return EventRegistry(EVENTS)


class _ShipmentCommand(Command[str]):
    """State: ``none``, ``booked`` or ``cancelled``."""

    shipment: StreamId
    order_id: str

    def initial_state(self) -> str:
        return "none"

    def apply(self, state: str, stream_id: StreamId, event: Event) -> str:
        return "booked" if isinstance(event, ShipmentBooked) else "cancelled"


class BookShipment(_ShipmentCommand):
    country: str

    def handle(self, state: str) -> Writes:
        if state == "booked":
            return {}
        carrier = CARRIERS.get(self.country)
        if carrier is None:
            raise CommandRejected(f"no carrier delivers to {self.country}")
        booked = ShipmentBooked(order_id=self.order_id, carrier=carrier, country=self.country)
        return {self.shipment: [booked]}


class CancelShipment(_ShipmentCommand):
    def handle(self, state: str) -> Writes:
        if state != "booked":
            return {}  # nothing booked, or cancelled already: nothing to undo
        return {self.shipment: [ShipmentCancelled(order_id=self.order_id)]}


def booked_result(command: BookShipment, events: tuple[Event, ...]) -> dict[str, str]:
    return {"ref": f"shipment-{command.order_id}"}


def shipping_receiver(bus: Bus, executor: Executor) -> CommandReceiver:
    """The commands shipping takes over the bus: the order saga's."""
    return CommandReceiver(
        bus,
        executor,
        {BookShipment: booked_result, CancelShipment: None},
        service=SERVICE,
    )
