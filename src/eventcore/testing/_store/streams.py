"""Contract: streams, their versions and heads (docs/architecture.md#the-store-contract,
first bullet)."""

from __future__ import annotations

import pytest

from eventcore.store import EventStore
from eventcore.testing._builders import events, new_event
from eventcore.types import StreamId

ACCOUNT = StreamId("account-1")
OTHER = StreamId("account-2")


class StreamsContract:
    """Part of :class:`StoreContract`: streams, their versions and heads
    (docs/architecture.md#the-store-contract, first bullet)."""

    @pytest.mark.asyncio
    async def test_new_store_is_empty(self, store: EventStore) -> None:
        assert await store.last_position() == 0
        assert await store.list_streams() == []
        assert [batch async for batch in store.read_all()] == []

    @pytest.mark.asyncio
    async def test_stream_without_events_has_version_zero_and_reads_empty(
        self, store: EventStore
    ) -> None:
        assert await store.stream_version(ACCOUNT) == 0
        assert await store.read_stream(ACCOUNT) == []

    @pytest.mark.asyncio
    async def test_first_event_of_a_stream_has_version_one(self, store: EventStore) -> None:
        result = await store.append({ACCOUNT: [new_event()]}, expected={ACCOUNT: 0})

        assert result.stream_versions == {ACCOUNT: 1}
        assert [event.version for event in await store.read_stream(ACCOUNT)] == [1]

    @pytest.mark.asyncio
    async def test_versions_are_contiguous_across_appends(self, store: EventStore) -> None:
        await store.append({ACCOUNT: events(2)}, expected={ACCOUNT: 0})
        await store.append({ACCOUNT: events(3)}, expected={ACCOUNT: 2})
        await store.append({ACCOUNT: events(1)}, expected={ACCOUNT: 5})

        assert [event.version for event in await store.read_stream(ACCOUNT)] == [1, 2, 3, 4, 5, 6]
        assert await store.stream_version(ACCOUNT) == 6

    @pytest.mark.asyncio
    async def test_read_stream_returns_events_in_written_order(self, store: EventStore) -> None:
        first, second = events(2)
        third = new_event("Withdrawn")
        await store.append({ACCOUNT: [first, second]}, expected={ACCOUNT: 0})
        await store.append({ACCOUNT: [third]}, expected={ACCOUNT: 2})

        read = await store.read_stream(ACCOUNT)

        assert [event.event_id for event in read] == [e.event_id for e in (first, second, third)]
        assert {event.stream_id for event in read} == {ACCOUNT}

    @pytest.mark.asyncio
    async def test_read_stream_from_version_skips_earlier_events(self, store: EventStore) -> None:
        await store.append({ACCOUNT: events(5)}, expected={ACCOUNT: 0})

        assert [event.version for event in await store.read_stream(ACCOUNT, from_version=3)] == [
            3,
            4,
            5,
        ]
        assert await store.read_stream(ACCOUNT, from_version=6) == []

    @pytest.mark.asyncio
    async def test_streams_have_independent_versions(self, store: EventStore) -> None:
        await store.append({ACCOUNT: events(3)}, expected={ACCOUNT: 0})
        await store.append({OTHER: events(1)}, expected={OTHER: 0})

        assert await store.stream_version(ACCOUNT) == 3
        assert await store.stream_version(OTHER) == 1
        assert [event.version for event in await store.read_stream(OTHER)] == [1]

    @pytest.mark.asyncio
    async def test_stream_id_is_trimmed_on_write_and_read(self, store: EventStore) -> None:
        await store.append({StreamId("  padded "): [new_event()]}, expected={StreamId("padded"): 0})

        assert await store.stream_version(StreamId("padded")) == 1
        assert [event.stream_id for event in await store.read_stream(StreamId(" padded"))] == [
            "padded"
        ]

    @pytest.mark.asyncio
    async def test_read_back_stream_id_is_a_stream_id(self, store: EventStore) -> None:
        await store.append({ACCOUNT: [new_event()]}, expected={ACCOUNT: 0})

        (event,) = await store.read_stream(ACCOUNT)
        (head,) = await store.list_streams()

        assert isinstance(event.stream_id, StreamId)
        assert isinstance(head.stream_id, StreamId)

    @pytest.mark.asyncio
    async def test_last_position_is_the_newest_event_position(self, store: EventStore) -> None:
        await store.append({ACCOUNT: events(2)}, expected={ACCOUNT: 0})
        result = await store.append({OTHER: events(3)}, expected={OTHER: 0})

        assert await store.last_position() == result.last_position
        assert result.last_position == max(result.positions)

    @pytest.mark.asyncio
    async def test_list_streams_returns_heads_in_name_order(self, store: EventStore) -> None:
        for name, count in [("c", 1), ("a", 2), ("b", 3)]:
            await store.append({StreamId(name): events(count)}, expected={StreamId(name): 0})
        log = {
            event.stream_id: event.position async for batch in store.read_all() for event in batch
        }

        heads = await store.list_streams()

        assert [(head.stream_id, head.version) for head in heads] == [("a", 2), ("b", 3), ("c", 1)]
        assert [head.last_position for head in heads] == [log[StreamId(n)] for n in "abc"]

    @pytest.mark.asyncio
    async def test_list_streams_head_tracks_the_latest_append(self, store: EventStore) -> None:
        await store.append({ACCOUNT: events(1)}, expected={ACCOUNT: 0})
        await store.append({OTHER: events(1)}, expected={OTHER: 0})
        result = await store.append({ACCOUNT: events(2)}, expected={ACCOUNT: 1})

        heads = {head.stream_id: head for head in await store.list_streams()}

        assert heads[ACCOUNT].version == 3
        assert heads[ACCOUNT].last_position == result.last_position

    @pytest.mark.asyncio
    async def test_list_streams_after_starts_past_the_given_name(self, store: EventStore) -> None:
        for name in ["a", "b", "c", "d"]:
            await store.append({StreamId(name): events(1)}, expected={StreamId(name): 0})

        assert [h.stream_id for h in await store.list_streams(after=StreamId("b"))] == ["c", "d"]
        assert [h.stream_id for h in await store.list_streams(after=StreamId("bb"))] == ["c", "d"]
        assert await store.list_streams(after=StreamId("d")) == []

    @pytest.mark.asyncio
    async def test_list_streams_limit_caps_the_page(self, store: EventStore) -> None:
        for name in ["a", "b", "c", "d", "e"]:
            await store.append({StreamId(name): events(1)}, expected={StreamId(name): 0})

        first = await store.list_streams(limit=2)
        second = await store.list_streams(after=first[-1].stream_id, limit=2)
        third = await store.list_streams(after=second[-1].stream_id, limit=2)

        assert [[h.stream_id for h in page] for page in (first, second, third)] == [
            ["a", "b"],
            ["c", "d"],
            ["e"],
        ]

    @pytest.mark.asyncio
    async def test_list_streams_orders_by_code_point(self, store: EventStore) -> None:
        names = ["b", "B", "a-2", "a-10", "ä"]
        for name in names:
            await store.append({StreamId(name): events(1)}, expected={StreamId(name): 0})

        assert [head.stream_id for head in await store.list_streams()] == sorted(names)
