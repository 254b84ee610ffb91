"""How long to wait between attempts: exponential backoff with full jitter."""

from __future__ import annotations

import math
import random

import msgspec

from eventcore.errors import InvalidInput

__all__ = ["RetryPolicy"]


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """Retry up to ``max_attempts`` times in all, waiting a random time up to
    ``initial_delay * multiplier ** (attempt - 1)`` (capped at ``max_delay``) in between.

    Full jitter spreads writers that collided on one stream so they do not collide
    again in lock step.
    """

    max_attempts: int = 10
    initial_delay: float = 0.001
    max_delay: float = 0.1
    multiplier: float = 2.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise InvalidInput(f"max_attempts must be at least 1, got {self.max_attempts}")
        # NaN passes every comparison and infinity breaks the ceiling, so both are refused.
        for name in ("initial_delay", "max_delay", "multiplier"):
            value = getattr(self, name)
            if not math.isfinite(value):
                raise InvalidInput(f"{name} must be a finite number, got {value}")
        if self.initial_delay < 0 or self.max_delay < 0:
            raise InvalidInput("retry delays must not be negative")
        if self.multiplier < 1:
            raise InvalidInput(f"multiplier must be at least 1, got {self.multiplier}")

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        return rng.uniform(0.0, self.ceiling(attempt))

    def ceiling(self, attempt: int) -> float:
        """The longest wait after failed attempt ``attempt``: the capped exponential."""
        if self.initial_delay == 0:
            return 0.0
        try:
            ceiling = self.initial_delay * self.multiplier ** (attempt - 1)
        except OverflowError:
            # Far past the cap: float arithmetic overflows instead of returning infinity.
            return self.max_delay
        return min(self.max_delay, ceiling)


NO_RETRY = RetryPolicy(max_attempts=1)
