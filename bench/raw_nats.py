"""The raw side of the messaging workloads on NATS: nats-py against JetStream directly.

The streams are made as eventcore's NATS bus makes a topic's (file storage, limits
retention, a ten-minute duplicate window) and live in the measurement's namespace, so the
harness deletes them with the rest.
"""

from __future__ import annotations

import asyncio

import nats
from nats.aio.client import Client
from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StorageType, StreamConfig
from nats.js.client import JetStreamContext

from bench.common import Stopwatch
from eventcore.messaging.bus import OutgoingMessage, partition_of

__all__ = ["publish_rate", "through_rate"]

#: Publishes awaiting their acknowledgement at once (nats-py's own default is 4,000).
MAX_PENDING = 4_096
_PARTITIONS = 8


async def _stream(js: JetStreamContext, namespace: str, suffix: str) -> str:
    name = f"{namespace}_{suffix}"
    await js.add_stream(
        StreamConfig(
            name=name,
            subjects=[f"{namespace}.{suffix}.*"],
            storage=StorageType.FILE,
            retention=RetentionPolicy.LIMITS,
            duplicate_window=600.0,
        )
    )
    return name


def _prepared(
    namespace: str, suffix: str, messages: list[OutgoingMessage]
) -> list[tuple[str, bytes, dict[str, str]]]:
    """Subject, body and headers of each message, built before the clock starts."""
    return [
        (
            f"{namespace}.{suffix}.{partition_of(message.key, _PARTITIONS)}",
            message.body,
            {"Nats-Msg-Id": message.message_id},
        )
        for message in messages
    ]


async def _publish_all(
    js: JetStreamContext, prepared: list[tuple[str, bytes, dict[str, str]]]
) -> None:
    acks = [
        await js.publish_async(subject, body, headers=headers)
        for subject, body, headers in prepared
    ]
    await asyncio.gather(*acks)


async def _connect(server: str) -> tuple[Client, JetStreamContext]:
    conn = await nats.connect(server, max_reconnect_attempts=0)
    return conn, conn.jetstream(publish_async_max_pending=MAX_PENDING)


async def publish_rate(server: str, namespace: str, messages: list[OutgoingMessage]) -> float:
    """j: messages/s publishing ``messages`` pipelined, every acknowledgement awaited."""
    conn, js = await _connect(server)
    try:
        await _stream(js, namespace, "raw")
        prepared = _prepared(namespace, "raw", messages)
        stopwatch = Stopwatch()
        with stopwatch.running():
            await _publish_all(js, prepared)
        return stopwatch.rate(len(messages))
    finally:
        await conn.close()


async def through_rate(
    server: str, namespace: str, messages: list[OutgoingMessage], batch: int
) -> float:
    """l: messages/s from the first publish to the last ack, with one pull consumer
    fetching ``batch`` at a time while the messages are published."""
    conn, js = await _connect(server)
    try:
        stream = await _stream(js, namespace, "rawl")
        pull = await js.pull_subscribe(
            f"{namespace}.rawl.*",
            durable="raw",
            stream=stream,
            config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, max_ack_pending=-1),
        )
        prepared = _prepared(namespace, "rawl", messages)

        async def consume() -> None:
            seen: set[bytes] = set()
            while len(seen) < len(messages):
                try:
                    fetched = await pull.fetch(batch, timeout=1.0)
                except nats.errors.TimeoutError:
                    continue
                for message in fetched:
                    await message.ack()
                    seen.add(bytes(message.headers["Nats-Msg-Id"], "utf-8"))  # type: ignore[index]
            await conn.flush()

        stopwatch = Stopwatch()
        with stopwatch.running():
            async with asyncio.timeout(60 + len(messages) / 100), asyncio.TaskGroup() as group:
                group.create_task(_publish_all(js, prepared))
                group.create_task(consume())
        return stopwatch.rate(len(messages))
    finally:
        await conn.close()
