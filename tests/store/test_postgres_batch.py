"""Group commit on PostgreSQL: appends share transactions, yet each one succeeds or fails alone.

Appends started together (one ``gather``) are queued in the same pass of the event loop,
so the writer takes them as one batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from eventcore.errors import ConcurrencyConflict, DuplicateEventId
from eventcore.store.postgres import PostgresStore
from eventcore.store.postgres._schema import render
from eventcore.store.protocol import AppendResult
from eventcore.types import StreamId
from tests.backends import POSTGRES_URL
from tests.builders import events, new_event, sid


@pytest.fixture
async def store(schema: str) -> AsyncIterator[PostgresStore]:
    async with await PostgresStore.open(f"{POSTGRES_URL}?schema={schema}") as opened:
        yield opened


def statements(store: PostgresStore) -> int:
    return store._writer.statements


async def test_concurrent_appends_share_few_transactions(store: PostgresStore) -> None:
    before = statements(store)

    results = await asyncio.gather(
        *(store.append({sid(f"s-{n}"): events(1)}, expected={sid(f"s-{n}"): 0}) for n in range(200))
    )

    assert statements(store) - before <= 2  # at most MAX_APPENDS=256 per transaction
    assert sorted(p for r in results for p in r.positions) == list(range(1, 201))
    assert [r.positions for r in results] == [(n,) for n in range(1, 201)]  # batch order


async def test_a_conflicting_append_fails_alone_and_the_batch_commits(
    store: PostgresStore,
) -> None:
    await store.append({sid("a"): events(1)}, expected={sid("a"): 0})
    before = statements(store)

    ok_1, stale, ok_2 = await asyncio.gather(
        store.append({sid("b"): events(2)}, expected={sid("b"): 0}),
        store.append({sid("c"): events(1)}, expected={sid("c"): 0, sid("a"): 0}),
        store.append({sid("d"): events(1)}, expected={sid("d"): 0}),
        return_exceptions=True,
    )

    assert statements(store) - before == 1
    assert isinstance(stale, ConcurrencyConflict)
    assert (stale.stream_id, stale.expected, stale.actual) == ("a", 0, 1)
    assert isinstance(ok_1, AppendResult)
    assert isinstance(ok_2, AppendResult)
    assert (ok_1.positions, ok_2.positions) == ((2, 3), (4,))  # the refused one drew none
    assert await store.stream_version(sid("c")) == 0


async def test_later_appends_in_a_batch_see_the_versions_earlier_ones_wrote(
    store: PostgresStore,
) -> None:
    stream = sid("account")

    first, second, stale = await asyncio.gather(
        store.append({stream: events(2)}, expected={stream: 0}),
        store.append({stream: events(1)}, expected={stream: 2}),
        store.append({stream: events(1)}, expected={stream: 0}),
        return_exceptions=True,
    )

    assert isinstance(first, AppendResult)
    assert isinstance(second, AppendResult)
    assert second.stream_versions == {stream: 3}
    assert isinstance(stale, ConcurrencyConflict)
    assert stale.actual == 3
    assert [e.version for e in await store.read_stream(stream)] == [1, 2, 3]


async def test_a_key_used_twice_in_one_batch_writes_once(store: PostgresStore) -> None:
    first, again = await asyncio.gather(
        store.append({sid("x"): events(1)}, expected={sid("x"): 0}, idempotency_key="k"),
        store.append({sid("y"): events(2)}, expected={sid("y"): 0}, idempotency_key="k"),
    )

    assert not first.deduplicated
    assert again.deduplicated
    assert (again.positions, again.event_ids) == (first.positions, first.event_ids)
    assert await store.stream_version(sid("y")) == 0
    assert await store.find_append("k") == again


async def test_an_event_id_taken_earlier_in_the_batch_fails_only_the_later_append(
    store: PostgresStore,
) -> None:
    shared = new_event("Shared")

    first, clash = await asyncio.gather(
        store.append({sid("x"): [shared]}, expected={sid("x"): 0}),
        store.append({sid("y"): [new_event("Other"), shared]}, expected={sid("y"): 0}),
        return_exceptions=True,
    )

    assert isinstance(first, AppendResult)
    assert isinstance(clash, DuplicateEventId)
    assert clash.event_id == shared.event_id
    assert await store.stream_version(sid("y")) == 0


async def test_batches_naming_streams_in_opposite_orders_do_not_deadlock(schema: str) -> None:
    # Two stores = two writers = two concurrent transactions on the same streams, each
    # batch naming them in the opposite order of the other's.
    url = f"{POSTGRES_URL}?schema={schema}"
    streams = [sid(f"s-{n}") for n in range(8)]

    async def writer(store: PostgresStore, order: list[StreamId]) -> int:
        written = 0
        for _ in range(15):
            versions = {s: await store.stream_version(s) for s in order}
            outcomes = await asyncio.gather(
                *(
                    store.append({s: events(1)}, expected=dict(versions))
                    for s in order  # each append names every stream, in this order
                ),
                return_exceptions=True,
            )
            for outcome in outcomes:
                if isinstance(outcome, AppendResult):
                    written += 1
                else:
                    assert isinstance(outcome, ConcurrencyConflict)
        return written

    async with (
        await PostgresStore.open(url) as one,
        await PostgresStore.open(url) as two,
    ):
        async with asyncio.timeout(60):
            counts = await asyncio.gather(
                writer(one, streams), writer(two, list(reversed(streams)))
            )
        total = sum([await one.stream_version(s) for s in streams])

    assert sum(counts) == total
    assert all(count > 0 for count in counts)


async def test_an_event_id_stored_by_a_rival_mid_batch_fails_only_its_append(
    store: PostgresStore,
) -> None:
    # A writer outside our locks holds an uncommitted row with the id; the batch's check
    # cannot see it, its insert waits, and fails when the rival commits. The batch is then
    # run once more and only the clashing append is refused.
    contested = new_event("Contested")
    async with await psycopg.AsyncConnection.connect(POSTGRES_URL) as rival:
        await rival.execute(
            render(
                "INSERT INTO __schema__.events (position, stream_id, version, event_id, type,"
                " schema_version, data, metadata) VALUES (-1, 'rival', 1, %s, 'T', 1, '', '{}')",
                store.schema,
            ),
            (contested.event_id,),
        )
        appending = asyncio.gather(
            store.append({sid("a"): events(1)}, expected={sid("a"): 0}),
            store.append({sid("b"): [contested]}, expected={sid("b"): 0}),
            store.append({sid("c"): events(1)}, expected={sid("c"): 0}),
            return_exceptions=True,
        )
        await _wait_for_a_blocked_batch(store.schema)
        await rival.commit()
        a, b, c = await appending

    assert isinstance(a, AppendResult)
    assert isinstance(c, AppendResult)
    assert isinstance(b, DuplicateEventId)
    assert b.event_id == contested.event_id
    assert await store.stream_version(sid("b")) == 0
    assert statements(store) == 2


async def _wait_for_a_blocked_batch(schema: str) -> None:
    async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as conn:
        for _ in range(1000):
            cursor = await conn.execute(
                "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND query LIKE %s AND pid <> pg_backend_pid()",
                (f'%"{schema}".append_batch%',),
            )
            if await cursor.fetchone() is not None:
                return
            await asyncio.sleep(0.01)  # polls for the batch to reach its wait
    raise AssertionError("the batch never blocked")


async def test_closing_writes_the_appends_already_queued(schema: str) -> None:
    store = await PostgresStore.open(f"{POSTGRES_URL}?schema={schema}")
    appends = [
        asyncio.ensure_future(store.append({sid(f"s-{n}"): events(1)}, expected={sid(f"s-{n}"): 0}))
        for n in range(20)
    ]
    await asyncio.sleep(0)  # the appends queue
    await store.aclose()
    results: list[Any] = await asyncio.gather(*appends)

    assert all(isinstance(r, AppendResult) for r in results)
    async with await PostgresStore.open(f"{POSTGRES_URL}?schema={schema}") as reopened:
        assert await reopened.last_position() == 20
