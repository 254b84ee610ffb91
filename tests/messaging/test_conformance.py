"""The bus contract (``eventcore.testing.bus``) on every bus of ``tests/messaging/buses.py``:
``make_site`` comes from ``tests/messaging/conftest.py``, parametrised over memory, SQLite
and NATS (an unreachable server skips, or fails under ``CI=true``)."""

from __future__ import annotations

import pytest

from eventcore.testing.bus import BusContract, PublishForeign
from tests.messaging.buses import BusBackend


class TestBusContract(BusContract):
    @pytest.fixture
    def publish_foreign(self, bus_backend: BusBackend) -> PublishForeign:
        return bus_backend.foreign
