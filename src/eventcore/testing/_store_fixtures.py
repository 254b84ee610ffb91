"""The fixtures the store contract is written against, and the one a backend provides."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest_asyncio

from eventcore.store import EventStore

__all__ = ["MakeStore", "StoreFixtures"]

#: ``await make_store()`` opens one more fresh, empty store of the backend under test;
#: ``await make_store(max_payload_bytes=10)`` opens one with that payload limit. The
#: fixture closes every store it opened when the test ends.
MakeStore = Callable[..., Awaitable[EventStore]]


class StoreFixtures:
    """``store`` is one fresh store from the ``make_store`` fixture the backend provides."""

    @pytest_asyncio.fixture
    async def store(self, make_store: MakeStore) -> EventStore:
        return await make_store()
