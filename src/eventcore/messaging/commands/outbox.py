"""What the relay publishes for the two stored command events.

A ``CommandRequested`` leaves as a **command message**: a CloudEvents event whose
``type`` is the command's type and whose ``data`` is the command's payload, sent to the
target's command topic, with three extensions of its own — ``replyto`` (the topic the
reply goes to), ``requestid`` (the request's correlation id, which the reply carries
back) and ``idempotencykey``. Its other attributes are an event's: ``id`` is the stored
request's event id (the bus drops a republished copy), ``subject`` and
``streamversion`` say where the sender stored it, and the metadata (correlation,
causation, trace context) rides along, so the receiver's events join the sender's trace.

A ``CommandReplied`` leaves as itself, an ordinary event envelope, to the ``reply_to``
topic the request named.
"""

from __future__ import annotations

from typing import Final

import msgspec

from eventcore.errors import InvalidMessage
from eventcore.messaging.bus import OutgoingMessage
from eventcore.messaging.commands.records import (
    CommandReplied,
    CommandRequested,
    check_key,
    command_topic,
)
from eventcore.messaging.envelope import (
    DEFAULT_MAX_MESSAGE_BYTES,
    DistributedEvent,
    decode_envelope,
    encode_envelope,
    envelope_of,
)
from eventcore.messaging.names import check_name
from eventcore.types import StoredEvent

__all__ = [
    "ROUTED_TYPES",
    "CommandEnvelope",
    "decode_command_envelope",
    "outgoing_of",
]

#: The stored event types the relay routes by their content, whatever the topic map says.
ROUTED_TYPES: Final = frozenset({CommandRequested.__event_type__, CommandReplied.__event_type__})


class CommandEnvelope(DistributedEvent, frozen=True, kw_only=True, omit_defaults=True):
    """A command message: an event envelope with the request's three extensions."""

    replyto: str = ""
    requestid: str = ""
    idempotencykey: str = ""


class _ReplyTo(msgspec.Struct, frozen=True):
    reply_to: str


# The stored request read with its own class: its command stays raw (``msgspec.Raw``).
_request_decoder = msgspec.json.Decoder(CommandRequested)
_reply_decoder = msgspec.json.Decoder(_ReplyTo)
_envelope_encoder = msgspec.json.Encoder()
_command_decoder = msgspec.json.Decoder(CommandEnvelope)


def outgoing_of(event: StoredEvent, *, source: str) -> OutgoingMessage:
    """The message the relay publishes for a stored request or reply (a type in
    ``ROUTED_TYPES``). Raises ``DecodeError`` for one it cannot read."""
    if event.type == CommandRequested.__event_type__:
        return _command_message(event, source)
    try:
        reply_to = _reply_decoder.decode(event.data).reply_to
    except (msgspec.ValidationError, msgspec.DecodeError) as error:
        raise InvalidMessage(f"a stored reply that cannot be read: {error}") from None
    envelope = envelope_of(event, source=source)
    return OutgoingMessage(reply_to, envelope.id, envelope.subject, encode_envelope(envelope))


def _command_message(event: StoredEvent, source: str) -> OutgoingMessage:
    try:
        request = _request_decoder.decode(event.data)
    except (msgspec.ValidationError, msgspec.DecodeError) as error:
        raise InvalidMessage(f"a stored command request that cannot be read: {error}") from None
    plain = envelope_of(event, source=source)
    envelope = CommandEnvelope(
        specversion=plain.specversion,
        datacontenttype=plain.datacontenttype,
        id=plain.id,
        source=plain.source,
        type=request.command_type,
        subject=plain.subject,
        time=plain.time,
        data=request.command,
        streamversion=plain.streamversion,
        publishedat=plain.publishedat,
        correlationid=plain.correlationid,
        causationid=plain.causationid,
        traceparent=plain.traceparent,
        tracestate=plain.tracestate,
        actor=plain.actor,
        metaextra=plain.metaextra,
        replyto=request.reply_to,
        requestid=request.correlation_id,
        idempotencykey=request.idempotency_key,
    )
    # Keyed by the idempotency key: every attempt of one request lands in one partition,
    # in order, so a retry never overtakes the attempt it retries.
    return OutgoingMessage(
        command_topic(request.service),
        envelope.id,
        request.idempotency_key,
        _envelope_encoder.encode(envelope),
    )


def decode_command_envelope(
    body: bytes, *, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
) -> CommandEnvelope:
    """Read a command message; ``InvalidMessage`` when it is not a valid envelope or
    lacks a usable reply topic, request id or idempotency key."""
    # The envelope's own checks first (size, depth, UTF-8, attributes), then the extensions.
    decode_envelope(body, max_bytes=max_bytes)
    try:
        envelope = _command_decoder.decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError) as error:
        raise InvalidMessage(f"not a valid command message: {error}") from None
    try:
        check_name("reply topic", envelope.replyto)
        check_key("request id", envelope.requestid)
        check_key("idempotency key", envelope.idempotencykey)
    except Exception as error:
        raise InvalidMessage(f"not a valid command message: {error}") from None
    return envelope
