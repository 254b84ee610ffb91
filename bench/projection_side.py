"""The read side's workloads (eventcore only: neither eventsourcing nor the raw driver has
an equivalent measured here).

h: catch-up of a populated log into a SQLite projection table (events/s).
i: live latency, append → projection commit, p99 in ms, one append at a time.

On ``--backend postgres`` i uses a PostgreSQL target beside the store. Directly:

    python bench/projection_side.py i postgresql://postgres@127.0.0.1:5432/test

measures i on PostgreSQL five times (store and target in fresh schemas, dropped after).
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

if __package__ in {None, ""}:  # run as a script: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Context, Stopwatch
from eventcore import (
    Event,
    EventRegistry,
    EventStore,
    Projection,
    ProjectionRunner,
    Source,
    SqliteTarget,
    SqlTransaction,
    StoredEvent,
    StreamId,
    handles,
    open_store,
)
from eventcore.projection.target import Batch, Target

__all__ = ["run"]

registry = EventRegistry()


@registry.register
class ItemAdded(Event):
    cart: str
    price: int


class CartTotals(Projection):
    """One upsert per event: the typical shape of a summary table."""

    name = "cart_totals"
    tables = ("carts",)

    def setup(self, tx: SqlTransaction) -> None:
        tx.execute(
            "CREATE TABLE {carts} (cart TEXT PRIMARY KEY, items INTEGER NOT NULL,"
            " total INTEGER NOT NULL)"
        )

    @handles(ItemAdded)
    def added(self, tx: SqlTransaction, event: ItemAdded, stored: StoredEvent) -> None:
        tx.execute(
            "INSERT INTO {carts} VALUES (?, 1, ?) ON CONFLICT (cart) DO UPDATE"
            " SET items = {carts}.items + 1, total = {carts}.total + excluded.total",
            (event.cart, event.price),
        )


async def populate(store: EventStore, events: int, per_append: int = 1_000) -> None:
    for start in range(0, events, per_append):
        stream = StreamId(f"cart-log-{start // per_append}")
        chunk = [
            registry.encode(ItemAdded(cart=f"cart-{n % 10_000}", price=n % 100))
            for n in range(start, min(start + per_append, events))
        ]
        await store.append({stream: chunk}, expected={stream: 0})


async def h_projection_catch_up(ctx: Context) -> float:
    count = ctx.sizes.projection_events
    url = ctx.backend.eventcore_url(ctx.workdir)
    cached = ctx.cache_dir / f"h-{count}.db"
    if ctx.backend.name == "sqlite":
        # The populated log is built once per run and copied for each repetition.
        if not cached.exists():
            async with await open_store(ctx.backend.file_url(cached, "OFF")) as store:  # type: ignore[attr-defined]
                await populate(store, count)
        for suffix in ("", "-wal", "-shm"):
            if Path(f"{cached}{suffix}").exists():  # noqa: ASYNC240 (untimed set-up)
                shutil.copy(f"{cached}{suffix}", ctx.workdir / f"eventcore.db{suffix}")
    stopwatch = Stopwatch()
    async with await open_store(url) as store:
        if ctx.backend.name != "sqlite":
            await populate(store, count)
        async with await SqliteTarget.open(ctx.workdir / "views.db") as target:
            runner = ProjectionRunner(
                CartTotals(), target, Source("carts", store, registry), batch_size=5_000
            )
            with stopwatch.running():
                await runner.catch_up()
    return stopwatch.rate(count)


class _Timed:
    """A target that notes when each batch's commit returned."""

    def __init__(self, inner: Target) -> None:
        self.inner = inner
        self.committed = 0
        self.moved = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def commit(self, projection: Projection, version: int, batch: Batch) -> None:
        await self.inner.commit(projection, version, batch)
        self.committed = batch.position
        self.moved.set()


async def measure_latency(store: EventStore, target: Target, samples: int) -> float:
    timed = _Timed(target)
    runner = ProjectionRunner(
        CartTotals(),
        timed,
        Source("carts", store, registry),
        poll_interval=5.0,  # type: ignore[arg-type]
    )
    latencies: list[float] = []
    stream = StreamId("cart-live")
    async with asyncio.TaskGroup() as group:
        group.create_task(runner.run())
        await runner.caught_up()
        for n in range(samples):
            event = registry.encode(ItemAdded(cart=f"cart-{n % 100}", price=1))
            timed.moved.clear()
            started = time.perf_counter()
            result = await store.append({stream: [event]}, expected={stream: n})
            while timed.committed < result.last_position:
                await timed.moved.wait()
                timed.moved.clear()
            latencies.append((time.perf_counter() - started) * 1000)
        runner.stop()
    return statistics.quantiles(latencies, n=100)[98]


async def i_live_latency_p99(ctx: Context) -> float:
    samples = ctx.sizes.latency_samples
    if ctx.backend.name == "postgres":
        # The target in the same database as the store, as a service on PostgreSQL would
        # have it: its own schema under the run's prefix (``finish`` drops what is left).
        views = ctx.backend.schema(f"{ctx.workdir.name}-views")  # type: ignore[attr-defined]
        return await i_on_postgres(ctx.backend.eventcore_url(ctx.workdir), views, samples)
    async with (
        await open_store(ctx.backend.eventcore_url(ctx.workdir)) as store,
        await SqliteTarget.open(ctx.workdir / "views.db") as target,
    ):
        return await measure_latency(store, target, samples)


async def i_on_postgres(store_url: str, views: str, samples: int) -> float:
    """i with the store at ``store_url`` and the target in schema ``views`` (dropped after)."""
    import psycopg

    from eventcore.projection.postgres import PostgresTarget

    server = store_url.split("?", 1)[0]
    try:
        async with (
            await open_store(store_url) as store,
            await PostgresTarget.open(f"{server}?schema={views}") as target,
        ):
            return await measure_latency(store, target, samples)
    finally:
        async with await psycopg.AsyncConnection.connect(server, autocommit=True) as admin:
            await admin.execute(f'DROP SCHEMA IF EXISTS "{views}" CASCADE')


async def _i_standalone(url: str, samples: int) -> float:
    import psycopg

    schema = f"bench_i_{uuid.uuid4().hex[:10]}"
    try:
        return await i_on_postgres(f"{url}?schema={schema}", f"{schema}_views", samples)
    finally:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as admin:
            await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


WORKLOADS = {
    "h_projection_catch_up": h_projection_catch_up,
    "i_live_latency_p99": i_live_latency_p99,
}


def run(name: str, ctx: Context) -> float:
    return asyncio.run(WORKLOADS[name](ctx))


if __name__ == "__main__":
    figures = [asyncio.run(_i_standalone(sys.argv[2], 1_000)) for _ in range(5)]
    print(
        f"i_live_latency_p99 postgres: median {statistics.median(figures):.2f} ms "
        f"of {[round(f, 2) for f in figures]}"
    )
