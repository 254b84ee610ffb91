"""A small order domain, its summary projection, and the fold that projection must equal.

The projection counts what it applies (``applied``) and sums amounts: applying an event
twice or skipping one changes the table, so comparing with ``fold`` catches both.
"""

from __future__ import annotations

import random
from typing import Any

from eventcore import Event, EventRegistry, EventStore, StoredEvent, StreamId
from eventcore.projection import Projection, SqlTransaction, handles


class OrderPlaced(Event):
    order_id: str
    customer: str
    amount: int


class OrderShipped(Event):
    order_id: str


class NoteAdded(Event):
    """Not handled by the summary: the store's filter leaves it out."""

    text: str


registry = EventRegistry([OrderPlaced, OrderShipped, NoteAdded])

Row = tuple[str, str, int, int, int]


class OrderSummary(Projection):
    name = "order_summary"
    tables = ("orders",)

    def setup(self, tx: SqlTransaction) -> None:
        tx.execute(
            "CREATE TABLE {orders} (order_id TEXT PRIMARY KEY, customer TEXT NOT NULL,"
            " amount BIGINT NOT NULL, shipped INTEGER NOT NULL, applied INTEGER NOT NULL)"
        )

    @handles(OrderPlaced)
    def placed(self, tx: SqlTransaction, event: OrderPlaced, stored: StoredEvent) -> None:
        tx.execute(
            "INSERT INTO {orders} VALUES (?, ?, ?, 0, 1) ON CONFLICT (order_id) DO UPDATE"
            " SET amount = {orders}.amount + excluded.amount, applied = {orders}.applied + 1",
            (event.order_id, event.customer, event.amount),
        )

    @handles(OrderShipped)
    def shipped(self, tx: SqlTransaction, event: OrderShipped, stored: StoredEvent) -> None:
        tx.execute(
            "UPDATE {orders} SET shipped = shipped + 1, applied = applied + 1 WHERE order_id = ?",
            (event.order_id,),
        )


def fold(events: list[Any]) -> list[Row]:
    """What the summary table must hold after ``events`` (decoded), applied once each."""
    rows: dict[str, list[Any]] = {}
    for event in events:
        if isinstance(event, OrderPlaced):
            row = rows.setdefault(event.order_id, [event.order_id, event.customer, 0, 0, 0])
            row[2] += event.amount
            row[4] += 1
        elif isinstance(event, OrderShipped) and event.order_id in rows:
            rows[event.order_id][3] += 1
            rows[event.order_id][4] += 1
    return sorted(tuple(row) for row in rows.values())  # type: ignore[misc]


async def fold_store(store: EventStore) -> list[Row]:
    return fold([registry.decode(e) async for batch in store.read_all() for e in batch])


def random_events(
    rng: random.Random, count: int, orders: int = 500, prefix: str = "o"
) -> list[Event]:
    events: list[Event] = []
    for _ in range(count):
        order = f"{prefix}{rng.randrange(orders)}"
        kind = rng.random()
        if kind < 0.6:
            events.append(
                OrderPlaced(
                    order_id=order, customer=f"c{rng.randrange(50)}", amount=rng.randrange(1, 100)
                )
            )
        elif kind < 0.9:
            events.append(OrderShipped(order_id=order))
        else:
            events.append(NoteAdded(text="x"))
    return events


async def append_all(store: EventStore, events: list[Event], per_append: int = 1000) -> None:
    """Append ``events`` in order, ``per_append`` to one stream at a time."""
    version = await store.stream_version(StreamId("orders"))
    for start in range(0, len(events), per_append):
        chunk = [registry.encode(e) for e in events[start : start + per_append]]
        await store.append({StreamId("orders"): chunk}, expected={StreamId("orders"): version})
        version += len(chunk)


#: For ``eventcore projections rebuild --app tests.projection.orders:projections``.
projections = [OrderSummary()]
