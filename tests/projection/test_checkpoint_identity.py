"""A projection's checkpoints are bound to the store they count, on every target
(issue 9, defect 13).

A service keeps its views while its store is replaced (a wiped SQLite file, a move to a
PostgreSQL schema). The view holds the old log's effects and its checkpoint counts the
old log: continuing would skip the new store's first events, starting over would apply
them on top of the old ones. The runner refuses with ``CheckpointMismatch``, writes
nothing, and a rebuild from the new store replaces the view.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from eventcore import Checkpoint, EventStore, StoredEvent, StoreUnavailable
from eventcore.projection import (
    CheckpointMismatch,
    MemoryTarget,
    MemoryTransaction,
    Projection,
    ProjectionRunner,
    Source,
    SqliteTarget,
    handles,
    rebuild,
)
from eventcore.projection.target import Batch, Target
from tests.backends import BACKENDS, POSTGRES_URL, skip_or_fail, unavailable_reason
from tests.projection.conftest import table
from tests.projection.orders import NoteAdded, OrderPlaced, OrderShipped, append_all, registry
from tests.projection.orders import random_events as orders
from tests.service_stores import ServiceStores

SOURCE = "orders"
#: Bounds a wait that only a defect makes long (a runner that should have refused).
PATIENCE = 15.0


class Applied(Projection):
    """Records the id of every event it applies; applying one twice fails on SQL."""

    name = "applied"
    tables = ("applied",)

    def setup(self, tx: Any) -> None:
        if isinstance(tx, MemoryTransaction):
            tx.state["ids"] = []
        else:
            tx.execute("CREATE TABLE {applied} (event_id TEXT PRIMARY KEY)")

    @handles(OrderPlaced, OrderShipped, NoteAdded)
    def record(self, tx: Any, event: object, stored: StoredEvent) -> None:
        if isinstance(tx, MemoryTransaction):
            tx.state["ids"].append(str(stored.event_id))
        else:
            tx.execute("INSERT INTO {applied} VALUES (?)", (str(stored.event_id),))


class Targets:
    """Opens (and reopens) the test's target: a ``MemoryTarget``, a SQLite file or a
    PostgreSQL schema."""

    def __init__(self, kind: str, directory: Path) -> None:
        self.kind = kind
        self._directory = directory
        self._schema = f"test_views_{uuid.uuid4().hex[:12]}"
        self._memory = MemoryTarget()
        self._opened: list[Target] = []

    async def open(self) -> Target:
        target: Target
        if self.kind == "memory":
            return self._memory
        if self.kind == "sqlite":
            target = await SqliteTarget.open(self._directory / "views.db")
        else:
            from eventcore.projection.postgres import PostgresTarget

            target = await PostgresTarget.open(f"{POSTGRES_URL}?schema={self._schema}")
        self._opened.append(target)
        return target

    async def close(self) -> None:
        for target in self._opened:
            await target.aclose()
        if self.kind == "postgres":
            import psycopg

            async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as a:
                await a.execute(f'DROP SCHEMA IF EXISTS "{self._schema}" CASCADE')


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def targets(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Targets]:
    if request.param == "postgres":
        reason = unavailable_reason(BACKENDS["postgres"])
        if reason is not None:
            skip_or_fail(reason)
    opened = Targets(request.param, tmp_path)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def stores(tmp_path: Path) -> AsyncIterator[ServiceStores]:
    async with ServiceStores.in_directory(tmp_path) as opened:
        yield opened


async def applied(target: Target) -> list[str]:
    """The ids the live version has applied, sorted."""
    if isinstance(target, MemoryTarget):
        return sorted(target.state("applied")["ids"])
    return sorted(str(row[0]) for row in await table(target, "SELECT event_id FROM applied"))  # type: ignore[arg-type]


async def event_ids(store: EventStore) -> list[str]:
    return sorted([str(event.event_id) async for batch in store.read_all() for event in batch])


async def run(target: Target, store: EventStore) -> ProjectionRunner:
    runner = ProjectionRunner(Applied(), target, Source(SOURCE, store, registry))
    await runner.catch_up()
    return runner


async def live_checkpoint(target: Target) -> Checkpoint:
    (version,) = [v.version for v in await target.versions("applied") if v.state == "live"]
    return (await target.checkpoints("applied", version))[SOURCE]


async def test_a_view_built_from_a_replaced_store_is_refused_and_left_as_it_was(
    targets: Targets, stores: ServiceStores
) -> None:
    target = await targets.open()
    old = await stores.sqlite()
    await append_all(old, orders(random.Random(1), 50))
    await run(target, old)
    built = await applied(target)
    assert built == await event_ids(old)
    before = await live_checkpoint(target)
    old_id = await old.store_id()

    new = await stores.wiped(old)
    # More events than the checkpoint: no look at positions alone can tell.
    await append_all(new, orders(random.Random(2), 80))
    runner = ProjectionRunner(Applied(), target, Source(SOURCE, new, registry))
    with pytest.raises(CheckpointMismatch, match="rebuild") as refused:
        # Bounded: a runner that does not refuse follows the log for ever.
        async with asyncio.timeout(PATIENCE):
            await runner.run()

    assert refused.value.checkpoint == Checkpoint(position=50, store_id=old_id)
    assert refused.value.store_id == await new.store_id()
    assert refused.value.source == SOURCE
    assert before == Checkpoint(position=50, store_id=old_id)
    assert await live_checkpoint(target) == before
    assert await applied(target) == built


async def test_a_rebuild_from_the_new_store_replaces_the_view(
    targets: Targets, stores: ServiceStores
) -> None:
    target = await targets.open()
    old = await stores.sqlite()
    await append_all(old, orders(random.Random(3), 60))
    await run(target, old)
    new = await stores.postgres()
    await append_all(new, orders(random.Random(4), 25))

    await rebuild(Applied(), target, Source(SOURCE, new, registry))
    await append_all(new, orders(random.Random(5), 10))
    await run(target, new)  # the live runner carries on from the rebuilt checkpoint

    assert await applied(target) == await event_ids(new)
    assert await live_checkpoint(target) == Checkpoint(position=35, store_id=await new.store_id())


async def _legacy_checkpoint(target: Target, elsewhere: EventStore, position: int) -> None:
    """A live version whose checkpoint was saved without a store id, as before checkpoints
    kept one: the batch of ``elsewhere``'s first ``position`` events, committed as an
    earlier runner did."""
    projection = Applied()
    version = await target.live_version(projection)
    events = [event async for batch in elsewhere.read_all(limit=position) for event in batch]
    handlers = projection.handlers_for(SOURCE)
    await target.commit(projection, version, Batch(SOURCE, events, handlers, registry))
    assert await live_checkpoint(target) == Checkpoint(position=position)


async def test_a_legacy_checkpoint_above_the_head_is_another_log_and_refused(
    targets: Targets, stores: ServiceStores
) -> None:
    target = await targets.open()
    other = await stores.postgres()
    await append_all(other, orders(random.Random(6), 70))
    await _legacy_checkpoint(target, other, 70)
    store = await stores.sqlite()
    await append_all(store, orders(random.Random(7), 30))

    runner = ProjectionRunner(Applied(), target, Source(SOURCE, store, registry))
    with pytest.raises(CheckpointMismatch, match="only up to position 30"):
        async with asyncio.timeout(PATIENCE):
            await runner.run()

    assert await live_checkpoint(target) == Checkpoint(position=70)


async def test_a_legacy_checkpoint_within_the_log_is_continued_and_bound_at_once(
    targets: Targets, stores: ServiceStores
) -> None:
    target = await targets.open()
    store = await stores.sqlite()
    await append_all(store, orders(random.Random(8), 40))
    await _legacy_checkpoint(target, store, 40)

    await run(target, store)  # nothing new to apply

    # Bound now: had the store been replaced before the next event, the next run would
    # see a checkpoint of another store instead of a position to trust.
    assert await live_checkpoint(target) == Checkpoint(position=40, store_id=await store.store_id())
    await append_all(store, orders(random.Random(9), 15))
    await run(target, store)
    assert await applied(target) == await event_ids(store)  # each once: the SQL key holds


@pytest.mark.parametrize("targets", ["sqlite", "postgres"], indirect=True)
async def test_a_target_of_the_previous_schema_keeps_its_view_and_checkpoint(
    targets: Targets, stores: ServiceStores
) -> None:
    target = await targets.open()
    store = await stores.sqlite()
    await append_all(store, orders(random.Random(10), 45))
    await _legacy_checkpoint(target, store, 45)

    def downgrade(run_sql: Any) -> None:
        # Back to the bookkeeping as it was before checkpoints kept their store.
        run_sql("ALTER TABLE eventcore_checkpoints DROP COLUMN store_id")
        run_sql("DROP TABLE eventcore_target_schema")

    await target._call(lambda: target._transaction(downgrade, None))  # type: ignore[attr-defined]
    built = await applied(target)
    await target.aclose()

    reopened = await targets.open()
    assert await live_checkpoint(reopened) == Checkpoint(position=45)
    assert await applied(reopened) == built == await event_ids(store)
    await append_all(store, orders(random.Random(11), 5))
    await run(reopened, store)
    assert await applied(reopened) == await event_ids(store)
    assert await live_checkpoint(reopened) == Checkpoint(
        position=50, store_id=await store.store_id()
    )
    versions = await table(reopened, "SELECT version FROM eventcore_target_schema")  # type: ignore[arg-type]
    assert versions == [(1,), (2,)]


@pytest.mark.parametrize("targets", ["sqlite", "postgres"], indirect=True)
async def test_a_target_of_a_newer_schema_is_refused(targets: Targets) -> None:
    target = await targets.open()

    def from_the_future(run_sql: Any) -> None:
        run_sql("INSERT INTO eventcore_target_schema (version, applied_at) VALUES (99, 0)")

    await target._call(lambda: target._transaction(from_the_future, None))  # type: ignore[attr-defined]
    await target.aclose()

    with pytest.raises(StoreUnavailable, match="newer"):
        await targets.open()
