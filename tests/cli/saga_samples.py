"""Sagas for the command-line tests: the order saga's definitions (what ``--sagas``
imports), and a store holding sagas in known states, driven through ``SagaDriver``
alone — no bus, no participants: the replies are fed by hand."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from eventcore import EventRegistry
from eventcore.saga import DeadlineFired, Decision, Reply, Saga, SagaDriver, saga_stream
from eventcore.store import open_store
from tests.saga.world import Order, order_saga

#: The order saga as the ``orders`` service declares it (three attempts per compensation).
ORDER_SAGA = order_saga()
#: What ``--sagas tests.cli.saga_samples:SAGAS`` names.
SAGAS = [ORDER_SAGA]
#: Sagas of another service: none of them is the order saga.
OTHER_SAGAS = [Saga("ship-parcel", data=Order, steps=list(ORDER_SAGA.steps))]
#: Not only sagas: what ``--sagas`` must refuse.
NOT_SAGAS: list[Any] = [ORDER_SAGA, "place-order"]

#: The sagas ``write_sagas`` leaves, in the order they start: id → status.
WRITTEN = {"order-1": "completed", "order-2": "compensated", "order-3": "stuck"}
#: Which steps refuse, per saga: the action of ``ship`` (and, for order-3, every refund).
_REFUSING = {"order-1": set(), "order-2": {"ship"}, "order-3": {"ship", "charge"}}


async def drive(driver: SagaDriver, saga_id: str, refusing: set[str]) -> None:
    """Start the saga and answer its every request: ``refusing`` names the steps whose
    action (for ship) or compensation (for the others) is refused, until it ends."""
    stream = saga_stream(ORDER_SAGA.name, saga_id)
    decision: Decision = await driver.start(ORDER_SAGA.start(saga_id, Order(saga_id, 10)))
    while decision.state is not None and decision.state.status in ("running", "compensating"):
        if not decision.requests:
            # A compensation waiting for its next attempt (a few milliseconds).
            [(key, due)] = decision.state.deadlines().items()
            await asyncio.sleep(max(due - time.time(), 0.0))
            decision = await driver.apply(stream, DeadlineFired(key=key))
            continue
        [request] = decision.requests
        refused = request.step in refusing and (
            request.phase == "compensation" or request.step == "ship"
        )
        reply = (
            Reply.rejection(request.correlation_id, f"{request.step} refused by the test")
            if refused
            else Reply.success(request.correlation_id, {"ref": f"{request.step}-{saga_id}"})
        )
        decision = await driver.apply(stream, reply)


async def write_sagas(url: str, *, service: str = "orders") -> None:
    """Leave the sagas of ``WRITTEN`` in the store at ``url`` (created if need be)."""
    store = await open_store(url)
    try:
        driver = SagaDriver(store, EventRegistry(), SAGAS, service=service, run_requests=False)
        for saga_id, refusing in _REFUSING.items():
            await drive(driver, saga_id, refusing)
    finally:
        await store.aclose()
