"""Contract: what goes in comes back — payload bytes, metadata, type, schema version (§3)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from eventcore.store import EventStore
from eventcore.testing._builders import new_event
from eventcore.testing._reading import read_log
from eventcore.types import Metadata, StreamId

ACCOUNT = StreamId("account-1")

FULL_METADATA = Metadata(
    correlation_id="corr-1",
    causation_id="cmd-7",
    traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    tracestate="vendor=opaque,other=x",
    actor="user:alice",
    extra={"tenant": "acme", "source": "api", "unicode": "naïve ✓"},
)


class EventDataContract:
    """Part of :class:`StoreContract`: what goes in comes back — payload bytes,
    metadata, type, schema version (§3)."""

    @pytest.mark.asyncio
    async def test_metadata_round_trips_every_field(self, store: EventStore) -> None:
        await store.append({ACCOUNT: [new_event(metadata=FULL_METADATA)]}, expected={ACCOUNT: 0})

        (from_stream,) = await store.read_stream(ACCOUNT)
        (from_log,) = await read_log(store)

        assert from_stream.metadata == FULL_METADATA
        assert from_log.metadata == FULL_METADATA

    @pytest.mark.asyncio
    async def test_empty_metadata_round_trips_empty(self, store: EventStore) -> None:
        await store.append({ACCOUNT: [new_event(metadata=Metadata())]}, expected={ACCOUNT: 0})

        (event,) = await store.read_stream(ACCOUNT)

        assert event.metadata == Metadata()

    @pytest.mark.asyncio
    async def test_each_event_keeps_its_own_metadata(self, store: EventStore) -> None:
        first = Metadata(correlation_id="one", extra={"n": "1"})
        second = Metadata(actor="bob")
        await store.append(
            {ACCOUNT: [new_event(metadata=first), new_event(metadata=second)]},
            expected={ACCOUNT: 0},
        )

        assert [event.metadata for event in await store.read_stream(ACCOUNT)] == [first, second]

    @pytest.mark.parametrize(
        "data",
        [
            b'{"amount":1}',
            b' { "z" : 1,\t"a" : [ 2 ] } ',
            b'"\\u0000escaped nul\\u0000"',
            '"naïve ✓ 🎉"'.encode(),
            b'"%s"' % (b"x" * 100_000),
        ],
        ids=["json", "spacing", "escaped-nul", "utf8", "100kB"],
    )
    @pytest.mark.asyncio
    async def test_payload_bytes_round_trip_unchanged(self, store: EventStore, data: bytes) -> None:
        await store.append({ACCOUNT: [new_event(data=data)]}, expected={ACCOUNT: 0})

        (from_stream,) = await store.read_stream(ACCOUNT)
        (from_log,) = await read_log(store)

        assert type(from_stream.data) is bytes
        assert from_stream.data == data
        assert from_log.data == data

    @pytest.mark.asyncio
    async def test_event_id_type_and_schema_version_round_trip(self, store: EventStore) -> None:
        written = new_event("Renamed", schema_version=3)
        await store.append({ACCOUNT: [written]}, expected={ACCOUNT: 0})

        (event,) = await store.read_stream(ACCOUNT)

        assert (event.event_id, event.type, event.schema_version) == (
            written.event_id,
            "Renamed",
            3,
        )

    @pytest.mark.asyncio
    async def test_recorded_at_is_timezone_aware_and_current(self, store: EventStore) -> None:
        before = datetime.now(UTC)
        await store.append({ACCOUNT: [new_event()]}, expected={ACCOUNT: 0})
        after = datetime.now(UTC)

        (event,) = await store.read_stream(ACCOUNT)

        assert event.recorded_at.tzinfo is not None
        assert event.recorded_at.utcoffset() is not None
        # A loose bound: the clock a server backend stamps with may differ a little from ours.
        slack = timedelta(minutes=5)
        assert before - slack <= event.recorded_at <= after + slack
