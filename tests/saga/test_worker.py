"""The saga worker drives the order saga across three real participant services, on the
memory bus, the SQLite bus with SQLite stores, and NATS JetStream with PostgreSQL
stores: the happy path, and a failure at each step compensating exactly the completed
steps, last first."""

from __future__ import annotations

import pytest

from eventcore.lifecycle import running
from eventcore.saga import SagaView
from tests.saga.conftest import Site
from tests.saga.world import RULES, STEPS, Order, order_saga, world

pytestmark = pytest.mark.timeout(60)

#: What each step's participant does, and its undoing.
SERVICE = {"reserve": "inventory", "charge": "payments", "ship": "shipping"}
ACTION = {"reserve": "ReserveStock", "charge": "ChargeCard", "ship": "BookShipment"}


async def test_the_order_saga_completes_every_step_once(site: Site) -> None:
    bus, stores = site
    saga = order_saga()
    async with world(bus, stores) as built:
        worker = built.worker(saga)
        async with running(worker):
            started = await worker.start(saga, "order-1", Order("1", 250))
            again = await worker.start(saga, "order-1", Order("1", 999))
            state = await worker.wait(saga, "order-1", timeout=40)
        for service, kind in zip(("inventory", "payments", "shipping"), STEPS, strict=True):
            assert await built.effects(service, "1") == [kind]

    assert started.status == "running"
    assert again.data == {"order_id": "1", "amount": 250}  # the second start changed nothing
    assert state.status == "completed"
    assert state.results == {
        "reserve": {"ref": "reserve-1"},
        "charge": {"ref": "charge-1"},
        "ship": {"ref": "ship-1"},
    }
    view = await worker.manager.show("order-1")
    assert isinstance(view, SagaView)
    assert view.status == "completed"
    assert [(step.name, step.status) for step in view.steps] == [
        ("reserve", "succeeded"),
        ("charge", "succeeded"),
        ("ship", "succeeded"),
    ]
    assert worker.status().sagas == {"completed": 1}


@pytest.mark.parametrize("failing", STEPS)
async def test_a_failed_step_undoes_the_completed_ones_in_reverse(site: Site, failing: str) -> None:
    bus, stores = site
    saga = order_saga()
    async with world(bus, stores) as built:
        RULES.refuse(ACTION[failing])
        worker = built.worker(saga)
        async with running(worker):
            await worker.start(saga, "order-2", Order("2", 40))
            state = await worker.wait(saga, "order-2", timeout=40)
        effects = {step: await built.effects(SERVICE[step], "2") for step in STEPS}

    done = STEPS[: STEPS.index(failing)]
    assert state.status == "compensated"
    assert state.compensated == tuple(reversed(done))
    for step in STEPS:
        expected = [step, f"undo {step}"] if step in done else []
        assert effects[step] == expected, step
    view = await worker.manager.show("order-2")
    failed = next(step for step in view.steps if step.name == failing)
    assert failed.status == "failed"
    assert failed.attempts[0].reason == f"{ACTION[failing]} refused by the test"
