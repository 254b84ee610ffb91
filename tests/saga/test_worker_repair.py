"""Compensations are retried with backoff until they succeed; one that never does leaves
the saga stuck with its reason, listed by the status API, until an operator retries it
(after the participant is fixed) or aborts it. Replies that name no saga are ignored
with a clear reason."""

from __future__ import annotations

import logging

import pytest

from eventcore import EventRegistry, Metadata, StreamId
from eventcore.errors import InvalidSagaInput, SagaNotFound
from eventcore.lifecycle import running
from eventcore.messaging.commands import COMMAND_EVENTS, CommandReplied
from eventcore.saga import SagaManager
from tests.saga.conftest import Site
from tests.saga.world import RULES, Order, order_saga, world

pytestmark = pytest.mark.timeout(60)


async def test_a_compensation_that_fails_twice_is_retried_until_it_succeeds(site: Site) -> None:
    bus, stores = site
    saga = order_saga()
    async with world(bus, stores) as built:
        RULES.refuse("BookShipment")
        RULES.refuse("RefundPayment", times=2)
        worker = built.worker(saga)
        async with running(worker):
            await worker.start(saga, "order-7", Order("7", 10))
            state = await worker.wait(saga, "order-7", timeout=40)
            view = await worker.manager.show("order-7")
        paid = await built.effects("payments", "7")

    assert state.status == "compensated"
    assert state.compensated == ("charge", "reserve")
    assert paid == ["charge", "undo charge"]
    charge = next(step for step in view.steps if step.name == "charge")
    attempts = [(a.phase, a.attempt, a.outcome) for a in charge.attempts]
    assert attempts == [
        ("action", 1, "succeeded"),
        ("compensation", 1, "failed"),
        ("compensation", 2, "failed"),
        ("compensation", 3, "succeeded"),
    ]


async def test_a_compensation_that_always_fails_is_stuck_until_an_operator_retries(
    site: Site,
) -> None:
    bus, stores = site
    saga = order_saga()
    async with world(bus, stores) as built:
        RULES.refuse("BookShipment")
        RULES.refuse("RefundPayment")
        worker = built.worker(saga)
        async with running(worker):
            await worker.start(saga, "order-8", Order("8", 10))
            stuck = await worker.wait(saga, "order-8", timeout=40)
            RULES.clear()  # payments is fixed; order-9 goes through
            await worker.start(saga, "order-9", Order("9", 10))
            completed = await worker.wait(saga, "order-9", timeout=40)
            listed = await worker.manager.list(status="stuck")
            by_type = await worker.manager.list(saga_type="place-order")
            # The operator retries order-8, and the saga finishes undoing.
            with pytest.raises(InvalidSagaInput):
                await worker.manager.retry("order-9")
            retried = await worker.manager.retry("order-8", operator="ana", note="fixed")
            state = await worker.wait(saga, "order-8", after=retried, timeout=40)
        effects = [await built.effects(service, "8") for service in ("inventory", "payments")]

    assert stuck.status == "stuck"
    assert stuck.stuck_reason == (
        "compensating 'charge' failed 3 times; last: RefundPayment refused by the test"
    )
    assert completed.status == "completed"
    assert [(s.saga_id, s.status, s.step, s.stuck_reason) for s in listed] == [
        ("order-8", "stuck", "charge", stuck.stuck_reason)
    ]
    assert sorted(s.saga_id for s in by_type) == ["order-8", "order-9"]
    assert retried.status == "compensating"
    assert state.status == "compensated"
    assert effects == [["reserve", "undo reserve"], ["charge", "undo charge"]]


async def test_an_operator_aborts_a_stuck_saga(memory_site: Site) -> None:
    bus, stores = memory_site
    saga = order_saga()
    async with world(bus, stores) as built:
        RULES.refuse("ChargeCard")
        RULES.refuse("ReleaseStock")
        worker = built.worker(saga)
        async with running(worker):
            await worker.start(saga, "order-10", Order("10", 10))
            await worker.wait(saga, "order-10", timeout=40)
            aborted = await worker.manager.abort("order-10", reason="released by hand")
            counts = await worker.manager.counts()

    assert aborted.status == "aborted"
    assert counts == {"aborted": 1}


async def test_a_tool_without_a_worker_lists_shows_and_repairs(memory_site: Site) -> None:
    """What ``eventcore sagas`` does: a manager over the service's store, no worker."""
    bus, stores = memory_site
    saga = order_saga()
    async with world(bus, stores) as built:
        RULES.refuse("BookShipment")
        RULES.refuse("RefundPayment")
        worker = built.worker(saga)
        async with running(worker):
            await worker.start(saga, "order-11", Order("11", 10))
            await worker.wait(saga, "order-11", timeout=40)
            RULES.clear()
            tool = SagaManager.over(stores["orders"], EventRegistry(), [saga], service="orders")
            [line] = await tool.list(status="stuck")
            view = await tool.show("order-11")
            with pytest.raises(SagaNotFound):
                await tool.show("order-404")
            retried = await tool.retry("order-11", operator="cli")
            state = await worker.wait(saga, "order-11", after=retried, timeout=40)

    assert line.saga_id == "order-11"
    assert view.status == "stuck"
    assert state.status == "compensated"


async def test_replies_that_name_no_saga_are_ignored_with_the_reason(
    memory_site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    bus, stores = memory_site
    saga = order_saga()
    async with world(bus, stores) as built:
        worker = built.worker(saga)
        async with running(worker):
            await worker.start(saga, "order-12", Order("12", 10))
            await worker.wait(saga, "order-12", timeout=40)
            registry = EventRegistry(COMMAND_EVENTS)
            stray = StreamId("stray-replies")
            names = ["saga:place-order:order-404", "not-a-saga", str(saga_stream("order-12"))]
            events = [
                registry.encode(reply(n), metadata=Metadata(correlation_id=name))
                for n, name in enumerate(names)
            ]
            with caplog.at_level(logging.INFO, logger="eventcore.saga.worker"):
                await stores["inventory"].append({stray: events}, expected={stray: 0})
                await built.services.until_idle(timeout=40)
            state = await worker.manager.state("order-12")

    status = worker.status()
    assert status.ignored_replies == 3
    assert state.status == "completed"
    reasons = [r.getMessage() for r in caplog.records if "ignored a reply" in r.getMessage()]
    assert len(reasons) == 3
    assert "there is no saga 'saga:place-order:order-404' in this service's store" in reasons[0]
    assert "it names no saga" in reasons[1]
    assert "sent no request of that correlation id" in reasons[2]


def saga_stream(saga_id: str) -> StreamId:
    return SagaManager.stream("place-order", saga_id)


def reply(n: int) -> CommandReplied:
    return CommandReplied(
        service="inventory",
        sender="orders",
        command_type="ReserveStock",
        idempotency_key=f"k-{n}",
        correlation_id=f"unknown-{n}",
        reply_to="orders-saga-replies",
        succeeded=True,
    )
