"""The whole shop in one process: every service over one bus, each with its own store.

``running_shop`` opens the stores and the bus a ``ShopSite`` names, serves the card
gateway, wires each service (``eventcore.demo.shop.services``) and the federation hub,
and runs them all; ``place_orders`` has concurrent customers place orders and waits
until every saga ended and every subscriber caught up; ``run_shop`` does both and
checks the invariants. The multi-process demo runs the same parts, a process each.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import statistics
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from eventcore import EventStore, Executor, RetryPolicy, StreamId, Worker, open_bus, open_store
from eventcore.demo.shop import analytics, inventory, orders, payments, shipping
from eventcore.demo.shop.boundary import analytics_hub
from eventcore.demo.shop.catalog import INITIAL_STOCK, PRICES
from eventcore.demo.shop.gateway import CardGateway, GatewayFaults, serve_gateway
from eventcore.demo.shop.invariants import Verdict, check_invariants
from eventcore.demo.shop.orders import PlaceOrder
from eventcore.demo.shop.services import (
    ServiceParts,
    analytics_service,
    inventory_service,
    orders_service,
    payments_service,
    shipping_service,
)
from eventcore.federation import Hub
from eventcore.lifecycle import running
from eventcore.messaging import Bus
from eventcore.projection import Target, open_target
from eventcore.resilience import BreakerPolicy, ServiceClient, StaticResolver
from eventcore.saga import ENDED, SagaState, SagaWorker

__all__ = [
    "SERVICES",
    "Plan",
    "RunningShop",
    "ShopReport",
    "ShopSite",
    "place_orders",
    "run_shop",
    "running_shop",
]

SERVICES = (
    orders.SERVICE,
    inventory.SERVICE,
    payments.SERVICE,
    shipping.SERVICE,
    analytics.SERVICE,
)

#: Cards the customers pay with; the last is declined by the gateway.
GOOD_CARDS = ("4242424242424242", "5555555555554444")
DECLINED_CARD = "4000000000000002"
#: A country no carrier delivers to.
NOWHERE = "AQ"
#: Payments' circuit breaker around the gateway: quick to open and to probe again, as
#: the demo's outages are short.
GATEWAY_BREAKER = BreakerPolicy(consecutive_failures=5, reset_timeout=0.5, call_timeout=2.0)


@dataclass(frozen=True)
class ShopSite:
    """Where the shop keeps its data: the bus, a store per service, analytics' view."""

    bus: str
    stores: Mapping[str, str]
    views: str

    @classmethod
    def embedded(cls, folder: Path) -> ShopSite:
        """The embedded default: SQLite files in ``folder``."""
        return cls(
            bus=f"sqlite://{folder / 'bus.db'}",
            stores={name: f"sqlite://{folder / name}.db" for name in SERVICES},
            views=f"sqlite://{folder / 'views.db'}",
        )

    @classmethod
    def in_memory(cls, folder: Path) -> ShopSite:
        """Memory stores and bus; the view (a SQL projection) in a SQLite file of ``folder``."""
        return cls(
            bus="memory://",
            stores=dict.fromkeys(SERVICES, "memory://"),
            views=f"sqlite://{folder / 'views.db'}",
        )


@dataclass(frozen=True)
class Plan:
    """What the customers do: ``orders`` in all, ``customers`` at once, a share paid
    with a declined card and a share sent where no carrier goes."""

    orders: int = 200
    customers: int = 16
    declined: float = 0.1
    unshippable: float = 0.1
    seed: int = 0

    def commands(self) -> list[PlaceOrder]:
        rng = random.Random(self.seed)
        countries = sorted(shipping.CARRIERS)
        placed: list[PlaceOrder] = []
        for n in range(self.orders):
            customer = n % max(1, self.customers * 3)
            skus = rng.sample(sorted(PRICES), rng.randint(1, 3))
            card = DECLINED_CARD if rng.random() < self.declined else rng.choice(GOOD_CARDS)
            country = NOWHERE if rng.random() < self.unshippable else rng.choice(countries)
            placed.append(
                PlaceOrder.of(
                    f"{self.seed}-{n}",
                    customer_email=f"customer{customer}@example.com",
                    card_number=card,
                    items={sku: rng.randint(1, 3) for sku in skus},
                    country=country,
                )
            )
        return placed


@dataclass
class RunningShop:
    """The shop, running: its bus, stores and services' parts, the gateway's books."""

    bus: Bus
    stores: dict[str, EventStore]
    parts: dict[str, ServiceParts]
    sagas: SagaWorker
    gateway: CardGateway
    hub: Hub
    #: What the saga calls to charge and refund (payments' operations).
    payments: payments.Payments
    placed_at: dict[str, float] = field(default_factory=dict)
    ended_at: dict[str, tuple[float, str]] = field(default_factory=dict)
    _ended: asyncio.Condition = field(default_factory=asyncio.Condition)

    @property
    def orders_executor(self) -> Executor:
        return self.parts[orders.SERVICE].executor

    def _seen(self, stream: StreamId, state: SagaState) -> None:
        if state.status in ENDED and state.saga_id not in self.ended_at:
            self.ended_at[state.saga_id] = (time.monotonic(), state.status)
            asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        async with self._ended:
            self._ended.notify_all()

    async def place(self, command: PlaceOrder) -> None:
        self.placed_at[command.order_id] = time.monotonic()
        await self.orders_executor.execute(command, idempotency_key=f"place-{command.order_id}")

    async def wait_ended(self, order_ids: list[str], timeout: float) -> None:  # noqa: ASYNC109
        """Until every saga of ``order_ids`` ended (``TimeoutError`` after ``timeout``)."""
        async with asyncio.timeout(timeout), self._ended:
            await self._ended.wait_for(lambda: all(i in self.ended_at for i in order_ids))

    async def caught_up(self) -> bool:
        """Whether inventory and analytics have consumed every ended order's events
        (analytics' projection aside: ``settle`` waits for it too)."""
        totals = await analytics.sales_totals(self.stores[analytics.SERVICE])
        completed = sum(status == "completed" for _, status in self.ended_at.values())
        shipped_orders: set[str] = set()
        async for batch in self.stores[inventory.SERVICE].read_all(types=["StockShipped"]):
            shipped_orders.update(_order_id(stored.data) for stored in batch)
        return (
            totals.placed == len(self.ended_at)
            and totals.completed + totals.cancelled == len(self.ended_at)
            and len(shipped_orders) >= completed
        )

    async def settle(self, timeout: float) -> None:  # noqa: ASYNC109
        """Until ``caught_up`` (``TimeoutError`` after ``timeout`` seconds)."""
        sales = self.stores[analytics.SERVICE]
        async with asyncio.timeout(timeout):
            while not await self.caught_up():
                # Woken by analytics' next sale event; inventory is checked at least
                # every tenth of a second.
                await sales.wait_for_events(await sales.last_position(), 0.1)
            for projection in self.parts[analytics.SERVICE].projections:
                await projection.caught_up()

    async def stock_up(self) -> None:
        """Put the opening stock on the shelves, once (a second run adds nothing)."""
        executor = self.parts[inventory.SERVICE].executor
        for sku, units in INITIAL_STOCK.items():
            add = inventory.AddStock(product=inventory.stock_stream(sku), sku=sku, quantity=units)
            await executor.execute(add, idempotency_key=f"opening-stock-{sku}")


def _order_id(payload: bytes) -> str:
    order_id: str = msgspec.json.decode(payload)["order_id"]
    return order_id


@asynccontextmanager
async def running_shop(
    site: ShopSite,
    *,
    faults: GatewayFaults | None = None,
    hash_key: str | None = None,
    step_timeout: float = 30.0,
) -> AsyncIterator[RunningShop]:
    """Every service of the shop and its hub running on ``site``, in this process."""
    async with AsyncExitStack() as stack:
        bus = await open_bus(site.bus)
        stack.push_async_callback(bus.aclose)
        stores: dict[str, EventStore] = {}
        for name in SERVICES:
            stores[name] = await open_store(site.stores[name])
            stack.push_async_callback(stores[name].aclose)
        target = await open_target(site.views)
        stack.push_async_callback(target.aclose)
        shop = running_shop_on(
            bus, stores, target, faults=faults, hash_key=hash_key, step_timeout=step_timeout
        )
        yield await stack.enter_async_context(shop)


@asynccontextmanager
async def running_shop_on(
    bus: Bus,
    stores: Mapping[str, EventStore],
    views: Target,
    *,
    faults: GatewayFaults | None = None,
    hash_key: str | None = None,
    step_timeout: float = 30.0,
    compensation_retry: RetryPolicy | None = None,
) -> AsyncIterator[RunningShop]:
    """The shop on a bus and stores already open (a store per service of
    ``SERVICES``; the caller closes them), with analytics' view on ``views``.
    ``step_timeout`` and ``compensation_retry`` go to the order saga (``order_saga``)."""
    async with AsyncExitStack() as stack:
        gateway = CardGateway(faults or GatewayFaults())
        gateway_url = await stack.enter_async_context(serve_gateway(gateway))
        client = ServiceClient(
            StaticResolver({payments.GATEWAY: [gateway_url]}),
            timeout=5.0,
            retry=RetryPolicy(max_attempts=3, initial_delay=0.05, max_delay=0.2),
            breaker_policy=GATEWAY_BREAKER,
        )
        await stack.enter_async_context(client)

        payments_parts, card_payments = payments_service(stores[payments.SERVICE], client)
        orders_parts = orders_service(
            stores[orders.SERVICE],
            bus,
            card_payments,
            step_timeout=step_timeout,
            compensation_retry=compensation_retry,
        )
        parts: dict[str, ServiceParts] = {
            orders.SERVICE: orders_parts,
            inventory.SERVICE: inventory_service(stores[inventory.SERVICE], bus),
            payments.SERVICE: payments_parts,
            shipping.SERVICE: shipping_service(stores[shipping.SERVICE], bus),
            analytics.SERVICE: analytics_service(stores[analytics.SERVICE], bus, views),
        }
        hub = analytics_hub(bus, hash_key or secrets.token_hex(32))
        workers: list[Worker[Any]] = [hub]
        for service in parts.values():
            workers.extend(service.workers)
        shop = RunningShop(
            bus, dict(stores), parts, orders_parts.sagas, gateway, hub, card_payments
        )
        orders_parts.sagas.index.listen(shop._seen)
        async with running(*workers):
            await shop.stock_up()
            yield shop


@dataclass(frozen=True)
class ShopReport:
    """What a run did: orders ended each way, how fast, and the invariants' verdict."""

    orders: int
    completed: int
    cancelled: int
    seconds: float
    p50_ms: float
    p99_ms: float
    verdict: Verdict

    @property
    def orders_per_second(self) -> float:
        return self.orders / self.seconds if self.seconds else 0.0

    def lines(self) -> list[str]:
        return [
            f"{self.orders} orders in {self.seconds:.1f} s ({self.orders_per_second:.0f}/s):"
            f" {self.completed} completed, {self.cancelled} cancelled;"
            f" placed → ended p50 {self.p50_ms:.0f} ms, p99 {self.p99_ms:.0f} ms",
            *self.verdict.lines(),
        ]


async def place_orders(shop: RunningShop, plan: Plan, *, timeout: float = 120.0) -> float:  # noqa: ASYNC109
    """Have ``plan.customers`` customers place the plan's orders at once; returns the
    seconds until every order's saga ended and every subscriber caught up."""
    commands = plan.commands()
    queue: asyncio.Queue[PlaceOrder] = asyncio.Queue()
    for command in commands:
        queue.put_nowait(command)

    async def customer() -> None:
        while not queue.empty():
            await shop.place(queue.get_nowait())

    began = time.monotonic()
    async with asyncio.TaskGroup() as group:
        for _ in range(max(1, plan.customers)):
            group.create_task(customer())
    await shop.wait_ended([command.order_id for command in commands], timeout)
    seconds = time.monotonic() - began
    await shop.settle(timeout)
    return seconds


async def run_shop(
    site: ShopSite,
    plan: Plan,
    *,
    faults: GatewayFaults | None = None,
    timeout: float = 120.0,  # noqa: ASYNC109
) -> ShopReport:
    """Run the shop on ``site``, place the plan's orders, check the invariants."""
    async with running_shop(site, faults=faults) as shop:
        seconds = await place_orders(shop, plan, timeout=timeout)
        verdict = await check_invariants(shop.stores)
        ids = [command.order_id for command in plan.commands()]
        took = sorted((shop.ended_at[i][0] - shop.placed_at[i]) * 1000 for i in ids)
        statuses = [shop.ended_at[i][1] for i in ids]
    return ShopReport(
        orders=len(ids),
        completed=statuses.count("completed"),
        cancelled=statuses.count("compensated"),
        seconds=seconds,
        p50_ms=statistics.median(took) if took else 0.0,
        p99_ms=took[min(len(took) - 1, int(len(took) * 0.99))] if took else 0.0,
        verdict=verdict,
    )
