"""The seeded fault wrappers of ``eventcore.testing``: a seed replays its schedule, the
faults are the typed outage errors, and a plan with bad rates is refused."""

from __future__ import annotations

import contextlib

import pytest

from eventcore.errors import InvalidInput, StoreUnavailable
from eventcore.store import open_store
from eventcore.testing import FaultPlan, FaultyStore
from eventcore.types import StreamId
from tests.builders import events

PLAN = {"fail": 0.3, "lose_reply": 0.2, "delay": 0.2, "max_delay": 0.001, "drop": 0.05}


async def schedule(seed: int) -> tuple[list[tuple[str, str]], int]:
    """Forty appends through a faulted memory store: what was injected, and how many
    events the store holds in the end."""
    async with await open_store("memory://") as inner:
        store = FaultyStore(inner, FaultPlan(seed=seed, **PLAN))
        for n in range(40):
            stream = StreamId(f"s{n}")
            with contextlib.suppress(StoreUnavailable):
                await store.append({stream: events(1)}, expected={stream: 0})
        return store.faults, await inner.last_position()


async def test_a_seed_replays_the_same_fault_schedule_and_another_seed_another() -> None:
    first, again, other = await schedule(3), await schedule(3), await schedule(4)

    assert first == again
    assert first[0] != other[0]
    kinds = {kind for _, kind in first[0]}
    assert {"fail", "lose_reply", "delay"} <= kinds


async def test_a_lost_reply_wrote_and_a_failed_or_dropped_call_did_not() -> None:
    outcomes: list[tuple[bool, bool, int]] = []
    async with await open_store("memory://") as inner:
        store = FaultyStore(inner, FaultPlan(seed=3, **PLAN))
        for n in range(40):
            stream = StreamId(f"s{n}")
            before = len(store.faults)
            try:
                await store.append({stream: events(1)}, expected={stream: 0})
                raised = False
            except StoreUnavailable:
                raised = True
            lost = any(kind == "lose_reply" for _, kind in store.faults[before:])
            outcomes.append((raised, lost, await inner.stream_version(stream)))

    assert any(lost for _, lost, _ in outcomes)
    assert any(raised and not lost for raised, lost, _ in outcomes)
    for raised, lost, version in outcomes:
        assert version == (1 if lost or not raised else 0)


@pytest.mark.parametrize("rate", [-0.1, 1.5])
def test_a_plan_with_a_rate_outside_zero_to_one_is_refused(rate: float) -> None:
    with pytest.raises(InvalidInput):
        FaultPlan(seed=1, fail=rate)
