"""A small participant for the command tests: inventory reserves stock over the bus.

``ReserveStock`` takes ``quantity`` from the stream ``stock-<sku>`` (which starts with
``initial`` units) or refuses when too little is left; ``Restock`` adds units.
"""

from __future__ import annotations

from typing import Any

from eventcore import Command, CommandRejected, Event, EventRegistry, Executor, StreamId
from eventcore.command import Writes
from eventcore.messaging.commands import COMMAND_EVENTS

INITIAL = 10


class StockReserved(Event):
    sku: str
    quantity: int
    order_id: str


class Restocked(Event):
    sku: str
    quantity: int


class ReserveStock(Command[int]):
    stock: StreamId
    quantity: int
    order_id: str

    def initial_state(self) -> int:
        return INITIAL

    def apply(self, state: int, stream_id: StreamId, event: Event) -> int:
        if isinstance(event, StockReserved):
            return state - event.quantity
        if isinstance(event, Restocked):
            return state + event.quantity
        return state

    def handle(self, state: int) -> Writes:
        if self.quantity > state:
            raise CommandRejected(f"only {state} left, {self.quantity} asked")
        sku = self.stock.removeprefix("stock-")
        return {
            self.stock: [StockReserved(sku=sku, quantity=self.quantity, order_id=self.order_id)]
        }


class Restock(Command[int]):
    stock: StreamId
    quantity: int

    def initial_state(self) -> int:
        return 0

    def apply(self, state: int, stream_id: StreamId, event: Event) -> int:
        return state

    def handle(self, state: int) -> Writes:
        return {
            self.stock: [Restocked(sku=self.stock.removeprefix("stock-"), quantity=self.quantity)]
        }


def reservation(command: ReserveStock, events: tuple[Event, ...]) -> dict[str, Any]:
    """The reply's result: which reservation was made."""
    (reserved,) = events
    assert isinstance(reserved, StockReserved)
    return {"reservation_id": f"{command.order_id}/{reserved.sku}", "quantity": reserved.quantity}


def registry() -> EventRegistry:
    return EventRegistry([StockReserved, Restocked, ShelfOpened, *COMMAND_EVENTS])


def executor(store: Any) -> Executor:
    return Executor(store, registry())


class ShelfOpened(Event):
    sku: str


class OpenShelf(Command[bool]):
    """Refuses a shelf that exists; usually creates it, so decides before reading."""

    shelf: StreamId

    creates_streams = True

    def initial_state(self) -> bool:
        return False

    def apply(self, state: bool, stream_id: StreamId, event: Event) -> bool:
        return True

    def handle(self, state: bool) -> Writes:
        if state:
            raise CommandRejected(f"{self.shelf} is open already")
        return {self.shelf: [ShelfOpened(sku=self.shelf.removeprefix("shelf-"))]}
