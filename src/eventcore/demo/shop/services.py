"""Each shop service's pieces, wired from a store and a bus (and what it calls).

One function per service builds what that service runs — its relay and topic map, the
commands it takes over the bus, its subscriptions, sagas and projections — and returns
them as ``ServiceParts``. The in-process runner runs every service's parts in one
process; a ``Service`` of the runtime wraps the same parts, one process each.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from eventcore import (
    EventRegistry,
    EventStore,
    Executor,
    ProjectionRunner,
    Relay,
    RetryPolicy,
    Source,
    Subscriber,
    TopicMap,
    Worker,
)
from eventcore.demo.shop import analytics, inventory, orders, payments, shipping
from eventcore.demo.shop.saga import CardPayments, OrderData, order_saga
from eventcore.messaging import Bus
from eventcore.messaging.commands import COMMAND_EVENTS, CommandReceiver
from eventcore.projection import Target
from eventcore.resilience import ServiceClient
from eventcore.saga import SAGA_EVENTS, Saga, SagaWorker

__all__ = [
    "OrdersParts",
    "ServiceParts",
    "analytics_service",
    "inventory_service",
    "orders_service",
    "payments_service",
    "shipping_service",
]


@dataclass(kw_only=True)
class ServiceParts:
    """What one service runs over its ``store``: the pieces a ``Service`` declares.

    ``executor`` runs its commands; ``relay`` publishes its events (by its topic map)
    and carries its replies and saga requests; ``receiver`` takes the commands other
    services send it over the bus; ``subscribers`` are its subscriptions; ``sagas`` the
    worker of the sagas it owns; ``projections`` its read models.
    """

    name: str
    store: EventStore
    executor: Executor
    relay: Relay | None = None
    receiver: CommandReceiver | None = None
    subscribers: list[Subscriber] = field(default_factory=list)
    sagas: SagaWorker | None = None
    projections: list[ProjectionRunner] = field(default_factory=list)

    @property
    def workers(self) -> list[Worker[Any]]:
        """Every long-running piece, to run in one task group."""
        pieces: list[Worker[Any] | None] = [
            self.relay,
            self.receiver,
            *self.subscribers,
            self.sagas,
            *self.projections,
        ]
        return [piece for piece in pieces if piece is not None]


@dataclass(kw_only=True)
class OrdersParts(ServiceParts):
    """The orders service's parts, with its saga and the worker that drives it."""

    saga: Saga[OrderData]
    sagas: SagaWorker


#: States inventory's executor keeps: one per set of products an order names.
INVENTORY_CACHE = 256


def _relay(store: EventStore, bus: Bus, topics: TopicMap, service: str) -> Relay:
    # Every service that answers commands or publishes events needs its relay: replies
    # and saga requests leave through the outbox like any event.
    return Relay(store, bus, topics, service=service)


def orders_service(
    store: EventStore,
    bus: Bus,
    payments_api: CardPayments,
    *,
    step_timeout: float = 30.0,
    compensation_retry: RetryPolicy | None = None,
) -> OrdersParts:
    """Orders: publishes its events on the orders topic, owns the order saga (started
    from ``OrderPlaced`` on that topic, its accept/complete/cancel steps run here)."""
    registry = EventRegistry([*orders.EVENTS, *SAGA_EVENTS, *COMMAND_EVENTS])
    executor = Executor(store, registry)
    saga = order_saga(payments_api, timeout=step_timeout, compensation_retry=compensation_retry)
    sagas = SagaWorker(
        store,
        bus,
        [saga],
        service=orders.SERVICE,
        registry=registry,
        executor=executor,
        start_topics=[orders.ORDERS_TOPIC],
    )
    return OrdersParts(
        name=orders.SERVICE,
        store=store,
        executor=executor,
        relay=_relay(store, bus, orders.orders_topics(), orders.SERVICE),
        saga=saga,
        sagas=sagas,
    )


def inventory_service(store: EventStore, bus: Bus) -> ServiceParts:
    """Inventory: takes the saga's reserve and release commands over the bus; ships a
    completed order's stock from its subscription to the orders topic."""
    # Every order touches the same few product streams, which grow with every order:
    # the state cache folds each from where it was left instead of from version 1.
    executor = Executor(
        store, EventRegistry([*inventory.EVENTS, *COMMAND_EVENTS]), cache_size=INVENTORY_CACHE
    )
    return ServiceParts(
        name=inventory.SERVICE,
        store=store,
        executor=executor,
        relay=_relay(store, bus, TopicMap(), inventory.SERVICE),
        receiver=inventory.inventory_receiver(bus, executor),
        subscribers=[inventory.inventory_subscriber(bus, executor)],
    )


def payments_service(
    store: EventStore, client: ServiceClient
) -> tuple[ServiceParts, payments.Payments]:
    """Payments: no worker of its own yet; ``Payments`` is what the saga calls, and it
    calls the card gateway through ``client``."""
    executor = Executor(store, payments.payments_registry())
    parts = ServiceParts(name=payments.SERVICE, store=store, executor=executor)
    return parts, payments.Payments(executor, client)


def shipping_service(store: EventStore, bus: Bus) -> ServiceParts:
    """Shipping: takes the saga's book and cancel commands over the bus."""
    executor = Executor(store, EventRegistry([*shipping.EVENTS, *COMMAND_EVENTS]))
    return ServiceParts(
        name=shipping.SERVICE,
        store=store,
        executor=executor,
        relay=_relay(store, bus, TopicMap(), shipping.SERVICE),
        receiver=shipping.shipping_receiver(bus, executor),
    )


def analytics_service(store: EventStore, bus: Bus, target: Target) -> ServiceParts:
    """Analytics: records the hub's copies of the orders' events (its subscription), and
    projects its own store into the ``sales`` view on ``target``."""
    registry = analytics.analytics_registry()
    executor = Executor(store, registry)
    report = ProjectionRunner(
        analytics.SalesReport(), target, Source(analytics.SERVICE, store, registry)
    )
    return ServiceParts(
        name=analytics.SERVICE,
        store=store,
        executor=executor,
        subscribers=[analytics.analytics_subscriber(bus, executor)],
        projections=[report],
    )
