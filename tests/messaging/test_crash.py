"""End to end, with real processes: service A's relay and service B's consumer are each
killed (SIGKILL) at random moments, several times, while A keeps appending; each is
restarted at once. In the end B has applied every one of A's events exactly once in
effect: as many records as events, the same event ids, the same sums per account.

The kill schedule comes from a seeded RNG; the seed is printed (set
``EVENTCORE_CRASH_SEED`` to replay one).
"""

from __future__ import annotations

import asyncio
import os
import random
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from eventcore import EventStore, NewEvent, StreamId, open_store
from eventcore.messaging import open_bus
from tests.backends import skip_or_fail
from tests.messaging.buses import NATS_URL, drop_nats_namespace
from tests.messaging.crash_child import (
    GROUP_B,
    TOPIC,
    Applied,
    Deposited,
    registry_a,
    registry_b,
)
from tests.processes import ChildProcess

# Beyond the suite's minute: each test kills and restarts real relay and consumer
# processes again and again, every start importing the package (134 s measured on a
# busy 2-core machine).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

EVENTS = 10_000
ACCOUNTS = 200
PER_APPEND = 50
#: Pause between appends: A's 10,000 events arrive over several seconds, so the kills
#: land while it is still writing.
APPEND_PAUSE = 0.02
KILLS = 4
#: A child's working life before it is killed: seconds after it said it is ready.
LIFE = (0.2, 1.2)
#: Only a hang reaches this: B normally catches up within seconds of A's last append.
CATCH_UP_DEADLINE = 120.0


def child(role: str, store_url: str, bus_url: str) -> ChildProcess:
    """The relay or the consumer (``tests/messaging/crash_child.py``), as a process."""
    return ChildProcess("tests.messaging.crash_child", role, store_url, bus_url, name=role)


async def kill_again_and_again(
    child: ChildProcess, rng: random.Random, kills: int, store_b: EventStore
) -> None:
    started = time.monotonic()
    for _ in range(kills):
        await asyncio.sleep(rng.uniform(*LIFE))
        await child.kill()
        applied = await store_b.last_position()
        print(f"{time.monotonic() - started:5.2f} s: killed the {child.name} ({applied} applied)")
        await child.start()


async def produce(store: EventStore, rng: random.Random) -> None:
    """A's 10,000 deposits over ``ACCOUNTS`` streams, ``PER_APPEND`` per append."""
    versions: dict[StreamId, int] = {}
    for _ in range(EVENTS // PER_APPEND):
        writes: dict[StreamId, list[NewEvent]] = {}
        for _ in range(PER_APPEND):
            account = f"acc{rng.randrange(ACCOUNTS)}"
            deposit = Deposited(account=account, amount=rng.randrange(1, 1000))
            writes.setdefault(StreamId(f"account-{account}"), []).append(registry_a.encode(deposit))
        result = await store.append(
            writes, expected={stream: versions.get(stream, 0) for stream in writes}
        )
        versions.update((StreamId(s), v) for s, v in result.stream_versions.items())
        await asyncio.sleep(APPEND_PAUSE)


async def wait_for_catch_up(store_b: EventStore) -> None:
    deadline = time.monotonic() + CATCH_UP_DEADLINE
    while await store_b.last_position() < EVENTS:
        if time.monotonic() > deadline:
            applied = await store_b.last_position()
            pytest.fail(f"B applied {applied} of {EVENTS} events in {CATCH_UP_DEADLINE:g} s")
        await asyncio.sleep(0.2)


async def check_exactly_once(store_a: EventStore, store_b: EventStore) -> None:
    sent: dict[str, tuple[str, int]] = {}
    async for batch in store_a.read_all():
        for stored in batch:
            deposit = registry_a.decode(stored)
            assert isinstance(deposit, Deposited)
            sent[str(stored.event_id)] = (deposit.account, deposit.amount)
    assert len(sent) == EVENTS

    applied: list[Applied] = []
    async for batch in store_b.read_all(types=["Applied"]):
        for stored in batch:
            record = registry_b.decode(stored)
            assert isinstance(record, Applied)
            assert stored.stream_id == f"applied-{record.account}"
            applied.append(record)
    twice = [event_id for event_id, n in Counter(a.event_id for a in applied).items() if n > 1]
    assert twice == [], f"{len(twice)} events applied more than once"
    missing = sent.keys() - {a.event_id for a in applied}
    assert not missing, f"{len(missing)} events never applied"
    assert len(applied) == EVENTS
    assert {a.event_id for a in applied} == sent.keys()
    for record in applied:
        assert sent[record.event_id] == (record.account, record.amount)

    sums_a: Counter[str] = Counter()
    for account, amount in sent.values():
        sums_a[account] += amount
    sums_b: Counter[str] = Counter()
    for record in applied:
        sums_b[record.account] += record.amount
    assert sums_b == sums_a


async def run_crash_test(tmp_path: Path, bus_url: str) -> None:
    seed = int(os.environ.get("EVENTCORE_CRASH_SEED") or random.randrange(2**32))
    print(f"crash test seed: {seed} (EVENTCORE_CRASH_SEED={seed} replays it)")
    rng = random.Random(seed)
    store_a_url = f"sqlite://{tmp_path.as_posix()}/a.db"
    store_b_url = f"sqlite://{tmp_path.as_posix()}/b.db"
    async with await open_store(store_a_url) as store_a, await open_store(store_b_url) as store_b:
        relay = child("relay", store_a_url, bus_url)
        consumer = child("consumer", store_b_url, bus_url)
        try:
            await asyncio.gather(relay.start(), consumer.start())
            await asyncio.gather(
                produce(store_a, random.Random(rng.random())),
                kill_again_and_again(relay, random.Random(rng.random()), KILLS, store_b),
                kill_again_and_again(consumer, random.Random(rng.random()), KILLS, store_b),
            )
            await wait_for_catch_up(store_b)
            assert await relay.stop() == 0
            assert await consumer.stop() == 0
        finally:
            relay.ensure_dead()
            consumer.ensure_dead()
        assert relay.starts == consumer.starts == KILLS + 1
        await check_exactly_once(store_a, store_b)

    bus = await open_bus(bus_url)
    try:
        letters = await bus.dead_letters.letters(group=GROUP_B, topic=TOPIC)
        assert letters == [], f"dead letters: {[(d.message_id, d.reason) for d in letters]}"
    finally:
        await bus.aclose()


async def test_sqlite_bus_relay_and_consumer_killed_again_and_again_apply_every_event_once(
    tmp_path: Path,
) -> None:
    await run_crash_test(tmp_path, f"sqlite://{tmp_path.as_posix()}/bus.db")


@pytest.fixture
async def nats_namespace() -> AsyncIterator[str]:
    import nats

    try:
        client = await nats.connect(NATS_URL, connect_timeout=3, allow_reconnect=False)
    except Exception as error:  # any failure to connect means: no server to test against
        reason = f"cannot reach NATS at {NATS_URL}: {type(error).__name__}: {error}"
        skip_or_fail(reason)
    await client.close()
    namespace = f"crash{uuid.uuid4().hex[:10]}"
    try:
        yield namespace
    finally:
        await drop_nats_namespace(namespace)


async def test_nats_bus_relay_and_consumer_killed_again_and_again_apply_every_event_once(
    tmp_path: Path, nats_namespace: str
) -> None:
    await run_crash_test(tmp_path, f"{NATS_URL}?namespace={nats_namespace}")
