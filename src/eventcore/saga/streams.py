"""Where a saga lives in its owner's store: one stream per saga, and how it is read.

A saga's stream holds its events (``SAGA_EVENTS``) and, beside them, the requests it
sent over the bus (``CommandRequested``, appended with the event that decided them, so
the relay publishes exactly what the saga recorded). The state is the fold of the saga
events alone; the stream's version counts both, and is what an append expects.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Final

import msgspec

from eventcore.events import EventRegistry
from eventcore.saga.events import SAGA_EVENTS
from eventcore.saga.state import SagaState, evolve
from eventcore.store.protocol import EventStore
from eventcore.types import StoredEvent, StreamId

__all__ = ["SAGA_EVENT_TYPES", "STREAM_PREFIX", "Loaded", "fold", "load", "saga_stream"]

#: Every saga's stream id starts with this.
STREAM_PREFIX: Final = "saga:"

#: The stored type names of the saga events: what a log follower filters on.
SAGA_EVENT_TYPES: Final = frozenset(event.__event_type__ for event in SAGA_EVENTS)


def saga_stream(saga_type: str, saga_id: str) -> StreamId:
    """The stream of saga ``saga_id`` of type ``saga_type``: ``saga:<type>:<id>``, the id
    hashed when the two would not fit a stream id (the id is in ``SagaStarted``)."""
    name = f"{STREAM_PREFIX}{saga_type}:{saga_id}"
    if len(name) > StreamId.MAX_LENGTH:
        digest = hashlib.sha256(f"{saga_type}\x1f{saga_id}".encode()).hexdigest()
        name = f"{STREAM_PREFIX}#{digest}"
    return StreamId(name)


class Loaded(msgspec.Struct, frozen=True):
    """A saga's state as read: ``version`` is its stream's (saga events and requests)."""

    state: SagaState | None
    version: int


def fold(
    registry: EventRegistry, stored: Sequence[StoredEvent], state: SagaState | None = None
) -> SagaState | None:
    """``state`` after the saga events among ``stored`` (other events are skipped)."""
    for event in stored:
        if event.type in SAGA_EVENT_TYPES:
            decoded = registry.decode(event)
            state = evolve(state, decoded)  # type: ignore[arg-type]
    return state


async def load(store: EventStore, registry: EventRegistry, stream: StreamId) -> Loaded:
    """Read the saga's stream and fold it. Raises ``InvalidInput`` for a stream that is
    not a saga's."""
    stored = await store.read_stream(stream)
    return Loaded(fold(registry, stored), stored[-1].version if stored else 0)
