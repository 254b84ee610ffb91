"""Leases: heartbeats with a time to live, the live holders of a scope, exclusive claims.

The protocol, the in-process backend and ``KeepAlive`` (the one renewal schedule every
lease holder uses) are here; the SQLite and NATS backends are in
``eventcore.leases.sqlite`` and ``eventcore.leases.nats`` (the latter needs nats-py).
"""

from eventcore.leases.keep_alive import RENEWAL_FRACTION, KeepAlive
from eventcore.leases.memory import MemoryLeases
from eventcore.leases.protocol import ClaimHolders, Leases

__all__ = ["RENEWAL_FRACTION", "ClaimHolders", "KeepAlive", "Leases", "MemoryLeases"]
