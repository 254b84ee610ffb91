"""``DistributedEvent``: an event as it travels between services.

It is a CloudEvents 1.0 event in the structured JSON format, so any CloudEvents
tooling can read it. The core attributes carry what the event is (``id`` = event id,
``source`` = the publishing service, ``type``, ``subject`` = stream id, ``time`` =
when it was recorded, ``data`` = the payload); extensions carry the rest of what the
store knows. CloudEvents extension names are lowercase letters and digits only, and
their values travel as strings, hence ``streamversion="3"``.

``data`` is held as raw JSON: the relay copies the stored payload bytes into the
envelope without decoding them, and the subscriber decodes them with its own event
classes (and upcasters), like a store read. A store keeps only payloads every reader can
read (``eventcore.store.payload``: JSON, UTF-8, nested at most ``MAX_PAYLOAD_DEPTH``
deep), and ``decode_envelope`` accepts ``data`` on the same terms, so a message from
another producer cannot crash a reader that eventcore's own messages would not.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Final

import msgspec

from eventcore.errors import InvalidMessage, InvalidStreamId, MessageTooLarge
from eventcore.store.payload import MAX_PAYLOAD_DEPTH, nesting_problem, number_problem
from eventcore.types import Metadata, StoredEvent, StreamId

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "DistributedEvent",
    "decode_envelope",
    "encode_envelope",
    "envelope_of",
    "envelopes_of",
]

#: The largest message a subscriber accepts (the store's payload limit plus room for
#: the envelope's attributes).
DEFAULT_MAX_MESSAGE_BYTES: Final = 1024 * 1024 + 16 * 1024


class DistributedEvent(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One event in CloudEvents 1.0 structured JSON form."""

    id: str
    source: str
    type: str
    subject: str
    time: datetime
    data: msgspec.Raw
    # No defaults: ``omit_defaults`` would leave them out, and CloudEvents requires
    # specversion on every event.
    specversion: str
    datacontenttype: str
    # Extensions (CloudEvents: lowercase alphanumeric names, string values).
    streamversion: str
    schemaversion: str = "1"
    publishedat: str | None = None
    correlationid: str | None = None
    causationid: str | None = None
    traceparent: str | None = None
    tracestate: str | None = None
    actor: str | None = None
    #: Metadata's free-form fields, as a JSON object in a string.
    metaextra: str | None = None
    # Set by the federation hub on a routed copy (``eventcore.federation``): the rule
    # that made it, and the original's id, source, type and where it was read
    # (``<bus alias>/<topic>``).
    federationrule: str | None = None
    federationid: str | None = None
    federationsource: str | None = None
    federationtype: str | None = None
    federationorigin: str | None = None

    @property
    def stream_id(self) -> StreamId:
        return StreamId(self.subject)

    @property
    def stream_version(self) -> int:
        return int(self.streamversion)

    @property
    def schema_version(self) -> int:
        return int(self.schemaversion)

    @property
    def payload(self) -> bytes:
        """The event's payload as JSON bytes, ready for ``EventRegistry.decode_payload``."""
        return bytes(self.data)

    @property
    def metadata(self) -> Metadata:
        """The metadata the event was stored with."""
        extra: dict[str, str] = {}
        if self.metaextra:
            extra = msgspec.json.decode(self.metaextra, type=dict[str, str])
        return Metadata(
            correlation_id=self.correlationid,
            causation_id=self.causationid,
            traceparent=self.traceparent,
            tracestate=self.tracestate,
            actor=self.actor,
            extra=extra,
        )


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(DistributedEvent)
_extra_encoder = msgspec.json.Encoder()


def envelope_of(
    event: StoredEvent, *, source: str, published_at: datetime | None = None
) -> DistributedEvent:
    """The envelope a service (``source``) publishes for one of its stored events."""
    return _envelope(event, source, _timestamp(published_at or datetime.now(UTC)))


def envelopes_of(
    events: Iterable[StoredEvent], *, source: str, published_at: datetime | None = None
) -> list[DistributedEvent]:
    """The envelopes of a batch published together: one ``publishedat`` for all of it,
    formatted once (on the relay's path that is a third of the cost of an envelope)."""
    stamp = _timestamp(published_at or datetime.now(UTC))
    return [_envelope(event, source, stamp) for event in events]


def _envelope(event: StoredEvent, source: str, published_at: str) -> DistributedEvent:
    metadata = event.metadata
    return DistributedEvent(
        specversion="1.0",
        datacontenttype="application/json",
        id=str(event.event_id),
        source=source,
        type=event.type,
        subject=str(event.stream_id),
        time=event.recorded_at,
        data=msgspec.Raw(event.data),
        streamversion=str(event.version),
        schemaversion=str(event.schema_version),
        publishedat=published_at,
        correlationid=metadata.correlation_id,
        causationid=metadata.causation_id,
        traceparent=metadata.traceparent,
        tracestate=metadata.tracestate,
        actor=metadata.actor,
        metaextra=_extra_encoder.encode(metadata.extra).decode() if metadata.extra else None,
    )


def _timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``, the form ``time`` takes."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def encode_envelope(envelope: DistributedEvent) -> bytes:
    return _encoder.encode(envelope)


def decode_envelope(body: bytes, *, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> DistributedEvent:
    """Read and check one message; ``InvalidMessage`` (or ``MessageTooLarge``) if it is
    not a valid envelope. Never anything else: whatever the bytes, this does not crash."""
    if not isinstance(body, bytes | bytearray | memoryview):
        raise InvalidMessage(f"expected bytes, got {type(body).__name__}")
    if len(body) > max_bytes:
        raise MessageTooLarge(len(body), max_bytes)
    # Before any parsing: msgspec reads nesting by recursion, in ``data`` and in fields it
    # skips alike, and a thousand levels exhaust Python's recursion limit.
    body = bytes(body)
    problem = nesting_problem(body, _MAX_DEPTH)
    if problem is not None:
        raise InvalidMessage(f"not readable: {problem}")
    if not body.isascii():
        # msgspec checks UTF-8 only in what it decodes: not in the names of attributes
        # it skips, nor in ``data`` (kept raw), where other readers would fail on it.
        try:
            body.decode()
        except UnicodeDecodeError as error:
            raise InvalidMessage(f"not valid UTF-8 at byte {error.start}") from None
    try:
        envelope = _decoder.decode(body)
    except msgspec.ValidationError as error:
        raise InvalidMessage(f"not a valid envelope: {error}") from None
    except msgspec.DecodeError as error:
        raise InvalidMessage(f"not valid JSON: {error}") from None
    except RecursionError:
        # Not reached after the check above; kept so no input can raise it whatever
        # the caller's own depth of calls.
        raise InvalidMessage("not readable: nested too deep for this reader") from None
    _check(envelope)
    return envelope


#: The envelope's object, then its data (or an extension's value) inside it.
_MAX_DEPTH: Final = MAX_PAYLOAD_DEPTH + 1


def _check(envelope: DistributedEvent) -> None:
    if envelope.specversion != "1.0":
        raise InvalidMessage(f"specversion {envelope.specversion!r} is not 1.0")
    if envelope.datacontenttype != "application/json":
        raise InvalidMessage(f"datacontenttype {envelope.datacontenttype!r} is not JSON")
    for name in ("id", "source", "type"):
        if not getattr(envelope, name):
            raise InvalidMessage(f"{name} is empty")
    try:
        StreamId(envelope.subject)
    except InvalidStreamId as error:
        raise InvalidMessage(f"subject is not a stream id: {error.reason}") from None
    for name in ("streamversion", "schemaversion"):
        value: str = getattr(envelope, name)
        if not (value.isascii() and value.isdigit() and int(value) >= 1):
            raise InvalidMessage(f"{name} {value!r} is not a positive integer")
    # The rest of the store's terms hold already: the whole message is UTF-8 JSON
    # nested within bounds.
    problem = number_problem(envelope.payload)
    if problem is not None:
        raise InvalidMessage(f"data is not a payload a store would keep: {problem}")
    if envelope.metaextra is not None:
        try:
            msgspec.json.decode(envelope.metaextra, type=dict[str, str])
        except (msgspec.ValidationError, msgspec.DecodeError):
            raise InvalidMessage("metaextra is not a JSON object of strings") from None
