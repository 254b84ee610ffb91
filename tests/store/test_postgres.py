"""What only the PostgreSQL store does: its gap-free global log under concurrent writers,
idempotency under racing retries, a connection killed mid-append, migrations, schemas.

The behaviour every store shares is proven by the contract suite in this folder; the
server restart is in ``test_postgres_restart.py``.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from eventcore.errors import InvalidUrl, StoreUnavailable
from eventcore.store.postgres import PostgresStore, migrate
from eventcore.store.postgres._append_batch import BATCH_STATEMENT, batch_params
from eventcore.store.postgres._schema import MIGRATIONS, render
from eventcore.store.request import AppendRequest
from eventcore.store.url import StoreUrl
from eventcore.types import StoredEvent
from tests.backends import POSTGRES_URL, skip_or_fail
from tests.builders import events, new_event, sid
from tests.held_append import hold_append_open


async def _admin_connection() -> psycopg.AsyncConnection[Any]:
    try:
        return await psycopg.AsyncConnection.connect(
            POSTGRES_URL, autocommit=True, connect_timeout=5
        )
    except psycopg.OperationalError as error:
        reason = f"PostgreSQL unavailable at {POSTGRES_URL}: {error}"
        skip_or_fail(reason, "the postgres tests must run")


@pytest.fixture
async def admin() -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """A plain autocommit connection to the test server, for looking behind the store."""
    conn = await _admin_connection()
    async with conn:
        yield conn


@pytest.fixture
async def schemas(admin: psycopg.AsyncConnection[Any]) -> AsyncIterator[list[str]]:
    """Fresh schema names for the test; every one the test used is dropped afterwards."""
    names = [f"test_{uuid.uuid4().hex[:16]}" for _ in range(3)]
    yield names
    for name in names:
        await admin.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def url_for(schema: str, options: str = "") -> str:
    return f"{POSTGRES_URL}?schema={schema}{options}"


@pytest.fixture
async def store(schemas: list[str]) -> AsyncIterator[PostgresStore]:
    async with await PostgresStore.open(url_for(schemas[0])) as opened:
        yield opened


async def whole_log(store: PostgresStore) -> list[StoredEvent]:
    return [event async for batch in store.read_all(batch_size=5000) for event in batch]


# --- the global log never skips ----------------------------------------------------------

WRITERS = 8
EVENTS_PER_ROUND = 20_000


async def _write(store: PostgresStore, writer: int, quota: int, round_: int) -> None:
    """Append ``quota`` events over the writer's own two streams, 1-50 per stream at a time."""
    rng = random.Random(writer * 1000 + round_)  # seeded: reproducible interleavings
    mine = [sid(f"r{round_}-w{writer}-a"), sid(f"r{round_}-w{writer}-b")]
    versions = dict.fromkeys(mine, 0)
    while quota > 0:
        written = mine if rng.random() < 0.3 else [rng.choice(mine)]
        writes = {}
        for stream in written:
            count = min(quota - sum(map(len, writes.values())), rng.randint(1, 50))
            if count > 0:
                writes[stream] = events(count)
        result = await store.append(writes, expected=dict(versions))
        versions.update(result.stream_versions)
        quota -= len(result.event_ids)


async def _tail(store: PostgresStore, writing: asyncio.Task[None], after: int) -> list[StoredEvent]:
    """Follow the log from ``after`` until the writers are done and the head is reached."""
    seen: list[StoredEvent] = []
    checkpoint = after
    while True:
        done = writing.done()  # read before the pass: a pass after "done" sees everything
        async for batch in store.read_all(after=checkpoint, batch_size=500):
            seen.extend(batch)
            checkpoint = batch[-1].position
        if done:
            return seen
        # A polling interval between passes over the head, not synchronisation.
        await asyncio.sleep(0.005)


async def test_tailing_reader_sees_every_event_once_in_order_under_concurrent_writers(
    store: PostgresStore,
) -> None:
    for round_ in range(3):
        start = await store.last_position()
        writing = asyncio.ensure_future(
            asyncio.gather(
                *(
                    _write(store, writer, EVENTS_PER_ROUND // WRITERS, round_)
                    for writer in range(WRITERS)
                )
            )
        )
        tailed = await _tail(store, writing, start)
        await writing

        final = [e async for batch in store.read_all(after=start, batch_size=5000) for e in batch]
        assert len(final) == EVENTS_PER_ROUND
        assert len({event.event_id for event in tailed}) == len(tailed)
        assert [(e.position, e.event_id) for e in tailed] == [
            (e.position, e.event_id) for e in final
        ]


async def test_reader_waits_for_a_transaction_held_open_and_then_sees_everything(
    store: PostgresStore,
) -> None:
    await store.append({sid("before"): events(2)}, expected={sid("before"): 0})
    checkpoint = await store.last_position()
    holder = await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True)
    async with holder:
        held = await hold_append_open(holder, store.schema, sid("held"))
        # Later appends commit with later positions while the held one is in flight.
        for n in range(20):
            await store.append({sid(f"later-{n}"): events(2)}, expected={sid(f"later-{n}"): 0})

        seen: list[StoredEvent] = []

        async def tail() -> None:
            async for batch in store.read_all(after=checkpoint, batch_size=7):
                seen.extend(batch)

        reading = asyncio.create_task(tail())
        await asyncio.sleep(2)  # holds the transaction open: the point of this test
        assert seen == [], "no event may pass the open transaction's positions"
        assert not reading.done()
        await holder.execute("COMMIT")
        await reading

    full = await whole_log(store)
    assert [e.position for e in seen] == [e.position for e in full if e.position > checkpoint]
    assert [e.event_id for e in seen[:3]] == [e.event_id for e in held]
    assert len(seen) == 3 + 20 * 2


async def test_append_refuses_a_transaction_that_already_has_an_xid(
    store: PostgresStore,
) -> None:
    # The ordering argument needs the xid assigned under the position mutex.
    request = AppendRequest.build({sid("s"): events(1)}, {sid("s"): 0}, None, 1024)
    async with await psycopg.AsyncConnection.connect(POSTGRES_URL) as conn:
        await conn.execute("SELECT pg_current_xact_id()")
        with pytest.raises(psycopg.Error) as caught:
            await conn.execute(render(BATCH_STATEMENT, store.schema), batch_params([request]))
    assert caught.value.sqlstate == "EC001"
    assert await store.last_position() == 0


async def test_the_settled_position_stays_below_an_append_in_flight_until_it_commits(
    store: PostgresStore,
) -> None:
    await store.append({sid("before"): events(2)}, expected={sid("before"): 0})
    holder = await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True)
    async with holder:
        await hold_append_open(holder, store.schema, sid("held"))  # positions 3-5
        later = await store.append({sid("later"): events(2)}, expected={sid("later"): 0})
        assert later.positions == (6, 7)

        assert await store.settled_position() == 2
        assert await store.last_position() == 7
        await holder.execute("COMMIT")

    assert await store.settled_position() == 7


async def test_each_append_notifies_the_schema_channel_with_its_last_position(
    store: PostgresStore,
) -> None:
    async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as conn:
        await conn.execute(f'LISTEN "{store.channel}"')
        result = await store.append({sid("s"): events(3)}, expected={sid("s"): 0})
        async with asyncio.timeout(10):
            notice = await anext(aiter(conn.notifies()))
    assert (notice.channel, notice.payload) == (store.channel, str(result.last_position))


async def test_notify_off_appends_without_notifying(schemas: list[str]) -> None:
    async with (
        await PostgresStore.open(url_for(schemas[0], "&notify=off")) as quiet,
        await PostgresStore.open(url_for(schemas[0])) as loud,
        await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as conn,
    ):
        await conn.execute(f'LISTEN "{loud.channel}"')
        await quiet.append({sid("s"): events(1)}, expected={sid("s"): 0})
        result = await loud.append({sid("s"): events(1)}, expected={sid("s"): 1})
        async with asyncio.timeout(10):
            notice = await anext(aiter(conn.notifies()))

    # Notifications arrive in commit order, so the first one heard is the loud append's.
    assert notice.payload == str(result.last_position)


# --- idempotency under racing retries ------------------------------------------------------


async def test_concurrent_retries_with_one_key_write_once(store: PostgresStore) -> None:
    stream = sid("order-1")
    attempt = events(2)

    results = await asyncio.gather(
        *(
            store.append({stream: attempt}, expected={stream: 0}, idempotency_key="pay-1")
            for _ in range(10)
        )
    )

    assert sum(not result.deduplicated for result in results) == 1
    assert {(r.positions, r.event_ids) for r in results} == {
        (results[0].positions, results[0].event_ids)
    }
    assert [e.event_id for e in await store.read_stream(stream)] == [e.event_id for e in attempt]
    assert len(await whole_log(store)) == 2


async def test_concurrent_appends_to_different_streams_with_one_key_write_once(
    store: PostgresStore,
) -> None:
    # No stream lock is shared, so the key's unique index is what keeps them apart.
    results = await asyncio.gather(
        *(
            store.append(
                {sid(f"s-{n}"): events(1)}, expected={sid(f"s-{n}"): 0}, idempotency_key="k"
            )
            for n in range(10)
        )
    )

    first = [r for r in results if not r.deduplicated]
    assert len(first) == 1
    assert all(r.positions == first[0].positions for r in results)
    assert [e.event_id for e in await whole_log(store)] == list(first[0].event_ids)
    assert len(await store.list_streams()) == 1


# --- a connection killed mid-append --------------------------------------------------------


async def _backend_waiting_in_append(admin: psycopg.AsyncConnection[Any], schema: str) -> int:
    for _ in range(500):
        cursor = await admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND query LIKE %s AND pid <> pg_backend_pid()",
            (f'%"{schema}".append_batch%',),
        )
        row = await cursor.fetchone()
        if row is not None:
            return int(row[0])
        await asyncio.sleep(0.01)  # polls for the append to reach its wait
    raise AssertionError("the append never blocked")


async def test_connection_killed_mid_append_raises_unavailable_and_writes_nothing(
    store: PostgresStore, admin: psycopg.AsyncConnection[Any]
) -> None:
    stream = sid("account")
    await store.append({stream: events(1)}, expected={stream: 0})
    attempt = events(3)
    async with await psycopg.AsyncConnection.connect(POSTGRES_URL) as blocker:
        # Lock the stream's head row: the append inserts its events, then waits to update
        # the head — killed there, it has written rows that must all vanish.
        await blocker.execute(
            render(
                "SELECT 1 FROM __schema__.streams WHERE stream_id = %s FOR UPDATE", store.schema
            ),
            (stream,),
        )
        appending = asyncio.create_task(store.append({stream: attempt}, expected={stream: 1}))
        pid = await _backend_waiting_in_append(admin, store.schema)
        await admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(StoreUnavailable) as caught:
            await appending
        await blocker.rollback()

    assert isinstance(caught.value.__cause__, psycopg.OperationalError)
    assert await store.stream_version(stream) == 1
    assert len(await whole_log(store)) == 1
    retried = await store.append({stream: attempt}, expected={stream: 1})
    assert retried.stream_versions == {stream: 4}


# --- migrations, URLs and schemas ----------------------------------------------------------


async def test_migrations_are_idempotent(schemas: list[str]) -> None:
    url = url_for(schemas[0])
    first_run = await migrate(url)
    async with await PostgresStore.open(url) as one, await PostgresStore.open(url) as two:
        await one.append({sid("s"): events(1)}, expected={sid("s"): 0})
        assert await two.stream_version(sid("s")) == 1

    assert first_run == [m.version for m in MIGRATIONS]
    assert await migrate(url) == []


async def test_concurrent_migrators_apply_each_migration_once(schemas: list[str]) -> None:
    runs = await asyncio.gather(*(migrate(url_for(schemas[0])) for _ in range(4)))

    assert sorted(v for run in runs for v in run) == [m.version for m in MIGRATIONS]


async def test_two_schemas_are_isolated(schemas: list[str]) -> None:
    stream = sid("shared-name")
    async with (
        await PostgresStore.open(url_for(schemas[0])) as orders,
        await PostgresStore.open(url_for(schemas[1])) as payments,
    ):
        in_orders = await orders.append({stream: events(2)}, expected={stream: 0})
        in_payments = await payments.append({stream: events(1)}, expected={stream: 0})

        assert in_orders.positions == (1, 2)
        assert in_payments.positions == (1,)
        assert await payments.stream_version(stream) == 1
        assert [e.event_id for e in await whole_log(orders)] == list(in_orders.event_ids)


@pytest.mark.parametrize(
    "options",
    [
        "&colour=blue",
        "&pool_size=0",
        "&pool_timeout=soon",
        "&schema=Orders",
        "&schema=1x",
        "&notify=maybe",
    ],
)
def test_bad_url_options_are_rejected_before_connecting(options: str) -> None:
    from eventcore.store.postgres import PostgresConfig

    with pytest.raises(InvalidUrl):
        PostgresConfig.from_url(StoreUrl.parse(url_for("ok", options)))


def test_libpq_options_and_the_address_pass_through() -> None:
    from eventcore.store.postgres import PostgresConfig

    config = PostgresConfig.from_url(
        StoreUrl.parse("postgresql://u:pw@db.example:6543/shop?schema=orders&connect_timeout=3")
    )

    assert config.conninfo == "postgresql://u:pw@db.example:6543/shop?connect_timeout=3"
    assert config.schema == "orders"


def test_tls_options_pass_through_to_libpq_and_the_password_never_shows() -> None:
    from urllib.parse import parse_qsl, urlsplit

    from eventcore.store.postgres import PostgresConfig

    tls = "sslmode=verify-full&sslrootcert=/etc/ca.pem&sslcert=/etc/c.pem&sslkey=/etc/k.pem"
    url = f"postgresql://u:Pw-9931@db.example/shop?{tls}&sslpassword=Kp-4410&sslcrl=/etc/crl"
    config = PostgresConfig.from_url(StoreUrl.parse(url))

    passed = dict(parse_qsl(urlsplit(config.conninfo).query))
    assert passed == {
        "sslmode": "verify-full",
        "sslrootcert": "/etc/ca.pem",
        "sslcert": "/etc/c.pem",
        "sslkey": "/etc/k.pem",
        "sslpassword": "Kp-4410",
        "sslcrl": "/etc/crl",
        "connect_timeout": passed["connect_timeout"],
    }
    assert "Pw-9931" not in repr(config)
    assert "Kp-4410" not in repr(config)


async def test_nul_in_an_event_type_is_invalid_input_not_a_crash(store: PostgresStore) -> None:
    from eventcore.errors import InvalidAppend

    with pytest.raises(InvalidAppend):
        await store.append({sid("s"): [new_event("bad\x00type")]}, expected={sid("s"): 0})
    assert await store.last_position() == 0
