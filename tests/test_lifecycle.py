"""Every long-running loop has one lifecycle (``eventcore.lifecycle``): the relay, the
subscriber and the projection runner are ``Worker``s that get ready, stop when asked (at
any time, any number of times), never leave a ``ready()`` waiter hanging, and end with
the error of a closed store or bus instead of waiting it out.

One body per behaviour, run for each worker on the memory and SQLite backends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from eventcore import (
    Bus,
    BusClosed,
    EventRegistry,
    EventStore,
    MemoryTarget,
    MemoryTransaction,
    Projection,
    ProjectionRunner,
    ProjectionStatus,
    Received,
    Relay,
    RelayStatus,
    Source,
    StoreClosed,
    StoredEvent,
    Subscriber,
    SubscriberStatus,
    TopicMap,
    WorkerStopped,
    handles,
    open_bus,
    open_store,
)
from eventcore.lifecycle import Worker, running, stopped_within, unless_stopped
from eventcore.projection import SqliteTarget
from eventcore.projection.target import Target
from eventcore.saga import SagaWorker, SagaWorkerStatus
from tests.projection.orders import OrderPlaced, OrderSummary, append_all, registry
from tests.saga.world import order_saga

#: A guard against hanging, not a speed requirement.
PATIENCE = 15.0
TOPIC = "orders"
TOPICS = TopicMap({OrderPlaced: TOPIC})


class OrderTotals(Projection):
    name = "order_totals"

    @handles(OrderPlaced)
    def placed(self, tx: MemoryTransaction, event: OrderPlaced, stored: StoredEvent) -> None:
        tx.state["total"] = tx.state.get("total", 0) + event.amount


@dataclass
class Site:
    store: EventStore
    bus: Bus
    target: Target
    projection: Projection


@pytest.fixture(params=["memory", "sqlite"])
async def site(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Site]:
    async with AsyncExitStack() as stack:
        if request.param == "memory":
            store = await stack.enter_async_context(await open_store("memory://"))
            bus = await stack.enter_async_context(await open_bus("memory://"))
            memory_target = MemoryTarget()
            stack.push_async_callback(memory_target.aclose)
            yield Site(store, bus, memory_target, OrderTotals())
        else:
            store = await stack.enter_async_context(await open_store(f"sqlite://{tmp_path}/s.db"))
            bus = await stack.enter_async_context(await open_bus(f"sqlite://{tmp_path}/b.db"))
            sqlite_target = await SqliteTarget.open(tmp_path / "views.db")
            stack.push_async_callback(sqlite_target.aclose)
            yield Site(store, bus, sqlite_target, OrderSummary())


async def _ignore(received: Received[OrderPlaced]) -> None:
    pass


@dataclass(frozen=True)
class Kind:
    """One kind of worker: how to build it, what its readiness means, what closing under
    it looks like, and the error that must then end its run."""

    name: str
    build: Callable[[Site], Worker[Any]]
    status_type: type
    is_started: Callable[[Any], bool]
    close_under: Callable[[Site], Awaitable[None]]
    closed_error: type[Exception]


async def _close_bus_then_append(site: Site) -> None:
    # A closed bus under a relay with something to publish: not an outage to wait out.
    await site.bus.aclose()
    await append_all(site.store, [OrderPlaced(order_id="1", customer="c", amount=1)])


async def _close_bus(site: Site) -> None:
    await site.bus.aclose()


async def _close_store(site: Site) -> None:
    await site.store.aclose()


KINDS = [
    Kind(
        "relay",
        lambda site: Relay(site.store, site.bus, TOPICS, service="orders", poll_interval=0.05),
        RelayStatus,
        lambda relay: relay.status().store_id is not None,
        _close_bus_then_append,
        BusClosed,
    ),
    Kind(
        "subscriber",
        lambda site: Subscriber(site.bus, TOPIC, [_ignore], group="billing", registry=registry),
        SubscriberStatus,
        lambda subscriber: bool(subscriber.status().partitions),
        _close_bus,
        BusClosed,
    ),
    Kind(
        "projection runner",
        lambda site: ProjectionRunner(
            site.projection, site.target, Source("orders", site.store, registry), poll_interval=0.05
        ),
        ProjectionStatus,
        lambda runner: runner.version is not None,
        _close_store,
        StoreClosed,
    ),
    Kind(
        "saga worker",
        lambda site: SagaWorker(
            site.store,
            site.bus,
            [order_saga()],
            service="orders",
            registry=EventRegistry(),
            poll_interval=0.05,
        ),
        SagaWorkerStatus,
        lambda worker: bool(worker.status().reply_subscriber.partitions),
        _close_bus,
        BusClosed,
    ),
]


@pytest.fixture(params=KINDS, ids=[kind.name for kind in KINDS])
def kind(request: pytest.FixtureRequest) -> Kind:
    kind: Kind = request.param
    return kind


async def test_a_worker_gets_ready_stops_when_asked_and_stays_ready(site: Site, kind: Kind) -> None:
    worker = kind.build(site)
    assert isinstance(worker, Worker)
    running_worker = asyncio.create_task(worker.run())

    async with asyncio.timeout(PATIENCE):
        await worker.ready()
    assert kind.is_started(worker)
    assert isinstance(worker.status(), kind.status_type)

    worker.stop()
    worker.stop()
    async with asyncio.timeout(PATIENCE):
        await running_worker
        await worker.ready()  # ready once, ready for good
    worker.stop()


async def test_a_worker_stopped_before_it_runs_returns_at_once_and_is_never_ready(
    site: Site, kind: Kind
) -> None:
    worker = kind.build(site)
    waiting = asyncio.create_task(worker.ready())
    await asyncio.sleep(0)

    worker.stop()
    worker.stop()

    async with asyncio.timeout(PATIENCE):
        await worker.run()
        with pytest.raises(WorkerStopped):
            await waiting
        with pytest.raises(WorkerStopped):
            await worker.ready()


async def test_ready_raises_the_error_that_failed_run_before_it_was_ready(
    site: Site, kind: Kind
) -> None:
    worker = kind.build(site)
    waiting = asyncio.create_task(worker.ready())
    await site.store.aclose()
    await site.bus.aclose()
    await site.target.aclose()

    async with asyncio.timeout(PATIENCE):
        with pytest.raises((StoreClosed, BusClosed)) as failed:
            await worker.run()
        with pytest.raises(type(failed.value)) as told:
            await waiting
    assert told.value is failed.value


async def test_a_closed_store_or_bus_ends_a_running_worker_with_its_error(
    site: Site, kind: Kind
) -> None:
    worker = kind.build(site)
    running_worker = asyncio.create_task(worker.run())
    async with asyncio.timeout(PATIENCE):
        await worker.ready()

    await kind.close_under(site)

    async with asyncio.timeout(PATIENCE):  # waited out, it would never end
        with pytest.raises(kind.closed_error):
            await running_worker


async def test_running_starts_every_worker_and_stops_them_all_on_leaving(site: Site) -> None:
    workers = [kind.build(site) for kind in KINDS]

    # Leaving the block awaits every run: it would hang on one that did not stop.
    async with asyncio.timeout(PATIENCE):
        async with running(*workers):
            for kind, worker in zip(KINDS, workers, strict=True):
                assert kind.is_started(worker)


async def test_running_raises_the_error_of_a_worker_that_cannot_start(site: Site) -> None:
    workers = [kind.build(site) for kind in KINDS]
    await site.bus.aclose()

    async with asyncio.timeout(PATIENCE):
        with pytest.raises(BusClosed):
            async with running(*workers):
                pytest.fail("the block ran without a bus")


class _Quitter:
    """A defective worker: its run() returns by itself before it is ever ready."""

    async def run(self) -> None:
        return

    def stop(self) -> None:
        pass

    def status(self) -> None:
        return None

    async def ready(self) -> None:
        await asyncio.Event().wait()


async def test_running_refuses_a_worker_whose_run_ends_before_it_is_ready(site: Site) -> None:
    relay = KINDS[0].build(site)

    async with asyncio.timeout(PATIENCE):
        with pytest.raises(WorkerStopped):
            async with running(relay, _Quitter()):
                pytest.fail("the block ran without one of its workers")


async def test_stopped_within_says_whether_stop_came_before_the_time_ran_out() -> None:
    stopping = asyncio.Event()
    assert await stopped_within(stopping, 0.01) is False
    asyncio.get_running_loop().call_soon(stopping.set)
    assert await stopped_within(stopping, 60) is True
    # Already stopped: no wait at all.
    assert await stopped_within(stopping, 60) is True


async def test_unless_stopped_gives_the_result_or_cancels_the_work_on_stop() -> None:
    stopping = asyncio.Event()

    async def answer() -> int:
        return 42

    assert await unless_stopped(answer(), stopping) == 42

    started = asyncio.Event()
    cancelled = False

    async def forever() -> int:
        nonlocal cancelled
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled = True
            raise
        return 0

    async def stop_once_started() -> None:
        await started.wait()
        stopping.set()

    stopper = asyncio.create_task(stop_once_started())
    assert await unless_stopped(forever(), stopping) is None
    # The work cut short was cancelled and waited for: nothing of it runs on.
    assert cancelled
    await stopper


async def test_unless_stopped_raises_the_error_of_the_work() -> None:
    async def fail() -> int:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await unless_stopped(fail(), asyncio.Event())
