"""Commands over the bus end to end on the stores services run on — SQLite files and
PostgreSQL — on every bus, and through a bus that fails, loses acknowledgements and
delivers again."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from eventcore import EventRegistry, EventStore, StreamId, TopicMap, open_store
from eventcore.messaging.bus import OutgoingMessage
from eventcore.messaging.commands import (
    COMMAND_EVENTS,
    Rejected,
    Succeeded,
    inbox_stream,
    reply_topic,
    request_for,
)
from eventcore.messaging.commands.outbox import outgoing_of
from eventcore.testing import FaultPlan, Services
from tests.backends import BACKENDS, skip_or_fail, unavailable_reason
from tests.messaging.buses import Connect
from tests.messaging.stock import ReserveStock, executor, reservation

pytestmark = pytest.mark.timeout(60)

STOCK = StreamId("stock-kiwis")
#: Short, so a delivery whose acknowledgement was lost comes again soon.
ACK_WAIT = 2.0


@pytest.fixture(params=["sqlite", "postgres"])
async def stores(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[EventStore, EventStore]]:
    """Inventory's store and orders' store, on the backend of the test."""
    backend = BACKENDS[request.param]
    reason = unavailable_reason(backend)
    if reason is not None:
        skip_or_fail(reason)
    async with AsyncExitStack() as stack:
        opened = []
        for name in ("inventory", "orders"):
            workdir = tmp_path / name
            workdir.mkdir()
            opened.append(await stack.enter_async_context(backend.open(workdir)))
        yield opened[0], opened[1]


def reserve(quantity: int, order_id: str) -> ReserveStock:
    return ReserveStock(stock=STOCK, quantity=quantity, order_id=order_id)


async def test_commands_are_answered_once_on_real_stores(
    make_bus: Connect, stores: tuple[EventStore, EventStore]
) -> None:
    inventory, orders = stores
    services = Services(await make_bus())
    services.relay(inventory, TopicMap(), service="inventory")
    services.relay(orders, TopicMap(), service="orders")
    receiver = services.receiver(
        executor(inventory), {ReserveStock: reservation}, service="inventory"
    )
    sender = services.sender(orders, EventRegistry(), service="orders")
    async with services.running():
        await receiver.ready()
        await sender.ready()
        accepted = await sender.send("inventory", reserve(6, "o-1"), deadline=30)
        refused = await sender.send("inventory", reserve(6, "o-2"), deadline=30)
        # A stored request delivered twice (the second time under a new message id).
        stream = StreamId("requests-twice")
        request = request_for(
            "inventory",
            reserve(1, "o-3"),
            idempotency_key="twice",
            correlation_id="c-twice",
            reply_to=reply_topic("orders"),
        )
        await orders.append(
            {stream: [EventRegistry(COMMAND_EVENTS).encode(request)]}, expected={stream: 0}
        )
        [stored] = await orders.read_stream(stream)
        message = outgoing_of(stored, source="orders")
        await services.bus.publish(
            [OutgoingMessage(message.topic, f"again-{uuid.uuid4()}", message.key, message.body)]
        )
        await services.until_idle(timeout=40)

    assert isinstance(accepted, Succeeded)
    assert isinstance(refused, Rejected)
    assert refused.reason == "only 4 left, 6 asked"
    assert [event.type for event in await inventory.read_stream(STOCK)] == [
        "StockReserved",
        "StockReserved",
    ]
    assert len(await inventory.read_stream(inbox_stream("orders", "twice"))) == 1
    status = receiver.status()
    assert (status.answered, status.refused, status.duplicates) == (3, 1, 1)


@pytest.mark.timeout(60)
async def test_through_a_faulty_bus_every_request_is_answered_once(make_bus: Connect) -> None:
    """Publishes that fail, fetches that fail, acknowledgements lost (the delivery comes
    again after ``ack_wait``) and deliveries handed out twice: each send gets its one
    reply, each key reserves once."""
    inventory = await open_store("memory://")
    orders = await open_store("memory://")
    plan = FaultPlan(
        seed=7, fail=0.1, lose_reply=0.1, duplicate=0.2, calls={"publish", "fetch", "ack"}
    )
    services = Services(await make_bus(), faults=plan)
    services.relay(inventory, TopicMap(), service="inventory")
    services.relay(orders, TopicMap(), service="orders")
    receiver = services.receiver(
        executor(inventory),
        {ReserveStock: reservation},
        service="inventory",
        ack_wait=ACK_WAIT,
        retry_poll=0.2,
    )
    sender = services.sender(orders, EventRegistry(), service="orders", ack_wait=ACK_WAIT)
    try:
        async with services.running():
            await receiver.ready()
            await sender.ready()
            answers = await asyncio.gather(
                *(sender.send("inventory", reserve(1, f"o-{n}"), deadline=45) for n in range(8))
            )
            await services.until_idle(timeout=45)
        assert services.faults, "the plan injected nothing"
        assert all(isinstance(answer, Succeeded) for answer in answers)
        assert len(await inventory.read_stream(STOCK)) == 8
        assert receiver.status().answered == 8
    finally:
        await inventory.aclose()
        await orders.aclose()
