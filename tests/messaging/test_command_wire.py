"""The command message on the wire: what the relay makes of a stored request, and the
requests that cannot be sent."""

from __future__ import annotations

import msgspec
import pytest

from eventcore import EventRegistry, StreamId, open_store
from eventcore.errors import InvalidInput, InvalidMessage, InvalidName
from eventcore.messaging.commands import (
    COMMAND_EVENTS,
    command_type_of,
    decode_command_envelope,
    request_for,
)
from eventcore.messaging.commands.outbox import outgoing_of
from eventcore.types import Metadata
from tests.messaging.stock import ReserveStock


class Renamed(msgspec.Struct):
    __command_type__ = "inventory.Reserve"
    sku: str


def reserve() -> ReserveStock:
    return ReserveStock(stock=StreamId("stock-figs"), quantity=2, order_id="o-9")


async def test_a_stored_request_leaves_as_a_command_message_to_the_targets_topic() -> None:
    store = await open_store("memory://")
    stream = StreamId("saga-order-9")
    request = request_for(
        "inventory",
        reserve(),
        idempotency_key="k-9",
        correlation_id="k-9.1",
        reply_to="orders-replies",
    )
    metadata = Metadata(
        correlation_id="order-9", traceparent="00-" + "1" * 32 + "-" + "2" * 16 + "-01"
    )
    await store.append(
        {stream: [EventRegistry(COMMAND_EVENTS).encode(request, metadata=metadata)]},
        expected={stream: 0},
    )
    [stored] = await store.read_stream(stream)
    await store.aclose()

    message = outgoing_of(stored, source="orders")

    assert message.topic == "inventory-commands"
    assert message.message_id == str(stored.event_id)
    envelope = decode_command_envelope(message.body)
    assert (envelope.type, envelope.source, envelope.subject) == ("ReserveStock", "orders", stream)
    assert (envelope.replyto, envelope.requestid, envelope.idempotencykey) == (
        "orders-replies",
        "k-9.1",
        "k-9",
    )
    assert msgspec.json.decode(envelope.payload) == {
        "stock": "stock-figs",
        "quantity": 2,
        "order_id": "o-9",
    }
    assert envelope.metadata.correlation_id == "order-9"
    assert envelope.traceparent == metadata.traceparent


def test_a_command_class_may_name_its_type() -> None:
    assert command_type_of(ReserveStock) == "ReserveStock"
    assert command_type_of(Renamed) == "inventory.Reserve"


@pytest.mark.parametrize(
    ("service", "key", "reply_to", "error"),
    [
        ("in ventory", "k", "orders-replies", InvalidName),
        ("inventory", "", "orders-replies", InvalidInput),
        ("inventory", "k\n", "orders-replies", InvalidInput),
        ("inventory", "k" * 181, "orders-replies", InvalidInput),
        ("inventory", "k", "orders.replies", InvalidName),
    ],
)
def test_a_request_that_cannot_travel_is_refused_before_it_is_stored(
    service: str, key: str, reply_to: str, error: type[Exception]
) -> None:
    with pytest.raises(error):
        request_for(service, reserve(), idempotency_key=key, correlation_id="c", reply_to=reply_to)


def test_a_command_must_encode_as_a_json_object() -> None:
    with pytest.raises(InvalidInput, match="JSON object"):
        request_for("inventory", [1, 2], idempotency_key="k", correlation_id="c", reply_to="r")
    with pytest.raises(InvalidInput, match="cannot be sent"):
        request_for("inventory", object(), idempotency_key="k", correlation_id="c", reply_to="r")


def test_an_event_envelope_is_not_a_command_message() -> None:
    body = msgspec.json.encode(
        {
            "specversion": "1.0",
            "datacontenttype": "application/json",
            "id": "1",
            "source": "orders",
            "type": "ReserveStock",
            "subject": "s",
            "time": "2026-01-01T00:00:00Z",
            "data": {},
            "streamversion": "1",
        }
    )
    with pytest.raises(InvalidMessage, match="reply topic"):
        decode_command_envelope(body)
