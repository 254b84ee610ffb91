"""Leases and partition assignment refuse a bad time to live or partition count with
``InvalidInput`` (a ``ValueError``), before any I/O."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from eventcore.errors import InvalidInput
from eventcore.leases import Leases, MemoryLeases
from eventcore.messaging.assignment import PartitionAssignment
from eventcore.messaging.sqlite import SqliteBus
from eventcore.messaging.url import BusUrl

BAD_TTLS = [0, -1.0, float("nan"), float("inf"), True, "10"]


@pytest.fixture(params=["memory", "sqlite"])
async def leases(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "memory":
        yield MemoryLeases()
        return
    bus = await SqliteBus.open(BusUrl.parse(f"sqlite://{tmp_path}/bus.db"), create=True)
    try:
        yield bus.leases
    finally:
        await bus.aclose()


@pytest.mark.parametrize("ttl", BAD_TTLS, ids=repr)
async def test_a_bad_ttl_is_refused_and_claims_nothing(leases: Leases, ttl: Any) -> None:
    with pytest.raises(InvalidInput):
        await leases.heartbeat("scope", "m1", ttl)
    with pytest.raises(InvalidInput):
        await leases.acquire("scope", 0, "m1", ttl)

    assert await leases.heartbeat("scope", "m2", 10.0) == ["m2"]
    assert await leases.acquire("scope", 0, "m2", 10.0)


@pytest.mark.parametrize(
    ("partitions", "ttl"), [(0, 1.0), (-1, 1.0), (True, 1.0), (4, 0.0), (4, float("nan"))]
)
def test_a_bad_assignment_is_refused(partitions: Any, ttl: Any) -> None:
    with pytest.raises(InvalidInput):
        PartitionAssignment(MemoryLeases(), scope="s", member="m", partitions=partitions, ttl=ttl)
