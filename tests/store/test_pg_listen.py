"""PostgreSQL wake-ups: another process's append reaches a waiter through LISTEN/NOTIFY."""

from __future__ import annotations

import asyncio

import pytest

from eventcore.store import EventStore, open_store
from eventcore.store.postgres._listen import application_name
from eventcore.types import StreamId
from tests.backends import POSTGRES_URL
from tests.builders import events

A = StreamId("a")
NEVER = 60.0


pytestmark = pytest.mark.parametrize("backend", ["postgres"], indirect=True)


async def test_an_append_by_another_store_wakes_the_waiter_through_notify(
    make_store: object,
) -> None:
    store: EventStore = await make_store()  # type: ignore[operator]
    schema = store.schema  # type: ignore[attr-defined]
    other = await open_store(f"{POSTGRES_URL}?schema={schema}")
    try:
        waiter = asyncio.create_task(store.wait_for_events(0, NEVER))

        await other.append({A: events(1)}, expected={A: 0})

        assert await waiter is True
    finally:
        await other.aclose()


async def test_the_listener_resubscribes_after_its_connection_is_killed(
    make_store: object,
) -> None:
    import psycopg

    store: EventStore = await make_store()  # type: ignore[operator]
    schema = store.schema  # type: ignore[attr-defined]
    other = await open_store(f"{POSTGRES_URL}?schema={schema}")
    try:
        await other.append({A: events(1)}, expected={A: 0})
        assert await store.wait_for_events(0, NEVER) is True  # listening now
        async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as admin:
            cursor = await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = %s",
                (application_name(f"{schema}_events"),),
            )
            assert await cursor.fetchall() == [(True,)]
        waiter = asyncio.create_task(store.wait_for_events(1, NEVER))

        await other.append({A: events(1)}, expected={A: 1})

        assert await waiter is True
    finally:
        await other.aclose()
