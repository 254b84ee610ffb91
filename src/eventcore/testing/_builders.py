"""Small builders for contract test data: one obvious default per value, override what matters."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from eventcore.types import EventId, Metadata, NewEvent, StreamId, new_event_id

__all__ = ["events", "new_event", "sid", "writes"]


def new_event(
    type: str = "Deposited",
    data: bytes = b'{"amount":1}',
    *,
    event_id: EventId | None = None,
    schema_version: int = 1,
    metadata: Metadata | None = None,
) -> NewEvent:
    """An encoded event ready to append; a fresh event id unless one is given."""
    return NewEvent(
        type=type,
        data=data,
        event_id=event_id if event_id is not None else new_event_id(),
        schema_version=schema_version,
        metadata=metadata if metadata is not None else Metadata(),
    )


def events(count: int, type: str = "Deposited") -> list[NewEvent]:
    """``count`` distinct events whose payloads number them from 1."""
    return [new_event(type, b'{"n":%d}' % n) for n in range(1, count + 1)]


def sid(name: str) -> StreamId:
    return StreamId(name)


def writes(mapping: Mapping[str, Sequence[NewEvent]]) -> dict[StreamId, Sequence[NewEvent]]:
    """A writes mapping keyed by validated stream ids."""
    return {StreamId(name): batch for name, batch in mapping.items()}
