"""The checks of a worker's numeric options that several workers share (the
subscriber, the hub): a whole count of at least 1, and a positive, finite number of
seconds. A bool is refused by both: ``True`` is not a count nor a duration."""

from __future__ import annotations

import math

from eventcore.errors import InvalidInput

__all__ = ["check_seconds", "check_whole"]


def check_whole(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInput(f"{name} must be a whole number of at least 1, got {value!r}")


def check_seconds(name: str, value: object) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise InvalidInput(f"{name} must be a positive number of seconds, got {value!r}")
