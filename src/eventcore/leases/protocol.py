"""The ``Leases`` protocol: heartbeats with a time to live, the live members of a scope,
and exclusive claims that expire unless renewed.

Partition ownership on the bus rests on it (``eventcore.messaging.assignment``); so will
service registration and single-leader workers. Backends: ``eventcore.leases.memory``
(one process), ``eventcore.leases.sqlite`` (the processes of one machine, in a file they
share) and ``eventcore.leases.nats`` (a NATS key-value bucket).
"""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

from eventcore.errors import InvalidInput

__all__ = ["ClaimHolders", "Leases", "check_ttl"]


def check_ttl(ttl: float, name: str = "ttl") -> float:
    """``ttl`` as seconds a claim lives: a positive, finite number, or ``InvalidInput``."""
    if (
        isinstance(ttl, bool)
        or not isinstance(ttl, int | float)
        or not math.isfinite(ttl)
        or ttl <= 0
    ):
        raise InvalidInput(f"{name} must be a positive number of seconds, got {ttl!r}")
    return float(ttl)


@runtime_checkable
class Leases(Protocol):
    """Time-limited exclusive claims, the primitive that partition ownership rests on.

    ``scope`` names a set of members competing for numbered claims (for the bus: a
    consumer group on a topic, its partitions numbered).
    Every call that takes a ``ttl`` (seconds) makes its claim live that long from now.
    """

    async def heartbeat(self, scope: str, member: str, ttl: float) -> list[str]:
        """Say ``member`` is alive; return the live members of ``scope``, sorted."""
        ...

    async def acquire(self, scope: str, partition: int, member: str, ttl: float) -> bool:
        """Claim (or renew) ``partition`` for ``member``; False if another member
        holds a live claim on it."""
        ...

    async def release(self, scope: str, partition: int, member: str) -> None:
        """Give up ``member``'s claim on ``partition`` (nothing if it holds none)."""
        ...

    async def leave(self, scope: str, member: str) -> None:
        """Remove ``member`` from the live members (its partition claims stay until
        released or expired)."""
        ...


@runtime_checkable
class ClaimHolders(Protocol):
    """Leases that can say who holds a claim (for status pages: a leader's name). Kept
    apart from ``Leases`` so that a wrapper of the primitive need not answer it."""

    async def holder(self, scope: str, partition: int) -> str | None:
        """The member whose claim on ``partition`` is live now, or None."""
        ...
