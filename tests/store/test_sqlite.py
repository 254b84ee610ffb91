"""What only the SQLite store does: group commit, its file, its pragmas, its threads.

The behaviour every store shares is proven by the contract suite in this folder.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from eventcore.errors import (
    ConcurrencyConflict,
    DatabaseNotFound,
    DuplicateEventId,
    InvalidUrl,
    StoreUnavailable,
)
from eventcore.store import open_store
from eventcore.store.protocol import AppendResult
from eventcore.store.request import AppendRequest
from eventcore.store.sqlite import SqliteStore
from eventcore.store.sqlite._connect import SqliteConfig, connect_writer
from eventcore.store.sqlite._read import Reads
from eventcore.store.sqlite._write import GroupCommitter
from eventcore.store.url import StoreUrl
from eventcore.types import StreamId
from tests.builders import events, new_event, sid


def url_of(path: Path, query: str = "") -> str:
    return f"sqlite://{path.resolve().as_posix()}{query}"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "events.db"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[SqliteStore]:
    async with await SqliteStore.open(db_path) as opened:
        yield opened


def request(stream: str, expected: int, count: int = 1, **options: Any) -> AppendRequest:
    return AppendRequest.build(
        {sid(stream): options.pop("batch", None) or events(count)},
        {sid(stream): expected},
        options.pop("idempotency_key", None),
        1024 * 1024,
    )


@pytest.fixture
def writer_connection(db_path: Path) -> Iterator[sqlite3.Connection]:
    """The writer's connection, opened in the test's thread to drive a batch by hand."""
    config = SqliteConfig.from_url(StoreUrl.parse(url_of(db_path)), create=True)
    with closing(connect_writer(config)) as connection:
        yield connection


def count_events(path: Path) -> int:
    with closing(sqlite3.connect(path)) as connection:
        return int(connection.execute("SELECT count(*) FROM events").fetchone()[0])


# Plain functions for the few blocking file checks the async tests make.
def exists(path: Path) -> bool:
    return path.exists()


def write_garbage(path: Path) -> None:
    path.write_bytes(b"this is not a database, just some bytes" * 200)


class HeldWriteLock:
    """Another "process" holding the file's write lock until ``release``."""

    def __init__(self, path: Path) -> None:
        self._connection = sqlite3.connect(path, isolation_level=None)
        self._connection.execute("BEGIN IMMEDIATE")

    def release(self) -> None:
        self._connection.execute("COMMIT")
        self._connection.close()


# --- group commit ------------------------------------------------------------------------


async def test_concurrent_appends_commit_in_a_few_transactions(
    store: SqliteStore, db_path: Path
) -> None:
    lock = HeldWriteLock(db_path)
    before = store._commit_count
    appends = asyncio.gather(
        *(store.append({sid(f"s-{n}"): events(1)}, expected={sid(f"s-{n}"): 0}) for n in range(100))
    )
    # Callbacks run in FIFO order: by the time this one runs, each append's task has taken
    # its first step and queued its request behind the writer, which waits for the lock.
    asyncio.get_running_loop().call_soon(lock.release)
    results = await appends

    assert len({result.positions for result in results}) == 100
    # The writer's first batch (whatever it took before blocking) plus one for the rest.
    assert store._commit_count - before <= 2
    assert count_events(db_path) == 100


def test_a_conflicting_append_fails_alone_while_its_batch_commits(
    writer_connection: sqlite3.Connection, db_path: Path
) -> None:
    first = request("a", 0, 2)
    batch = [
        first,
        request("b", 0),
        request("a", 0),  # "a" was just written by the first append of this batch
        request("c", 0, batch=[first.writes[0][1][0]]),  # an id the batch already stored
        request("d", 0, batch=[new_event(), first.writes[0][1][1]]),  # same, in 2nd event
        request("e", 0),
    ]

    outcomes = GroupCommitter().run_batch(writer_connection, batch)

    ok = [succeeded for succeeded, _ in outcomes]
    assert ok == [True, True, False, False, False, True]
    assert isinstance(outcomes[2][1], ConcurrencyConflict)
    assert (outcomes[2][1].stream_id, outcomes[2][1].actual) == ("a", 2)
    for failed in (outcomes[3][1], outcomes[4][1]):
        assert isinstance(failed, DuplicateEventId)
        assert failed.already_stored
    # The failed appends left no rows and no gap: positions stay contiguous.
    assert [result.positions for _, result in outcomes if isinstance(result, AppendResult)] == [
        (1, 2),
        (3,),
        (4,),
    ]
    assert count_events(db_path) == 4


def test_a_failed_commit_fails_the_whole_batch_and_leaves_nothing(
    writer_connection: sqlite3.Connection, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    committer = GroupCommitter()
    disk_error = sqlite3.OperationalError("disk I/O error")

    def failing_commit(connection: sqlite3.Connection) -> None:
        raise disk_error

    monkeypatch.setattr(committer, "_commit", failing_commit)
    outcomes = committer.run_batch(writer_connection, [request("a", 0), request("b", 0, 3)])

    assert [succeeded for succeeded, _ in outcomes] == [False, False]
    for _, error in outcomes:
        assert isinstance(error, StoreUnavailable)
        assert error.__cause__ is disk_error
    assert not writer_connection.in_transaction
    assert count_events(db_path) == 0

    monkeypatch.undo()
    [(succeeded, result)] = committer.run_batch(writer_connection, [request("a", 0)])
    assert succeeded
    assert result.positions == (1,)


def break_inserts_of(connection: sqlite3.Connection, event_type: str, how: str) -> None:
    """Make inserting an event of ``event_type`` fail on ``connection``.

    ``abort``: a constraint error that undoes the statement (SQLite's default);
    ``rollback``: a constraint error with which SQLite ends the whole transaction;
    ``database-error``: a failure of the database itself, not a verdict on the row.
    """
    if how == "database-error":

        def fail() -> None:
            raise RuntimeError("the database failed")

        connection.create_function("fail", 0, fail)
        action = "SELECT fail()"
    else:
        action = f"SELECT RAISE({how.upper()}, 'refused by a trigger')"
    connection.execute(
        f"CREATE TEMP TRIGGER break_inserts BEFORE INSERT ON events"
        f" WHEN NEW.type = '{event_type}' BEGIN {action}; END"
    )


def stale_head(connection: sqlite3.Connection, stream: str) -> None:
    """A row for ``stream`` at version 1 that the streams table does not know of: the file
    changed behind the store's back, so writing the stream breaks a uniqueness rule."""
    connection.execute(
        "INSERT INTO events (position, stream_id, version, event_id, type, schema_version,"
        " data, recorded_at) VALUES (1, ?, 1, ?, 'Stray', 1, X'7b7d', 0)",
        (stream, new_event().event_id.bytes),
    )


def heads(connection: sqlite3.Connection) -> dict[str, int]:
    return dict(connection.execute("SELECT stream_id, version FROM streams").fetchall())


def stored_ids(connection: sqlite3.Connection) -> set[bytes]:
    return {row[0] for row in connection.execute("SELECT event_id FROM events")}


def ids_of(request: AppendRequest) -> set[bytes]:
    return {event.event_id.bytes for _, batch in request.writes for event in batch}


def failing_append(size: int) -> AppendRequest:
    """An append to "b" whose last event is one the broken inserts refuse."""
    return request("b", 0, batch=[*events(size - 1), new_event(type="Refused")])


@pytest.mark.parametrize("size", [1, 2], ids=["one-event", "two-events"])
@pytest.mark.parametrize("cause", ["abort", "stale-head"])
def test_an_unexpected_constraint_error_fails_only_its_own_append(
    writer_connection: sqlite3.Connection, cause: str, size: int
) -> None:
    if cause == "stale-head":
        stale_head(writer_connection, "b")
    else:
        break_inserts_of(writer_connection, "Refused", cause)
    batch = [request("a", 0, 2), failing_append(size), request("c", 0)]
    before = stored_ids(writer_connection)

    outcomes = GroupCommitter().run_batch(writer_connection, batch)

    assert [succeeded for succeeded, _ in outcomes] == [True, False, True]
    assert isinstance(outcomes[1][1], StoreUnavailable)
    assert stored_ids(writer_connection) == before | ids_of(batch[0]) | ids_of(batch[2])
    assert heads(writer_connection) == {"a": 2, "c": 1}
    first = outcomes[0][1].positions[0]
    assert [result.positions for _, result in outcomes if isinstance(result, AppendResult)] == [
        (first, first + 1),
        (first + 2,),
    ]


@pytest.mark.parametrize("size", [1, 2], ids=["one-event", "two-events"])
@pytest.mark.parametrize("cause", ["rollback", "database-error"])
def test_a_database_error_in_one_append_fails_every_append_of_its_batch(
    writer_connection: sqlite3.Connection, db_path: Path, cause: str, size: int
) -> None:
    break_inserts_of(writer_connection, "Refused", cause)
    committer = GroupCommitter()

    outcomes = committer.run_batch(
        writer_connection, [request("a", 0, 2), failing_append(size), request("c", 0)]
    )

    assert [succeeded for succeeded, _ in outcomes] == [False, False, False]
    assert all(isinstance(error, StoreUnavailable) for _, error in outcomes)
    assert not writer_connection.in_transaction
    assert count_events(db_path) == 0
    assert heads(writer_connection) == {}
    # Nothing of the failed batch is left behind to get in the way of the next one.
    [(succeeded, result)] = committer.run_batch(writer_connection, [request("a", 0, 2)])
    assert succeeded
    assert result.positions == (1, 2)


def test_idempotency_key_reused_within_one_batch_writes_once(
    writer_connection: sqlite3.Connection, db_path: Path
) -> None:
    outcomes = GroupCommitter().run_batch(
        writer_connection,
        [request("a", 0, idempotency_key="k"), request("b", 0, idempotency_key="k")],
    )

    (_, first), (_, second) = outcomes
    assert not first.deduplicated
    assert second.deduplicated
    assert second.positions == first.positions
    assert count_events(db_path) == 1


def test_stream_heads_are_looked_up_in_a_few_padded_statements(
    writer_connection: sqlite3.Connection,
) -> None:
    # Each IN list is padded to a power of two, so batches of any size reuse the same
    # handful of statements in SQLite's statement cache instead of one per size.
    statements: list[str] = []
    writer_connection.set_trace_callback(statements.append)
    committer = GroupCommitter()
    for count in (1, 3, 5, 100, 300):
        streams = {sid(f"{count}-{n}"): events(1) for n in range(count)}
        request = AppendRequest.build(streams, dict.fromkeys(streams, 0), None, 1024 * 1024)
        [(succeeded, _)] = committer.run_batch(writer_connection, [request])
        assert succeeded
    writer_connection.set_trace_callback(None)

    # The trace shows each statement with its values bound; no stream name has a comma.
    widths = [
        statement.split(" IN (")[1].count(",") + 1
        for statement in statements
        if statement.startswith("SELECT stream_id")
    ]
    assert widths == [1, 4, 8, 128, 256, 64]


# --- the file ------------------------------------------------------------------------------


async def test_events_survive_close_and_reopen(db_path: Path) -> None:
    async with await SqliteStore.open(db_path) as store:
        written = await store.append(
            {sid("a"): events(3)}, expected={sid("a"): 0}, idempotency_key="once"
        )
        before = [event async for batch in store.read_all() for event in batch]

    async with await SqliteStore.open(db_path, create=False) as store:
        after = [event async for batch in store.read_all() for event in batch]
        again = await store.append(
            {sid("a"): events(3)}, expected={sid("a"): 0}, idempotency_key="once"
        )
        assert await store.stream_version(sid("a")) == 3

    assert after == before
    assert again.deduplicated
    assert again.positions == written.positions


async def test_reopening_applies_each_migration_once(db_path: Path) -> None:
    for _ in range(2):
        async with await SqliteStore.open(db_path):
            pass

    with closing(sqlite3.connect(db_path)) as connection:
        versions = connection.execute("SELECT version FROM schema_migrations").fetchall()
    assert versions == [(1,), (2,)]


async def test_a_file_from_a_newer_schema_is_refused(db_path: Path) -> None:
    async with await SqliteStore.open(db_path):
        pass
    with closing(sqlite3.connect(db_path)) as connection, connection:
        connection.execute("INSERT INTO schema_migrations VALUES (999, 0)")

    with pytest.raises(StoreUnavailable, match="newer"):
        await SqliteStore.open(db_path)


async def test_synchronous_option_is_applied_to_the_writer(db_path: Path) -> None:
    store = await open_store(url_of(db_path, "?synchronous=normal"))
    assert isinstance(store, SqliteStore)
    try:
        pragma = await store._on_writer(lambda c: c.execute("PRAGMA synchronous").fetchone()[0])
        journal = await store._on_writer(lambda c: c.execute("PRAGMA journal_mode").fetchone()[0])
    finally:
        await store.aclose()
    assert pragma == 1  # NORMAL
    assert journal == "wal"


async def test_synchronous_defaults_to_full(store: SqliteStore) -> None:
    pragma = await store._on_writer(lambda c: c.execute("PRAGMA synchronous").fetchone()[0])
    assert pragma == 2  # FULL


@pytest.mark.parametrize(
    "query", ["?synchronous=sometimes", "?journal=off", "?synchronous=FULL&cache=1"]
)
async def test_bad_options_are_refused(db_path: Path, query: str) -> None:
    with pytest.raises(InvalidUrl):
        await open_store(url_of(db_path, query))
    assert not exists(db_path)


async def test_create_false_refuses_a_missing_file(db_path: Path) -> None:
    with pytest.raises(DatabaseNotFound, match="no such file"):
        await open_store(url_of(db_path), create=False)
    assert not exists(db_path)


async def test_a_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidUrl, match="does not exist"):
        await open_store(url_of(tmp_path / "nowhere" / "events.db"))


async def test_a_file_that_is_not_a_database_is_refused(db_path: Path) -> None:
    write_garbage(db_path)
    with pytest.raises(InvalidUrl, match="not an SQLite database"):
        await open_store(url_of(db_path))


async def test_a_relative_path_is_taken_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    store = await open_store("sqlite://data/events.db")
    await store.aclose()
    assert (tmp_path / "data" / "events.db").is_file()


# --- several processes on one file ----------------------------------------------------------


async def test_two_stores_on_one_file_see_each_others_writes(db_path: Path) -> None:
    async with await SqliteStore.open(db_path) as one, await SqliteStore.open(db_path) as two:
        await one.append({sid("a"): events(2)}, expected={sid("a"): 0})
        assert await two.stream_version(sid("a")) == 2

        written = await two.append({sid("a"): events(1)}, expected={sid("a"): 2})
        assert written.positions == (3,)
        with pytest.raises(ConcurrencyConflict):
            await one.append({sid("a"): events(1)}, expected={sid("a"): 2})

        log = [event.position async for batch in one.read_all() for event in batch]
        assert log == [1, 2, 3]


def child(*args: str) -> list[str]:
    """The command line of ``tests/store/sqlite_child.py`` with ``args``."""
    return [sys.executable, "-m", "tests.store.sqlite_child", *args]


async def test_a_wait_is_woken_by_an_append_from_another_process(
    store: SqliteStore, db_path: Path
) -> None:
    await store.append({sid("mine"): events(1)}, expected={sid("mine"): 0})
    waiting = asyncio.ensure_future(store.wait_for_events(1, 30.0))
    appending = await asyncio.create_subprocess_exec(
        *child("append", url_of(db_path), "theirs", "1"), stdout=subprocess.PIPE
    )
    said, _ = await appending.communicate()

    assert json.loads(said) == {"appended": [2]}
    # Not the timeout's False: nothing in this process appended.
    assert await waiting is True
    assert await store.last_position() == 2


async def test_writers_in_two_processes_take_turns_at_the_write_lock(
    store: SqliteStore, db_path: Path
) -> None:
    # Each process keeps four appends in flight, so its writer is always ready for the
    # lock. Without turns, the writer that just committed took the lock again before
    # the other woke up: runs of 350-640 commits in a row (of ~2,000), waits over a
    # second; with turns, runs of 8-32.
    writers = [
        await asyncio.create_subprocess_exec(
            *child("steady", url_of(db_path), "3", name, "4"),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        for name in ("One", "Two")
    ]
    for writer in writers:
        assert writer.stdout is not None
        assert json.loads(await writer.stdout.readline()) == {"ready": True}
    for writer in writers:
        assert writer.stdin is not None
        writer.stdin.write(b"go\n")
        await writer.stdin.drain()
    said = [json.loads((await writer.communicate())[0]) for writer in writers]

    log = [event.type async for batch in store.read_all() for event in batch]
    runs = [len(list(run)) for _, run in itertools.groupby(log)]
    appends = sorted(each["appends"] for each in said)
    assert sum(appends) == len(log)
    assert appends[0] >= appends[1] / 4, said
    assert max(runs) <= len(log) / 20, f"{max(runs)} commits in a row of {len(log)}"


async def test_a_write_lock_held_too_long_is_store_unavailable(db_path: Path) -> None:
    async with await SqliteStore.open(db_path, busy_timeout=0.05) as store:
        lock = HeldWriteLock(db_path)
        try:
            with pytest.raises(StoreUnavailable) as caught:
                await store.append({sid("a"): events(1)}, expected={sid("a"): 0})
        finally:
            lock.release()
        assert isinstance(caught.value.__cause__, sqlite3.OperationalError)

        written = await store.append({sid("a"): events(1)}, expected={sid("a"): 0})
        assert written.positions == (1,)


# --- threads and the event loop -------------------------------------------------------------


async def test_the_event_loop_keeps_running_during_a_large_read(store: SqliteStore) -> None:
    stream = sid("big")
    for n in range(20):
        await store.append({stream: events(1000)}, expected={stream: n * 1000})
    ticks = 0
    stop = asyncio.Event()

    async def heartbeat() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0)

    beating = asyncio.create_task(heartbeat())
    seen = 0
    ticks_during_fetches = 0
    reader = store.read_all(batch_size=500)
    while True:
        before = ticks
        try:
            batch = await anext(reader)
        except StopAsyncIteration:
            break
        ticks_during_fetches += ticks - before
        seen += len(batch)
    stop.set()
    await beating

    assert seen == 20_000
    assert ticks_during_fetches > 0


async def test_a_cancelled_append_leaves_the_store_usable(
    store: SqliteStore, db_path: Path
) -> None:
    errors: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _, context: errors.append(context))
    lock = HeldWriteLock(db_path)
    doomed = asyncio.create_task(store.append({sid("a"): events(1)}, expected={sid("a"): 0}))
    asyncio.get_running_loop().call_soon(doomed.cancel)
    with pytest.raises(asyncio.CancelledError):
        await doomed
    lock.release()

    version = await store.stream_version(sid("a"))
    written = await store.append({sid("b"): events(1)}, expected={sid("b"): 0})

    # The cancelled append may or may not have reached the disk; either way, nothing broke.
    assert written.positions == (version + 1,)
    assert errors == []


def test_a_store_left_open_does_not_block_interpreter_exit(db_path: Path) -> None:
    script = (
        "import asyncio\n"
        "from eventcore.store import open_store\n"
        "from eventcore.types import NewEvent, StreamId\n"
        "async def main():\n"
        f"    store = await open_store({url_of(db_path)!r})\n"
        "    s = StreamId('a')\n"
        "    await store.append({s: [NewEvent(type='T', data=b'{}')]}, expected={s: 0})\n"
        "asyncio.run(main())\n"
    )
    # The timeout only stops a hung child from hanging the suite; it measures nothing.
    done = subprocess.run([sys.executable, "-c", script], timeout=60, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()
    assert count_events(db_path) == 1


# --- query plans ---------------------------------------------------------------------------


@pytest.mark.parametrize("types", [("A",), ("A", "B", "C")])
def test_a_type_filter_reads_through_the_type_index(
    writer_connection: sqlite3.Connection, types: tuple[str, ...]
) -> None:
    job = Reads().log(0, 100, types)
    assert isinstance(job, functools.partial)
    sql, params = job.args
    plan = " | ".join(
        row[3] for row in writer_connection.execute(f"EXPLAIN QUERY PLAN {sql}", params)
    )
    assert "events_type_position" in plan
    assert "TEMP B-TREE" not in plan


def test_stream_ids_read_back_are_stream_ids(writer_connection: sqlite3.Connection) -> None:
    GroupCommitter().run_batch(writer_connection, [request("a", 0)])
    job = Reads().stream(StreamId("a"), 1)
    [event] = job(writer_connection)
    assert type(event.stream_id) is StreamId
    assert event.recorded_at.tzinfo is not None
