"""``BreakerPolicy``: the numbers a circuit breaker decides by (its rules are in
``eventcore.resilience.breaker``)."""

from __future__ import annotations

import math

import msgspec

from eventcore.errors import InvalidInput

__all__ = ["BreakerPolicy"]


class BreakerPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """When a breaker opens, how long it stays open, and how it tries the target again.

    The defaults suit calls between services: judge the last 30 s; open at half of at
    least 10 calls failing, or at 5 failures in a row; try again after 10 s with one probe.
    """

    #: Seconds of outcomes a closed breaker judges by.
    window: float = 30.0
    #: Fewest outcomes in the window before ``failure_ratio`` can open the circuit.
    minimum_calls: int = 10
    #: Share of failed outcomes in the window (0 < ratio ≤ 1) that opens the circuit.
    failure_ratio: float = 0.5
    #: Failures in a row, within the window, that open the circuit at any volume.
    consecutive_failures: int = 5
    #: Most outcomes kept in the window (bounds the memory of a busy target).
    max_samples: int = 1000
    #: Seconds the circuit stays open before it lets probes through.
    reset_timeout: float = 10.0
    #: Probes let through at a time when half-open, and the successes that close it.
    half_open_probes: int = 1
    #: Seconds a call may take before it is cancelled and counted as failed; None: no limit.
    call_timeout: float | None = None

    def __post_init__(self) -> None:
        for name in ("window", "failure_ratio", "reset_timeout", "call_timeout"):
            value = getattr(self, name)
            # NaN passes every comparison and infinity never elapses, so both are refused.
            if value is not None and not math.isfinite(value):
                raise InvalidInput(f"{name} must be a finite number, got {value}")
        if self.window <= 0:
            raise InvalidInput(f"window must be positive, got {self.window}")
        if not 0 < self.failure_ratio <= 1:
            raise InvalidInput(
                f"failure_ratio must be above 0 and at most 1, got {self.failure_ratio}"
            )
        if self.reset_timeout < 0:
            raise InvalidInput(f"reset_timeout must not be negative, got {self.reset_timeout}")
        if self.call_timeout is not None and self.call_timeout <= 0:
            raise InvalidInput(f"call_timeout must be positive, got {self.call_timeout}")
        for name in ("minimum_calls", "consecutive_failures", "half_open_probes"):
            if getattr(self, name) < 1:
                raise InvalidInput(f"{name} must be at least 1, got {getattr(self, name)}")
        unreachable = max(self.minimum_calls, self.consecutive_failures)
        if self.max_samples < unreachable:
            raise InvalidInput(
                f"max_samples ({self.max_samples}) must be at least minimum_calls and"
                f" consecutive_failures ({unreachable}), or the circuit could never open"
            )
