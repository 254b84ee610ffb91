"""The store contract (``eventcore.testing.store``) on every backend of ``tests/backends.py``:
``make_store`` comes from ``tests/conftest.py``, parametrised over memory, SQLite and
PostgreSQL (an unreachable server skips, or fails under ``CI=true``)."""

from __future__ import annotations

from eventcore.testing.store import StoreContract


class TestStoreContract(StoreContract):
    pass
