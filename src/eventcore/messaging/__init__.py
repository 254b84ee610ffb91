"""Messaging between services (docs/architecture.md#messaging): the envelope, the bus and
its backends, the outbox relay, and durable subscriptions with an inbox and dead letters."""

from __future__ import annotations

from eventcore.messaging.bus import (
    Bus,
    Consumer,
    DeadLetter,
    DeadLetterBox,
    Delivery,
    OutgoingMessage,
)
from eventcore.messaging.envelope import DistributedEvent, decode_envelope, encode_envelope
from eventcore.messaging.relay import Relay, RelayStatus
from eventcore.messaging.subscriber import Received, Subscriber, SubscriberStatus
from eventcore.messaging.topics import TopicMap
from eventcore.messaging.url import BusUrl, open_bus

__all__ = [
    "Bus",
    "BusUrl",
    "Consumer",
    "DeadLetter",
    "DeadLetterBox",
    "Delivery",
    "DistributedEvent",
    "OutgoingMessage",
    "Received",
    "Relay",
    "RelayStatus",
    "Subscriber",
    "SubscriberStatus",
    "TopicMap",
    "decode_envelope",
    "encode_envelope",
    "open_bus",
]
