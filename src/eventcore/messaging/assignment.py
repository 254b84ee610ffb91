"""Which member of a consumer group owns which partition.

Every member computes the same answer from the same list of live members: partition
``p`` belongs to ``members[p % len(members)]``. The answer is only a wish; ownership
itself is a lease (``Leases``), so two members that briefly see different member
lists can never both own a partition — the second ``acquire`` fails until the first
member releases or its lease runs out.

A member gives a partition up only between fetches, when it holds no unsettled
delivery from it (``Consumer`` contract); the next owner starts from the group's
acknowledged position, so no message is skipped and none of a key's messages is
handled by two members at once (unless a member stalls longer than its lease — then
the bus redelivers, and the inbox makes the repeat harmless).
"""

from __future__ import annotations

import time

from eventcore.errors import InvalidInput
from eventcore.leases import Leases
from eventcore.leases.protocol import check_ttl

__all__ = ["PartitionAssignment"]


class PartitionAssignment:
    """One member's view of its group's partitions.

    Call ``rebalance()`` between fetches and ``renew()`` at least every ``ttl / 3``
    seconds (a consumer runs it in a background task) while the member lives.
    """

    def __init__(
        self, leases: Leases, *, scope: str, member: str, partitions: int, ttl: float
    ) -> None:
        if isinstance(partitions, bool) or not isinstance(partitions, int) or partitions < 1:
            raise InvalidInput(f"a topic has at least one partition, got {partitions!r}")
        ttl = check_ttl(ttl)
        self._leases = leases
        self.scope = scope
        self.member = member
        self.partition_count = partitions
        self.ttl = ttl
        self._owned: set[int] = set()
        self._members: list[str] = [member]
        self._renewed_at = 0.0

    @property
    def owned(self) -> frozenset[int]:
        return frozenset(self._owned)

    def _wanted(self) -> set[int]:
        members = self._members
        return {p for p in range(self.partition_count) if members[p % len(members)] == self.member}

    async def renew(self) -> None:
        """Say this member lives and extend the leases it holds. A lease found taken
        by another member (ours ran out) is dropped from ``owned``."""
        members = await self._leases.heartbeat(self.scope, self.member, self.ttl)
        self._members = sorted({*members, self.member})
        for partition in sorted(self._owned):
            if not await self._leases.acquire(self.scope, partition, self.member, self.ttl):
                self._owned.discard(partition)
        self._renewed_at = time.monotonic()

    async def rebalance(self) -> tuple[frozenset[int], frozenset[int]]:
        """Release partitions that belong to others now, claim free ones that belong to
        us. Returns (gained, lost)."""
        before = set(self._owned)
        if time.monotonic() - self._renewed_at > self.ttl / 3:
            await self.renew()
        wanted = self._wanted()
        for partition in sorted(self._owned - wanted):
            await self._leases.release(self.scope, partition, self.member)
            self._owned.discard(partition)
        for partition in sorted(wanted - self._owned):
            if await self._leases.acquire(self.scope, partition, self.member, self.ttl):
                self._owned.add(partition)
        return frozenset(self._owned - before), frozenset(before - self._owned)

    async def leave(self) -> None:
        """Give up every partition and leave the member list."""
        for partition in sorted(self._owned):
            await self._leases.release(self.scope, partition, self.member)
        self._owned.clear()
        await self._leases.leave(self.scope, self.member)
