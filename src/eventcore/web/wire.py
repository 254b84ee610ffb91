"""The shapes the HTTP face sends and receives, as msgspec Structs, and the codec hooks
that let msgspec read and describe a ``StreamId`` (a validated ``str``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from eventcore.pipeline import CommandResult
from eventcore.types import Metadata, StoredEvent, StreamId

__all__ = [
    "CommandAccepted",
    "EventPage",
    "EventView",
    "StreamView",
    "accepted_of",
    "decode_value",
    "encode_value",
    "schema_hook",
    "view_of",
]


class CommandAccepted(msgspec.Struct, frozen=True, kw_only=True):
    """A command that took effect. ``deduplicated``: an earlier request with the same
    ``Idempotency-Key`` wrote it; these are that request's ids and positions."""

    command: str
    event_ids: list[str]
    stream_versions: dict[str, int]
    positions: list[int]
    deduplicated: bool


class EventView(msgspec.Struct, frozen=True, kw_only=True):
    position: int
    stream_id: str
    version: int
    event_id: str
    type: str
    schema_version: int
    data: dict[str, Any]
    metadata: Metadata
    recorded_at: datetime


class StreamView(msgspec.Struct, frozen=True, kw_only=True):
    """A page of one stream. ``version``: the stream's version now; ``next_from``: pass
    it as ``from`` for the next page, None when this page reached the end."""

    stream_id: str
    version: int
    events: list[EventView]
    next_from: int | None = None


class EventPage(msgspec.Struct, frozen=True, kw_only=True):
    """One page of the global log. ``next_after``: pass it as ``after`` for the next
    page; None when this page reached the head."""

    events: list[EventView]
    next_after: int | None


def accepted_of(name: str, result: CommandResult) -> CommandAccepted:
    return CommandAccepted(
        command=name,
        event_ids=[str(each) for each in result.event_ids],
        stream_versions=dict(result.stream_versions),
        positions=list(result.positions),
        deduplicated=result.deduplicated,
    )


def view_of(event: StoredEvent) -> EventView:
    data = msgspec.json.decode(event.data)
    return EventView(
        position=event.position,
        stream_id=str(event.stream_id),
        version=event.version,
        event_id=str(event.event_id),
        type=event.type,
        schema_version=event.schema_version,
        data=data if isinstance(data, dict) else {"value": data},
        metadata=event.metadata,
        recorded_at=event.recorded_at,
    )


def decode_value(kind: type[Any], value: Any) -> Any:
    # A StreamId is validated on the way in; a bad one is a ValidationError (422).
    if kind is StreamId and isinstance(value, str):
        return StreamId(value)
    # A TypeError is what msgspec turns into a ValidationError naming the field.
    raise TypeError(f"expected a string, got {type(value).__name__}")


def encode_value(value: Any) -> Any:
    if isinstance(value, str):
        return str(value)
    raise NotImplementedError(f"cannot encode {type(value).__name__}")


def schema_hook(kind: type[Any]) -> dict[str, Any]:
    if kind is StreamId:
        return {"type": "string", "minLength": 1, "maxLength": StreamId.MAX_LENGTH}
    raise NotImplementedError(f"no JSON schema for {kind}")
