"""The order saga: accept → reserve stock → charge the card → book shipment → complete.

It starts from ``OrderPlaced`` (the order's id names the saga, so an event delivered
twice starts one saga) and runs in the orders service. When a step fails — stock runs
out, the card is declined or the gateway is down, no carrier delivers there — the
completed steps are undone in reverse order: the shipment cancelled, the payment
refunded, the stock released, and last the order cancelled.

Each kind of step appears once:

- ``Local``: accepting, completing and cancelling the order are commands of the orders
  service itself;
- ``Send``: inventory and shipping take their commands over the bus and answer through
  their outboxes;
- ``Call``: the charge and the refund are calls to payments (``CardPayments``), which
  talks to the card gateway over HTTP; the saga's idempotency key goes along, so a
  call repeated after a crash charges once.
"""

from __future__ import annotations

from typing import Any, Protocol

import msgspec

from eventcore import Event, RetryPolicy
from eventcore.demo.shop import inventory, orders, shipping
from eventcore.demo.shop.catalog import Line
from eventcore.demo.shop.payments import Charged
from eventcore.saga import Call, Local, Saga, SagaContext, Send, StartOn, Step

__all__ = ["SAGA_TYPE", "CardPayments", "OrderData", "Ref", "order_saga"]

SAGA_TYPE = "order"


class OrderData(msgspec.Struct, frozen=True):
    """What the saga carries from step to step: the order as it was placed."""

    order_id: str
    lines: tuple[Line, ...]
    total: int
    country: str
    card_number: str

    @classmethod
    def of(cls, placed: orders.OrderPlaced) -> OrderData:
        return cls(
            order_id=placed.order_id,
            lines=placed.lines,
            total=placed.total,
            country=placed.country,
            card_number=placed.card_number,
        )


class Ref(msgspec.Struct, frozen=True):
    """The result of a step whose reply only names what it did."""

    ref: str


class CardPayments(Protocol):
    """What the saga needs of payments: ``eventcore.demo.shop.payments.Payments``."""

    async def charge(self, key: str, order_id: str, amount: int, card_number: str) -> Charged: ...

    async def refund(self, key: str, order_id: str, charge_id: str) -> None: ...


Context = SagaContext[OrderData]


def _order(command: type[orders.OrderCommand]) -> Local[OrderData]:
    def build(context: Context) -> orders.OrderCommand:
        order_id = context.data.order_id
        return command(order=orders.order_stream(order_id), order_id=order_id)

    return Local(build, result=_named)


def _named(command: Any, events: tuple[Event, ...]) -> dict[str, str]:
    return {"ref": f"{type(command).__name__}-{command.order_id}"}


def _reserve(context: Context) -> inventory.ReserveStock:
    return inventory.ReserveStock.of(context.data.order_id, context.data.lines)


def _release(context: Context) -> inventory.ReleaseStock:
    held = _reserve(context)
    return inventory.ReleaseStock(products=held.products, order_id=held.order_id)


def _book(context: Context) -> shipping.BookShipment:
    order = context.data
    return shipping.BookShipment(
        shipment=shipping.shipment_stream(order.order_id),
        order_id=order.order_id,
        country=order.country,
    )


def _cancel_shipment(context: Context) -> shipping.CancelShipment:
    order_id = context.data.order_id
    return shipping.CancelShipment(shipment=shipping.shipment_stream(order_id), order_id=order_id)


def order_saga(
    payments: CardPayments,
    *,
    timeout: float = 30.0,
    compensation_retry: RetryPolicy | None = None,
) -> Saga[OrderData]:
    """The order saga, charging through ``payments``. ``timeout`` bounds each step's
    wait for its reply; ``compensation_retry`` how each undo is tried again (by default
    ten attempts, up to two seconds apart: long enough to outlast a gateway outage)."""

    async def charge(context: Context, key: str) -> Charged:
        order = context.data
        return await payments.charge(key, order.order_id, order.total, order.card_number)

    async def refund(context: Context, key: str) -> Ref:
        charged = context.result(charge_step)
        await payments.refund(key, context.data.order_id, charged.charge_id)
        return Ref(ref=f"refund-{charged.charge_id}")

    charge_step: Step[OrderData, Charged] = Step(
        "charge", action=Call(charge), compensation=Call(refund), result=Charged, timeout=timeout
    )
    steps: list[Step[OrderData, Any]] = [
        Step(
            "accept",
            action=_order(orders.AcceptOrder),
            compensation=_order(orders.CancelOrder),
            result=Ref,
            timeout=timeout,
        ),
        Step(
            "reserve",
            action=Send(inventory.SERVICE, _reserve),
            compensation=Send(inventory.SERVICE, _release),
            result=Ref,
            timeout=timeout,
        ),
        charge_step,
        Step(
            "ship",
            action=Send(shipping.SERVICE, _book),
            compensation=Send(shipping.SERVICE, _cancel_shipment),
            result=Ref,
            timeout=timeout,
        ),
        Step("complete", action=_order(orders.CompleteOrder), result=Ref, timeout=timeout),
    ]
    return Saga(
        SAGA_TYPE,
        data=OrderData,
        steps=steps,
        start_on=[
            StartOn(orders.OrderPlaced, saga_id=lambda placed: placed.order_id, data=OrderData.of)
        ],
        compensation_retry=compensation_retry
        or RetryPolicy(max_attempts=10, initial_delay=0.2, max_delay=2.0),
    )
