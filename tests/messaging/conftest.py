"""Fixtures of the bus conformance suite: a fresh bus on every backend in ``buses.py``.

``bus`` is one handle on a fresh bus; ``await make_bus()`` opens another handle on the
same bus (as a second process would). ``await make_site(partitions=.., lease_ttl=..)``
makes another fresh bus with other settings and returns its ``connect``.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from eventcore.messaging.bus import Bus
from eventcore.testing.bus import LEASE_TTL, PARTITIONS
from tests.backends import skip_or_fail
from tests.messaging.buses import (
    BUSES,
    NATS_URL,
    BusBackend,
    Connect,
    drop_nats_namespace,
    unavailable_reason,
)

#: The settings every test bus has unless a test asks for others: the bus contract's.
TEST_LEASE_TTL = LEASE_TTL
TEST_PARTITIONS = PARTITIONS

MakeSite = Callable[..., Awaitable[Connect]]


@pytest.fixture(params=list(BUSES), ids=list(BUSES))
def bus_backend(request: pytest.FixtureRequest) -> BusBackend:
    backend = BUSES[request.param]
    reason = unavailable_reason(backend)
    if reason is not None:
        skip_or_fail(reason, "every bus must run")
    return backend


@pytest.fixture
async def make_site(bus_backend: BusBackend, tmp_path: Path) -> AsyncIterator[MakeSite]:
    counter = itertools.count(1)
    async with AsyncExitStack() as stack:

        async def make(
            *, partitions: int = TEST_PARTITIONS, lease_ttl: float = TEST_LEASE_TTL
        ) -> Connect:
            workdir = tmp_path / f"bus-{next(counter)}"
            workdir.mkdir()
            return await stack.enter_async_context(
                bus_backend.site(workdir, partitions=partitions, lease_ttl=lease_ttl)
            )

        yield make


@pytest.fixture
async def make_bus(make_site: MakeSite) -> Connect:
    """Opens one more handle on the test's bus; all are closed after the test."""
    return await make_site()


@pytest.fixture
async def bus(make_bus: Connect) -> Bus:
    return await make_bus()


@pytest.fixture
async def namespace() -> AsyncIterator[str]:
    """A fresh namespace on the shared NATS server, dropped (every stream and bucket of
    it) after the test; an unreachable server skips (fails under ``CI=true``)."""
    import nats

    try:
        client = await nats.connect(NATS_URL, connect_timeout=3, allow_reconnect=False)
    except Exception as error:
        skip_or_fail(f"NATS unreachable at {NATS_URL}: {error!r}")
    await client.close()
    name = f"t{uuid.uuid4().hex[:10]}"
    yield name
    await drop_nats_namespace(name)
