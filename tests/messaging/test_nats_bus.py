"""What only the NATS bus does: JetStream names and settings, keys KV cannot hold,
and surviving a server restart (on a throwaway nats-server of the test's own).

The shared behaviour is proven by the conformance suite (``-k nats``)."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import nats
import pytest
from nats.js.api import StorageType
from nats.js.errors import NoKeysError

from eventcore.errors import BusUnavailable
from eventcore.events import Event, EventRegistry
from eventcore.messaging.bus import DeadLetter, Delivery, OutgoingMessage
from eventcore.messaging.envelope import encode_envelope, envelope_of
from eventcore.messaging.nats import NatsBus
from eventcore.messaging.subscriber import Received, Subscriber
from eventcore.messaging.url import BusUrl
from eventcore.store.checkpoint import Checkpoint
from eventcore.types import Metadata, StoredEvent, StreamId
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


@pytest.mark.parametrize(
    "odd", ["urn:event/1 ünïcode.2", "é" * 3000], ids=["unsafe", "too-long-for-a-subject"]
)
async def test_ids_that_kv_keys_cannot_hold_still_name_letters_and_checkpoints(
    namespace: str, odd: str
) -> None:
    bus = await _connect(namespace)
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


class Deposited(Event):
    amount: int


async def test_an_unreadable_message_near_max_payload_is_parked_and_its_partition_moves_on(
    namespace: str,
) -> None:
    client = await nats.connect(NATS_URL)
    max_payload = client.max_payload
    # Not JSON, and as large as the server lets a message be (with its two headers).
    huge = b"\xff" + b"x" * (max_payload - 1024)
    stored = StoredEvent(
        1,
        StreamId("k"),
        1,
        uuid.uuid4(),
        "Deposited",
        1,
        b'{"amount":7}',
        Metadata(),
        datetime.now(UTC),
    )
    valid = encode_envelope(envelope_of(stored, source="bank"))
    bus = await _connect(namespace)
    handled: list[int] = []

    async def handle(received: Received) -> None:
        assert isinstance(received.event, Deposited)
        handled.append(received.event.amount)

    sub = Subscriber(
        bus,
        TOPIC,
        {Deposited: handle},
        group="billing",
        registry=EventRegistry([Deposited]),
        retry_poll=0.05,
    )
    letter_id = DeadLetter.id_for("billing", TOPIC, "huge")
    try:
        await bus.publish(
            [OutgoingMessage(TOPIC, "huge", "k", huge), OutgoingMessage(TOPIC, "valid", "k", valid)]
        )
        task = asyncio.create_task(sub.run())
        try:
            async with asyncio.timeout(PATIENCE):
                # Before the fix: the letter was refused, the message nak'ed for ever, and
                # the valid message behind it never handled.
                while not handled:  # noqa: ASYNC110 -- the subscriber has no event to await
                    await asyncio.sleep(0.02)
            letter = await bus.dead_letters.get(letter_id)
            assert (letter.body, letter.error_type, letter.attempts) == (huge, "InvalidMessage", 1)

            await bus.dead_letters.request_retry(letter_id)  # still unreadable: parked again
            async with asyncio.timeout(PATIENCE):
                while sub.status().dead_lettered < 2:  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
            assert (await bus.dead_letters.get(letter_id)).body == huge
            await bus.dead_letters.drop(letter_id)
        finally:
            sub.stop()
            await task
        assert handled == [7]
        assert await bus.dead_letters.count() == 0
        # The body, kept apart in parts, went with the letter.
        bodies = await client.jetstream().key_value(f"{namespace}_deadletter_bodies")
        with pytest.raises(NoKeysError):
            await bodies.keys()
    finally:
        await bus.aclose()
        await client.close()


async def test_a_message_id_no_message_can_be_told_apart_by_gives_way_to_the_sequence(
    namespace: str,
) -> None:
    bus = await _connect(namespace, partitions=1)
    client = await nats.connect(NATS_URL)
    try:
        await (await bus.consumer(TOPIC, "setup")).aclose()  # creates the topic's stream
        subject = f"{namespace}.{TOPIC}.0"
        odd = ["x" * 5000, "tab\there", ""]
        for number, message_id in enumerate(odd):
            await client.jetstream().publish(
                subject, b"%d" % number, headers={"Nats-Msg-Id": message_id}
            )
        # Two ids of invalid UTF-8 bytes, which nats-py reads as the same text.
        for raw in (b"\xff", b"\xfe"):
            header = b"NATS/1.0\r\nNats-Msg-Id: " + raw + b"\r\n\r\n"
            await client._send_command(  # nats-py has no way to send raw header bytes
                b"HPUB %s %d %d\r\n%s\r\n" % (subject.encode(), len(header), len(header), header)
            )
        await client.flush()
        await client.jetstream().publish(subject, b"fine", headers={"Nats-Msg-Id": "order-7"})
        consumer = await bus.consumer(TOPIC, "billing")

        got = await consume(consumer, 6)

        assert ids(got) == ["seq-1", "seq-2", "seq-3", "seq-4", "seq-5", "order-7"]
    finally:
        await client.close()
        await bus.aclose()
