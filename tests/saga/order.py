"""The order saga the saga tests share (reserve stock → charge card → book shipment),
and ``Run``: a saga driven through ``decide`` by hand, its stream kept and re-folded."""

from __future__ import annotations

from typing import Any

import msgspec

from eventcore.retry import RetryPolicy
from eventcore.saga import (
    Decision,
    Input,
    Reply,
    Saga,
    SagaContext,
    SagaEvent,
    SagaState,
    Send,
    Step,
    decide,
    replay,
)
from eventcore.saga.state import Pending


class Order(msgspec.Struct, frozen=True):
    order_id: str
    amount: int
    items: tuple[str, ...]


class Reserved(msgspec.Struct, frozen=True):
    reservation_id: str


class Charged(msgspec.Struct, frozen=True):
    payment_id: str


class Booked(msgspec.Struct, frozen=True):
    shipment_id: str


class ReserveStock(msgspec.Struct, frozen=True):
    order_id: str
    items: tuple[str, ...]


class ReleaseStock(msgspec.Struct, frozen=True):
    reservation_id: str


class ChargeCard(msgspec.Struct, frozen=True):
    order_id: str
    amount: int


class RefundPayment(msgspec.Struct, frozen=True):
    payment_id: str


class BookShipment(msgspec.Struct, frozen=True):
    order_id: str
    reservation_id: str


class CancelShipment(msgspec.Struct, frozen=True):
    shipment_id: str


STEPS = ("reserve", "charge", "ship")
#: What each step's action and compensation send, by step.
ACTIONS = {"reserve": ReserveStock, "charge": ChargeCard, "ship": BookShipment}
COMPENSATIONS = {"reserve": ReleaseStock, "charge": RefundPayment, "ship": CancelShipment}
RESULTS: dict[str, Any] = {
    "reserve": {"reservation_id": "r-1"},
    "charge": {"payment_id": "p-1"},
    "ship": {"shipment_id": "s-1"},
}
RETRY = RetryPolicy(max_attempts=3, initial_delay=1.0, max_delay=4.0)
ORDER = Order(order_id="o-1", amount=250, items=("book", "pen"))


def order_saga(
    *,
    timeout: float = 5.0,
    deadline: float | None = None,
    late_success: bool = False,
    retry: RetryPolicy = RETRY,
) -> Saga[Order]:
    """The order saga; ``late_success``: every step compensates a late success."""

    def reserve_stock(context: SagaContext[Order]) -> ReserveStock:
        return ReserveStock(order_id=context.data.order_id, items=context.data.items)

    def release_stock(context: SagaContext[Order]) -> ReleaseStock:
        return ReleaseStock(reservation_id=context.result(reserve).reservation_id)

    def charge_card(context: SagaContext[Order]) -> ChargeCard:
        return ChargeCard(order_id=context.data.order_id, amount=context.data.amount)

    def refund(context: SagaContext[Order]) -> RefundPayment:
        return RefundPayment(payment_id=context.result(charge).payment_id)

    def book_shipment(context: SagaContext[Order]) -> BookShipment:
        return BookShipment(
            order_id=context.data.order_id,
            reservation_id=context.result(reserve).reservation_id,
        )

    def cancel_shipment(context: SagaContext[Order]) -> CancelShipment:
        return CancelShipment(shipment_id=context.result(ship).shipment_id)

    reserve: Step[Order, Reserved] = Step(
        "reserve",
        action=Send("inventory", reserve_stock),
        compensation=Send("inventory", release_stock),
        result=Reserved,
        timeout=timeout,
        compensate_late_success=late_success,
    )
    charge: Step[Order, Charged] = Step(
        "charge",
        action=Send("payments", charge_card),
        compensation=Send("payments", refund),
        result=Charged,
        timeout=timeout,
        compensate_late_success=late_success,
    )
    ship: Step[Order, Booked] = Step(
        "ship",
        action=Send("shipping", book_shipment),
        compensation=Send("shipping", cancel_shipment),
        result=Booked,
        timeout=timeout,
        compensate_late_success=late_success,
    )
    return Saga(
        "order",
        data=Order,
        steps=[reserve, charge, ship],
        deadline=deadline,
        compensation_retry=retry,
    )


class Run:
    """One saga fed inputs by hand at a clock the test moves; every decision's events
    are kept, and the kept stream must always fold to the state decide returned.

    Each input is decided twice: the core is pure, so the same state, input and time
    give the same decision (no clock read, no randomness, nothing remembered)."""

    def __init__(self, saga: Saga[Any], saga_id: str = "o-1", now: float = 1000.0) -> None:
        self.saga = saga
        self.saga_id = saga_id
        self.now = now
        self.state: SagaState | None = None
        self.events: list[SagaEvent] = []
        self.decisions: list[Decision] = []

    def feed(self, input: Input) -> Decision:
        decision = decide(self.saga, self.state, input, self.now)
        assert decide(self.saga, self.state, input, self.now) == decision
        self.state = decision.state
        self.events.extend(decision.events)
        self.decisions.append(decision)
        assert replay(self.events) == self.state
        return decision

    def start(self, data: Any = ORDER) -> Decision:
        return self.feed(self.saga.start(self.saga_id, data))

    @property
    def saga_state(self) -> SagaState:
        assert self.state is not None
        return self.state

    @property
    def pending(self) -> Pending:
        pending = self.saga_state.pending
        assert pending is not None, f"nothing is pending; status {self.saga_state.status}"
        return pending

    def succeed(self, result: Any = None) -> Decision:
        step = self.pending.step
        if result is None and self.pending.phase == "action":
            result = RESULTS[step]
        return self.feed(Reply.success(self.pending.correlation_id, result))

    def reject(self, reason: str = "no") -> Decision:
        return self.feed(Reply.rejection(self.pending.correlation_id, reason))

    def kinds(self, decision: Decision | None = None) -> list[str]:
        """The type names of a decision's events (of the whole stream by default)."""
        events = self.events if decision is None else decision.events
        return [type(event).__name__ for event in events]
