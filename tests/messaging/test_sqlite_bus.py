"""What only the SQLite bus promises: one file shared by processes, durable progress,
a versioned schema. (Everything every bus promises is in the conformance suite.)"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import msgspec
import pytest

from eventcore.errors import BusClosed, BusUnavailable, DatabaseNotFound, InvalidUrl
from eventcore.messaging import open_bus
from eventcore.messaging.bus import DeadLetter, Delivery
from eventcore.messaging.sqlite import SqliteBus
from eventcore.messaging.sqlite import _consumer as sqlite_bus_consumer
from eventcore.messaging.sqlite._schema import LATEST_VERSION
from eventcore.messaging.url import BusUrl
from tests.messaging.helpers import PATIENCE, TOPIC, ids, outgoing

CHILD = Path(__file__).with_name("sqlite_bus_child.py")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite://{tmp_path.as_posix()}/bus.db"


async def _open(url: str, *, lease_ttl: float = 1.0) -> SqliteBus:
    return await SqliteBus.open(BusUrl.parse(url), lease_ttl=lease_ttl)


class _Child:
    """A second process running ``sqlite_bus_child.py``; reads its JSON lines."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def line(self) -> dict[str, object]:
        assert self.process.stdout is not None
        raw = await asyncio.wait_for(self.process.stdout.readline(), PATIENCE)
        assert raw, f"the child ended without answering (exit code {self.process.returncode})"
        found: dict[str, object] = json.loads(raw)
        return found


Spawn = Callable[..., Awaitable[_Child]]


@pytest.fixture
async def spawn() -> AsyncIterator[Spawn]:
    children: list[asyncio.subprocess.Process] = []

    async def start(*args: str) -> _Child:
        environment = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(CHILD), *args, stdout=asyncio.subprocess.PIPE, env=environment
        )
        children.append(process)
        return _Child(process)

    yield start
    for process in children:
        if process.returncode is None:
            process.kill()
        await process.wait()


async def _consume_all(bus: SqliteBus, group: str, want: set[str]) -> list[Delivery]:
    consumer = await bus.consumer(TOPIC, group, ack_wait=5.0)
    got: list[Delivery] = []
    async with asyncio.timeout(PATIENCE):
        while not want <= set(ids(got)):
            deliveries = await consumer.fetch(100, 0.5)
            await consumer.ack(deliveries)
            got.extend(deliveries)
    return got


async def test_a_consumer_sees_what_another_process_publishes(url: str, spawn: Spawn) -> None:
    bus = await _open(url)
    try:
        consumer = await bus.consumer(TOPIC, "g")
        child = await spawn("publish", url, "300", "p")
        got: list[Delivery] = []
        async with asyncio.timeout(PATIENCE):
            while len(got) < 300:
                deliveries = await consumer.fetch(100, 0.5)
                await consumer.ack(deliveries)
                got.extend(deliveries)
        assert await child.line() == {"published": 300}
        assert sorted(ids(got)) == sorted(f"p{i}" for i in range(300))
        # Each key's messages came in publish order.
        for key in {d.key for d in got}:
            numbers = [int(d.body) for d in got if d.key == key]
            assert numbers == sorted(numbers)
    finally:
        await bus.aclose()


async def test_two_processes_split_a_group_and_together_handle_everything(
    url: str, spawn: Spawn
) -> None:
    bus = await _open(url)
    try:
        child = await spawn("consume", url, "shared")
        assert await child.line() == {"joined": True}
        consumer = await bus.consumer(TOPIC, "shared", ack_wait=5.0)
        async with asyncio.timeout(PATIENCE):
            # Eight partitions, two live members: each ends up owning four.
            while len(consumer.partitions) != 4:
                await consumer.fetch(50, 0.1)
        await bus.publish(outgoing(400, keys=16))
        mine: list[Delivery] = []
        theirs: list[str] = []

        async def read_child() -> None:
            while True:
                theirs.extend((await child.line())["ids"])  # type: ignore[arg-type]

        reader = asyncio.create_task(read_child())
        async with asyncio.timeout(PATIENCE):
            while len(set(ids(mine)) | set(theirs)) < 400:
                deliveries = await consumer.fetch(50, 0.1)
                await consumer.ack(deliveries)
                mine.extend(deliveries)
        reader.cancel()
        assert set(ids(mine)) | set(theirs) == {f"m{i}" for i in range(400)}
        assert mine
        assert theirs
        assert {d.partition for d in mine} <= consumer.partitions
    finally:
        await bus.aclose()


async def test_a_consumer_killed_mid_batch_loses_nothing(url: str, spawn: Spawn) -> None:
    bus = await _open(url)
    try:
        await bus.publish(outgoing(200, keys=8))
        child = await spawn("hang", url, "g", "1.0", "1.0")
        fetched = (await child.line())["fetched"]
        assert isinstance(fetched, list)
        assert fetched
        child.process.send_signal(signal.SIGKILL)
        await child.process.wait()

        got = await _consume_all(bus, "g", {f"m{i}" for i in range(200)})
        assert set(ids(got)) == {f"m{i}" for i in range(200)}
        attempts = {d.message_id: d.attempt for d in got}
        # What the dead consumer held came again as a second attempt.
        assert {attempts[message_id] for message_id in fetched} == {2}
    finally:
        await bus.aclose()


async def test_a_dead_letter_claimed_by_a_killed_process_is_kept_and_claimed_again(
    url: str, spawn: Spawn
) -> None:
    letter = DeadLetter(
        letter_id=DeadLetter.id_for("g", TOPIC, "m1"),
        group="g",
        topic=TOPIC,
        message_id="m1",
        key="k1",
        body=b"{}",
        reason="boom",
        error_type="ValueError",
        attempts=5,
        failed_at=datetime(2026, 1, 2, tzinfo=UTC),
    )
    bus = await _open(url)
    try:
        await bus.dead_letters.put(letter)
        await bus.dead_letters.request_retry(letter.letter_id)
        child = await spawn("claim", url, "g", "0.5")
        assert (await child.line())["claimed"] == [letter.letter_id]
        child.process.send_signal(signal.SIGKILL)
        await child.process.wait()

        held = await bus.dead_letters.get(letter.letter_id)
        assert (held.status, held.claimed_by) == ("claimed", "child")
        assert held.claimed_until is not None
        await asyncio.sleep(max(0.0, (held.claimed_until - datetime.now(UTC)).total_seconds()))
        (again,) = await bus.dead_letters.claim_retries("g", TOPIC, holder="heir")
        assert (again.letter_id, again.claimed_by, again.body) == (letter.letter_id, "heir", b"{}")
    finally:
        await bus.aclose()


async def test_attempts_survive_closing_and_reopening_the_file(url: str) -> None:
    bus = await _open(url)
    await bus.publish(outgoing(3))
    consumer = await bus.consumer(TOPIC, "g")
    first = await consumer.fetch(10, PATIENCE)
    assert {d.attempt for d in first} == {1}
    await bus.aclose()

    bus = await _open(url)
    try:
        consumer = await bus.consumer(TOPIC, "g")
        again = await consumer.fetch(10, PATIENCE)
        assert sorted(ids(again)) == sorted(ids(first))
        assert {d.attempt for d in again} == {2}
        await consumer.ack(again)
        assert await consumer.fetch(10, 0.05) == []
    finally:
        await bus.aclose()


async def test_a_topic_keeps_the_partition_count_it_was_created_with(tmp_path: Path) -> None:
    base = f"sqlite://{tmp_path.as_posix()}/bus.db"
    bus = await _open(f"{base}?partitions=2")
    await bus.publish(outgoing(40, keys=40))
    await bus.aclose()
    bus = await _open(f"{base}?partitions=16")
    try:
        got = await _consume_all(bus, "g", {f"m{i}" for i in range(40)})
        assert {d.partition for d in got} == {0, 1}
    finally:
        await bus.aclose()


async def test_two_bus_objects_writing_at_once_keep_sequences_gapless(url: str) -> None:
    first, second = await _open(url), await _open(url)
    try:
        await asyncio.gather(
            *(
                bus.publish(outgoing(50, keys=1, prefix=f"{name}{batch}-"))
                for batch in range(10)
                for name, bus in (("a", first), ("b", second))
            )
        )
        consumer = await first.consumer(TOPIC, "h")
        got = []
        async with asyncio.timeout(PATIENCE):
            while len(got) < 1000:
                deliveries = await consumer.fetch(500, 0.5)
                await consumer.ack(deliveries)
                got.extend(deliveries)
        assert [d.sequence for d in got] == list(range(1, 1001))
    finally:
        await first.aclose()
        await second.aclose()


async def test_the_file_records_its_schema_version(tmp_path: Path, url: str) -> None:
    bus = await _open(url)
    await bus.aclose()
    with sqlite3.connect(tmp_path / "bus.db") as connection:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == LATEST_VERSION
        connection.execute(f"PRAGMA user_version = {LATEST_VERSION + 1}")
    connection.close()
    with pytest.raises(BusUnavailable, match="newer"):
        await _open(url)


async def test_a_file_that_is_no_database_is_an_invalid_url(tmp_path: Path) -> None:
    (tmp_path / "bus.db").write_bytes(b"not a database, just some text" * 100)
    with pytest.raises(InvalidUrl, match="not an SQLite database"):
        await open_bus(f"sqlite://{tmp_path.as_posix()}/bus.db")


async def test_create_false_refuses_a_missing_file_and_opens_an_existing_one(
    tmp_path: Path, url: str
) -> None:
    with pytest.raises(DatabaseNotFound, match="no such file"):
        await open_bus(url, create=False)
    assert not (tmp_path / "bus.db").exists()
    created = await open_bus(url)
    await created.aclose()
    reopened = await open_bus(url, create=False)
    await reopened.aclose()


async def test_a_missing_directory_is_an_invalid_url(tmp_path: Path) -> None:
    with pytest.raises(InvalidUrl, match="does not exist"):
        await open_bus(f"sqlite://{tmp_path.as_posix()}/nowhere/bus.db")


async def test_a_closed_bus_refuses_everything_and_closes_again_quietly(url: str) -> None:
    bus = await _open(url)
    consumer = await bus.consumer(TOPIC, "g")
    await bus.aclose()
    await bus.aclose()
    with pytest.raises(BusClosed):
        await bus.publish(outgoing(1))
    with pytest.raises(BusClosed):
        await consumer.fetch(1, 0)
    with pytest.raises(BusClosed):
        await bus.dead_letters.count()


@pytest.mark.parametrize("polling", ["default", "constant"])
async def test_a_cancelled_fetch_gives_back_what_it_was_handed(
    url: str, polling: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if polling == "constant":
        # Polling for other processes' publishes all the time, so that the give-back of
        # the cancelled fetch lands while the next fetch's poll is under way: its
        # wake-up must not be lost then.
        monkeypatch.setattr(sqlite_bus_consumer, "_POLL_MIN", 1e-5)
        monkeypatch.setattr(sqlite_bus_consumer, "_POLL_MAX", 1e-5)
    bus = await _open(url)
    try:
        await bus.publish(outgoing(5, keys=1))
        consumer = await bus.consumer(TOPIC, "g", ack_wait=60.0)
        # Cancel at many different points of a fetch; whatever it took from the file
        # must come again now, not after the minute-long ack wait.
        for yields in range(40):
            fetching = asyncio.create_task(consumer.fetch(10, PATIENCE))
            for _ in range(yields):
                await asyncio.sleep(0)
            fetching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                handed = await fetching
                await consumer.nak(handed[0])
            again = await consumer.fetch(10, PATIENCE)
            assert ids(again) == [f"m{i}" for i in range(5)], yields
            await consumer.nak(again[0])
    finally:
        await bus.aclose()


async def test_dead_letters_outlive_the_process_that_put_them(url: str) -> None:
    failed_at = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone(timedelta(hours=2)))
    letter = DeadLetter(
        letter_id=DeadLetter.id_for("g", TOPIC, "m1"),
        group="g",
        topic=TOPIC,
        message_id="m1",
        key="k1",
        body=b"\x00body",
        reason="boom",
        error_type="ValueError",
        attempts=5,
        failed_at=failed_at,
    )
    bus = await _open(url)
    await bus.dead_letters.put(letter)
    await bus.aclose()
    bus = await _open(url)
    try:
        assert await bus.dead_letters.letters() == [letter]
        await bus.dead_letters.request_retry(letter.letter_id)
        (claimed,) = await bus.dead_letters.claim_retries("g", TOPIC, holder="m")
        assert claimed.claimed_until is not None
        assert claimed == msgspec.structs.replace(
            letter, status="claimed", claimed_by="m", claimed_until=claimed.claimed_until
        )
        assert await bus.dead_letters.letters() == [claimed]
    finally:
        await bus.aclose()
