"""The order saga through a bus that fails publishes and fetches, loses their answers
and delivers twice, with an owner's store that fails appends and loses the answers of
appends that committed: every saga ends as if nothing had failed, every participant's
effect happened once.

Acknowledgements are left alone: a lost one only makes the subscriber deliver again,
which the duplicates already do, and the subscriber's own tests cover it."""

from __future__ import annotations

import pytest

from eventcore.errors import StoreUnavailable
from eventcore.lifecycle import running
from eventcore.saga import Saga, SagaState, SagaWorker
from eventcore.testing import FaultPlan, FaultyStore
from tests.saga.conftest import Site
from tests.saga.world import PARTICIPANTS, RULES, STEPS, Order, order_saga, world

#: Short, so a delivery left unsettled (its handler met a store outage) comes again
#: soon, yet longer than the subscriber's wait between tries in an outage (2 s).
ACK_WAIT = 5.0


async def start(worker: SagaWorker, saga: Saga[Order], saga_id: str) -> None:
    """Start the saga, again while the store fails: a second start is a no-op."""
    while True:
        try:
            await worker.start(saga, saga_id, Order(saga_id, 1))
            return
        except StoreUnavailable:
            continue


@pytest.mark.timeout(60)
async def test_sagas_end_once_each_through_a_faulty_bus_and_store(memory_site: Site) -> None:
    bus, stores = memory_site
    bus_faults = FaultPlan(
        seed=11, fail=0.1, lose_reply=0.1, duplicate=0.2, calls={"publish", "fetch"}
    )
    store_faults = FaultPlan(seed=5, fail=0.05, lose_reply=0.05, calls={"append"})
    owner = FaultyStore(stores["orders"], store_faults)
    # A fault costs a subscriber a 2 s wait before it tries again, and a step may meet
    # several: the timeouts are far above that, so no step here ends by one.
    saga = order_saga(timeout=30.0)
    ids = [f"f-{n}" for n in range(10)]
    async with world(
        bus, {**stores, "orders": owner}, faults=bus_faults, ack_wait=ACK_WAIT
    ) as built:
        RULES.refuse("BookShipment", times=4)
        worker = built.worker(saga, ack_wait=ACK_WAIT)
        async with running(worker):
            for saga_id in ids:
                await start(worker, saga, saga_id)
            states: list[SagaState] = [await worker.wait(saga, i, timeout=50) for i in ids]
        effects = {
            (service, saga_id): await built.effects(service, saga_id)
            for service in PARTICIPANTS
            for saga_id in ids
        }

    assert built.services.faults
    assert owner.faults
    # Four runs of BookShipment refuse; a run that lost a race on the inbox to a
    # duplicate delivery of the same request may have used one up without answering.
    statuses = [state.status for state in states]
    assert set(statuses) == {"completed", "compensated"}
    assert 1 <= statuses.count("compensated") <= 4
    for state in states:
        for service, step in zip(PARTICIPANTS, STEPS, strict=True):
            done = effects[service, state.saga_id]
            if state.status == "completed":
                assert done == [step]
            elif step == "ship":
                assert done == []
            else:
                assert done == [step, f"undo {step}"]
