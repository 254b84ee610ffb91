"""Wire fuzz, the subscriber: hostile messages interleaved with valid ones on one stream
(one partition), through a real ``Subscriber`` on every bus. Nothing crashes it; every
valid message is handled once, in order; every hostile one is parked at once with a
reason; the partition never sticks.

On NATS the messages are published as another producer would, straight to JetStream:
the valid ones with the headers eventcore's relay sets, every other hostile one with
no ``Nats-Msg-Id`` at all.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import nats
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from eventcore.messaging.bus import Bus, OutgoingMessage, partition_of
from eventcore.messaging.envelope import decode_envelope
from eventcore.messaging.subscriber import Received, Subscriber
from eventcore.messaging.url import BusUrl
from tests.adversarial.messages import (
    KNOWN_HOSTILE,
    Deposited,
    hostile_bodies,
    registry,
    valid_body,
)
from tests.backends import skip_or_fail
from tests.messaging.buses import BUSES, NATS_URL, unavailable_reason

#: Hypothesis examples per backend; each is one subscriber run over a fresh topic.
EXAMPLES = 15
#: Messages per example: up to this many hostile ones, and as many valid ones.
HOSTILE_PER_EXAMPLE = 12
PARTITIONS = 2
STREAM = "account-1"
#: Bounds waits for things that take milliseconds; only a stuck partition reaches it.
PATIENCE = 20.0
#: What a hostile message may be parked as: each says the message cannot be read.
UNREADABLE = {"InvalidMessage", "MessageTooLarge", "UnknownEventType", "DecodeError"}

_topics = itertools.count()


def _readable(body: bytes) -> bool:
    """Would a subscriber handle ``body`` as a ``Deposited``? (A corrupted byte may
    leave a valid message; such a draw is not hostile.)"""
    try:
        envelope = decode_envelope(body)
        registry.decode_payload(envelope.type, envelope.schema_version, envelope.payload)
    except Exception:  # any refusal: hostile indeed
        return False
    return True


unreadable_bodies = hostile_bodies.filter(lambda body: not _readable(body))


@pytest.fixture(params=list(BUSES))
async def bus(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Bus]:
    backend = BUSES[request.param]
    reason = unavailable_reason(backend)
    if reason is not None:
        skip_or_fail(reason, "every bus must run")
    async with backend.site(tmp_path, partitions=PARTITIONS, lease_ttl=1.0) as connect:
        yield await connect()


async def _publish_natively(bus: Bus, topic: str, bodies: Sequence[bytes]) -> None:
    """Through the bus, each message with an id of its own (the memory and SQLite buses
    take nothing else)."""
    await bus.publish(
        [OutgoingMessage(topic, f"m{n}", STREAM, body) for n, body in enumerate(bodies)]
    )


async def _publish_to_jetstream(
    bus: Bus, topic: str, bodies: Sequence[bytes], hostile: Sequence[bool]
) -> None:
    url = BusUrl.parse(bus.url)
    await (await bus.consumer(topic, "setup")).aclose()  # creates the topic's stream
    subject = f"{url.namespace}.{topic}.{partition_of(STREAM, url.partitions)}"
    client = await nats.connect(NATS_URL, connect_timeout=5, allow_reconnect=False)
    try:
        js = client.jetstream()
        for n, (body, bad) in enumerate(zip(bodies, hostile, strict=True)):
            headers = None if bad and n % 2 else {"Nats-Msg-Id": f"m{n}", "Eventcore-Key": STREAM}
            await js.publish(subject, body, headers=headers)
    finally:
        await client.close()


async def _run_until(subscriber: Subscriber, handled: int, parked: int) -> None:
    task = asyncio.create_task(subscriber.run())
    try:
        async with asyncio.timeout(PATIENCE):
            while True:
                status = subscriber.status()
                if (status.handled, status.dead_lettered) == (handled, parked):
                    break
                assert not task.done(), f"run() ended: {task.exception()!r}"
                await asyncio.sleep(0.005)
    finally:
        subscriber.stop()
        await task


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,  # one bus for all examples, a topic each
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)
@given(
    st.lists(st.tuples(unreadable_bodies, st.booleans()), min_size=1, max_size=HOSTILE_PER_EXAMPLE)
)
@example([(body, True) for body in KNOWN_HOSTILE])  # a valid message before each
async def test_hostile_messages_are_parked_and_the_valid_ones_between_them_handled_in_order(
    bus: Bus, drawn: list[tuple[bytes, bool]]
) -> None:
    topic = f"wire{next(_topics)}"
    bodies: list[bytes] = []
    hostile: list[bool] = []
    amounts: list[int] = []
    for body, valid_before in drawn:
        if valid_before:
            amounts.append(len(amounts) + 1)
            bodies.append(valid_body(amounts[-1], version=len(amounts)))
            hostile.append(False)
        bodies.append(body)
        hostile.append(True)
    amounts.append(len(amounts) + 1)  # a valid one last: the partition must reach it
    bodies.append(valid_body(amounts[-1], version=len(amounts)))
    hostile.append(False)
    if "nats" in bus.url:
        await _publish_to_jetstream(bus, topic, bodies, hostile)
    else:
        await _publish_natively(bus, topic, bodies)
    seen: list[int] = []

    async def handle(received: Received) -> None:
        assert isinstance(received.event, Deposited)
        seen.append(received.event.amount)

    subscriber = Subscriber(
        bus,
        topic,
        {Deposited: handle},
        group="fuzz",
        registry=registry,
        retry_backoff=(0.001, 0.005),
        retry_poll=60.0,
    )
    parked = len(drawn)

    await _run_until(subscriber, handled=len(amounts), parked=parked)

    assert seen == amounts  # each valid message once, in order
    letters = await bus.dead_letters.letters(group="fuzz", topic=topic, limit=1000)
    assert len(letters) == parked
    assert Counter(letter.body for letter in letters) == Counter(
        body for body, bad in zip(bodies, hostile, strict=True) if bad
    )
    for letter in letters:
        assert letter.error_type in UNREADABLE, letter.reason
        assert letter.reason.startswith(f"{letter.error_type}: "), letter.reason
        assert letter.attempts == 1
