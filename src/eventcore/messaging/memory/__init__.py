"""The in-process message bus (tests, single-process services)."""

from eventcore.messaging.memory.bus import DEFAULT_LEASE_TTL, MemoryBus, MemoryConsumer

__all__ = ["DEFAULT_LEASE_TTL", "MemoryBus", "MemoryConsumer"]
