"""Payments: charges and refunds an order's card through the card gateway.

The gateway is another system, reached over HTTP through ``ServiceClient``: each call
names the gateway by service name, carries the saga's idempotency key (so a retried
request charges once), and passes the client's circuit breaker, which stops calling a
gateway that keeps failing and fails fast instead. What the gateway answered is then
recorded in payments' own store (stream ``payment-<order id>``) by a command run under
the same key — a repeat of the whole call writes nothing twice.

Money is conserved: charges less refunds equal the total of the completed orders.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from eventcore import Command, CommandRejected, Event, EventRegistry, Executor, StreamId, Writes
from eventcore.resilience import ServiceClient

__all__ = [
    "EVENTS",
    "GATEWAY",
    "SERVICE",
    "Charged",
    "PaymentCharged",
    "PaymentDeclined",
    "PaymentRefunded",
    "Payments",
    "RecordCharge",
    "RecordDecline",
    "RecordRefund",
    "payment_stream",
    "payments_registry",
]

SERVICE = "payments"
#: The service name the client resolves to the gateway's address.
GATEWAY = "gateway"


def payment_stream(order_id: str) -> StreamId:
    return StreamId(f"payment-{order_id}")


class PaymentCharged(Event):
    order_id: str
    amount: int
    charge_id: str
    card_last4: str


class PaymentDeclined(Event):
    order_id: str
    amount: int
    reason: str


class PaymentRefunded(Event):
    order_id: str
    amount: int
    charge_id: str


EVENTS = (PaymentCharged, PaymentDeclined, PaymentRefunded)


def payments_registry() -> EventRegistry:
    return EventRegistry(EVENTS)


class Charged(msgspec.Struct, frozen=True):
    """The charge step's result: the gateway's id of the charge, which a refund names."""

    charge_id: str


@dataclass(frozen=True)
class Payment:
    charge_id: str | None = None
    amount: int = 0
    refunded: bool = False
    declined: bool = False


class _PaymentCommand(Command[Payment]):
    payment: StreamId
    order_id: str

    def initial_state(self) -> Payment:
        return Payment()

    def apply(self, state: Payment, stream_id: StreamId, event: Event) -> Payment:
        if isinstance(event, PaymentCharged):
            return Payment(event.charge_id, event.amount)
        if isinstance(event, PaymentRefunded):
            return Payment(state.charge_id, state.amount, refunded=True)
        if isinstance(event, PaymentDeclined):
            return Payment(declined=True)
        return state


class RecordCharge(_PaymentCommand):
    amount: int
    charge_id: str
    card_last4: str

    def handle(self, state: Payment) -> Writes:
        if state.charge_id is not None:
            raise CommandRejected(f"order {self.order_id!r} is charged already")
        charged = PaymentCharged(
            order_id=self.order_id,
            amount=self.amount,
            charge_id=self.charge_id,
            card_last4=self.card_last4,
        )
        return {self.payment: [charged]}


class RecordDecline(_PaymentCommand):
    amount: int
    reason: str

    def handle(self, state: Payment) -> Writes:
        declined = PaymentDeclined(order_id=self.order_id, amount=self.amount, reason=self.reason)
        return {self.payment: [declined]}


class RecordRefund(_PaymentCommand):
    def handle(self, state: Payment) -> Writes:
        if state.charge_id is None or state.refunded:
            return {}  # nothing charged, or refunded already: nothing to undo
        refunded = PaymentRefunded(
            order_id=self.order_id, amount=state.amount, charge_id=state.charge_id
        )
        return {self.payment: [refunded]}


class Payments:
    """The payments service's two operations, each run once per idempotency key.

    ``executor`` is over payments' own store; ``client`` resolves ``gateway`` (the
    service name ``GATEWAY`` by default) to the card gateway.
    """

    def __init__(
        self, executor: Executor, client: ServiceClient, *, gateway: str = GATEWAY
    ) -> None:
        self._executor = executor
        self._client = client
        self._gateway = gateway

    async def charge(self, key: str, order_id: str, amount: int, card_number: str) -> Charged:
        """Charge the card; ``CommandRejected`` when it is declined. A gateway that is
        down or whose circuit is open raises the client's error: nothing was charged."""
        response = await self._client.post(
            f"http://{self._gateway}/charges",
            json={"card_number": card_number, "amount": amount},
            headers={"Idempotency-Key": key},
        )
        stream = payment_stream(order_id)
        if response.status_code == 402:
            reason = str(response.json().get("reason", "card declined"))
            decline = RecordDecline(payment=stream, order_id=order_id, amount=amount, reason=reason)
            await self._executor.execute(decline, idempotency_key=key)
            raise CommandRejected(reason)
        if response.status_code != 201:
            raise CommandRejected(f"the card gateway answered {response.status_code}")
        record = RecordCharge(
            payment=stream,
            order_id=order_id,
            amount=amount,
            charge_id=str(response.json()["charge_id"]),
            card_last4=card_number[-4:],
        )
        result = await self._executor.execute(record, idempotency_key=key)
        if not result.deduplicated:
            return Charged(charge_id=record.charge_id)
        # A repeat: the charge recorded the first time is the one a refund must name,
        # whatever the gateway answered now (one restarted without its books would
        # have made a new one).
        for stored in await self._executor.store.read_stream(stream):
            event = self._executor.registry.decode(stored)
            if isinstance(event, PaymentCharged):
                return Charged(charge_id=event.charge_id)
        raise CommandRejected(f"order {order_id!r}: no charge recorded under {key!r}")

    async def refund(self, key: str, order_id: str, charge_id: str) -> None:
        """Refund the order's charge; nothing to do when it is refunded already."""
        response = await self._client.post(
            f"http://{self._gateway}/refunds",
            json={"charge_id": charge_id},
            headers={"Idempotency-Key": key},
        )
        if response.status_code != 200:
            raise CommandRejected(f"the card gateway answered {response.status_code}")
        await self._executor.execute(
            RecordRefund(payment=payment_stream(order_id), order_id=order_id),
            idempotency_key=key,
        )
