"""What a NATS failure becomes: a request the server refuses as it is (400, a message
over ``max_payload``) is ``BusRejected`` — fix it, do not retry; "not now" (503, a
timeout, no responders, a dropped connection) is ``BusUnavailable``; any other
JetStream error is a ``BusError`` naming its status and code.

The mapping table is checked on nats-py's own error values; the refusals a real server
can be made to give are provoked on it."""

from __future__ import annotations

import contextlib
from typing import Any, cast

import nats
import nats.errors
import nats.js.errors
import pytest
from nats.js.api import KeyValueConfig, StreamConfig
from nats.js.client import JetStreamContext

from eventcore._nats.errors import translated
from eventcore._nats.kv import open_bucket
from eventcore.errors import BusClosed, BusError, BusRejected, BusUnavailable, InvalidInput
from eventcore.messaging.bus import OutgoingMessage
from eventcore.messaging.nats import NatsBus
from eventcore.messaging.url import BusUrl
from tests.messaging.buses import NATS_URL
from tests.messaging.helpers import outgoing

TOPIC = "orders"
#: JetStream's error code for a message over the stream's ``max_msg_size``.
MESSAGE_TOO_BIG = 10054
#: JetStream's error code for a stream whose subjects another stream holds.
SUBJECTS_OVERLAP = 10065


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (nats.js.errors.BadRequestError(code=400, err_code=MESSAGE_TOO_BIG), BusRejected),
        (nats.js.errors.APIError(code=400, err_code=10058), BusRejected),
        (nats.js.errors.ServiceUnavailableError(), BusUnavailable),
        (nats.js.errors.APIError(code=503, err_code=10008), BusUnavailable),
        (nats.errors.MaxPayloadError(), BusRejected),
        (nats.errors.TimeoutError(), BusUnavailable),
        (nats.errors.NoRespondersError(), BusUnavailable),
        (nats.js.errors.NoStreamResponseError(), BusUnavailable),
        (ConnectionResetError(), BusUnavailable),
        (nats.errors.ConnectionClosedError(), BusClosed),
        (nats.js.errors.NotFoundError(code=404, err_code=10059), BusError),
        (nats.js.errors.ServerError(code=500, err_code=10049), BusError),
    ],
    ids=repr,
)
def test_each_nats_error_becomes_the_error_that_says_what_to_do(
    raised: Exception, expected: type[Exception]
) -> None:
    with pytest.raises((BusError, BusRejected)) as caught, translated("doing it"):
        raise raised

    assert type(caught.value) is expected
    assert caught.value.__cause__ is raised


def test_a_refusal_is_invalid_input_and_keeps_the_servers_codes() -> None:
    with pytest.raises(InvalidInput) as caught, translated("publishing"):
        raise nats.js.errors.BadRequestError(
            code=400, err_code=MESSAGE_TOO_BIG, description="message size exceeds maximum allowed"
        )

    assert isinstance(caught.value, BusRejected)
    assert (caught.value.code, caught.value.err_code) == (400, MESSAGE_TOO_BIG)
    assert "message size exceeds maximum allowed" in str(caught.value)
    assert "while publishing" in str(caught.value)


def test_an_error_not_of_nats_passes_unchanged() -> None:
    with pytest.raises(KeyError), translated("doing it"):
        raise KeyError("ours")


async def _connect(namespace: str) -> NatsBus:
    url = BusUrl.parse(f"{NATS_URL}?namespace={namespace}&partitions=2")
    return await NatsBus.connect(url, lease_ttl=1.0)


async def _add_stream(config: StreamConfig) -> None:
    """Create a stream as an operator would, outside eventcore."""
    client = await nats.connect(NATS_URL)
    try:
        await client.jetstream().add_stream(config)
    finally:
        await client.close()


async def _max_payload() -> int:
    client = await nats.connect(NATS_URL)
    try:
        return int(client.max_payload)
    finally:
        await client.close()


async def test_a_message_over_the_servers_max_payload_is_refused(namespace: str) -> None:
    # It was BusUnavailable: a relay would have published it again for ever.
    body = b"x" * (await _max_payload() + 1)
    bus = await _connect(namespace)
    try:
        with pytest.raises(BusRejected):
            await bus.publish([OutgoingMessage(topic=TOPIC, message_id="big", key="k", body=body)])
        await bus.publish(outgoing(1))  # the bus goes on
    finally:
        await bus.aclose()


async def test_a_message_over_the_streams_size_limit_is_refused_with_its_code(
    namespace: str,
) -> None:
    # An operator tightened the topic's stream: JetStream answers the publish with an
    # error (it left the publish waiting for its timeout, then said BusUnavailable).
    await _add_stream(
        StreamConfig(
            name=f"{namespace}_{TOPIC}",
            description=f"eventcore topic {TOPIC} partitions=2",
            subjects=[f"{namespace}.{TOPIC}.*"],
            max_msg_size=1024,
        )
    )
    bus = await _connect(namespace)
    try:
        message = OutgoingMessage(topic=TOPIC, message_id="m", key="k", body=b"x" * 2048)
        with pytest.raises(BusRejected) as caught:
            await bus.publish([message])
    finally:
        await bus.aclose()

    assert (caught.value.code, caught.value.err_code) == (400, MESSAGE_TOO_BIG)


async def test_a_topic_whose_subjects_another_stream_holds_is_refused(namespace: str) -> None:
    await _add_stream(StreamConfig(name=f"{namespace}_squatter", subjects=[f"{namespace}.>"]))
    bus = await _connect(namespace)
    try:
        with pytest.raises(BusRejected) as caught:
            await bus.publish(outgoing(1))
    finally:
        await bus.aclose()

    assert (caught.value.code, caught.value.err_code) == (400, SUBJECTS_OVERLAP)


class _RacedJetStream:
    """A JetStream context that loses the race to create a bucket: another process
    creates it first, and the server answers ours as it does under load — "subjects
    overlap" instead of the usual no-op."""

    def __init__(self, js: JetStreamContext, other: JetStreamContext) -> None:
        self._js, self._other = js, other

    def __getattr__(self, name: str) -> Any:
        return getattr(self._js, name)

    async def create_key_value(self, config: KeyValueConfig) -> Any:
        await self._other.create_key_value(config)
        raise nats.js.errors.BadRequestError(
            code=400, err_code=SUBJECTS_OVERLAP, description="subjects overlap"
        )


async def test_a_bucket_another_process_created_at_the_same_instant_is_opened(
    namespace: str,
) -> None:
    # Two children opening one bus at once: one of them died with BusRejected.
    ours, other = await nats.connect(NATS_URL), await nats.connect(NATS_URL)
    try:
        raced = _RacedJetStream(ours.jetstream(), other.jetstream())
        kv = await open_bucket(cast(JetStreamContext, raced), f"{namespace}_raced")
        await kv.put("k", b"v")
        assert (await kv.get("k")).value == b"v"
    finally:
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await ours.jetstream().delete_key_value(f"{namespace}_raced")
        await ours.close()
        await other.close()


async def test_a_bucket_whose_subjects_another_stream_holds_is_refused(namespace: str) -> None:
    bucket = f"{namespace}_held"
    await _add_stream(StreamConfig(name=f"{namespace}_holder", subjects=[f"$KV.{bucket}.>"]))
    client = await nats.connect(NATS_URL)
    try:
        with pytest.raises(nats.js.errors.BadRequestError) as caught:
            await open_bucket(client.jetstream(), bucket)
        await client.jetstream().delete_stream(f"{namespace}_holder")
    finally:
        await client.close()

    assert caught.value.err_code == SUBJECTS_OVERLAP
