"""Messaging between services (docs/architecture.md#messaging): the envelope, the bus and
its backends (``open_bus``), the outbox relay, durable subscriptions with an inbox and
dead letters, and (in ``eventcore.messaging.commands``) commands sent over the bus with
durable replies.

Backends are imported when a URL names them, as ``open_store`` does for stores: the
root never imports nats-py unless a ``nats://`` bus is opened."""

from __future__ import annotations

from eventcore.errors import DatabaseNotFound, MissingDependency
from eventcore.messaging.bus import (
    Bus,
    Consumer,
    DeadLetter,
    DeadLetterBox,
    Delivery,
    OutgoingMessage,
    bus_leases,
)
from eventcore.messaging.envelope import DistributedEvent, decode_envelope, encode_envelope
from eventcore.messaging.relay import Relay, RelayStatus
from eventcore.messaging.subscriber import Received, Subscriber, SubscriberStatus
from eventcore.messaging.topics import TopicMap
from eventcore.messaging.url import BusUrl

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
    "bus_leases",
    "decode_envelope",
    "encode_envelope",
    "open_bus",
]


async def open_bus(url: str, *, create: bool = True) -> Bus:
    """Open the bus a URL names. ``create=False`` is for tools that only look, like
    ``eventcore dlq``: a SQLite bus file must then exist and be a bus already (a missing
    one is ``DatabaseNotFound``), and opening it writes nothing. A file of another kind
    (an event store, a projection target) is refused either way. Without nats-py a
    ``nats://`` URL is ``MissingDependency``, which names the extra to install."""
    parsed = BusUrl.parse(url)
    if parsed.backend == "memory":
        from eventcore.messaging.memory import MemoryBus

        if not create:
            raise DatabaseNotFound(url, "a memory:// bus lives in the process that opened it")
        return MemoryBus(partitions=parsed.partitions)
    if parsed.backend == "sqlite":
        from eventcore.messaging.sqlite import SqliteBus

        return await SqliteBus.open(parsed, create=create)
    try:
        from eventcore.messaging.nats import NatsBus
    except ImportError as error:
        raise MissingDependency.of(error, "nats:// buses") from error

    return await NatsBus.connect(parsed, create=create)
