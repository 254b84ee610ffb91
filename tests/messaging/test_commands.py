"""Commands over the bus with durable replies, on every bus: a service sends a command
to inventory, inventory runs it once under its inbox and answers in the same append,
the reply comes back through both outboxes."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest

from eventcore import EventRegistry, EventStore, StreamId, TopicMap, open_store
from eventcore.errors import ReplyTimeout
from eventcore.messaging.bus import Bus, OutgoingMessage
from eventcore.messaging.commands import (
    COMMAND_EVENTS,
    CommandReceiver,
    CommandReplied,
    CommandSender,
    Rejected,
    Succeeded,
    command_topic,
    inbox_stream,
    reply_topic,
    request_for,
)
from eventcore.messaging.commands.outbox import CommandEnvelope, outgoing_of
from eventcore.testing import Services
from eventcore.types import Metadata, StoredEvent
from tests.messaging.buses import Connect
from tests.messaging.stock import ReserveStock, Restock, executor, reservation

pytestmark = pytest.mark.timeout(60)

STOCK = StreamId("stock-apples")


class Reservation(msgspec.Struct, frozen=True):
    reservation_id: str
    quantity: int


@dataclass
class Shop:
    """Orders sends, inventory receives; both stores in memory, on the test's bus."""

    services: Services
    inventory: EventStore
    orders: EventStore
    receiver: CommandReceiver
    sender: CommandSender
    replies: list[CommandReplied]


@pytest.fixture
async def shop(make_bus: Connect) -> AsyncIterator[Shop]:
    bus = await make_bus()
    inventory = await open_store("memory://")
    orders = await open_store("memory://")
    services = Services(bus)
    services.relay(inventory, TopicMap(), service="inventory")
    services.relay(orders, TopicMap(), service="orders")
    receiver = services.receiver(
        executor(inventory), {ReserveStock: reservation, Restock: None}, service="inventory"
    )
    sender = services.sender(orders, EventRegistry(), service="orders")
    replies: list[CommandReplied] = []

    async def watch(received: Any) -> None:
        replies.append(received.event)

    # A second group on the reply topic sees every reply that was published.
    services.subscriber(
        reply_topic("orders"),
        {CommandReplied: watch},
        group="watch",
        registry=EventRegistry([CommandReplied]),
    )
    try:
        async with services.running():
            await receiver.ready()
            await sender.ready()
            yield Shop(services, inventory, orders, receiver, sender, replies)
    finally:
        await inventory.aclose()
        await orders.aclose()


def reserve(quantity: int, order_id: str = "o-1") -> ReserveStock:
    return ReserveStock(stock=STOCK, quantity=quantity, order_id=order_id)


async def stock_events(store: EventStore) -> list[StoredEvent]:
    return await store.read_stream(STOCK)


async def test_send_returns_the_typed_result_of_a_command_that_succeeded(shop: Shop) -> None:
    reply = await shop.sender.send("inventory", reserve(3), deadline=20, result=Reservation)

    assert isinstance(reply, Succeeded)
    assert reply.result == Reservation(reservation_id="o-1/apples", quantity=3)
    assert reply.service == "inventory"
    assert not reply.repeated


async def test_the_reply_is_written_in_the_same_append_as_the_commands_events(
    shop: Shop,
) -> None:
    reply = await shop.sender.send("inventory", reserve(3), deadline=20, idempotency_key="k-1")

    [reserved] = await stock_events(shop.inventory)
    [replied] = await shop.inventory.read_stream(inbox_stream("orders", "k-1"))
    append = await shop.inventory.find_append(f"command:inventory:orders:{reply.correlation_id}")
    assert append is not None
    assert set(append.event_ids) == {reserved.event_id, replied.event_id}


async def test_a_refusal_is_a_durable_reply_appended_alone(shop: Shop) -> None:
    reply = await shop.sender.send("inventory", reserve(11), deadline=20, idempotency_key="k-2")

    assert isinstance(reply, Rejected)
    assert reply.reason == "only 10 left, 11 asked"
    assert await stock_events(shop.inventory) == []
    [refusal] = await shop.inventory.read_stream(inbox_stream("orders", "k-2"))
    assert refusal.type == CommandReplied.__event_type__
    assert shop.receiver.status().refused == 1


async def test_a_retry_under_the_key_of_a_refusal_runs_the_command_again(shop: Shop) -> None:
    """A saga retries a compensation under one key: a refusal must not answer it forever."""
    first = await shop.sender.send("inventory", reserve(12), deadline=20, idempotency_key="undo")
    await shop.sender.send("inventory", Restock(stock=STOCK, quantity=5), deadline=20)

    second = await shop.sender.send(
        "inventory", reserve(12), deadline=20, idempotency_key="undo", result=Reservation
    )

    assert isinstance(first, Rejected)
    assert isinstance(second, Succeeded)
    assert second.result.quantity == 12
    assert [event.type for event in await stock_events(shop.inventory)] == [
        "Restocked",
        "StockReserved",
    ]


async def test_a_retry_under_the_key_of_a_success_repeats_its_result_without_running(
    shop: Shop,
) -> None:
    first = await shop.sender.send("inventory", reserve(4), deadline=20, idempotency_key="k-3")
    again = await shop.sender.send(
        "inventory", reserve(4), deadline=20, idempotency_key="k-3", result=Reservation
    )

    assert isinstance(first, Succeeded)
    assert isinstance(again, Succeeded)
    assert again.repeated
    assert again.result == Reservation("o-1/apples", 4)
    assert len(await stock_events(shop.inventory)) == 1
    assert shop.receiver.status().repeated == 1


async def test_a_command_delivered_twice_runs_once_and_is_answered_once(shop: Shop) -> None:
    request = await store_request(shop.orders, reserve(2), key="twice")
    message = outgoing_of(request, source="orders")
    # The same message again under a new message id, as a relay republishing past the
    # bus's de-duplication window would send it: the bus cannot drop it, the inbox must.
    await shop.services.bus.publish(
        [
            message,
            OutgoingMessage(message.topic, f"again-{uuid.uuid4()}", message.key, message.body),
        ]
    )
    await shop.services.until_idle(timeout=30)

    assert len(await stock_events(shop.inventory)) == 1
    assert len(await shop.inventory.read_stream(inbox_stream("orders", "twice"))) == 1
    assert [reply.correlation_id for reply in shop.replies] == ["c-twice"]
    assert shop.receiver.status().answered == 1
    assert shop.receiver.status().duplicates == 1


async def test_send_raises_reply_timeout_at_its_deadline_and_ignores_the_late_reply(
    shop: Shop,
) -> None:
    # Nobody accepts commands for "shipping": the request is stored and sent, unanswered.
    with pytest.raises(ReplyTimeout) as timed_out:
        await shop.sender.send("shipping", reserve(1), deadline=0.3, idempotency_key="late")
    assert timed_out.value.idempotency_key == "late"
    assert timed_out.value.service == "shipping"
    assert shop.sender.status().timed_out == 1

    # A reply to it after all (the answer to an attempt given up on): counted, ignored.
    [request] = [
        event
        async for batch in shop.orders.read_all()
        for event in batch
        if event.type == "eventcore.CommandRequested"
    ]
    await publish_reply(shop.services.bus, request)
    await shop.services.until_idle(timeout=30)
    assert shop.sender.status().unknown_replies == 1
    assert shop.sender.status().subscriber.dead_lettered == 0
    reply = await shop.sender.send("inventory", reserve(1), deadline=20)
    assert isinstance(reply, Succeeded)


async def test_a_reply_for_an_unknown_correlation_is_ignored(shop: Shop) -> None:
    # A request to a service nobody runs, so only the forged reply below answers it.
    stray = await store_request(shop.orders, reserve(1), key="stray", service="nobody")
    await publish_reply(shop.services.bus, stray)
    await shop.services.until_idle(timeout=30)

    status = shop.sender.status()
    assert status.unknown_replies == 1
    assert status.subscriber.dead_lettered == 0
    assert status.subscriber.handled == 1


# --- helpers ---------------------------------------------------------------------------------


async def store_request(
    store: EventStore, command: object, *, key: str, service: str = "inventory"
) -> StoredEvent:
    """Store a request as a saga worker would, and return it as stored."""
    stream = StreamId(f"requests-{key}")
    registry = EventRegistry(COMMAND_EVENTS)
    request = request_for(
        service,
        command,
        idempotency_key=key,
        correlation_id=f"c-{key}",
        reply_to=reply_topic("orders"),
    )
    await store.append(
        {stream: [registry.encode(request, metadata=Metadata(correlation_id=key))]},
        expected={stream: 0},
    )
    [stored] = await store.read_stream(stream)
    return stored


async def publish_reply(bus: Bus, request: StoredEvent) -> None:
    """Publish, as inventory's relay would, a success reply to ``request``."""
    envelope = msgspec.json.decode(outgoing_of(request, source="orders").body, type=CommandEnvelope)
    reply = CommandReplied(
        service="inventory",
        sender="orders",
        command_type=envelope.type,
        idempotency_key=envelope.idempotencykey,
        correlation_id=envelope.requestid,
        reply_to=envelope.replyto,
        succeeded=True,
    )
    # Stored in a scratch store, as inventory's would keep it, for the relay's mapping.
    scratch = await open_store("memory://")
    stream = StreamId("command-inbox:orders:x")
    await scratch.append(
        {stream: [EventRegistry([CommandReplied]).encode(reply)]}, expected={stream: 0}
    )
    [stored] = await scratch.read_stream(stream)
    await scratch.aclose()
    message = outgoing_of(stored, source="inventory")
    assert message.topic == reply_topic("orders")
    await bus.publish([message])


def test_the_command_topic_is_named_after_the_service() -> None:
    assert command_topic("inventory") == "inventory-commands"
    assert reply_topic("orders") == "orders-replies"
