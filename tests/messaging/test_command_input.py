"""Bad command messages, on every bus: each is parked as a dead letter with a clear
reason, at once, and the commands around it are answered as if it had not come."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import msgspec
import pytest

from eventcore import EventRegistry, EventStore, StreamId, TopicMap, open_store
from eventcore.messaging.bus import OutgoingMessage
from eventcore.messaging.commands import (
    COMMAND_EVENTS,
    CommandEnvelope,
    CommandReceiver,
    CommandSender,
    Succeeded,
    command_topic,
    reply_topic,
    request_for,
)
from eventcore.messaging.commands.outbox import outgoing_of
from eventcore.testing import Services
from eventcore.types import StoredEvent
from tests.messaging.buses import Connect
from tests.messaging.stock import ReserveStock, executor, reservation

pytestmark = pytest.mark.timeout(60)

STOCK = StreamId("stock-pears")


class Inventory(msgspec.Struct):
    services: Services
    store: EventStore
    orders: EventStore
    receiver: CommandReceiver
    sender: CommandSender


@pytest.fixture
async def inventory(make_bus: Connect) -> AsyncIterator[Inventory]:
    bus = await make_bus()
    store = await open_store("memory://")
    orders = await open_store("memory://")
    services = Services(bus)
    services.relay(store, TopicMap(), service="inventory")
    services.relay(orders, TopicMap(), service="orders")
    receiver = services.receiver(executor(store), {ReserveStock: reservation}, service="inventory")
    sender = services.sender(orders, EventRegistry(), service="orders")
    try:
        async with services.running():
            await receiver.ready()
            await sender.ready()
            yield Inventory(services, store, orders, receiver, sender)
    finally:
        await store.aclose()
        await orders.aclose()


async def a_good_message() -> OutgoingMessage:
    """A command message as the relay would publish it, from a request stored aside."""
    stream = StreamId("scratch")
    request = request_for(
        "inventory",
        ReserveStock(stock=STOCK, quantity=1, order_id="o-1"),
        idempotency_key="k",
        correlation_id="c",
        reply_to=reply_topic("orders"),
    )
    scratch = await open_store("memory://")
    try:
        await scratch.append(
            {stream: [EventRegistry(COMMAND_EVENTS).encode(request)]}, expected={stream: 0}
        )
        [stored] = await scratch.read_stream(stream)
    finally:
        await scratch.aclose()
    return outgoing_of(stored, source="orders")


def altered(
    message: OutgoingMessage, change: Callable[[CommandEnvelope], CommandEnvelope]
) -> bytes:
    envelope = msgspec.json.decode(message.body, type=CommandEnvelope)
    return msgspec.json.encode(change(envelope))


CASES = {
    "unknown type": (
        lambda envelope: msgspec.structs.replace(envelope, type="LaunchRockets"),
        "UnknownCommandType",
        "unknown command type 'LaunchRockets'",
    ),
    "payload failing validation": (
        lambda envelope: msgspec.structs.replace(
            envelope, data=msgspec.Raw(b'{"stock":"stock-pears","quantity":"many","order_id":"o"}')
        ),
        "DecodeError",
        "payload of command 'ReserveStock' does not match its class: Expected `int`, got `str`",
    ),
    "no reply topic": (
        lambda envelope: msgspec.structs.replace(envelope, replyto=""),
        "InvalidCommand",
        "not a command message this service can answer",
    ),
    "no idempotency key": (
        lambda envelope: msgspec.structs.replace(envelope, idempotencykey=""),
        "InvalidCommand",
        "idempotency key must be a non-empty string",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_a_bad_command_message_is_dead_lettered_with_its_reason(
    inventory: Inventory, case: str
) -> None:
    change, error_type, reason = CASES[case]
    good = await a_good_message()
    await inventory.services.bus.publish(
        [OutgoingMessage(command_topic("inventory"), "bad-1", good.key, altered(good, change))]
    )
    answered = await inventory.sender.send(
        "inventory", ReserveStock(stock=STOCK, quantity=2, order_id="o-2"), deadline=20
    )
    await inventory.services.until_idle(timeout=30)

    [letter] = await inventory.services.bus.dead_letters.letters(group="inventory")
    assert letter.message_id == "bad-1"
    assert letter.error_type == error_type
    assert reason in letter.reason
    assert letter.attempts == 1
    # Nothing else disturbed: the good command ran and was answered; the bad one wrote nothing.
    assert isinstance(answered, Succeeded)
    assert [event.type for event in await stock_of(inventory.store)] == ["StockReserved"]
    assert inventory.receiver.status().answered == 1


async def stock_of(store: EventStore) -> list[StoredEvent]:
    return await store.read_stream(STOCK)
