"""Orders: the shop's front desk, and the owner of the order saga.

Placing an order writes ``OrderPlaced`` to the order's stream (``order-<id>``); the order
saga (``eventcore.demo.shop.saga``) starts from that event and brings the order to one
of two ends, each written here by a command the saga runs in this service: the saga's
first step accepts the order (its compensation cancels it) and its last completes it.

``OrderPlaced``, ``OrderCompleted`` and ``OrderCancelled`` are published on the orders
topic: inventory ships a completed order's stock, the federation hub carries all three
to analytics with the customer's e-mail hashed and the card number redacted.
"""

from __future__ import annotations

from dataclasses import dataclass

from eventcore import Command, CommandRejected, Event, EventRegistry, StreamId, TopicMap, Writes
from eventcore.demo.shop.catalog import PRICES, Line, total_of

__all__ = [
    "EVENTS",
    "ORDERS_TOPIC",
    "PUBLISHED",
    "SERVICE",
    "AcceptOrder",
    "CancelOrder",
    "CompleteOrder",
    "OrderAccepted",
    "OrderCancelled",
    "OrderCommand",
    "OrderCompleted",
    "OrderEvent",
    "OrderPlaced",
    "OrderStatus",
    "PlaceOrder",
    "order_stream",
    "orders_registry",
    "orders_topics",
]

SERVICE = "orders"
#: Where the orders service publishes the events other services consume.
ORDERS_TOPIC = "orders"


def order_stream(order_id: str) -> StreamId:
    return StreamId(f"order-{order_id}")


class OrderPlaced(Event):
    """A customer placed an order. It holds personal data (``customer_email``) and the
    card to charge: both stay in this service and never reach analytics as they are."""

    order_id: str
    customer_email: str
    card_number: str
    lines: tuple[Line, ...]
    country: str
    total: int


class OrderAccepted(Event):
    order_id: str


class OrderCompleted(Event):
    order_id: str
    total: int
    skus: tuple[str, ...]


class OrderCancelled(Event):
    order_id: str
    total: int


EVENTS = (OrderPlaced, OrderAccepted, OrderCompleted, OrderCancelled)
#: Any of the orders service's events (each names its order).
OrderEvent = OrderPlaced | OrderAccepted | OrderCompleted | OrderCancelled
#: What other services read on the orders topic.
PUBLISHED = (OrderPlaced, OrderCompleted, OrderCancelled)


def orders_registry() -> EventRegistry:
    return EventRegistry(EVENTS)


def orders_topics() -> TopicMap:
    """The orders service's topic map: its published events on ``ORDERS_TOPIC``."""
    return TopicMap().route(ORDERS_TOPIC, *PUBLISHED)


@dataclass(frozen=True)
class OrderStatus:
    """An order as its stream tells it."""

    status: str = "new"  # new, placed, accepted, completed or cancelled
    total: int = 0
    skus: tuple[str, ...] = ()


def _fold(order: OrderStatus, event: Event) -> OrderStatus:
    if isinstance(event, OrderPlaced):
        return OrderStatus("placed", event.total, tuple(line.sku for line in event.lines))
    if isinstance(event, OrderAccepted):
        return OrderStatus("accepted", order.total, order.skus)
    if isinstance(event, OrderCompleted):
        return OrderStatus("completed", order.total, order.skus)
    if isinstance(event, OrderCancelled):
        return OrderStatus("cancelled", order.total, order.skus)
    return order


class OrderCommand(Command[OrderStatus]):
    order: StreamId
    order_id: str

    def initial_state(self) -> OrderStatus:
        return OrderStatus()

    def apply(self, state: OrderStatus, stream_id: StreamId, event: Event) -> OrderStatus:
        return _fold(state, event)


class PlaceOrder(OrderCommand):
    """A customer's order. The prices are the catalogue's; the order id is new."""

    creates_streams = True

    customer_email: str
    card_number: str
    lines: tuple[Line, ...]
    country: str

    @classmethod
    def of(
        cls,
        order_id: str,
        *,
        customer_email: str,
        card_number: str,
        items: dict[str, int],
        country: str,
    ) -> PlaceOrder:
        lines = tuple(
            Line(sku=sku, quantity=quantity, price=PRICES.get(sku, 0))
            for sku, quantity in items.items()
        )
        return cls(
            order=order_stream(order_id),
            order_id=order_id,
            customer_email=customer_email,
            card_number=card_number,
            lines=lines,
            country=country,
        )

    def handle(self, state: OrderStatus) -> Writes:
        if state.status != "new":
            raise CommandRejected(f"order {self.order_id!r} is placed already")
        if not self.lines:
            raise CommandRejected("an order needs at least one line")
        for line in self.lines:
            if PRICES.get(line.sku) != line.price or line.quantity <= 0:
                raise CommandRejected(f"no such product or price: {line}")
        placed = OrderPlaced(
            order_id=self.order_id,
            customer_email=self.customer_email,
            card_number=self.card_number,
            lines=self.lines,
            country=self.country,
            total=total_of(self.lines),
        )
        return {self.order: [placed]}


class AcceptOrder(OrderCommand):
    """The saga's first step: the order is being fulfilled."""

    def handle(self, state: OrderStatus) -> Writes:
        if state.status != "placed":
            raise CommandRejected(f"order {self.order_id!r} is {state.status}, not placed")
        return {self.order: [OrderAccepted(order_id=self.order_id)]}


class CompleteOrder(OrderCommand):
    """The saga's last step: stock held, card charged, shipment booked."""

    def handle(self, state: OrderStatus) -> Writes:
        if state.status != "accepted":
            raise CommandRejected(f"order {self.order_id!r} is {state.status}, not accepted")
        completed = OrderCompleted(order_id=self.order_id, total=state.total, skus=state.skus)
        return {self.order: [completed]}


class CancelOrder(OrderCommand):
    """The compensation of accepting: the order is cancelled (once; again is a no-op)."""

    def handle(self, state: OrderStatus) -> Writes:
        if state.status == "cancelled":
            return {}
        if state.status == "completed":
            raise CommandRejected(f"order {self.order_id!r} is completed: it cannot be cancelled")
        return {self.order: [OrderCancelled(order_id=self.order_id, total=state.total)]}
