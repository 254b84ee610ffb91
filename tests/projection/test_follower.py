"""LogFollower: catch up in batches, filter in the store, follow live, stop cleanly, lag."""

from __future__ import annotations

import asyncio

from eventcore import EventStore, StoredEvent
from eventcore.projection import LogFollower
from eventcore.types import StreamId
from tests.builders import events

A = StreamId("a")


async def collect(follower: LogFollower, count: int) -> list[list[StoredEvent]]:
    """Batches until ``count`` events have come, then stop the follower."""
    batches: list[list[StoredEvent]] = []
    seen = 0
    async for batch in follower.batches():
        batches.append(batch)
        seen += len(batch)
        if seen >= count:
            follower.stop()
    return batches


async def test_follower_catches_up_in_batches_from_its_checkpoint(store: EventStore) -> None:
    await store.append({A: events(25)}, expected={A: 0})
    follower = LogFollower(store, after=5, batch_size=10)

    batches = await collect(follower, 20)

    assert [len(b) for b in batches] == [10, 10]
    assert [e.position for b in batches for e in b] == list(range(6, 26))
    assert follower.position == 25


async def test_follower_asks_the_store_for_handled_types_only(store: EventStore) -> None:
    await store.append(
        {A: [*events(3, "Kept"), *events(4, "Other"), *events(2, "Kept")]}, expected={A: 0}
    )
    follower = LogFollower(store, types=["Kept"])

    batches = await collect(follower, 5)

    assert [e.type for b in batches for e in b] == ["Kept"] * 5


async def test_follower_wakes_for_events_appended_while_it_waits(store: EventStore) -> None:
    follower = LogFollower(store, poll_interval=60.0)
    received = asyncio.create_task(collect(follower, 3))

    await follower.reached(0)  # caught up with the empty log, now waiting
    await store.append({A: events(3)}, expected={A: 0})

    batches = await received
    assert [e.version for b in batches for e in b] == [1, 2, 3]


async def test_stop_ends_a_waiting_follower_at_once(store: EventStore) -> None:
    follower = LogFollower(store, poll_interval=60.0)
    received = asyncio.create_task(collect(follower, 1))
    await follower.reached(0)

    follower.stop()

    assert await received == []


async def test_a_filtered_follower_is_not_woken_again_by_other_types_it_has_scanned(
    store: EventStore,
) -> None:
    await store.append({A: [*events(1, "Kept"), *events(3, "Other")]}, expected={A: 0})
    follower = LogFollower(store, types=["Kept"], poll_interval=60.0)
    received = asyncio.create_task(collect(follower, 2))

    await follower.reached(4)  # the three others are scanned past, not processed
    await store.append({A: events(1, "Kept")}, expected={A: 4})

    batches = await received
    assert [e.position for b in batches for e in b] == [1, 5]
    assert follower.position == 5


async def test_lag_counts_events_behind_and_is_zero_when_caught_up(store: EventStore) -> None:
    await store.append({A: events(10)}, expected={A: 0})
    follower = LogFollower(store, batch_size=4)
    lags = []

    async for batch in follower.batches():
        lags.append(follower.lag())  # measured while the batch is in hand
        if batch[-1].position == 10:
            follower.stop()

    assert [lag.events for lag in lags] == [10, 6, 2]
    assert all(lag.seconds >= 0 for lag in lags)
    assert follower.lag().events == 0
    assert follower.lag().seconds == 0.0


async def test_a_live_filtered_follower_scans_past_other_types_appended_later(
    store: EventStore,
) -> None:
    # The head is looked at beside each read, not before it: the pass after a wake-up
    # must still bring ``scanned`` to the new head without waiting for the poll.
    await store.append({A: events(2, "Kept")}, expected={A: 0})
    follower = LogFollower(store, types=["Kept"], poll_interval=60.0)
    received = asyncio.create_task(collect(follower, 3))
    await follower.reached(2)

    await store.append({A: events(3, "Other")}, expected={A: 2})
    await follower.reached(5)
    assert follower.lag().events == 0
    await store.append({A: events(1, "Kept")}, expected={A: 5})

    batches = await received
    assert [e.position for b in batches for e in b] == [1, 2, 6]
    assert follower.scanned == 6
