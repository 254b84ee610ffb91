"""Names a bus routes by: topics, consumer groups, services.

They become NATS subject tokens, JetStream stream and consumer names, and SQLite
keys, so they are held to what all of those accept: 1–64 characters from letters,
digits, ``-`` and ``_``. Checked where they enter, before any I/O.
"""

from __future__ import annotations

import re
from typing import Final

from eventcore.errors import InvalidName

__all__ = ["MAX_NAME_LENGTH", "check_name"]

MAX_NAME_LENGTH: Final = 64
_NAME = re.compile(r"[A-Za-z0-9_-]+")


def check_name(kind: str, value: object) -> str:
    """``value`` if it is a usable ``kind`` name (topic, group, service…); else InvalidName."""
    if not isinstance(value, str):
        raise InvalidName(kind, value, f"expected a string, got {type(value).__name__}")
    if not value:
        raise InvalidName(kind, value, "it is empty")
    if len(value) > MAX_NAME_LENGTH:
        raise InvalidName(
            kind, value, f"it has {len(value)} characters; at most {MAX_NAME_LENGTH} are allowed"
        )
    if _NAME.fullmatch(value) is None:
        raise InvalidName(kind, value, "only letters, digits, '-' and '_' are allowed")
    return value
