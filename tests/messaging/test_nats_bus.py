"""What only the NATS bus does: JetStream names and settings, keys KV cannot hold,
and surviving a server restart (on a throwaway nats-server of the test's own).

The shared behaviour is proven by the conformance suite (``-k nats``)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import nats
import pytest
from nats.js.api import StorageType

from eventcore.errors import BusUnavailable
from eventcore.messaging.bus import DeadLetter, Delivery, OutgoingMessage
from eventcore.messaging.nats import NatsBus
from eventcore.messaging.url import BusUrl
from eventcore.store.checkpoint import Checkpoint
from tests.messaging.buses import NATS_URL
from tests.messaging.helpers import PATIENCE, consume, ids, outgoing
from tests.messaging.nats_server import ThrowawayNats

TOPIC = "orders"


async def _connect(namespace: str, partitions: int = 4) -> NatsBus:
    url = BusUrl.parse(f"{NATS_URL}?namespace={namespace}&partitions={partitions}")
    return await NatsBus.connect(url, lease_ttl=1.0)


async def test_a_topic_is_a_file_stream_with_a_subject_per_partition(namespace: str) -> None:
    bus = await _connect(namespace, partitions=3)
    try:
        await bus.publish(outgoing(1))
        client = await nats.connect(NATS_URL)
        try:
            info = await client.jetstream().stream_info(f"{namespace}_{TOPIC}")
        finally:
            await client.close()
    finally:
        await bus.aclose()
    assert info.config.subjects == [f"{namespace}.{TOPIC}.*"]
    assert info.config.storage == StorageType.FILE
    assert info.config.duplicate_window == 600.0
    assert info.config.description == f"eventcore topic {TOPIC} partitions=3"


async def test_a_topic_keeps_the_partition_count_it_was_created_with(namespace: str) -> None:
    first = await _connect(namespace, partitions=2)
    later = await _connect(namespace, partitions=6)
    try:
        await first.publish(outgoing(1))
        consumer = await later.consumer(TOPIC, "billing")
        assert await consumer.fetch(10, timeout=1.0) != []
        assert consumer.partitions == frozenset({0, 1})
    finally:
        await later.aclose()
        await first.aclose()


async def test_ids_that_kv_keys_cannot_hold_still_name_letters_and_checkpoints(
    namespace: str,
) -> None:
    bus = await _connect(namespace)
    odd = "urn:event/1 ünïcode.2"
    try:
        letter = DeadLetter(
            letter_id=DeadLetter.id_for("billing", TOPIC, odd),
            group="billing",
            topic=TOPIC,
            message_id=odd,
            key="k",
            body=b"x",
            reason="boom",
            error_type="ValueError",
            attempts=5,
            failed_at=datetime.now(UTC),
        )
        await bus.dead_letters.put(letter)
        await bus.save_checkpoint(odd, Checkpoint(position=7, store_id="s"))
        assert await bus.dead_letters.get(letter.letter_id) == letter
        assert await bus.load_checkpoint(odd) == Checkpoint(position=7, store_id="s")
    finally:
        await bus.aclose()


async def test_connecting_to_no_server_raises_bus_unavailable(tmp_path: Path) -> None:
    server = ThrowawayNats(tmp_path)  # started never: its port is free, nobody listens
    with pytest.raises(BusUnavailable):
        await NatsBus.connect(BusUrl.parse(server.url))


async def _publish_when_back(bus: NatsBus, messages: list[OutgoingMessage]) -> None:
    deadline = time.monotonic() + PATIENCE
    while True:
        try:
            await bus.publish(messages)
            return
        except BusUnavailable:
            if time.monotonic() > deadline:
                raise


async def test_a_bus_survives_a_server_restart(tmp_path: Path) -> None:
    with ThrowawayNats(tmp_path) as server:
        bus = await NatsBus.connect(BusUrl.parse(f"{server.url}?partitions=2"), lease_ttl=1.0)
        try:
            before = outgoing(10)
            await bus.publish(before)

            server.stop()
            with pytest.raises(BusUnavailable):
                await bus.publish(outgoing(1, prefix="lost"))

            server.start()
            after = outgoing(5, start=10)
            await _publish_when_back(bus, after)

            consumer = await bus.consumer(TOPIC, "billing")
            got = await consume(consumer, len(before) + len(after))
        finally:
            await bus.aclose()
    published = {m.message_id for m in before + after}
    assert published <= set(ids(got))
    # The client buffers what it could not send; it may reach the server after the
    # reconnect, which is why a failed publish is "may or may not have been accepted".
    assert set(ids(got)) - published <= {"lost0"}


async def test_after_a_delayed_nak_later_messages_wait_for_it_and_keep_their_attempt(
    namespace: str,
) -> None:
    # JetStream itself would go on with m2.. while m0 waits out its delay; the bus must not.
    bus = await _connect(namespace, partitions=1)
    try:
        await bus.publish(outgoing(10, keys=1))
        consumer = await bus.consumer(TOPIC, "billing")
        first = await consumer.fetch(2, timeout=2.0)
        assert ids(first) == ["m0", "m1"]
        await consumer.nak(first[0], delay=0.3)

        handled: list[Delivery] = []
        deadline = time.monotonic() + PATIENCE
        while len(handled) < 10:
            assert time.monotonic() < deadline, f"only {ids(handled)}"
            batch = await consumer.fetch(3, timeout=0.5)
            handled += batch
            await consumer.ack(batch)
    finally:
        await bus.aclose()
    assert ids(handled) == [f"m{i}" for i in range(10)]
    assert [d.attempt for d in handled] == [2, 2] + [1] * 8
