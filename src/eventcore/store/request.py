"""Checks every backend makes on an append before it touches storage."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence

import msgspec

from eventcore.errors import (
    DuplicateEventId,
    EmptyAppend,
    InvalidAppend,
    InvalidPayload,
    PayloadTooLarge,
    UndeclaredStream,
)
from eventcore.store.payload import payload_problem
from eventcore.types import EMPTY_METADATA, Metadata, NewEvent, StreamId

__all__ = ["DEFAULT_MAX_PAYLOAD_BYTES", "AppendRequest"]

DEFAULT_MAX_PAYLOAD_BYTES = 1024 * 1024
MAX_TYPE_LENGTH = 255
MAX_KEY_LENGTH = 1024
_CONTROL_CHARACTER = re.compile("[\x00-\x1f\x7f-\x9f]")


class AppendRequest(msgspec.Struct, frozen=True):
    """A validated append: every write declared, ids unique, payloads JSON within the limits
    (``eventcore.store.payload``).

    ``writes`` keeps the caller's order of streams and events; that order decides the
    global positions the events receive.
    """

    writes: tuple[tuple[StreamId, tuple[NewEvent, ...]], ...]
    expected: tuple[tuple[StreamId, int], ...]
    idempotency_key: str | None
    event_count: int

    @classmethod
    def build(
        cls,
        writes: Mapping[StreamId, Sequence[NewEvent]],
        expected: Mapping[StreamId, int],
        idempotency_key: str | None,
        max_payload_bytes: int,
    ) -> AppendRequest:
        checked_expected: dict[StreamId, int] = {}
        for stream_id, version in expected.items():
            stream_id = StreamId(stream_id)
            # Keys that differ only in surrounding whitespace name one stream; keeping
            # either silently would drop the other's expected version (or its events).
            if stream_id in checked_expected:
                raise InvalidAppend(f"stream {stream_id!r} is named twice in expected")
            if isinstance(version, bool) or not isinstance(version, int) or version < 0:
                raise InvalidAppend(
                    f"expected version of {stream_id!r} must be an int >= 0, got {version!r}"
                )
            checked_expected[stream_id] = version
        checked_writes: list[tuple[StreamId, tuple[NewEvent, ...]]] = []
        seen_ids: set[object] = set()
        # Commands put one Metadata object on all their events: check each object once.
        checked_metadata: set[int] = set()
        count = 0
        written: set[StreamId] = set()
        for stream_id, events in writes.items():
            stream_id = StreamId(stream_id)
            if stream_id not in checked_expected:
                raise UndeclaredStream(stream_id)
            if stream_id in written:
                raise InvalidAppend(f"stream {stream_id!r} is named twice in writes")
            written.add(stream_id)
            events = tuple(events)
            for event in events:
                if not isinstance(event, NewEvent):
                    raise InvalidAppend(f"expected NewEvent, got {type(event).__name__}")
                _check_fields(event)
                if id(event.metadata) not in checked_metadata:
                    _check_metadata(event.metadata)
                    checked_metadata.add(id(event.metadata))
                if event.event_id in seen_ids:
                    raise DuplicateEventId(event.event_id, already_stored=False)
                seen_ids.add(event.event_id)
                if len(event.data) > max_payload_bytes:
                    raise PayloadTooLarge(event.type, len(event.data), max_payload_bytes)
                problem = payload_problem(event.data)
                if problem is not None:
                    raise InvalidPayload(event.type, problem)
                if not event.type or len(event.type) > MAX_TYPE_LENGTH:
                    raise InvalidAppend(
                        f"an event's type must have 1 to {MAX_TYPE_LENGTH} characters"
                    )
                if _CONTROL_CHARACTER.search(event.type):
                    raise InvalidAppend(f"event type {event.type!r} contains a control character")
            if events:
                checked_writes.append((stream_id, events))
                count += len(events)
        if count == 0:
            raise EmptyAppend()
        if idempotency_key is not None and (
            not isinstance(idempotency_key, str)
            or not idempotency_key.strip()
            or len(idempotency_key) > MAX_KEY_LENGTH
            or "\x00" in idempotency_key
        ):
            raise InvalidAppend(
                f"an idempotency key must be a string of 1 to {MAX_KEY_LENGTH} characters"
                " without NUL"
            )
        return cls(
            writes=tuple(checked_writes),
            expected=tuple(checked_expected.items()),
            idempotency_key=idempotency_key,
            event_count=count,
        )


_METADATA_FIELDS = ("correlation_id", "causation_id", "traceparent", "tracestate", "actor")


def _check_fields(event: NewEvent) -> None:
    """Check the field types of an event.

    msgspec Structs do not check types when built. A backend that encodes the event
    (SQLite, PostgreSQL) would store a wrong-typed field and then fail every later read
    of the stream with a raw ValidationError, so the bad value is refused here instead.
    """
    if not isinstance(event.type, str):
        raise InvalidAppend(f"an event's type must be a string, got {type(event.type).__name__}")
    if not isinstance(event.data, bytes):
        raise InvalidAppend(f"an event's data must be bytes, got {type(event.data).__name__}")
    if not isinstance(event.event_id, uuid.UUID):
        raise InvalidAppend(f"an event id must be a UUID, got {type(event.event_id).__name__}")
    version = event.schema_version
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise InvalidAppend(f"an event's schema version must be an int >= 1, got {version!r}")


def _check_metadata(metadata: Metadata) -> None:
    """Field types, and no NUL: PostgreSQL text cannot hold one, so no backend takes it."""
    if metadata is EMPTY_METADATA:
        return
    if not isinstance(metadata, Metadata):
        raise InvalidAppend(f"an event's metadata must be Metadata, got {type(metadata).__name__}")
    for name in _METADATA_FIELDS:
        value = getattr(metadata, name)
        if value is not None and not isinstance(value, str):
            raise InvalidAppend(
                f"metadata field {name} must be a string or None, got {type(value).__name__}"
            )
        if value and "\x00" in value:
            raise InvalidAppend(f"metadata field {name} contains a NUL character")
    extra = metadata.extra
    if not isinstance(extra, dict) or not all(
        isinstance(key, str) and isinstance(value, str) for key, value in extra.items()
    ):
        raise InvalidAppend("metadata extra must map strings to strings")
    if any("\x00" in key or "\x00" in value for key, value in extra.items()):
        raise InvalidAppend("metadata extra contains a NUL character")
