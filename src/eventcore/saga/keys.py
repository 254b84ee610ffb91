"""The names a saga gives its requests: idempotency keys, correlation ids, deadlines.

Each is derived from the saga's identity alone, never drawn at random, so a saga owner
that crashed and replays the stream names the same request the same way: a participant
that already ran it under that key runs it no second time.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from typing import Final, Literal

__all__ = [
    "SAGA_DEADLINE",
    "Phase",
    "check_name",
    "correlation_id",
    "idempotency_key",
    "retry_deadline",
    "timeout_deadline",
]

# A C0 control character or DEL: searched in one pass rather than one call per character.
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")

#: Whether a request does a step's work or undoes it.
Phase = Literal["action", "compensation"]

# Fixed forever: changing it would change every key, and a participant would run again
# what a saga already asked of it.
_NAMESPACE: Final = uuid.UUID("6f1c2f4e-3b0e-5d7a-9a51-0c3e7c1b5a20")
# A separator that no validated name contains, so ("a", "b c") and ("a b", "c") differ.
_SEPARATOR: Final = "\x1f"

#: The key of a saga's overall deadline.
SAGA_DEADLINE: Final = "deadline"

MAX_NAME_LENGTH: Final = 200


def idempotency_key(saga_type: str, saga_id: str, step: str, phase: Phase) -> str:
    """The key a participant runs a request under: the same for every attempt of the
    same step's action (or compensation) in the same saga, and for nothing else.

    It is the name-based UUID (version 5) of those four values: a key any HTTP service
    accepts as an ``Idempotency-Key``.
    """
    name = _SEPARATOR.join((saga_type, saga_id, step, phase))
    # uuid.uuid5, spelled out: building a UUID object costs more than the hash itself.
    digest = bytearray(hashlib.sha1(_NAMESPACE.bytes + name.encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def correlation_id(key: str, attempt: int) -> str:
    """The id a reply carries back: one per attempt, so a reply to an attempt the saga
    gave up on is told apart from the reply it waits for."""
    return f"{key}.{attempt}"


def timeout_deadline(correlation: str) -> str:
    """The key of the deadline after which a request's reply is no longer awaited."""
    return f"timeout:{correlation}"


def retry_deadline(correlation: str) -> str:
    """The key of the deadline at which a failed compensation is tried again; named for
    the attempt that failed, so each wait is a deadline of its own."""
    return f"retry:{correlation}"


def check_name(value: object) -> str | None:
    """Why ``value`` cannot name a saga type, a step or a saga, or None when it can."""
    if not isinstance(value, str):
        return f"must be a string, not {type(value).__name__}"
    if not value or value.strip() != value:
        return "must be non-empty, without leading or trailing spaces"
    if len(value) > MAX_NAME_LENGTH:
        return f"must be at most {MAX_NAME_LENGTH} characters, not {len(value)}"
    if _CONTROL.search(value) is not None:
        return "must not contain control characters"
    return None
