"""Contract: the global log — unique, ordered positions and resumable batched reads (§3)."""

from __future__ import annotations

import pytest

from eventcore.store import EventStore
from eventcore.testing._builders import events, new_event
from eventcore.testing._reading import read_log
from eventcore.types import StreamId

A = StreamId("a")
B = StreamId("b")
C = StreamId("c")


async def fill(store: EventStore, count: int) -> list[int]:
    """Append ``count`` events over three streams, one or two at a time; their positions."""
    positions: list[int] = []
    versions = {A: 0, B: 0, C: 0}
    streams = [A, B, C]
    for n in range(count):
        stream = streams[n % 3]
        result = await store.append({stream: events(1)}, expected={stream: versions[stream]})
        versions[stream] += 1
        positions.extend(result.positions)
    return positions


class GlobalLogContract:
    """Part of :class:`StoreContract`: the global log — unique, ordered positions
    and resumable batched reads (§3)."""

    @pytest.mark.asyncio
    async def test_the_settled_position_is_the_head_when_no_append_is_in_flight(
        self,
        store: EventStore,
    ) -> None:
        assert await store.settled_position() == 0
        positions = await fill(store, 4)

        assert await store.settled_position() == positions[-1] == await store.last_position()

    @pytest.mark.asyncio
    async def test_positions_strictly_increase_across_appends(self, store: EventStore) -> None:
        positions = await fill(store, 9)

        assert positions == sorted(set(positions))
        assert positions[0] >= 1

    @pytest.mark.asyncio
    async def test_positions_follow_the_order_of_streams_and_events_given(
        self,
        store: EventStore,
    ) -> None:
        c_events, a_events, b_events = events(2), events(1), events(3)

        result = await store.append(
            {C: c_events, A: a_events, B: b_events}, expected={A: 0, B: 0, C: 0}
        )

        log = await read_log(store)
        assert [event.event_id for event in log] == [
            e.event_id for e in [*c_events, *a_events, *b_events]
        ]
        assert [event.stream_id for event in log] == [C, C, A, B, B, B]
        assert list(result.positions) == [event.position for event in log]
        assert list(result.positions) == sorted(set(result.positions))

    @pytest.mark.asyncio
    async def test_read_all_returns_every_event_once_in_position_order(
        self, store: EventStore
    ) -> None:
        positions = await fill(store, 10)

        log = await read_log(store)

        assert [event.position for event in log] == positions

    @pytest.mark.asyncio
    async def test_read_all_event_matches_its_stream_copy(self, store: EventStore) -> None:
        await fill(store, 6)

        log = await read_log(store)
        streams = {s: await store.read_stream(s) for s in (A, B, C)}

        assert sorted(log, key=lambda e: (e.stream_id, e.version)) == [
            event for s in (A, B, C) for event in streams[s]
        ]

    @pytest.mark.asyncio
    async def test_read_all_after_resumes_exactly_past_the_checkpoint(
        self, store: EventStore
    ) -> None:
        positions = await fill(store, 10)

        for index, checkpoint in enumerate(positions):
            resumed = await read_log(store, after=checkpoint)
            assert [event.position for event in resumed] == positions[index + 1 :]

    @pytest.mark.asyncio
    async def test_read_all_after_zero_reads_from_the_start(self, store: EventStore) -> None:
        positions = await fill(store, 3)

        assert [event.position for event in await read_log(store, after=0)] == positions

    @pytest.mark.asyncio
    async def test_read_all_after_the_head_is_empty(self, store: EventStore) -> None:
        await fill(store, 3)

        assert await read_log(store, after=await store.last_position()) == []

    @pytest.mark.asyncio
    async def test_read_all_follower_sees_later_appends_from_its_checkpoint(
        self,
        store: EventStore,
    ) -> None:
        await fill(store, 3)
        checkpoint = (await read_log(store))[-1].position
        later = new_event("Later")

        await store.append({A: [later]}, expected={A: 1})

        assert [event.event_id for event in await read_log(store, after=checkpoint)] == [
            later.event_id
        ]

    @pytest.mark.asyncio
    async def test_read_all_splits_the_log_into_batches_of_at_most_batch_size(
        self,
        store: EventStore,
    ) -> None:
        positions = await fill(store, 7)

        batches = [batch async for batch in store.read_all(batch_size=3)]

        # A batch may come back short (a server backend stops below a transaction still in
        # flight), but never empty and never over the size asked for.
        assert all(1 <= len(batch) <= 3 for batch in batches)
        assert [event.position for batch in batches for event in batch] == positions

    @pytest.mark.asyncio
    async def test_read_all_limit_caps_the_events_returned(self, store: EventStore) -> None:
        positions = await fill(store, 7)

        batches = [batch async for batch in store.read_all(batch_size=2, limit=5)]

        assert [event.position for batch in batches for event in batch] == positions[:5]
        assert all(0 < len(batch) <= 2 for batch in batches)

    @pytest.mark.asyncio
    async def test_read_all_limit_larger_than_the_log_returns_all(self, store: EventStore) -> None:
        positions = await fill(store, 4)

        assert [event.position for event in await read_log(store, limit=100)] == positions

    @pytest.mark.asyncio
    async def test_read_all_types_filter_returns_only_those_types(self, store: EventStore) -> None:
        await store.append(
            {
                A: [new_event("Opened"), new_event("Deposited"), new_event("Closed")],
                B: [new_event("Deposited"), new_event("Opened")],
            },
            expected={A: 0, B: 0},
        )

        chosen = await read_log(store, types=["Opened", "Closed"])

        assert [(event.stream_id, event.type) for event in chosen] == [
            (A, "Opened"),
            (A, "Closed"),
            (B, "Opened"),
        ]

    @pytest.mark.asyncio
    async def test_read_all_types_filter_with_batches_and_limit(self, store: EventStore) -> None:
        batch = [new_event("Wanted" if n % 3 == 0 else "Other") for n in range(12)]
        await store.append({A: batch}, expected={A: 0})
        wanted = [e.event_id for e in batch if e.type == "Wanted"]

        batches = [b async for b in store.read_all(types={"Wanted"}, batch_size=2, limit=3)]

        assert [event.event_id for b in batches for event in b] == wanted[:3]
        assert all(0 < len(b) <= 2 for b in batches)

    @pytest.mark.asyncio
    async def test_read_all_types_filter_with_unknown_type_is_empty(
        self, store: EventStore
    ) -> None:
        await fill(store, 3)

        assert await read_log(store, types=["NoSuchType"]) == []

    @pytest.mark.asyncio
    async def test_read_all_types_filter_resumes_after_a_checkpoint(
        self, store: EventStore
    ) -> None:
        batch = [new_event("Wanted" if n % 2 == 0 else "Other") for n in range(6)]
        result = await store.append({A: batch}, expected={A: 0})

        resumed = await read_log(store, types=["Wanted"], after=result.positions[2])

        assert [event.event_id for event in resumed] == [batch[4].event_id]
