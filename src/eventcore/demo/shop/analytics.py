"""Analytics: the shop's sales, seen from outside the services that made them.

Analytics never reads another service's store, and never sees a customer's e-mail or
card number. The federation hub (``hub.toml``) carries the orders service's events to
the ``analytics-orders`` topic, hashing the e-mail (the same customer always hashes
alike, so customers can still be counted) and redacting the card number. Analytics
declares only the fields it reads of those copies, records each sale in its own store
(stream ``sale-<order id>``, once per event through the subscriber's inbox), and a
projection folds its store into the ``sales`` view.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from eventcore import (
    Command,
    Event,
    EventRegistry,
    EventStore,
    Executor,
    Projection,
    Received,
    SqlTransaction,
    StoredEvent,
    StreamId,
    Subscriber,
    Writes,
    handles,
)
from eventcore.demo.shop.catalog import Line
from eventcore.messaging import Bus

__all__ = [
    "ANALYTICS_TOPIC",
    "EVENTS",
    "SERVICE",
    "SaleCancelled",
    "SaleCompleted",
    "SaleEvent",
    "SaleOpened",
    "SalesReport",
    "SalesTotals",
    "analytics_registry",
    "analytics_subscriber",
    "fold_sales",
    "sale_stream",
    "sales_totals",
]

SERVICE = "analytics"
#: Where the hub delivers the orders service's events, personal data removed.
ANALYTICS_TOPIC = "analytics-orders"


def sale_stream(order_id: str) -> StreamId:
    return StreamId(f"sale-{order_id}")


# --- what arrives: the hub's copies of the orders service's events ------------------------


class PlacedCopy(Event):
    """``OrderPlaced`` as the hub delivers it: ``customer_email`` is a hash."""

    __event_type__ = "OrderPlaced"

    order_id: str
    customer_email: str
    lines: tuple[Line, ...]
    total: int


class CompletedCopy(Event):
    __event_type__ = "OrderCompleted"

    order_id: str
    total: int


class CancelledCopy(Event):
    __event_type__ = "OrderCancelled"

    order_id: str
    total: int


# --- what analytics records -----------------------------------------------------------------


class SaleOpened(Event):
    order_id: str
    customer: str
    lines: tuple[Line, ...]
    total: int


class SaleCompleted(Event):
    order_id: str
    total: int


class SaleCancelled(Event):
    order_id: str
    total: int


EVENTS = (SaleOpened, SaleCompleted, SaleCancelled)
#: Any of analytics' own events (each names its order).
SaleEvent = SaleOpened | SaleCompleted | SaleCancelled


def analytics_registry() -> EventRegistry:
    return EventRegistry(EVENTS)


class RecordSale(Command[int]):
    """Write one event to the sale's stream (the subscriber's inbox runs it once)."""

    sale: StreamId
    event: SaleEvent

    def initial_state(self) -> int:
        return 0

    def apply(self, state: int, stream_id: StreamId, event: Event) -> int:
        return state + 1

    def handle(self, state: int) -> Writes:
        return {self.sale: [self.event]}


def analytics_subscriber(bus: Bus, executor: Executor) -> Subscriber:
    """Analytics' subscription to the hub's copies of the orders service's events."""

    async def placed(received: Received[PlacedCopy]) -> None:
        copy = received.event
        opened = SaleOpened(
            order_id=copy.order_id, customer=copy.customer_email, lines=copy.lines, total=copy.total
        )
        await received.run(executor, RecordSale(sale=sale_stream(copy.order_id), event=opened))

    async def completed(received: Received[CompletedCopy]) -> None:
        copy = received.event
        done = SaleCompleted(order_id=copy.order_id, total=copy.total)
        await received.run(executor, RecordSale(sale=sale_stream(copy.order_id), event=done))

    async def cancelled(received: Received[CancelledCopy]) -> None:
        copy = received.event
        undone = SaleCancelled(order_id=copy.order_id, total=copy.total)
        await received.run(executor, RecordSale(sale=sale_stream(copy.order_id), event=undone))

    return Subscriber(
        bus,
        ANALYTICS_TOPIC,
        {PlacedCopy: placed, CompletedCopy: completed, CancelledCopy: cancelled},
        group=SERVICE,
        registry=EventRegistry([PlacedCopy, CompletedCopy, CancelledCopy]),
    )


@dataclass(frozen=True)
class SalesTotals:
    """The shop's sales as analytics counts them."""

    placed: int = 0
    completed: int = 0
    cancelled: int = 0
    revenue: int = 0
    customers: int = 0


def fold_sales(events: Iterable[Event]) -> SalesTotals:
    placed = completed = cancelled = revenue = 0
    customers: set[str] = set()
    for event in events:
        if isinstance(event, SaleOpened):
            placed += 1
            customers.add(event.customer)
        elif isinstance(event, SaleCompleted):
            completed += 1
            revenue += event.total
        elif isinstance(event, SaleCancelled):
            cancelled += 1
    return SalesTotals(placed, completed, cancelled, revenue, len(customers))


async def sales_totals(store: EventStore) -> SalesTotals:
    """Analytics' totals, read from its store."""
    registry = analytics_registry()
    events: list[Event] = []
    async for batch in store.read_all(types=[kind.__event_type__ for kind in EVENTS]):
        events.extend(registry.decode(stored) for stored in batch)
    return fold_sales(events)


class SalesReport(Projection):
    """The ``sales`` view: one row per sale, with its customer (hashed) and status."""

    name = "sales"
    tables = ("sales",)

    def setup(self, tx: SqlTransaction) -> None:
        tx.execute(
            "CREATE TABLE {sales} (order_id TEXT PRIMARY KEY, customer TEXT,"
            " total INTEGER, status TEXT)"
        )

    @handles(SaleOpened)
    def opened(self, tx: SqlTransaction, event: SaleOpened, stored: StoredEvent) -> None:
        # A sale may be closed before it is seen opened (the copies come on one topic,
        # but the hub may deliver them in either order): the row takes both.
        tx.execute(
            "INSERT INTO {sales} VALUES (?, ?, ?, 'placed')"
            " ON CONFLICT (order_id) DO UPDATE SET customer = excluded.customer",
            (event.order_id, event.customer, event.total),
        )

    @handles(SaleCompleted)
    def completed(self, tx: SqlTransaction, event: SaleCompleted, stored: StoredEvent) -> None:
        self._close(tx, event.order_id, event.total, "completed")

    @handles(SaleCancelled)
    def cancelled(self, tx: SqlTransaction, event: SaleCancelled, stored: StoredEvent) -> None:
        self._close(tx, event.order_id, event.total, "cancelled")

    @staticmethod
    def _close(tx: SqlTransaction, order_id: str, total: int, status: str) -> None:
        tx.execute(
            "INSERT INTO {sales} VALUES (?, NULL, ?, ?)"
            " ON CONFLICT (order_id) DO UPDATE SET status = excluded.status",
            (order_id, total, status),
        )
