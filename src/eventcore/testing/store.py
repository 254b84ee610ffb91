"""The event-store contract: every guarantee an :class:`~eventcore.store.EventStore`
backend owes its callers, as one pytest test class to inherit.

A backend runs it by subclassing :class:`StoreContract` in a test module and providing a
``make_store`` fixture: ``await make_store(max_payload_bytes=None)`` opens one more fresh,
empty store, and the fixture closes every store it opened when the test ends::

    class TestMyStore(StoreContract):
        @pytest_asyncio.fixture
        async def make_store(self, tmp_path): ...

The parts (:class:`AppendContract`, :class:`WaitContract`, …) can be inherited one by
one while a backend is being written. Needs pytest, pytest-asyncio and hypothesis (the
``testing`` extra).
"""

from __future__ import annotations

from eventcore.testing._store.append import AppendContract
from eventcore.testing._store.bad_input import BadInputContract
from eventcore.testing._store.concurrency import ConcurrencyContract
from eventcore.testing._store.event_data import EventDataContract
from eventcore.testing._store.global_log import GlobalLogContract
from eventcore.testing._store.identity import IdentityContract
from eventcore.testing._store.lifecycle import LifecycleContract
from eventcore.testing._store.model import ModelContract
from eventcore.testing._store.streams import StreamsContract
from eventcore.testing._store.transfers import TransfersContract
from eventcore.testing._store.wait import WaitContract
from eventcore.testing._store_fixtures import MakeStore, StoreFixtures

__all__ = [
    "AppendContract",
    "BadInputContract",
    "ConcurrencyContract",
    "EventDataContract",
    "GlobalLogContract",
    "IdentityContract",
    "LifecycleContract",
    "MakeStore",
    "ModelContract",
    "StoreContract",
    "StoreFixtures",
    "StreamsContract",
    "TransfersContract",
    "WaitContract",
]


class StoreContract(
    StoreFixtures,
    AppendContract,
    BadInputContract,
    ConcurrencyContract,
    EventDataContract,
    GlobalLogContract,
    IdentityContract,
    LifecycleContract,
    ModelContract,
    StreamsContract,
    TransfersContract,
    WaitContract,
):
    """Every part of the store contract; subclass it and provide ``make_store``."""
