"""A member of a NATS consumer group killed (SIGKILL, a real process) while it holds
deliveries: whoever takes its partitions next — another member once the lease ran out,
or the same member restarted — gets each key's messages in publish order, the killed
member's first and counted as repeats, without waiting for their ack wait.

The in-process version of this is part of the bus contract
(``TakeoverContract``); here the member really dies, its connection with it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from eventcore.messaging.bus import Delivery
from eventcore.messaging.nats import NatsBus
from eventcore.messaging.url import BusUrl
from tests.messaging.buses import NATS_URL
from tests.messaging.helpers import PATIENCE, TOPIC, ids, outgoing

ROOT = Path(__file__).resolve().parents[2]
CHILD = Path(__file__).with_name("nats_bus_child.py")
COUNT = 40
KEYS = 4
#: Long: a bus that waited for it before sending the killed member's deliveries again
#: would fail the test's patience rather than pass slowly.
ACK_WAIT = 60.0
LEASE_TTL = 1.0

Kill = Callable[[str], Awaitable[dict[str, int]]]


@pytest.fixture
def url(namespace: str) -> str:
    return f"{NATS_URL}?namespace={namespace}&partitions=4"


@pytest.fixture
async def run_and_kill(url: str) -> AsyncIterator[Kill]:
    """``await run_and_kill(member)``: a child joins as ``member``, fetches a batch and
    is killed holding it; returns the attempt of each message it had."""
    children: list[asyncio.subprocess.Process] = []

    async def run_and_kill(member: str) -> dict[str, int]:
        environment = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(CHILD),
            "hang",
            url,
            "billing",
            member,
            str(ACK_WAIT),
            str(LEASE_TTL),
            "12",
            stdout=asyncio.subprocess.PIPE,
            env=environment,
        )
        children.append(process)
        assert process.stdout is not None
        raw = await asyncio.wait_for(process.stdout.readline(), 3 * PATIENCE)
        assert raw, f"the child ended without answering (exit code {process.returncode})"
        process.send_signal(signal.SIGKILL)
        await process.wait()
        return {message_id: attempt for message_id, attempt in json.loads(raw)["fetched"]}

    yield run_and_kill
    for process in children:
        if process.returncode is None:
            process.kill()
        await process.wait()


async def _consume_all(bus: NatsBus, member: str) -> list[Delivery]:
    consumer = await bus.consumer(TOPIC, "billing", member=member, ack_wait=ACK_WAIT)
    got: list[Delivery] = []
    async with asyncio.timeout(PATIENCE):
        while len(set(ids(got))) < COUNT:
            deliveries = await consumer.fetch(100, 0.5)
            await consumer.ack(deliveries)
            got.extend(deliveries)
    return got


def _assert_each_key_in_order(got: list[Delivery]) -> None:
    by_key: dict[str, list[int]] = defaultdict(list)
    for delivery in got:
        by_key[delivery.key].append(int(delivery.body))
    for key, bodies in by_key.items():
        assert bodies == sorted(bodies), f"{key} came as {bodies}"


@pytest.mark.parametrize("successor", ["a", "b"], ids=["restarted", "another-member"])
async def test_the_next_owner_gets_what_a_killed_member_held_first_and_in_order(
    url: str, run_and_kill: Kill, successor: str
) -> None:
    bus = await NatsBus.connect(BusUrl.parse(url), lease_ttl=LEASE_TTL)
    try:
        await bus.publish(outgoing(COUNT, keys=KEYS))
        held = await run_and_kill("a")

        got = await _consume_all(bus, successor)
    finally:
        await bus.aclose()
    assert held
    assert sorted(set(ids(got))) == sorted(f"m{i}" for i in range(COUNT))
    _assert_each_key_in_order(got)
    assert {d.attempt for d in got if d.message_id in held} == {2}
    # A message the killed member had only buffered (delivered to it, never handed out)
    # counts that delivery too: nobody can tell what a dead process saw.
    assert {d.attempt for d in got if d.message_id not in held} <= {1, 2}


async def test_a_member_killed_twice_leaves_its_partitions_in_order_with_attempts_counted(
    url: str, run_and_kill: Kill
) -> None:
    bus = await NatsBus.connect(BusUrl.parse(url), lease_ttl=LEASE_TTL)
    try:
        await bus.publish(outgoing(COUNT, keys=KEYS))
        first = await run_and_kill("a")
        second = await run_and_kill("a")

        got = await _consume_all(bus, "b")
    finally:
        await bus.aclose()
    assert all(second[message_id] == 2 for message_id in first if message_id in second)
    assert sorted(set(ids(got))) == sorted(f"m{i}" for i in range(COUNT))
    _assert_each_key_in_order(got)
    attempts = {d.message_id: d.attempt for d in got}
    for message_id in first.keys() & second.keys():
        assert attempts[message_id] == 3
