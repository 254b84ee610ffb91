"""The saga metrics after the order saga ran across its three participants: one saga
completed, one compensated (its last step refused), one stuck (its refund refused too).
Sagas by status match the worker's own count, and stay right for a process that
starts again (it reads the log) and when a second index reports the same sagas;
compensations count the steps undone; every step's duration is observed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from eventcore import EventRegistry
from eventcore.instrumentation import SagaStatusChanged
from eventcore.lifecycle import running
from eventcore.observability import PrometheusHooks
from eventcore.saga import SAGA_EVENTS, SagaIndex
from eventcore.store import EventStore
from tests.observability.test_metrics import series, total
from tests.observability.test_metrics_operations import promtool, run_promtool
from tests.observability.workload import fresh_metrics
from tests.saga.conftest import Site, open_site
from tests.saga.world import RULES, STEPS, Order, order_saga, world

pytestmark = pytest.mark.timeout(60)
__all__ = ["promtool"]  # a fixture, used by name

SAGA = "place-order"
INSTANCES = "eventcore_saga_instances"
COMPENSATIONS = "eventcore_saga_compensations_total"
STEP_COUNT = "eventcore_saga_step_duration_seconds_count"


@pytest.fixture
async def memory_site(tmp_path: Path) -> AsyncIterator[Site]:
    async with AsyncExitStack() as stack:
        yield await open_site("memory", tmp_path, stack)


@pytest.fixture(params=["memory", "sqlite"])
async def site(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Site]:
    """In memory, and on the embedded default (SQLite bus and stores)."""
    async with AsyncExitStack() as stack:
        yield await open_site(request.param, tmp_path, stack)


def by_status(registry: CollectorRegistry, saga: str = SAGA) -> dict[str, float]:
    """The non-zero sagas by status of the gauge."""
    found: dict[str, float] = {}
    for family in registry.collect():
        for sample in family.samples:
            if sample.name == INSTANCES and sample.labels["saga"] == saga and sample.value:
                found[sample.labels["status"]] = sample.value
    return found


async def run_three_orders(site: Site) -> tuple[PrometheusHooks, dict[str, int], EventStore]:
    """Completed, compensated, stuck: the metrics, the worker's counts, the owner's store."""
    bus, stores = site
    metrics = fresh_metrics()
    saga = order_saga()
    async with world(bus, stores) as built:
        worker = built.worker(saga, hooks=metrics)
        async with running(worker):
            await worker.start(saga, "order-1", Order("1", 10))
            assert (await worker.wait(saga, "order-1")).status == "completed"
            RULES.refuse("BookShipment")
            await worker.start(saga, "order-2", Order("2", 20))
            assert (await worker.wait(saga, "order-2")).status == "compensated"
            RULES.refuse("RefundPayment")
            await worker.start(saga, "order-3", Order("3", 30))
            assert (await worker.wait(saga, "order-3")).status == "stuck"
            counts = worker.status().sagas
    return metrics, counts, stores["orders"]


async def test_saga_metrics_match_what_the_sagas_did(site: Site) -> None:
    metrics, counts, _ = await run_three_orders(site)
    registry = metrics.registry

    assert by_status(registry) == {"completed": 1, "compensated": 1, "stuck": 1}
    assert by_status(registry) == counts
    # Statuses the sagas passed through stay as zeros.
    assert total(registry, INSTANCES, saga=SAGA, status="running") == 0
    assert total(registry, INSTANCES, saga=SAGA, status="compensating") == 0

    # order-2 undid charge and reserve; order-3's refund never succeeded (it is stuck
    # on charge, so reserve was not reached): its failed attempts are not counted.
    assert total(registry, COMPENSATIONS, saga=SAGA, step="charge") == 1
    assert total(registry, COMPENSATIONS, saga=SAGA, step="reserve") == 1
    assert total(registry, COMPENSATIONS, saga=SAGA, step="ship") == 0

    # Every saga ran every step's action once (ship: succeeded once, refused twice).
    for step in STEPS:
        assert total(registry, STEP_COUNT, saga=SAGA, step=step) == 3, step
        assert total(registry, "eventcore_saga_step_duration_seconds_sum", step=step) > 0
        assert (
            total(registry, "eventcore_saga_step_duration_seconds_bucket", step=step, le="+Inf")
            == 3
        )


async def test_sagas_by_status_are_right_after_a_restart_and_with_a_second_index(
    memory_site: Site,
) -> None:
    _, counts, store = await run_three_orders(memory_site)
    registry = EventRegistry(SAGA_EVENTS)

    # A process starting again: fresh metrics, an index that reads the log.
    restarted = fresh_metrics()
    await SagaIndex(store, registry, hooks=restarted).catch_up()
    assert by_status(restarted.registry) == counts

    # A second index in that process (a worker restarted in place) tells the same
    # sagas again: counted once.
    await SagaIndex(store, registry, hooks=restarted).catch_up()
    assert by_status(restarted.registry) == counts


async def test_no_saga_label_takes_a_saga_id_or_its_stream(memory_site: Site) -> None:
    metrics, _, _ = await run_three_orders(memory_site)
    labels = {
        (key, value)
        for name, pairs in series(metrics.registry)
        if name.startswith("eventcore_saga_")
        for key, value in pairs
        if key != "le"  # a histogram's bounds
    }
    # The type, its steps and the statuses it went through: nothing per saga.
    assert labels == {
        ("saga", SAGA),
        *(("step", step) for step in STEPS),
        *(("status", status) for status in ("running", "completed", "compensating")),
        *(("status", status) for status in ("compensated", "stuck")),
    }


async def test_promtool_accepts_the_saga_families(memory_site: Site, promtool: str) -> None:
    metrics, _, _ = await run_three_orders(memory_site)
    text = generate_latest(metrics.registry).decode()
    assert 'eventcore_saga_instances{saga="place-order",status="stuck"} 1.0' in text
    assert 'eventcore_saga_step_duration_seconds_bucket{le="+Inf",saga="place-order"' in text
    problems = await asyncio.to_thread(run_promtool, promtool, "check", "metrics", text=text)
    assert problems.strip() == ""


def changed(saga_id: str, previous: str | None, status: str) -> SagaStatusChanged:
    return SagaStatusChanged(saga=SAGA, saga_id=saga_id, previous=previous, status=status)


def test_a_view_behind_the_one_counted_never_moves_the_gauge() -> None:
    metrics = fresh_metrics()
    history = [
        changed("s-1", None, "running"),
        changed("s-1", "running", "compensating"),
        changed("s-1", "compensating", "stuck"),
    ]
    for record in history:
        metrics.saga_status_changed(record)
    assert by_status(metrics.registry) == {"stuck": 1}
    # A second index reads the same log from the start: at no point does it count.
    for record in history:
        metrics.saga_status_changed(record)
        assert by_status(metrics.registry) == {"stuck": 1}
    # The operator's retry, seen by either view, moves the saga on.
    metrics.saga_status_changed(changed("s-1", "stuck", "compensating"))
    metrics.saga_status_changed(changed("s-1", "stuck", "compensating"))
    assert by_status(metrics.registry) == {"compensating": 1}
    metrics.saga_status_changed(changed("s-1", "compensating", "compensated"))
    metrics.saga_status_changed(changed("s-2", None, "running"))
    assert by_status(metrics.registry) == {"compensated": 1, "running": 1}
