"""End to end across buses, with the hub as a real process: ``eventcore federate run``
is killed (SIGKILL) at seeded random moments, several times, while 10,000 events arrive
on its source, and restarted at once under the same member name. In the end the target
holds every routed copy exactly once in effect (each copy's id once, whatever a
consumer saw twice), and each stream's copies in the order of its events.

Order across a kill is the source bus's promise: the restarted hub takes its
partitions back at once and must get first what the killed one left unacknowledged
(the SQLite bus starts it at the group's committed offset; the NATS bus starts the
partition's consumer again from its ack floor).

Two pairs of buses: a SQLite bus file → NATS JetStream, and NATS → NATS between two
namespaces of one server. The kill schedule comes from a seeded RNG; the seed is
printed (``EVENTCORE_CRASH_SEED`` replays one).
"""

from __future__ import annotations

import asyncio
import os
import random
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from eventcore.federation import routed_id
from eventcore.messaging import Bus, DistributedEvent, OutgoingMessage, open_bus
from eventcore.messaging.envelope import decode_envelope, encode_envelope
from tests.backends import skip_or_fail
from tests.messaging.buses import NATS_URL, drop_nats_namespace
from tests.processes import ChildProcess

# Beyond the suite's minute: each test starts the hub's process five times (every start
# imports the package and joins its groups) and routes 10,000 events through two buses
# on a shared 2-core machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

EVENTS = 10_000
STREAMS = 200
PER_PUBLISH = 100
#: Pause between publishes: the events arrive over several seconds, so the kills land
#: while they are still coming.
PUBLISH_PAUSE = 0.02
KILLS = 4
#: The hub's working life before it is killed: seconds after it said it is ready.
LIFE = (0.3, 1.5)
#: Short, so that what a killed hub left unacknowledged on NATS comes again soon.
ACK_WAIT = 3.0
MEMBER = "hub-1"
RULE = "users-to-billing"
CATCH_UP_DEADLINE = 150.0

CONFIG = """
[buses]
source = "{source}"
target = "{target}"

[[rules]]
name = "{rule}"
source = {{ bus = "source", topic = "users" }}
type = "UserRegistered"
targets = [{{ bus = "target", topic = "billing" }}]
transforms = [
    {{ op = "rename-type", to = "CustomerCreated" }},
    {{ op = "hash", fields = ["email"], key_env = "HUB_CRASH_KEY" }},
]
"""


def hub_process(config: Path) -> ChildProcess:
    """``eventcore federate run``, as a process started again after each kill."""
    return ChildProcess(
        "eventcore.cli",
        *("federate", "run", str(config), "--member", MEMBER),
        *("--ack-wait", str(ACK_WAIT), "--status-every", "60"),
        name="hub",
        environment={"HUB_CRASH_KEY": "k" * 32},
    )


async def start_hub(hub: ChildProcess) -> None:
    await hub.start(ready=b"federate: ready")


def user_event(number: int, stream: int, version: int) -> DistributedEvent:
    payload = {"name": f"user {number}", "email": f"user{number}@example.com"}
    return DistributedEvent(
        specversion="1.0",
        datacontenttype="application/json",
        id=str(uuid.UUID(int=number + 1)),
        source="users",
        type="UserRegistered",
        subject=f"user-{stream}",
        time=datetime.now(UTC),
        data=msgspec.Raw(msgspec.json.encode(payload)),
        streamversion=str(version),
        correlationid=f"request-{number}",
    )


async def produce(bus: Bus, rng: random.Random) -> list[DistributedEvent]:
    """The 10,000 events, as a relay would publish them to the source topic."""
    versions: dict[int, int] = {}
    sent: list[DistributedEvent] = []
    for start in range(0, EVENTS, PER_PUBLISH):
        batch = []
        for number in range(start, start + PER_PUBLISH):
            stream = rng.randrange(STREAMS)
            versions[stream] = versions.get(stream, 0) + 1
            batch.append(user_event(number, stream, versions[stream]))
        await bus.publish(
            [OutgoingMessage("users", e.id, e.subject, encode_envelope(e)) for e in batch]
        )
        sent += batch
        await asyncio.sleep(PUBLISH_PAUSE)
    return sent


async def kill_again_and_again(hub: ChildProcess, rng: random.Random) -> None:
    started = time.monotonic()
    for _ in range(KILLS):
        await asyncio.sleep(rng.uniform(*LIFE))
        await hub.kill()
        print(f"{time.monotonic() - started:5.2f} s: killed the hub")
        await start_hub(hub)


class Seen:
    """What the target's consumer saw: each copy by id (first sighting), in order."""

    def __init__(self) -> None:
        self.copies: dict[str, DistributedEvent] = {}
        self.order: list[str] = []
        self.repeats = 0


async def watch_target(bus: Bus, seen: Seen, done: asyncio.Event) -> None:
    consumer = await bus.consumer("billing", "billing-service")
    try:
        while len(seen.copies) < EVENTS:
            deliveries = await consumer.fetch(500, 0.5)
            for delivery in deliveries:
                copy = decode_envelope(delivery.body)
                if copy.id in seen.copies:
                    seen.repeats += 1  # what an inbox absorbs
                else:
                    seen.copies[copy.id] = copy
                    seen.order.append(copy.id)
            if deliveries:
                await consumer.ack(deliveries)
    finally:
        await consumer.aclose()
    done.set()


async def run_crash_test(tmp_path: Path, source_url: str, target_url: str) -> None:
    seed = int(os.environ.get("EVENTCORE_CRASH_SEED") or random.randrange(2**32))
    print(f"hub crash test seed: {seed} (EVENTCORE_CRASH_SEED={seed} replays it)")
    rng = random.Random(seed)
    config = tmp_path / "hub.toml"
    config.write_text(CONFIG.format(source=source_url, target=target_url, rule=RULE))
    source, target = await open_bus(source_url), await open_bus(target_url)
    hub = hub_process(config)
    seen, done = Seen(), asyncio.Event()
    try:
        watching = asyncio.create_task(watch_target(target, seen, done))
        await start_hub(hub)
        sent, _ = await asyncio.gather(
            produce(source, random.Random(rng.random())),
            kill_again_and_again(hub, random.Random(rng.random())),
        )
        try:
            async with asyncio.timeout(CATCH_UP_DEADLINE):
                await watching
        except TimeoutError:
            pytest.fail(f"the target saw {len(seen.copies)} of {EVENTS} copies")
        assert await hub.stop() == 0
        letters = await source.dead_letters.letters(group="federation")
    finally:
        hub.ensure_dead()
        await source.aclose()
        await target.aclose()
    print(f"{seen.repeats} repeats seen by the target consumer")
    assert hub.starts == KILLS + 1
    assert letters == [], [letter.reason for letter in letters]

    expected = {routed_id(RULE, event.id): event for event in sent}
    assert seen.copies.keys() == expected.keys()
    for copy_id, copy in seen.copies.items():
        original = expected[copy_id]
        assert (copy.type, copy.subject, copy.streamversion) == (
            "CustomerCreated",
            original.subject,
            original.streamversion,
        )
        assert copy.correlationid == original.correlationid
        assert copy.federationid == original.id
        assert b"@example.com" not in bytes(copy.data)
    # Each stream's copies first arrived in the order of its events: 1, 2, 3, ...
    versions: dict[str, list[int]] = {}
    for copy_id in seen.order:
        copy = seen.copies[copy_id]
        versions.setdefault(copy.subject, []).append(copy.stream_version)
    for stream, order in versions.items():
        assert order == list(range(1, len(order) + 1)), f"{stream} arrived as {order}"


@pytest.fixture
async def namespaces() -> AsyncIterator[tuple[str, str]]:
    import nats

    try:
        client = await nats.connect(NATS_URL, connect_timeout=3, allow_reconnect=False)
    except Exception as error:  # any failure to connect means: no server to test against
        skip_or_fail(f"cannot reach NATS at {NATS_URL}: {type(error).__name__}: {error}")
    await client.close()
    tag = uuid.uuid4().hex[:8]
    pair = (f"hubsrc{tag}", f"hubdst{tag}")
    try:
        yield pair
    finally:
        for namespace in pair:
            await drop_nats_namespace(namespace)


async def test_a_hub_killed_again_and_again_routes_sqlite_to_nats_once_in_order(
    tmp_path: Path, namespaces: tuple[str, str]
) -> None:
    await run_crash_test(
        tmp_path,
        f"sqlite://{tmp_path.as_posix()}/source.db",
        f"{NATS_URL}?namespace={namespaces[1]}",
    )


async def test_a_hub_killed_again_and_again_routes_nats_to_nats_once_in_order(
    tmp_path: Path, namespaces: tuple[str, str]
) -> None:
    await run_crash_test(
        tmp_path,
        f"{NATS_URL}?namespace={namespaces[0]}",
        f"{NATS_URL}?namespace={namespaces[1]}",
    )
