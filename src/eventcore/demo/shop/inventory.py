"""Inventory: the warehouse's stock, one stream per product (``stock-<sku>``).

An order's stock is reserved for all its products at once or not at all: one command
reads every product stream the order names and appends to all of them atomically, so
two orders racing for the last kettle cannot both get it. A reservation is released
when the order saga compensates, and becomes shipped stock when the order completes —
which inventory learns from the orders service's ``OrderCompleted`` event, through a
subscription.

Stock is conserved: for every product, the units added equal those available plus
those reserved plus those shipped, and none of the three is ever negative.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from eventcore import Command, CommandRejected, Event, EventRegistry, Executor, StreamId, Writes
from eventcore.demo.shop.catalog import Line
from eventcore.demo.shop.orders import ORDERS_TOPIC, PUBLISHED, OrderCompleted
from eventcore.messaging import Bus, Received, Subscriber
from eventcore.messaging.commands import CommandReceiver

__all__ = [
    "EVENTS",
    "SERVICE",
    "AddStock",
    "ReleaseStock",
    "ReserveStock",
    "ShipStock",
    "Stock",
    "StockAdded",
    "StockReleased",
    "StockReserved",
    "StockShipped",
    "inventory_receiver",
    "inventory_registry",
    "inventory_subscriber",
    "stock_stream",
]

SERVICE = "inventory"


def stock_stream(sku: str) -> StreamId:
    return StreamId(f"stock-{sku}")


class StockAdded(Event):
    sku: str
    quantity: int


class StockReserved(Event):
    order_id: str
    quantity: int


class StockReleased(Event):
    order_id: str
    quantity: int


class StockShipped(Event):
    order_id: str
    quantity: int


EVENTS = (StockAdded, StockReserved, StockReleased, StockShipped)


@dataclass(frozen=True)
class Stock:
    """One product's stock: units free to sell, and units held for each order."""

    available: int = 0
    reserved: Mapping[str, int] = field(default_factory=dict)
    shipped: int = 0


#: The state of an inventory command: the stock of each product stream it read.
Shelves = Mapping[StreamId, Stock]


def _fold(shelves: Shelves, stream: StreamId, event: Event) -> Shelves:
    stock = shelves.get(stream, Stock())
    held = dict(stock.reserved)
    if isinstance(event, StockAdded):
        stock = Stock(stock.available + event.quantity, held, stock.shipped)
    elif isinstance(event, StockReserved):
        held[event.order_id] = event.quantity
        stock = Stock(stock.available - event.quantity, held, stock.shipped)
    elif isinstance(event, StockReleased):
        held.pop(event.order_id, None)
        stock = Stock(stock.available + event.quantity, held, stock.shipped)
    elif isinstance(event, StockShipped):
        held.pop(event.order_id, None)
        stock = Stock(stock.available, held, stock.shipped + event.quantity)
    return {**shelves, stream: stock}


class _StockCommand(Command[Shelves]):
    def initial_state(self) -> Shelves:
        return {}

    def apply(self, state: Shelves, stream_id: StreamId, event: Event) -> Shelves:
        return _fold(state, stream_id, event)


class AddStock(_StockCommand):
    """Put units of a product on the shelves (the shop's opening stock)."""

    product: StreamId
    sku: str
    quantity: int

    def handle(self, state: Shelves) -> Writes:
        if self.quantity <= 0:
            raise CommandRejected(f"stock added must be positive, got {self.quantity}")
        return {self.product: [StockAdded(sku=self.sku, quantity=self.quantity)]}


class ReserveStock(_StockCommand):
    """Hold every line of an order, all or none. ``products`` are the lines' streams."""

    products: tuple[StreamId, ...]
    order_id: str
    lines: tuple[Line, ...]

    @classmethod
    def of(cls, order_id: str, lines: tuple[Line, ...]) -> ReserveStock:
        products = tuple(stock_stream(line.sku) for line in lines)
        return cls(products=products, order_id=order_id, lines=lines)

    def handle(self, state: Shelves) -> Writes:
        writes: dict[StreamId, list[Event]] = {}
        for line in self.lines:
            stream = stock_stream(line.sku)
            stock = state.get(stream, Stock())
            if self.order_id in stock.reserved:
                continue  # held already: a repeat of this command
            if line.quantity <= 0 or stock.available < line.quantity:
                raise CommandRejected(
                    f"out of stock: {line.quantity} × {line.sku} wanted, {stock.available} left"
                )
            writes[stream] = [StockReserved(order_id=self.order_id, quantity=line.quantity)]
        return writes


class ReleaseStock(_StockCommand):
    """Give an order's held units back (the saga's compensation). Releasing what is not
    held — released already, or never reserved — is a success that writes nothing."""

    products: tuple[StreamId, ...]
    order_id: str

    def handle(self, state: Shelves) -> Writes:
        writes: dict[StreamId, list[Event]] = {}
        for stream in self.products:
            held = state.get(stream, Stock()).reserved.get(self.order_id)
            if held is not None:
                writes[stream] = [StockReleased(order_id=self.order_id, quantity=held)]
        return writes


class ShipStock(_StockCommand):
    """Turn a completed order's held units into shipped ones."""

    products: tuple[StreamId, ...]
    order_id: str

    def handle(self, state: Shelves) -> Writes:
        writes: dict[StreamId, list[Event]] = {}
        for stream in self.products:
            held = state.get(stream, Stock()).reserved.get(self.order_id)
            if held is not None:
                writes[stream] = [StockShipped(order_id=self.order_id, quantity=held)]
        return writes


def reserved_result(command: ReserveStock, events: tuple[Event, ...]) -> dict[str, str]:
    """The reserve step's result, as the saga keeps it."""
    return {"ref": f"reservation-{command.order_id}"}


def inventory_receiver(bus: Bus, executor: Executor) -> CommandReceiver:
    """The commands inventory takes from other services over the bus: the order saga's."""
    return CommandReceiver(
        bus,
        executor,
        {ReserveStock: reserved_result, ReleaseStock: None},
        service=SERVICE,
    )


def inventory_subscriber(bus: Bus, executor: Executor) -> Subscriber:
    """Inventory's subscription to the orders topic: a completed order's stock ships."""

    async def on_completed(received: Received[OrderCompleted]) -> None:
        completed = received.event
        products = tuple(stock_stream(sku) for sku in completed.skus)
        await received.run(executor, ShipStock(products=products, order_id=completed.order_id))

    return Subscriber(
        bus,
        ORDERS_TOPIC,
        {OrderCompleted: on_completed},
        group=SERVICE,
        # Every type the topic carries: one it did not know would be parked as drift.
        registry=EventRegistry(PUBLISHED),
    )


def inventory_registry() -> EventRegistry:
    return EventRegistry(EVENTS)
