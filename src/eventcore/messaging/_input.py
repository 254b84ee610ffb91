"""Checks on what callers hand a bus, shared by every backend so that each refuses the
same input with the same error, before any I/O."""

from __future__ import annotations

import math
from collections.abc import Sequence

from eventcore.errors import InvalidInput
from eventcore.messaging.bus import DeadLetter, Delivery, OutgoingMessage
from eventcore.messaging.names import check_name
from eventcore.store.checkpoint import Checkpoint

__all__ = [
    "check_checkpoint",
    "check_claim",
    "check_delay",
    "check_delivery",
    "check_fetch",
    "check_letter",
    "check_letter_filter",
    "check_outgoing",
    "checkpoint_name",
]


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


def check_checkpoint(checkpoint: object) -> Checkpoint:
    """A checkpoint to save: its fields were checked when it was made."""
    if not isinstance(checkpoint, Checkpoint):
        raise InvalidInput(f"expected a Checkpoint, got {type(checkpoint).__name__}")
    return checkpoint


def check_letter_filter(group: str | None, topic: str | None, limit: int) -> None:
    """The arguments of ``DeadLetterBox.letters`` (and ``claim_retries``)."""
    if group is not None:
        check_name("group", group)
    if topic is not None:
        check_name("topic", topic)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise InvalidInput(f"limit must be a positive whole number, got {limit!r}")


def check_claim(holder: str, lease: float) -> None:
    """The claimer's name and lease of ``DeadLetterBox.claim_retries``."""
    if not isinstance(holder, str) or len(holder) > 256:
        raise InvalidInput("a claim's holder must be a string of at most 256 characters")
    if (
        isinstance(lease, bool)
        or not isinstance(lease, int | float)
        or not math.isfinite(lease)
        or lease <= 0
    ):
        raise InvalidInput(f"a claim's lease must be a positive number of seconds, got {lease!r}")


def check_letter(letter: DeadLetter) -> None:
    """A letter a box may keep: valid names, and the id its group, topic and message give."""
    if not isinstance(letter, DeadLetter):
        raise InvalidInput(f"expected a DeadLetter, got {type(letter).__name__}")
    check_name("group", letter.group)
    check_name("topic", letter.topic)
    expected = DeadLetter.id_for(letter.group, letter.topic, letter.message_id)
    if letter.letter_id != expected:
        raise InvalidInput(f"letter id {letter.letter_id!r} should be {expected!r}")


def check_fetch(max_messages: int, timeout: float) -> None:
    """The arguments of ``Consumer.fetch``."""
    if isinstance(max_messages, bool) or not isinstance(max_messages, int) or max_messages < 1:
        raise InvalidInput(f"max_messages must be a positive whole number, got {max_messages!r}")
    check_delay(timeout, "timeout")


def check_delay(seconds: float, name: str = "delay") -> None:
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not seconds >= 0:
        raise InvalidInput(f"{name} must be >= 0 seconds, got {seconds!r}")


def check_delivery(delivery: object, topic: str, partitions: int) -> Delivery:
    """A delivery handed back to the consumer of ``topic`` (with ``partitions``) that
    could have come from it."""
    if not isinstance(delivery, Delivery):
        raise InvalidInput(f"expected a Delivery, got {type(delivery).__name__}")
    if delivery.topic != topic:
        raise InvalidInput(f"delivery of topic {delivery.topic!r} given to a consumer of {topic!r}")
    if not 0 <= delivery.partition < partitions:
        raise InvalidInput(f"no partition {delivery.partition} in topic {topic!r}")
    return delivery
