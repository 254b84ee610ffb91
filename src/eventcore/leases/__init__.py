"""Leases: heartbeats with a time to live, the live holders of a scope, exclusive claims.

The protocol and the in-process backend are here; the SQLite and NATS backends are in
``eventcore.leases.sqlite`` and ``eventcore.leases.nats`` (the latter needs nats-py).
"""

from eventcore.leases.memory import MemoryLeases
from eventcore.leases.protocol import Leases

__all__ = ["Leases", "MemoryLeases"]
