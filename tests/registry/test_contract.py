"""The registry contract (``eventcore.testing.registry``) on memory, SQLite and NATS:
``make_registry`` comes from ``tests/registry/conftest.py``."""

from __future__ import annotations

from eventcore.testing.registry import RegistryContract


class TestRegistryContract(RegistryContract):
    pass
