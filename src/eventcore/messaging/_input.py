"""Checks on what callers hand a bus, shared by every backend so that each refuses the
same input with the same error, before any I/O."""

from __future__ import annotations

from collections.abc import Sequence

from eventcore.errors import InvalidInput
from eventcore.messaging.bus import OutgoingMessage
from eventcore.messaging.names import check_name

__all__ = ["check_outgoing", "checkpoint_name"]


def check_outgoing(messages: Sequence[OutgoingMessage]) -> None:
    """Raise for the first message no bus could publish; a batch is checked whole first,
    so one bad message publishes nothing."""
    for message in messages:
        if not isinstance(message, OutgoingMessage):
            raise InvalidInput(f"expected an OutgoingMessage, got {type(message).__name__}")
        check_name("topic", message.topic)
        if not isinstance(message.message_id, str) or not message.message_id:
            raise InvalidInput("a message id must be a non-empty string")
        if not isinstance(message.key, str):
            raise InvalidInput("a message key must be a string")
        if not isinstance(message.body, bytes | bytearray | memoryview):
            raise InvalidInput(f"a message body must be bytes, got {type(message.body).__name__}")


def checkpoint_name(name: object) -> str:
    if not isinstance(name, str) or not name:
        raise InvalidInput("a checkpoint name must be a non-empty string")
    return name
