"""ProjectionRunner on SQL targets: catch up, follow live in order, several sources."""

from __future__ import annotations

import asyncio
import random

import pytest

from eventcore import Checkpoint, EventStore, StoredEvent
from eventcore.projection import (
    Projection,
    ProjectionRunner,
    Source,
    SqlTransaction,
    handles,
)
from eventcore.projection._sql_target import SqlTarget
from tests.projection.conftest import table
from tests.projection.orders import (
    NoteAdded,
    OrderPlaced,
    OrderSummary,
    append_all,
    fold_store,
    random_events,
    registry,
)


class Ledger(Projection):
    """Records every event it applies, keyed by (source, position): a repeat fails."""

    name = "ledger"
    tables = ("ledger",)

    def setup(self, tx: SqlTransaction) -> None:
        tx.execute(
            "CREATE TABLE {ledger} (source TEXT NOT NULL, position BIGINT NOT NULL,"
            " seq INTEGER NOT NULL, PRIMARY KEY (source, position))"
        )

    @handles(OrderPlaced, NoteAdded)
    def record(self, tx: SqlTransaction, event: object, stored: StoredEvent) -> None:
        # seq is the order of application: the count of rows already there.
        row = tx.fetchone("SELECT count(*) FROM {ledger}")
        assert row is not None
        tx.execute(
            "INSERT INTO {ledger} VALUES (?, ?, ?)", ("orders", stored.position, int(row[0]))
        )


async def test_a_runner_catches_up_to_the_fold_of_the_log(
    store: EventStore, target: SqlTarget
) -> None:
    await append_all(store, random_events(random.Random(1), 3_000))
    runner = ProjectionRunner(OrderSummary(), target, Source("orders", store, registry))

    await runner.catch_up()

    assert await table(target, "SELECT * FROM orders") == await fold_store(store)
    assert runner.status().lag_events == 0


async def test_events_appended_while_the_runner_follows_are_applied_once_in_order(
    store: EventStore, target: SqlTarget
) -> None:
    rng = random.Random(2)
    runner = ProjectionRunner(
        Ledger(), target, Source("orders", store, registry), batch_size=50, poll_interval=60.0
    )
    async with asyncio.TaskGroup() as group:
        group.create_task(runner.run())
        for _ in range(30):
            await append_all(store, random_events(rng, rng.randrange(1, 40)), per_append=7)
        await runner.caught_up()
        runner.stop()

    rows = await table(target, "SELECT position, seq FROM ledger ORDER BY position")
    handled = [
        e.position
        async for batch in store.read_all(types=["OrderPlaced", "NoteAdded"])
        for e in batch
    ]
    assert [position for position, _ in rows] == handled
    assert [seq for _, seq in rows] == list(range(len(handled)))  # applied in log order


async def test_a_view_over_two_services_keeps_one_checkpoint_per_source(
    make_store: object, target: SqlTarget
) -> None:
    orders: EventStore = await make_store()  # type: ignore[operator]
    more: EventStore = await make_store()  # type: ignore[operator]
    await append_all(orders, random_events(random.Random(3), 500))
    await append_all(more, random_events(random.Random(4), 300, prefix="legacy-"))
    runner = ProjectionRunner(
        OrderSummary(),
        target,
        [Source("orders", orders, registry), Source("legacy", more, registry)],
    )

    await runner.catch_up()

    version = runner.version
    assert version is not None
    assert await target.checkpoints("order_summary", version) == {
        "orders": Checkpoint(
            position=await orders.last_position(), store_id=await orders.store_id()
        ),
        "legacy": Checkpoint(position=await more.last_position(), store_id=await more.store_id()),
    }
    both = {(row[0], row[1]): row for row in [*await fold_store(orders), *await fold_store(more)]}
    assert len(await table(target, "SELECT * FROM orders")) == len({order for order, _ in both})


async def test_a_restarted_runner_continues_from_its_checkpoint(
    store: EventStore, target: SqlTarget
) -> None:
    rng = random.Random(5)
    await append_all(store, random_events(rng, 1_000))
    await ProjectionRunner(OrderSummary(), target, Source("orders", store, registry)).catch_up()
    await append_all(store, random_events(rng, 1_000))

    await ProjectionRunner(OrderSummary(), target, Source("orders", store, registry)).catch_up()

    assert await table(target, "SELECT * FROM orders") == await fold_store(store)


async def test_a_failing_handler_stops_the_runner_and_writes_nothing_of_its_batch(
    store: EventStore, target: SqlTarget
) -> None:
    class Broken(OrderSummary):
        @handles(OrderPlaced)
        def placed(self, tx: SqlTransaction, event: OrderPlaced, stored: StoredEvent) -> None:
            super().placed(tx, event, stored)
            if stored.position == 7:
                raise RuntimeError("bug in a handler")

    await append_all(
        store, [OrderPlaced(order_id=f"o{n}", customer="c", amount=1) for n in range(10)]
    )
    runner = ProjectionRunner(Broken(), target, Source("orders", store, registry), batch_size=5)

    with pytest.raises(RuntimeError, match="bug in a handler"):
        await runner.run()

    assert len(await table(target, "SELECT * FROM orders")) == 5  # the first batch only


async def test_two_runners_of_one_projection_overlapping_never_apply_an_event_twice(
    store: EventStore, target: SqlTarget, caplog: pytest.LogCaptureFixture
) -> None:
    # What a lease cannot exclude (a leader frozen mid-commit, thawed after the next one
    # started) looks like this: two runners that both loaded the same checkpoint. The
    # target refuses every batch read after a checkpoint that moved; the refused runner
    # reloads and goes on, so the view is the fold whoever wins each batch.
    first, second = (
        ProjectionRunner(OrderSummary(), target, Source("orders", store, registry))
        for _ in range(2)
    )
    runs = [asyncio.create_task(runner.run()) for runner in (first, second)]
    await asyncio.gather(first.ready(), second.ready())
    await append_all(store, random_events(random.Random(5), 2_000), per_append=100)

    async with asyncio.timeout(60):  # a guard against hanging, not a speed limit
        await asyncio.gather(first.caught_up(), second.caught_up())
    for runner in (first, second):
        runner.stop()
    await asyncio.gather(*runs)

    assert await table(target, "SELECT * FROM orders") == await fold_store(store)
    assert any("another runner is applying" in r.getMessage() for r in caplog.records)
