"""The two stored events that carry commands between services, and the names they use.

A command sent over the bus is never published directly. The sender *stores* a
``CommandRequested`` event — in the same append as its own events, so a saga's "step
requested" and the request itself commit together — and the relay publishes it to the
target service's command topic as a command message. The receiver stores its answer as a
``CommandReplied`` event in the same append as the command's own events, and the relay
publishes that to the topic the request named (``reply_to``). Each side's outbox is its
store; nothing is sent that did not commit, nothing that committed is left unsent.

Names: a service's command topic is ``<service>-commands`` and the topic its replies
come back on is ``<service>-replies`` unless the sender names another. Idempotency keys
and correlation ids are 1–180 characters without control characters: they become part
of a stream id (the receiver's inbox, ``inbox_stream``).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Final

import msgspec

from eventcore.errors import InvalidInput
from eventcore.events import Event
from eventcore.messaging.names import check_name
from eventcore.types import StreamId

__all__ = [
    "COMMAND_EVENTS",
    "MAX_KEY_LENGTH",
    "CommandReplied",
    "CommandRequested",
    "check_key",
    "command_topic",
    "command_type_of",
    "inbox_stream",
    "reply_topic",
    "request_for",
    "to_json",
]

# A C0 control character or DEL: searched in one pass rather than one call per character.
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")

#: The longest idempotency key or correlation id a command message may carry.
MAX_KEY_LENGTH: Final = 180


class CommandRequested(Event):
    """A command to send to ``service`` (stored by the sender; the relay publishes it).

    ``command`` is the command's payload as JSON, ``command_type`` its type name.
    ``idempotency_key`` is what the receiver runs the command once under;
    ``correlation_id`` names this request, and its reply carries it back to ``reply_to``.
    """

    __event_type__ = "eventcore.CommandRequested"

    service: str
    command_type: str
    command: msgspec.Raw
    idempotency_key: str
    correlation_id: str
    reply_to: str


class CommandReplied(Event):
    """A receiver's answer to the request ``correlation_id`` names, stored in the same
    append as the command's events (or alone, for a refusal).

    ``succeeded`` with ``result`` (JSON, ``null`` when the command gives none), or
    refused for ``reason``. ``first_correlation_id`` is set on the answer to a request
    whose key had already succeeded under another correlation id: the command did not
    run again, and ``result`` is the first run's.
    """

    __event_type__ = "eventcore.CommandReplied"

    service: str
    sender: str
    command_type: str
    idempotency_key: str
    correlation_id: str
    reply_to: str
    succeeded: bool
    result: msgspec.Raw = msgspec.field(default_factory=lambda: msgspec.Raw(b"null"))
    reason: str = ""
    first_correlation_id: str | None = None

    def result_value(self) -> Any:
        """The result as JSON builtins (dicts, lists, strings, numbers, None)."""
        return msgspec.json.decode(self.result)


#: Register these with the store's ``EventRegistry`` of a service that sends or accepts
#: commands over the bus.
COMMAND_EVENTS: Final = (CommandRequested, CommandReplied)


def command_topic(service: str) -> str:
    """The topic ``service`` accepts commands on."""
    return check_name("command topic", f"{check_name('service', service)}-commands")


def reply_topic(service: str) -> str:
    """The topic replies to ``service``'s commands come back on, unless it names another."""
    return check_name("reply topic", f"{check_name('service', service)}-replies")


def command_type_of(command: type[Any]) -> str:
    """A command class's type name on the wire: ``__command_type__`` if the class sets
    it, else its name. Sender and receiver must agree on it."""
    name = getattr(command, "__command_type__", None) or getattr(command, "__name__", None)
    if not isinstance(name, str) or not name:
        raise InvalidInput(f"{command!r} has no command type name")
    return name


def check_key(kind: str, value: object) -> str:
    """``value`` if it can be an idempotency key or correlation id; else InvalidInput."""
    if not isinstance(value, str) or not value or value.strip() != value:
        raise InvalidInput(f"a {kind} must be a non-empty string without surrounding spaces")
    if len(value) > MAX_KEY_LENGTH:
        raise InvalidInput(f"a {kind} has at most {MAX_KEY_LENGTH} characters, not {len(value)}")
    if _CONTROL.search(value) is not None:
        raise InvalidInput(f"a {kind} must not contain control characters")
    return value


def inbox_stream(sender: str, idempotency_key: str) -> StreamId:
    """The receiver's stream of the replies to one sender's key: its inbox for that key.

    Every run of the command reads it and appends to it (the reply), at the version it
    read: two deliveries racing conflict there, and the loser, reading again, finds the
    reply. The key is hashed when sender and key would not fit a stream id."""
    name = f"command-inbox:{sender}:{idempotency_key}"
    if len(name) > StreamId.MAX_LENGTH:
        digest = hashlib.sha256(idempotency_key.encode()).hexdigest()
        name = f"command-inbox:{sender}:#{digest}"
    return StreamId(name)


_command_encoder: Final = msgspec.json.Encoder(enc_hook=lambda value: _encode_value(value))


def _encode_value(value: Any) -> Any:
    # A StreamId is a str subclass, which msgspec encodes only as str itself.
    if isinstance(value, str):
        return str(value)
    raise NotImplementedError(f"cannot encode {type(value).__name__} in a command")


def to_json(value: object) -> bytes:
    """``value`` as JSON, stream ids as strings; ``InvalidInput`` when it cannot be."""
    try:
        return _command_encoder.encode(value)
    except (TypeError, NotImplementedError) as error:
        raise InvalidInput(f"{type(value).__name__} cannot be sent as JSON: {error}") from None


def request_for(
    service: str,
    command: object,
    *,
    idempotency_key: str,
    correlation_id: str,
    reply_to: str,
) -> CommandRequested:
    """The stored request that sends ``command`` to ``service``: append it in the same
    append as the events that decided to send it, and the relay does the rest.

    ``command`` is any msgspec-encodable value (a Struct, usually); its type name is
    ``command_type_of(type(command))``. Raises ``InvalidInput`` for a name, key or
    command that cannot travel."""
    check_name("service", service)
    check_name("reply topic", reply_to)
    check_key("idempotency key", idempotency_key)
    check_key("correlation id", correlation_id)
    payload = to_json(command)
    if not payload.startswith(b"{"):
        raise InvalidInput(f"a command must encode as a JSON object, not {payload[:20]!r}")
    return CommandRequested(
        service=service,
        command_type=command_type_of(type(command)),
        command=msgspec.Raw(payload),
        idempotency_key=idempotency_key,
        correlation_id=correlation_id,
        reply_to=reply_to,
    )
