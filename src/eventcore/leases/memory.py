"""``MemoryLeases``: the ``Leases`` primitive for the in-process bus.

Claims expire by ``time.monotonic``; nothing here awaits, so on one event loop every
call is atomic without a lock.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from eventcore.leases.protocol import check_ttl

__all__ = ["MemoryLeases"]


class MemoryLeases:
    """Members and partition claims per scope, each alive until its deadline.

    ``on_change`` runs whenever a claim or a member goes away on purpose, so waiting
    consumers can look again at once instead of at their next renewal.
    """

    def __init__(self, on_change: Callable[[], None] | None = None) -> None:
        self._members: dict[str, dict[str, float]] = {}
        self._claims: dict[tuple[str, int], tuple[str, float]] = {}
        self._on_change = on_change

    async def heartbeat(self, scope: str, member: str, ttl: float) -> list[str]:
        ttl = check_ttl(ttl)
        now = time.monotonic()
        members = self._members.setdefault(scope, {})
        members[member] = now + ttl
        for other, expires in list(members.items()):
            if expires <= now:
                del members[other]
        return sorted(members)

    async def members(self, scope: str) -> list[str]:
        """The live members of ``scope``, sorted, without joining it."""
        now = time.monotonic()
        return sorted(m for m, expires in self._members.get(scope, {}).items() if expires > now)

    async def acquire(self, scope: str, partition: int, member: str, ttl: float) -> bool:
        ttl = check_ttl(ttl)
        now = time.monotonic()
        claim = self._claims.get((scope, partition))
        if claim is not None and claim[0] != member and claim[1] > now:
            return False
        self._claims[(scope, partition)] = (member, now + ttl)
        return True

    async def holder(self, scope: str, partition: int) -> str | None:
        claim = self._claims.get((scope, partition))
        if claim is None or claim[1] <= time.monotonic():
            return None
        return claim[0]

    async def release(self, scope: str, partition: int, member: str) -> None:
        claim = self._claims.get((scope, partition))
        if claim is not None and claim[0] == member:
            del self._claims[(scope, partition)]
            self._changed()

    async def leave(self, scope: str, member: str) -> None:
        if self._members.get(scope, {}).pop(member, None) is not None:
            self._changed()

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change()
