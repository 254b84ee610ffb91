"""The message-bus contract: every guarantee a :class:`~eventcore.messaging.bus.Bus`
backend owes the relay and the subscriber, as one pytest test class to inherit.

A backend runs it by subclassing :class:`BusContract` in a test module and providing a
``make_site`` fixture: ``await make_site(partitions=PARTITIONS, lease_ttl=LEASE_TTL)``
makes a fresh, empty bus and returns ``connect``, where each ``await connect()`` opens one
more handle on that same bus the way another process would; when the test ends the
fixture closes every handle and removes what the bus created::

    class TestMyBus(BusContract):
        @pytest_asyncio.fixture
        async def make_site(self, tmp_path): ...

Needs pytest and pytest-asyncio (the ``testing`` extra).
"""

from __future__ import annotations

from eventcore.testing._bus.dead_letters import DeadLettersContract
from eventcore.testing._bus.groups import GroupsContract
from eventcore.testing._bus.identity import IdentityContract as MessageIdentityContract
from eventcore.testing._bus.lifecycle import LifecycleContract as BusLifecycleContract
from eventcore.testing._bus.order import OrderContract
from eventcore.testing._bus.publish import PublishContract
from eventcore.testing._bus.redelivery import RedeliveryContract
from eventcore.testing._bus.takeover import TakeoverContract
from eventcore.testing._bus_fixtures import BusFixtures, Connect, MakeSite, PublishForeign
from eventcore.testing._bus_steps import LEASE_TTL, PARTITIONS

__all__ = [
    "LEASE_TTL",
    "PARTITIONS",
    "BusContract",
    "BusFixtures",
    "BusLifecycleContract",
    "Connect",
    "DeadLettersContract",
    "GroupsContract",
    "MakeSite",
    "MessageIdentityContract",
    "OrderContract",
    "PublishContract",
    "PublishForeign",
    "RedeliveryContract",
    "TakeoverContract",
]


class BusContract(
    BusFixtures,
    DeadLettersContract,
    GroupsContract,
    MessageIdentityContract,
    BusLifecycleContract,
    OrderContract,
    PublishContract,
    RedeliveryContract,
    TakeoverContract,
):
    """Every part of the bus contract; subclass it and provide ``make_site``."""
