"""Contract: appends are atomic across streams, checked against every stream read (§3)."""

from __future__ import annotations

import pytest

from eventcore.errors import ConcurrencyConflict, DuplicateEventId
from eventcore.store import EventStore
from eventcore.testing._builders import events, new_event
from eventcore.testing._reading import all_heads, read_log, snapshot
from eventcore.types import StreamId

ORDER = StreamId("order-1")
STOCK = StreamId("stock-1")
CUSTOMER = StreamId("customer-1")
SHIPMENT = StreamId("shipment-1")


async def seed(store: EventStore) -> None:
    """order-1 at version 2, stock-1 at 1, customer-1 at 3."""
    await store.append(
        {ORDER: events(2), STOCK: events(1), CUSTOMER: events(3)},
        expected={ORDER: 0, STOCK: 0, CUSTOMER: 0},
    )


# A stream given an empty event list is dropped from the writes and stays in ``expected``:
# it is read-only, exactly as if it had been left out of ``writes``.


# Sizes around 256: the SQLite writer looks stream versions up 256 at a time.


# --- unique event ids ----------------------------------------------------------------------


# --- idempotency keys ----------------------------------------------------------------------


class AppendContract:
    """Part of :class:`StoreContract`: appends are atomic across streams, checked
    against every stream read (§3)."""

    @pytest.mark.asyncio
    async def test_append_writes_several_streams_at_once(self, store: EventStore) -> None:
        result = await store.append(
            {ORDER: events(2), STOCK: events(1)}, expected={ORDER: 0, STOCK: 0}
        )

        assert result.stream_versions == {ORDER: 2, STOCK: 1}
        assert result.deduplicated is False
        assert len(await store.read_stream(ORDER)) == 2
        assert len(await store.read_stream(STOCK)) == 1

    @pytest.mark.asyncio
    async def test_append_result_lists_event_ids_in_the_order_given(
        self, store: EventStore
    ) -> None:
        order_events, stock_events = events(2), events(2)

        result = await store.append(
            {ORDER: order_events, STOCK: stock_events}, expected={ORDER: 0, STOCK: 0}
        )

        assert result.event_ids == tuple(e.event_id for e in [*order_events, *stock_events])
        log = await read_log(store)
        assert result.positions == tuple(event.position for event in log)

    @pytest.mark.asyncio
    async def test_append_reports_only_written_streams_in_versions(self, store: EventStore) -> None:
        await seed(store)

        result = await store.append({ORDER: events(1)}, expected={ORDER: 2, STOCK: 1})

        assert result.stream_versions == {ORDER: 3}

    @pytest.mark.asyncio
    async def test_append_with_read_only_stream_at_expected_version_succeeds(
        self,
        store: EventStore,
    ) -> None:
        await seed(store)

        await store.append({ORDER: events(1)}, expected={ORDER: 2, STOCK: 1, CUSTOMER: 3})

        assert await store.stream_version(ORDER) == 3
        assert await store.stream_version(STOCK) == 1

    @pytest.mark.asyncio
    async def test_a_stream_given_no_events_is_read_only(self, store: EventStore) -> None:
        await seed(store)
        before = await all_heads(store)

        result = await store.append(
            {ORDER: events(1), STOCK: [], SHIPMENT: []},
            expected={ORDER: 2, STOCK: 1, SHIPMENT: 0},
        )

        assert result.stream_versions == {ORDER: 3}
        assert len(result.positions) == 1
        heads = {head.stream_id: head for head in await all_heads(store)}
        assert SHIPMENT not in heads
        assert heads[STOCK] == next(head for head in before if head.stream_id == STOCK)
        assert [event.stream_id for event in await read_log(store, after=6)] == [ORDER]

    @pytest.mark.parametrize(
        ("expected", "stale"),
        [({STOCK: 0, SHIPMENT: 0}, STOCK), ({STOCK: 1, SHIPMENT: 1}, SHIPMENT)],
        ids=["stale-stream", "stream-that-is-not-there"],
    )
    @pytest.mark.asyncio
    async def test_a_stream_given_no_events_still_has_its_expected_version_checked(
        self, store: EventStore, expected: dict[StreamId, int], stale: StreamId
    ) -> None:
        await seed(store)
        before = await snapshot(store)

        with pytest.raises(ConcurrencyConflict) as caught:
            await store.append(
                {ORDER: events(1), STOCK: [], SHIPMENT: []}, expected={ORDER: 2, **expected}
            )

        assert caught.value.stream_id == stale
        assert await snapshot(store) == before

    @pytest.mark.parametrize("count", [256, 257, 300])
    @pytest.mark.asyncio
    async def test_an_append_checks_every_one_of_many_streams(
        self, store: EventStore, count: int
    ) -> None:
        streams = [StreamId(f"s-{n:04}") for n in range(count)]
        await store.append(
            {stream: events(1) for stream in streams}, expected=dict.fromkeys(streams, 0)
        )

        result = await store.append(
            {stream: events(1) for stream in streams}, expected=dict.fromkeys(streams, 1)
        )
        assert result.stream_versions == dict.fromkeys(streams, 2)

        # Each stream is checked, the last one looked up included.
        before = await snapshot(store)
        stale = {**dict.fromkeys(streams, 2), streams[-1]: 1}
        with pytest.raises(ConcurrencyConflict) as caught:
            await store.append({streams[0]: events(1)}, expected=stale)
        assert caught.value.stream_id == streams[-1]
        assert await snapshot(store) == before

    @pytest.mark.asyncio
    async def test_append_expecting_zero_creates_a_new_stream(self, store: EventStore) -> None:
        await store.append({ORDER: events(1)}, expected={ORDER: 0})

        assert await store.stream_version(ORDER) == 1

    @pytest.mark.asyncio
    async def test_append_expecting_zero_on_existing_stream_conflicts(
        self, store: EventStore
    ) -> None:
        await store.append({ORDER: events(1)}, expected={ORDER: 0})
        before = await snapshot(store)

        with pytest.raises(ConcurrencyConflict) as caught:
            await store.append({ORDER: events(1)}, expected={ORDER: 0})

        assert (caught.value.stream_id, caught.value.expected, caught.value.actual) == (ORDER, 0, 1)
        assert await snapshot(store) == before

    @pytest.mark.asyncio
    async def test_append_expecting_existing_version_on_missing_stream_conflicts(
        self,
        store: EventStore,
    ) -> None:
        with pytest.raises(ConcurrencyConflict) as caught:
            await store.append({ORDER: events(1)}, expected={ORDER: 3})

        assert (caught.value.stream_id, caught.value.expected, caught.value.actual) == (ORDER, 3, 0)
        assert await store.stream_version(ORDER) == 0
        assert await store.last_position() == 0

    @pytest.mark.parametrize(
        ("expected", "conflict"),
        [
            ({ORDER: 1}, (ORDER, 1, 2)),
            ({ORDER: 5}, (ORDER, 5, 2)),
            ({ORDER: 2, STOCK: 0}, (STOCK, 0, 1)),
        ],
        ids=["written-stream-behind", "written-stream-ahead", "read-only-stream-behind"],
    )
    @pytest.mark.asyncio
    async def test_append_rejects_an_expected_version_the_stream_is_not_at(
        self,
        store: EventStore,
        expected: dict[StreamId, int],
        conflict: tuple[StreamId, int, int],
    ) -> None:
        await seed(store)
        before = await snapshot(store)

        with pytest.raises(ConcurrencyConflict) as caught:
            await store.append({ORDER: events(1)}, expected=expected)

        assert (caught.value.stream_id, caught.value.expected, caught.value.actual) == conflict
        assert await snapshot(store) == before

    @pytest.mark.asyncio
    async def test_append_rejects_read_only_stream_that_appeared_since_read(
        self,
        store: EventStore,
    ) -> None:
        await store.append({ORDER: events(1)}, expected={ORDER: 0})
        await store.append({STOCK: events(1)}, expected={STOCK: 0})
        before = await snapshot(store)

        with pytest.raises(ConcurrencyConflict) as caught:
            await store.append({ORDER: events(1)}, expected={ORDER: 1, STOCK: 0})

        assert caught.value.stream_id == STOCK
        assert await snapshot(store) == before

    @pytest.mark.asyncio
    async def test_conflict_on_one_stream_writes_none_of_the_others(
        self, store: EventStore
    ) -> None:
        await seed(store)
        new_stream = StreamId("shipment-1")
        before = await snapshot(store)

        with pytest.raises(ConcurrencyConflict) as caught:
            await store.append(
                {ORDER: events(2), new_stream: events(1), CUSTOMER: events(1)},
                expected={ORDER: 2, new_stream: 0, CUSTOMER: 2},
            )

        assert (caught.value.stream_id, caught.value.expected, caught.value.actual) == (
            CUSTOMER,
            2,
            3,
        )
        assert await snapshot(store) == before
        assert await store.stream_version(new_stream) == 0
        assert await store.read_stream(new_stream) == []

    @pytest.mark.asyncio
    async def test_conflict_names_one_of_the_stale_streams(self, store: EventStore) -> None:
        await seed(store)

        with pytest.raises(ConcurrencyConflict) as caught:
            await store.append({ORDER: events(1)}, expected={ORDER: 0, STOCK: 0, CUSTOMER: 3})

        actual = {ORDER: 2, STOCK: 1}
        assert caught.value.stream_id in actual
        assert caught.value.expected == 0
        assert caught.value.actual == actual[StreamId(caught.value.stream_id)]

    @pytest.mark.asyncio
    async def test_append_after_a_conflict_continues_the_versions(self, store: EventStore) -> None:
        await seed(store)
        with pytest.raises(ConcurrencyConflict):
            await store.append({ORDER: events(1)}, expected={ORDER: 1})

        await store.append({ORDER: events(1)}, expected={ORDER: 2})

        assert [event.version for event in await store.read_stream(ORDER)] == [1, 2, 3]

    @pytest.mark.asyncio
    async def test_version_is_written_once_under_two_appends_from_the_same_read(
        self,
        store: EventStore,
    ) -> None:
        await store.append({ORDER: events(1)}, expected={ORDER: 0})
        winner = new_event("Shipped")
        await store.append({ORDER: [winner]}, expected={ORDER: 1})

        with pytest.raises(ConcurrencyConflict):
            await store.append({ORDER: [new_event("Cancelled")]}, expected={ORDER: 1})

        second = await store.read_stream(ORDER, from_version=2)
        assert [(event.version, event.event_id) for event in second] == [(2, winner.event_id)]

    @pytest.mark.asyncio
    async def test_append_rejects_event_id_repeated_within_the_append(
        self, store: EventStore
    ) -> None:
        await seed(store)
        event = new_event()
        before = await snapshot(store)

        with pytest.raises(DuplicateEventId) as caught:
            await store.append(
                {ORDER: [event], STOCK: [new_event(event_id=event.event_id)]},
                expected={ORDER: 2, STOCK: 1},
            )

        assert caught.value.event_id == event.event_id
        assert caught.value.already_stored is False
        assert await snapshot(store) == before

    @pytest.mark.parametrize("duplicate_first", [True, False], ids=["first-stream", "last-stream"])
    @pytest.mark.asyncio
    async def test_append_rejects_event_id_already_stored(
        self, store: EventStore, duplicate_first: bool
    ) -> None:
        stored = new_event()
        await store.append({ORDER: [stored]}, expected={ORDER: 0})
        before = await snapshot(store)
        duplicate = [new_event("Reserved", event_id=stored.event_id)]
        fresh = events(2)
        writes = (
            {STOCK: duplicate, ORDER: fresh}
            if duplicate_first
            else {ORDER: fresh, STOCK: duplicate}
        )

        with pytest.raises(DuplicateEventId) as caught:
            await store.append(writes, expected={ORDER: 1, STOCK: 0})

        assert caught.value.event_id == stored.event_id
        assert caught.value.already_stored is True
        assert await snapshot(store) == before
        assert await store.read_stream(STOCK) == []

    @pytest.mark.asyncio
    async def test_append_with_used_idempotency_key_returns_first_result(
        self, store: EventStore
    ) -> None:
        first = await store.append({ORDER: events(2)}, expected={ORDER: 0}, idempotency_key="k-1")
        before = await snapshot(store)

        again = await store.append({ORDER: events(2)}, expected={ORDER: 0}, idempotency_key="k-1")

        assert again.deduplicated is True
        assert again.stream_versions == first.stream_versions
        assert again.positions == first.positions
        assert again.event_ids == first.event_ids
        assert await snapshot(store) == before

    @pytest.mark.asyncio
    async def test_used_idempotency_key_wins_over_stale_expected_versions(
        self, store: EventStore
    ) -> None:
        first = await store.append(
            {ORDER: events(1)}, expected={ORDER: 0, STOCK: 0}, idempotency_key="k-1"
        )
        await store.append({ORDER: events(1), STOCK: events(1)}, expected={ORDER: 1, STOCK: 0})
        before = await snapshot(store)

        again = await store.append(
            {ORDER: events(1)}, expected={ORDER: 0, STOCK: 0}, idempotency_key="k-1"
        )

        assert again.deduplicated is True
        assert (again.positions, again.event_ids) == (first.positions, first.event_ids)
        assert again.stream_versions == {ORDER: 1}
        assert await snapshot(store) == before

    @pytest.mark.asyncio
    async def test_distinct_idempotency_keys_both_write(self, store: EventStore) -> None:
        await store.append({ORDER: events(1)}, expected={ORDER: 0}, idempotency_key="k-1")

        second = await store.append({ORDER: events(1)}, expected={ORDER: 1}, idempotency_key="k-2")

        assert second.deduplicated is False
        assert await store.stream_version(ORDER) == 2

    @pytest.mark.asyncio
    async def test_failed_append_does_not_use_up_its_idempotency_key(
        self, store: EventStore
    ) -> None:
        await seed(store)
        with pytest.raises(ConcurrencyConflict):
            await store.append({ORDER: events(1)}, expected={ORDER: 0}, idempotency_key="k-1")

        result = await store.append({ORDER: events(1)}, expected={ORDER: 2}, idempotency_key="k-1")

        assert result.deduplicated is False
        assert await store.stream_version(ORDER) == 3

    @pytest.mark.asyncio
    async def test_idempotency_key_is_remembered_after_later_appends(
        self, store: EventStore
    ) -> None:
        first = await store.append({ORDER: events(1)}, expected={ORDER: 0}, idempotency_key="k-1")
        for version in range(1, 4):
            await store.append({ORDER: events(1)}, expected={ORDER: version})

        again = await store.append({ORDER: events(1)}, expected={ORDER: 4}, idempotency_key="k-1")

        assert again.deduplicated is True
        assert again.positions == first.positions
        assert await store.stream_version(ORDER) == 4

    @pytest.mark.asyncio
    async def test_find_append_returns_the_result_of_the_append_with_that_key(
        self,
        store: EventStore,
    ) -> None:
        first = await store.append(
            {ORDER: events(2), STOCK: events(1)},
            expected={ORDER: 0, STOCK: 0},
            idempotency_key="k-1",
        )

        found = await store.find_append("k-1")

        assert found is not None
        assert found.deduplicated is True
        assert (found.positions, found.event_ids) == (first.positions, first.event_ids)
        assert found.stream_versions == first.stream_versions

    @pytest.mark.asyncio
    async def test_find_append_of_an_unused_key_is_none(self, store: EventStore) -> None:
        await store.append({ORDER: events(1)}, expected={ORDER: 0}, idempotency_key="k-1")

        assert await store.find_append("k-2") is None

    @pytest.mark.asyncio
    async def test_find_append_ignores_a_key_whose_append_failed(self, store: EventStore) -> None:
        await seed(store)
        with pytest.raises(ConcurrencyConflict):
            await store.append({ORDER: events(1)}, expected={ORDER: 0}, idempotency_key="k-1")

        assert await store.find_append("k-1") is None
