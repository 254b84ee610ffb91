"""Projection leadership with real processes: two instances of a service keep the same
projection as a single-leader worker (``Singleton``); while events are appended, the
leader is ``kill -9``-ed again and again and started again as a follower. Each time the
other instance takes over (after the lease's ttl) and continues from the checkpoint.
Then the leader is frozen (``SIGSTOP``) until the other has taken over, and thawed: it
steps down. In the end the view equals a fresh fold of the log: no event applied twice,
none skipped.

On the embedded default (SQLite store, target and leases in the SQLite bus file), and
on the servers (PostgreSQL store and target, leases in NATS KV).
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from eventcore import EventStore, open_store
from eventcore.messaging import open_bus
from eventcore.projection import open_target
from eventcore.projection.target import Target
from tests.backends import BACKENDS, POSTGRES_URL, skip_or_fail, unavailable_reason
from tests.messaging.buses import NATS_URL, drop_nats_namespace
from tests.processes import ChildProcess
from tests.projection.orders import (
    NoteAdded,
    OrderSummary,
    append_all,
    fold_store,
    random_events,
)

# Each kill waits out a lease and restarts a process that imports the package.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

#: Seconds the lease lives: how long a takeover after a kill takes, at most.
TTL = 1.5
KILLS = 3
PER_APPEND = 40
#: Only a hang reaches this.
PATIENCE = 120.0
NAME = OrderSummary.name


async def checkpoint(target: Target) -> int:
    progress = [p for p in await target.progress(NAME) if p.source == "orders"]
    return progress[0].position if progress else 0


async def last_handled(store: EventStore) -> int:
    """The position the checkpoint reaches once every handled event is applied."""
    last = 0
    async for batch in store.read_all():
        for event in batch:
            if event.type != NoteAdded.__name__:
                last = event.position
    return last


async def produce(store: EventStore, done: asyncio.Event) -> int:
    """Append a few events at a time until ``done``; how many appends it made."""
    rng = random.Random(14)
    appends = 0
    while not done.is_set():
        await append_all(store, random_events(rng, PER_APPEND), per_append=PER_APPEND)
        appends += 1
        await asyncio.sleep(0.02)
    return appends


async def until(what: str, condition: object, *instances: ChildProcess) -> None:
    try:
        async with asyncio.timeout(PATIENCE):
            # Progress in another process's database: nothing to wait on but a look.
            while not await condition():  # type: ignore[operator]  # noqa: ASYNC110
                await asyncio.sleep(0.05)
    except TimeoutError:
        pytest.fail(f"never: {what}\n" + "".join(i.tail() for i in instances))


async def takes_over(instance: ChildProcess, *others: ChildProcess) -> None:
    try:
        async with asyncio.timeout(PATIENCE):
            while (line := await instance.line()) != b"leader":
                assert line, f"{instance.name} ended"
    except (TimeoutError, AssertionError) as failure:
        pytest.fail(f"{instance.name} never led: {failure}\n{instance.tail()}")


async def steps_down(instance: ChildProcess) -> None:
    try:
        async with asyncio.timeout(PATIENCE):
            line = await instance.line()
    except TimeoutError:
        pytest.fail(f"{instance.name} never stepped down\n{instance.tail()}")
    # expired (it saw the time pass) or taken (its renewal saw the other's claim); never
    # the worker's failure: a batch refused after the lease is not one.
    assert line in (b"follower expired", b"follower taken"), (line, instance.tail())


async def run_leadership_test(
    tmp_path: Path, store_url: str, target_url: str, bus_url: str
) -> None:
    async with await open_store(store_url) as store:
        target = await open_target(target_url)
        bus = await open_bus(bus_url)  # created here, before two processes race to
        await bus.aclose()
        instances = [
            ChildProcess(
                "tests.projection.leader_child",
                store_url,
                target_url,
                bus_url,
                str(TTL),
                name=f"instance-{name}",
                logs=tmp_path,
            )
            for name in "ab"
        ]
        done = asyncio.Event()
        producing: asyncio.Task[int] | None = None
        try:
            leader, follower = instances
            await leader.start()
            await follower.start()
            assert b"leader" in leader.output, leader.tail()
            assert b"leader" not in follower.output, follower.tail()

            producing = asyncio.create_task(produce(store, done))
            for _ in range(KILLS):
                # The leader has applied something since it took over, and events are
                # still coming when it dies.
                mark = await checkpoint(target)

                async def moved(mark: int = mark) -> bool:
                    return await checkpoint(target) > mark

                await until("the leader applies events", moved, leader)
                assert not producing.done()
                await leader.kill()
                await takes_over(follower)
                await leader.start()
                assert b"leader" not in leader.output, leader.tail()
                leader, follower = follower, leader
            # The case a lease alone cannot settle: the leader frozen past its lease
            # while the other takes over, then thawed. It must notice and stop, and
            # whatever it was committing when it froze is refused by the target.
            mark = await checkpoint(target)

            async def moved_again(mark: int = mark) -> bool:
                return await checkpoint(target) > mark

            await until("the leader applies events", moved_again, leader)
            leader.pause()
            try:
                await takes_over(follower)
            finally:
                leader.resume()
            await steps_down(leader)
            leader, follower = follower, leader

            done.set()
            appends = await producing
            head = await last_handled(store)

            async def caught_up() -> bool:
                return await checkpoint(target) >= head

            await until("the last leader catches up", caught_up, leader, follower)
            rows = await target._call(  # type: ignore[attr-defined]
                lambda: target._transaction(  # type: ignore[attr-defined]
                    lambda run: sorted(tuple(r) for r in run("SELECT * FROM orders").fetchall()),
                    None,
                )
            )
            assert rows == await fold_store(store)
            assert appends > KILLS

            assert await follower.stop() == 0, follower.tail()
            assert await leader.stop() == 0, leader.tail()
            assert b"follower released" in leader.output, leader.tail()
        finally:
            done.set()
            if producing is not None:
                await asyncio.gather(producing, return_exceptions=True)
            for instance in instances:
                instance.ensure_dead()
            await target.aclose()
        assert [i.kills for i in instances] in ([2, 1], [1, 2])


async def test_sqlite_leader_killed_again_and_again_the_other_continues_from_the_checkpoint(
    tmp_path: Path,
) -> None:
    await run_leadership_test(
        tmp_path,
        f"sqlite://{tmp_path.as_posix()}/events.db",
        f"sqlite://{tmp_path.as_posix()}/views.db",
        f"sqlite://{tmp_path.as_posix()}/bus.db",
    )


@pytest.fixture
async def servers() -> AsyncIterator[tuple[str, str, str]]:
    """A PostgreSQL schema each for the store and the view, and a NATS namespace."""
    reason = unavailable_reason(BACKENDS["postgres"])
    if reason is not None:
        skip_or_fail(reason)
    import nats
    import psycopg

    try:
        client = await nats.connect(NATS_URL, connect_timeout=3, allow_reconnect=False)
    except Exception as error:  # any failure to connect means: no server to test against
        skip_or_fail(f"cannot reach NATS at {NATS_URL}: {type(error).__name__}: {error}")
    await client.close()
    unique = uuid.uuid4().hex[:10]
    schema, namespace = f"test_lead_{unique}", f"lead{unique}"
    try:
        yield (
            f"{POSTGRES_URL}?schema={schema}",
            f"{POSTGRES_URL}?schema={schema}_views",
            f"{NATS_URL}?namespace={namespace}",
        )
    finally:
        await drop_nats_namespace(namespace)
        async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as admin:
            await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}_views" CASCADE')


async def test_postgres_and_nats_leader_killed_again_and_again_the_other_continues(
    tmp_path: Path, servers: tuple[str, str, str]
) -> None:
    await run_leadership_test(tmp_path, *servers)
