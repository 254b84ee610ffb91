"""Payload fuzz at the store edge: a payload is kept exactly when every reader on its way
can read it, and what a store keeps, the relay publishes as an envelope that eventcore
and the CloudEvents SDK both read, with the payload unchanged.

Candidates: any bytes; any JSON value written with any spacing, escaped or raw UTF-8,
lone surrogates escaped (valid JSON) or raw (not UTF-8); nesting from 0 to 200 levels of
arrays and objects; numbers of up to 5,000 digits; strings with control characters raw
or escaped. Each example appends a batch of them one by one to a fresh store (memory,
SQLite), runs the relay to a memory bus, and reads every published message.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
import pytest
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from eventcore.errors import InvalidPayload
from eventcore.messaging.envelope import decode_envelope
from eventcore.messaging.memory import MemoryBus
from eventcore.messaging.relay import Relay
from eventcore.messaging.topics import TopicMap
from eventcore.store import EventStore, open_store
from eventcore.store.payload import MAX_NUMBER_DIGITS, MAX_PAYLOAD_DEPTH
from eventcore.types import NewEvent, StreamId

#: Hypothesis examples per store backend; each appends up to ``BATCH`` candidates.
EXAMPLES = 60
BATCH = 12
TOPIC = "payloads"
PATIENCE = 15.0

_spacing = st.sampled_from([(",", ":"), (", ", ": "), (" ,\n", " :\t")])
_leaves = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
_values = st.recursive(
    _leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=16,
)


@st.composite
def _json_text(draw: st.DrawFn) -> bytes:
    text = json.dumps(draw(_values), separators=draw(_spacing), ensure_ascii=draw(st.booleans()))
    # A lone surrogate written raw is not UTF-8 (refused); escaped it is valid JSON (kept).
    return text.encode("utf-8", "surrogatepass")


@st.composite
def _nested(draw: st.DrawFn) -> bytes:
    depth = draw(st.integers(0, 200))
    arrays = draw(st.integers(0, 2**depth - 1))  # bit i set: level i is an array
    kinds = [bool(arrays >> level & 1) for level in range(depth)]
    opened = b"".join(b"[" if array else b'{"k":' for array in kinds)
    closed = b"".join(b"]" if array else b"}" for array in reversed(kinds))
    return opened + b"0" + closed


_digits = st.integers(1, MAX_NUMBER_DIGITS + 700).map(lambda n: b"9" * n)
_strings = st.text(alphabet=st.characters(max_codepoint=0x3F), max_size=20).map(
    lambda text: b'"' + text.encode() + b'"'  # raw control characters: not JSON
)

candidates = st.one_of(st.binary(max_size=300), _json_text(), _nested(), _digits, _strings)


def _depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    return 0


def _every_reader_reads(data: bytes) -> bool:
    """Python's json (the SDK's reader) and msgspec (eventcore's) both read ``data``,
    nested within the limit: what the store must keep."""
    try:
        value = json.loads(data.decode("utf-8"))
        msgspec.json.decode(data, type=msgspec.Raw)
    except (ValueError, RecursionError, msgspec.DecodeError):
        return False
    if any(isinstance(number, float) and number != number for number in _floats(value)):
        return False  # json reads NaN, which is not JSON
    return _depth(value) <= MAX_PAYLOAD_DEPTH and not _long_number(data)


def _floats(value: Any) -> list[float]:
    if isinstance(value, list):
        return [number for item in value for number in _floats(item)]
    if isinstance(value, dict):
        return [number for item in value.values() for number in _floats(item)]
    return [value] if isinstance(value, float) else []


def _long_number(data: bytes) -> bool:
    run = 0
    in_string = escaped = False
    for byte in data:
        if in_string:
            escaped, in_string = (False, True) if escaped else (byte == 0x5C, byte != 0x22)
            continue
        in_string = byte == 0x22
        run = run + 1 if 0x30 <= byte <= 0x39 else 0
        if run > MAX_NUMBER_DIGITS:
            return True
    return False


@asynccontextmanager
async def _memory_store(workdir: Path) -> AsyncIterator[EventStore]:
    store = await open_store("memory://")
    try:
        yield store
    finally:
        await store.aclose()


@asynccontextmanager
async def _sqlite_store(workdir: Path) -> AsyncIterator[EventStore]:
    store = await open_store(f"sqlite://{workdir.as_posix()}/events.db")
    try:
        yield store
    finally:
        await store.aclose()


STORES: dict[str, Callable[[Path], Any]] = {"memory": _memory_store, "sqlite": _sqlite_store}
_examples = iter(range(10**9))


async def _publish_all(store: EventStore, bus: MemoryBus) -> None:
    relay = Relay(store, bus, TopicMap({"Candidate": TOPIC}), service="fuzz")
    task = asyncio.create_task(relay.run())
    try:
        async with asyncio.timeout(PATIENCE):
            await relay.published(await store.last_position())
    finally:
        relay.stop()
        await task


@pytest.mark.parametrize("backend", list(STORES))
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(candidates, min_size=1, max_size=BATCH))
async def test_the_store_keeps_what_every_reader_reads_and_the_relay_publishes_it_readable(
    backend: str, tmp_path: Path, batch: list[bytes]
) -> None:
    workdir = tmp_path / f"example-{next(_examples)}"
    workdir.mkdir()
    kept: list[bytes] = []
    async with STORES[backend](workdir) as store:
        for number, data in enumerate(batch):
            stream = StreamId(f"candidate-{number}")
            append = store.append(
                {stream: [NewEvent(type="Candidate", data=data)]}, expected={stream: 0}
            )
            if _every_reader_reads(data):
                await append
                kept.append(data)
                event("kept")
            else:
                with pytest.raises(InvalidPayload):
                    await append
                event("refused")
        if not kept:
            return
        bus = MemoryBus(partitions=1)
        try:
            await _publish_all(store, bus)
            consumer = await bus.consumer(TOPIC, "readers")
            messages = await consumer.fetch(len(kept) + 1, timeout=PATIENCE)
        finally:
            await bus.aclose()

    # The same bytes (whitespace around the value is not part of it).
    assert [decode_envelope(message.body).payload for message in messages] == [
        data.strip(b" \t\r\n") for data in kept
    ]
    for message, data in zip(messages, kept, strict=True):
        cloud_event = JSONFormat().read(CloudEvent, message.body)
        assert cloud_event.get_data() == json.loads(data)
