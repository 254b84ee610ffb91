"""The ``Directory`` protocol: what a registry backend stores, and the in-process one.

A backend keeps two things per service. Who is alive is the lease primitive's
(``eventcore.leases``): an instance is a member of the scope named after its service,
alive while its heartbeats keep coming. What each instance is (its address, version,
metadata) is a ``Record`` kept beside it, rewritten at every heartbeat, so a record
swept by mistake (an instance paused past its TTL) comes back with the next one. A
record outlives its lease only until ``STALE_AFTER`` TTLs have passed with no
heartbeat; anyone may sweep it then. ``live`` answers from the leases, never from the
records alone, so a killed instance drops out exactly when its lease runs out.
"""

from __future__ import annotations

import time
from typing import Final, Protocol

import msgspec

from eventcore.errors import RegistryClosed
from eventcore.leases import MemoryLeases
from eventcore.registry.instance import Instance

__all__ = ["STALE_AFTER", "Directory", "MemoryDirectory", "Record", "record_decoder"]

#: TTLs without a heartbeat after which an instance's record may be swept away.
STALE_AFTER: Final = 2.0


class Record(msgspec.Struct, frozen=True):
    """An instance as stored: what it is, when it last said so (wall clock, seconds
    since the epoch) and the TTL it registered with."""

    instance: Instance
    renewed_at: float
    ttl: float

    def stale(self, now: float) -> bool:
        return self.renewed_at + STALE_AFTER * self.ttl < now


record_decoder: Final = msgspec.json.Decoder(Record)


class Directory(Protocol):
    """One registry backend. Every call may raise ``RegistryUnavailable`` (try again
    later) or, after ``aclose``, ``RegistryClosed``."""

    async def announce(self, instance: Instance, ttl: float) -> None:
        """Register ``instance``, or renew it: alive for ``ttl`` seconds from now."""
        ...

    async def withdraw(self, instance: Instance) -> None:
        """Take ``instance`` off the registry at once (nothing if it is not on it)."""
        ...

    async def live(self, service: str) -> list[Instance]:
        """The live instances of ``service``, by instance id."""
        ...

    async def listed(self) -> list[str]:
        """The services with at least one live instance, sorted."""
        ...

    async def aclose(self) -> None:
        """Let go of the backend; idempotent. Registrations are left to their TTL."""
        ...


class MemoryDirectory:
    """The registry of one process (``memory://``): for tests and single-process apps."""

    def __init__(self) -> None:
        self._leases = MemoryLeases()
        self._records: dict[str, dict[str, Record]] = {}
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise RegistryClosed()

    async def announce(self, instance: Instance, ttl: float) -> None:
        self._check_open()
        await self._leases.heartbeat(instance.service, instance.instance_id, ttl)
        now = time.time()
        for records in self._records.values():
            for instance_id, record in list(records.items()):
                if record.stale(now):
                    del records[instance_id]
        records = self._records.setdefault(instance.service, {})
        records[instance.instance_id] = Record(instance, now, ttl)

    async def withdraw(self, instance: Instance) -> None:
        self._check_open()
        await self._leases.leave(instance.service, instance.instance_id)
        self._records.get(instance.service, {}).pop(instance.instance_id, None)

    async def live(self, service: str) -> list[Instance]:
        self._check_open()
        members = await self._leases.members(service)
        records = self._records.get(service, {})
        return [records[member].instance for member in members if member in records]

    async def listed(self) -> list[str]:
        self._check_open()
        return sorted([s for s in self._records if await self._leases.members(s)])

    async def aclose(self) -> None:
        self._closed = True
