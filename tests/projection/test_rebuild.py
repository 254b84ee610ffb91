"""Rebuilds: a new version catches up beside the live one and takes over, nothing missed."""

from __future__ import annotations

import asyncio
import random

import pytest

from eventcore import EventStore
from eventcore.projection import ProjectionNotFound, ProjectionRunner, Source, rebuild
from eventcore.projection._sql_target import SqlTarget
from tests.projection.conftest import table
from tests.projection.orders import OrderSummary, append_all, fold_store, random_events, registry


async def test_a_rebuild_while_events_keep_arriving_takes_over_with_nothing_missed(
    store: EventStore, target: SqlTarget
) -> None:
    rng = random.Random(7)
    source = Source("orders", store, registry)
    await append_all(store, random_events(rng, 5_000))
    live = ProjectionRunner(OrderSummary(), target, source, batch_size=200, poll_interval=60.0)
    rebuilt = asyncio.Event()

    async def keep_writing() -> None:
        """Append while the rebuild runs and for a while after it switched."""
        after_switch = 0
        while after_switch < 10:
            await append_all(store, random_events(rng, 25), per_append=5)
            # Paced by the live runner: each round is applied before the next is written.
            await live.caught_up()
            after_switch += rebuilt.is_set()

    async with asyncio.TaskGroup() as group:
        group.create_task(live.run())
        await live.caught_up()
        writer = group.create_task(keep_writing())
        new_version = await rebuild(OrderSummary(), target, source, batch_size=300)
        rebuilt.set()
        await writer
        live.stop()

    assert new_version == 2
    assert live.version == 2  # the live runner moved over to the new version
    assert [(v.version, v.state) for v in await target.versions("order_summary")] == [(2, "live")]
    assert await table(target, "SELECT * FROM orders") == await fold_store(store)
    assert await table(target, "SELECT * FROM orders_v2") == await fold_store(store)


async def test_a_rebuild_can_keep_the_old_version(store: EventStore, target: SqlTarget) -> None:
    source = Source("orders", store, registry)
    await append_all(store, random_events(random.Random(8), 500))
    await ProjectionRunner(OrderSummary(), target, source).catch_up()

    await rebuild(OrderSummary(), target, source, keep_old=True)

    states = [(v.version, v.state) for v in await target.versions("order_summary")]
    assert states == [(1, "retired"), (2, "live")]
    assert await table(target, "SELECT * FROM orders_v1") == await fold_store(store)


async def test_a_reset_forgets_state_and_the_next_run_starts_over(
    store: EventStore, target: SqlTarget
) -> None:
    source = Source("orders", store, registry)
    await append_all(store, random_events(random.Random(9), 500))
    await ProjectionRunner(OrderSummary(), target, source).catch_up()

    await target.reset("order_summary")

    assert await target.versions("order_summary") == []
    await ProjectionRunner(OrderSummary(), target, source).catch_up()
    assert await table(target, "SELECT * FROM orders") == await fold_store(store)


async def test_resetting_an_unknown_projection_is_not_found(target: SqlTarget) -> None:
    with pytest.raises(ProjectionNotFound):
        await target.reset("nothing_here")


async def test_rebuild_reports_progress_until_caught_up(
    store: EventStore, target: SqlTarget
) -> None:
    await append_all(store, random_events(random.Random(10), 2_000))
    seen = []

    await rebuild(
        OrderSummary(),
        target,
        Source("orders", store, registry),
        batch_size=100,
        on_progress=seen.append,
    )

    assert seen
    assert seen[-1].lag_events == 0
    assert seen[-1].sources[0].position > 0
