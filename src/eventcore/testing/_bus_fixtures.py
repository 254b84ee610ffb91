"""The fixtures the bus contract is written against, and the one a backend provides."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence

import pytest
import pytest_asyncio

from eventcore.messaging.bus import Bus, OutgoingMessage

__all__ = ["BusFixtures", "Connect", "MakeSite", "PublishForeign"]

#: ``await connect()`` opens one more handle on the same bus, as another process would.
Connect = Callable[[], Awaitable[Bus]]
#: ``await make_site(partitions=4, lease_ttl=1.0)`` makes a fresh, empty bus and returns
#: its ``connect``; the fixture closes every handle and removes the bus when the test ends.
MakeSite = Callable[..., Awaitable[Connect]]
#: ``await publish_foreign(bus, topic, key, bodies)`` publishes as a producer other than
#: eventcore would, with whatever the backend lets such a producer leave out.
PublishForeign = Callable[[Bus, str, str, Sequence[bytes]], Awaitable[None]]


async def _with_fresh_ids(bus: Bus, topic: str, key: str, bodies: Sequence[bytes]) -> None:
    await bus.publish(
        [OutgoingMessage(topic, f"foreign-{uuid.uuid4().hex}", key, body) for body in bodies]
    )


class BusFixtures:
    """``make_bus``, ``bus`` and ``publish_foreign`` from the ``make_site`` fixture the
    backend provides. A backend whose foreign producers can publish without a message id
    (NATS without ``Nats-Msg-Id``) overrides ``publish_foreign`` to do exactly that."""

    @pytest_asyncio.fixture
    async def make_bus(self, make_site: MakeSite) -> Connect:
        """Opens one more handle on the test's bus."""
        return await make_site()

    @pytest_asyncio.fixture
    async def bus(self, make_bus: Connect) -> Bus:
        return await make_bus()

    @pytest.fixture
    def publish_foreign(self) -> PublishForeign:
        return _with_fresh_ids
