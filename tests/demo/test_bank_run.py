"""A whole bank run on an in-memory store: it keeps its books and its audit agrees."""

from __future__ import annotations

import random

import pytest

from eventcore import open_store
from eventcore.demo.bank_run import Tally, plan, run_bank
from eventcore.errors import InvalidInput


async def test_a_concurrent_run_passes_its_own_audit() -> None:
    store = await open_store("memory://")
    seen: list[int] = []

    def progress(tally: Tally) -> None:
        seen.append(tally.decided)

    try:
        run = await run_bank(
            store, accounts=5, transfers=200, concurrency=8, seed=3, on_progress=progress
        )
    finally:
        await store.aclose()
    assert run.ok, [check for check in run.checks if not check.ok]
    tally = run.tally
    assert tally.completed + tally.rejected == 200
    assert tally.failed == 0
    assert run.events == 5 + 2 * tally.completed
    assert seen == list(range(1, 201))


def test_the_plan_is_decided_by_the_seed() -> None:
    first = plan(10, 50, random.Random(5))
    assert first == plan(10, 50, random.Random(5))
    assert all(p.source != p.target and p.amount >= 1 for p in first)


async def test_a_run_of_fewer_than_two_accounts_is_refused_before_writing() -> None:
    store = await open_store("memory://")
    try:
        with pytest.raises(InvalidInput, match="two accounts"):
            await run_bank(store, accounts=1, transfers=1, concurrency=1, seed=0)
        assert await store.last_position() == 0
    finally:
        await store.aclose()
