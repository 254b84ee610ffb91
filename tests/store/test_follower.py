"""LogFollower: catch up in batches, filter in the store, follow live, stop cleanly, lag."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import psycopg
import pytest

from eventcore import EventStore, StoredEvent
from eventcore.errors import InvalidInput, StoreUnavailable
from eventcore.projection import LogFollower
from eventcore.store import follower as follower_module
from eventcore.store import open_store
from eventcore.store.follower import Lag
from eventcore.store.postgres import PostgresStore
from eventcore.types import StreamId
from tests.backends import BACKENDS, POSTGRES_URL
from tests.builders import events
from tests.held_append import hold_append_open

A = StreamId("a")
B = StreamId("b")
C = StreamId("c")


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
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Neither waits nor pauses: a pause there would outlast the test.
    monkeypatch.setattr(follower_module, "_FIRST_PAUSE", 60.0)
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


# --- what a follower promises to the code that waits on it (issues 9 and 10) -------------


@pytest.mark.parametrize(
    ("option", "why"),
    [
        pytest.param({"batch_size": 0}, "batch_size must be at least 1", id="batch_size"),
        pytest.param({"poll_interval": 0.0}, "poll_interval must be positive", id="poll"),
        pytest.param({"poll_interval": float("nan")}, "poll_interval must be positive", id="nan"),
    ],
)
def test_a_follower_with_a_bad_option_is_refused(option: dict[str, Any], why: str) -> None:
    with pytest.raises(InvalidInput, match=why):
        LogFollower(cast(EventStore, None), **option)


async def test_the_smallest_options_are_accepted_and_a_negative_checkpoint_starts_at_0(
    store: EventStore,
) -> None:
    await store.append({A: events(2)}, expected={A: 0})
    follower = LogFollower(store, after=-3, batch_size=1, poll_interval=1e-9)

    assert (follower.position, follower.scanned, follower.head) == (0, 0, 0)
    assert [[e.position for e in b] for b in await collect(follower, 2)] == [[1], [2]]


class Watched:
    """A real store seen through the calls a follower makes: each counted, and open to a
    test's hooks (an append at the end of a read, a failure, a stale head)."""

    def __init__(self, inner: EventStore) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()
        #: Set while no ``read_all`` is under way.
        self.reads_idle = asyncio.Event()
        self.reads_idle.set()
        #: Head and settled looks wait until no read is under way.
        self.looks_after_reads = False
        #: Run once, inside the next read, after the store's read has ended.
        self.after_read: Callable[[], Awaitable[object]] | None = None
        #: Raised at the next call of the method named.
        self.failures: dict[str, Exception] = {}
        #: What head and settled looks answer instead of the store's own.
        self.stale_head: int | None = None
        #: What settled looks alone answer instead (an append held in flight below it).
        self.settled_at: int | None = None
        #: The next batch of a read waits for this event before it is handed over.
        self.batch_gate: asyncio.Event | None = None
        #: Set when a read starts.
        self.read_started = asyncio.Event()
        #: Set each time a read ends.
        self.read_ended = asyncio.Event()
        #: Set and cleared around each ``wait_for_events``.
        self.waiting = asyncio.Event()

    def _called(self, name: str) -> None:
        self.calls[name] += 1
        error = self.failures.pop(name, None)
        if error is not None:
            raise error

    async def read_all(self, **options: Any) -> AsyncIterator[list[StoredEvent]]:
        self._called("read_all")
        self.read_started.set()
        self.reads_idle.clear()
        try:
            async for batch in self.inner.read_all(**options):
                if self.batch_gate is not None:
                    gate, self.batch_gate = self.batch_gate, None
                    await gate.wait()
                yield batch
            if self.after_read is not None:
                hook, self.after_read = self.after_read, None
                await hook()
        finally:
            self.reads_idle.set()
            self.read_ended.set()

    async def _look(self, name: str, answer: Callable[[], Awaitable[int]]) -> int:
        if self.looks_after_reads:
            await self.reads_idle.wait()
        self._called(name)
        return await answer() if self.stale_head is None else self.stale_head

    async def last_position(self) -> int:
        return await self._look("last_position", self.inner.last_position)

    async def settled_position(self) -> int:
        settled = await self._look("settled_position", self.inner.settled_position)
        return settled if self.settled_at is None else self.settled_at

    async def wait_for_events(self, after: int, timeout: float) -> bool:  # noqa: ASYNC109
        self._called("wait_for_events")
        self.waiting.set()
        try:
            return await self.inner.wait_for_events(after, timeout)
        finally:
            self.waiting.clear()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture
def watched(store: EventStore) -> Watched:
    return Watched(store)


def following(watched: Watched, **options: Any) -> LogFollower:
    return LogFollower(cast(EventStore, watched), **options)


async def finishes(task: asyncio.Future[Any]) -> bool:
    """Whether ``task`` ends once everything ready to run has run (no clock involved)."""
    for _ in range(20):
        await asyncio.sleep(0)
    return task.done()


async def test_reached_is_not_true_until_the_position_itself_is_processed(
    store: EventStore,
) -> None:
    await store.append({A: events(4)}, expected={A: 0})
    follower = LogFollower(store, batch_size=2)
    reading = follower.batches()

    assert [e.position for e in await anext(reading)] == [1, 2]
    in_hand = asyncio.ensure_future(follower.reached(2))
    assert not await finishes(in_hand), "a batch in hand is not processed yet"
    await anext(reading)
    assert await in_hand is True
    one_past = asyncio.ensure_future(follower.reached(3))
    assert not await finishes(one_past), "position 3 is in hand, not processed"

    follower.stop()
    await reading.aclose()
    assert await one_past is False


async def test_reached_answers_false_when_the_follower_stops_short_of_the_position(
    store: EventStore,
) -> None:
    await store.append({A: events(3)}, expected={A: 0})
    follower = LogFollower(store, poll_interval=60.0)
    received = asyncio.create_task(collect(follower, 4))
    await follower.reached(3)
    waiting = asyncio.ensure_future(follower.reached(10))

    follower.stop()

    assert await waiting is False
    assert await follower.reached(10) is False
    assert await follower.reached(3) is True
    assert [e.position for b in await received for e in b] == [1, 2, 3]


async def test_stop_ends_the_iteration_after_the_batch_in_hand(store: EventStore) -> None:
    await store.append({A: events(10)}, expected={A: 0})
    follower = LogFollower(store, batch_size=2)
    batches = []

    async for batch in follower.batches():
        batches.append(batch)
        follower.stop()  # more is ready to read: it must not be handed out

    assert [[e.position for e in b] for b in batches] == [[1, 2]]
    assert follower.position == 2


async def test_a_filtered_follower_delivers_an_event_committed_during_its_read(
    watched: Watched,
) -> None:
    # The append lands after the store's read but before the look beside it: the
    # scanned mark must come from the position settled before the read, or the new
    # event is counted as looked through without ever being read.
    await watched.inner.append({A: events(1, "Kept")}, expected={A: 0})
    watched.looks_after_reads = True
    watched.after_read = lambda: watched.inner.append({A: events(1, "Kept")}, expected={A: 1})
    follower = following(watched, types=["Kept"], poll_interval=60.0)
    received = asyncio.create_task(collect(follower, 2))

    assert await follower.reached(2) is True
    assert follower.position == 2
    assert [e.position for b in await received for e in b] == [1, 2]


async def test_a_caught_up_follower_sleeps_in_the_store_instead_of_reading_again(
    watched: Watched,
) -> None:
    # Scanned past other types (4) but processed only 1: a wait from the position
    # processed would return at once, every time, and the follower would spin.
    await watched.inner.append({A: [*events(1, "Kept"), *events(3, "Other")]}, expected={A: 0})
    follower = following(watched, types=["Kept"], poll_interval=60.0)
    received = asyncio.create_task(collect(follower, 2))
    await follower.reached(4)
    await watched.waiting.wait()
    reads = watched.calls["read_all"]

    assert not await finishes(received)
    assert watched.waiting.is_set()
    assert watched.calls["read_all"] == reads
    assert watched.calls["wait_for_events"] == 1
    # One look before the first read, then one beside each read: none on the way from
    # a wake-up to the read.
    assert watched.calls["settled_position"] == watched.calls["read_all"] + 1
    follower.stop()
    await received


async def test_a_follower_that_finds_the_head_moved_during_a_read_reads_again_without_waiting(
    watched: Watched, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(follower_module, "_FIRST_PAUSE", 60.0)
    await watched.inner.append({A: events(2)}, expected={A: 0})
    watched.looks_after_reads = True
    watched.after_read = lambda: watched.inner.append({A: events(3)}, expected={A: 2})
    follower = following(watched, poll_interval=60.0)

    async with asyncio.timeout(30):  # a pause would outlast the test
        batches = await collect(follower, 5)

    assert [e.position for b in batches for e in b] == [1, 2, 3, 4, 5]
    assert watched.calls["wait_for_events"] == 0
    # The second pass used the look made beside the first read: no look in its way.
    assert watched.calls["settled_position"] == watched.calls["read_all"] + 1 == 3


async def test_a_store_error_while_waiting_ends_the_follower_with_that_error(
    watched: Watched,
) -> None:
    watched.failures["wait_for_events"] = StoreUnavailable("the store went away")
    follower = following(watched, poll_interval=60.0)

    with pytest.raises(StoreUnavailable, match="went away"):
        async with asyncio.timeout(30):  # a swallowed error would wait for ever
            await collect(follower, 1)


async def test_a_failed_look_at_the_head_beside_a_read_ends_the_follower_with_its_error(
    watched: Watched,
) -> None:
    await watched.inner.append({A: events(3)}, expected={A: 0})
    watched.looks_after_reads = True
    follower = following(watched, poll_interval=60.0)
    reading = follower.batches()
    await anext(reading)  # the first look is done; the next waits for this read to end
    watched.failures["last_position"] = StoreUnavailable("no head")

    with pytest.raises(StoreUnavailable, match="no head"):
        async with asyncio.timeout(30):
            await anext(reading)

    looks = [t for t in asyncio.all_tasks() if "_look_at_head" in repr(t.get_coro())]
    assert looks == [], "no head look is left running"


async def test_a_look_at_the_head_that_failed_before_its_read_ended_ends_the_follower(
    watched: Watched,
) -> None:
    await watched.inner.append({A: events(3)}, expected={A: 0})
    looks = 0
    failed = asyncio.Event()
    settled_position = watched.settled_position

    async def second_look_fails() -> int:
        # The first look is made before the first read; the second goes on beside it.
        nonlocal looks
        looks += 1
        if looks == 2:
            failed.set()
            raise StoreUnavailable("no head")
        return await settled_position()

    watched.settled_position = second_look_fails  # type: ignore[method-assign]
    gate = watched.batch_gate = asyncio.Event()  # the read hands nothing over until then
    follower = following(watched, poll_interval=60.0)
    reading = follower.batches()
    first = asyncio.ensure_future(anext(reading))
    await failed.wait()
    gate.set()
    assert [e.position for e in await first] == [1, 2, 3]

    # The look ended (failed) while the read was under way: its error is not lost.
    with pytest.raises(StoreUnavailable, match="no head"):
        async with asyncio.timeout(30):  # a swallowed error would wait for ever
            await anext(reading)


async def test_a_follower_cancelled_while_its_head_look_is_slow_leaves_no_look_running(
    watched: Watched,
) -> None:
    await watched.inner.append({A: events(3)}, expected={A: 0})
    looks = 0
    slow_look = asyncio.Event()
    settled_position = watched.settled_position

    async def second_look_never_answers() -> int:
        nonlocal looks
        looks += 1
        if looks == 2:
            slow_look.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                for _ in range(3):  # like a store call that takes a moment to unwind
                    await asyncio.sleep(0)
                raise
        return await settled_position()

    watched.settled_position = second_look_never_answers  # type: ignore[method-assign]
    follower = following(watched, poll_interval=60.0)

    async def follow() -> None:
        async for _ in follower.batches():
            pass

    task = asyncio.ensure_future(follow())
    await slow_look.wait()
    await watched.read_ended.wait()  # the read is over: the follower waits for the look
    await finishes(asyncio.ensure_future(asyncio.sleep(0)))
    task.cancel()

    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(30):  # a look waited for but never cancelled: for ever
            await task
    looks_left = [t for t in asyncio.all_tasks() if "_look_at_head" in repr(t.get_coro())]
    assert looks_left == [], "no head look is left running"


async def test_leaving_a_follower_mid_read_leaves_no_head_look_running(watched: Watched) -> None:
    await watched.inner.append({A: events(4)}, expected={A: 0})
    watched.looks_after_reads = True  # the look beside the read waits for the read to end
    follower = following(watched, batch_size=2)
    reading = follower.batches()
    await anext(reading)

    await reading.aclose()

    looks = [t for t in asyncio.all_tasks() if "_look_at_head" in repr(t.get_coro())]
    assert looks == [], "no head look is left running"


async def test_the_head_covers_every_batch_read_even_when_the_head_look_lags(
    watched: Watched,
) -> None:
    await watched.inner.append({A: events(5)}, expected={A: 0})
    watched.stale_head = 0  # a head look that has not seen these events yet
    follower = following(watched, batch_size=2)
    heads = []

    async for batch in follower.batches():
        heads.append((follower.head, follower.lag().events))
        if batch[-1].position == 5:
            follower.stop()

    assert heads == [(2, 2), (4, 2), (5, 1)]


async def test_lag_seconds_when_behind_with_nothing_in_hand_is_the_age_of_the_last_processed(
    watched: Watched,
) -> None:
    for version in range(4):  # each event a little older than the next
        await watched.inner.append({A: events(1)}, expected={A: version})
        await asyncio.sleep(0.002)
    follower = following(watched, batch_size=3)
    reading = follower.batches()
    first = await anext(reading)
    gate = asyncio.Event()
    watched.batch_gate = gate  # the next batch is read, but not handed over yet
    await asyncio.sleep(0.01)  # the event in hand gets measurably old
    handing = asyncio.ensure_future(anext(reading))
    await follower.reached(3)  # the first batch is processed; nothing is in hand

    lag = follower.lag()

    age = (datetime.now(UTC) - first[-1].recorded_at).total_seconds()
    assert lag.events == 1
    assert 0.01 <= lag.seconds <= age
    gate.set()
    assert [e.position for e in await handing] == [4]
    await reading.aclose()


async def test_lag_seconds_while_a_batch_is_in_hand_is_the_age_of_its_oldest_event(
    store: EventStore,
) -> None:
    await store.append({A: events(1)}, expected={A: 0})
    await asyncio.sleep(0.01)
    await store.append({A: events(1)}, expected={A: 1})
    follower = LogFollower(store)
    reading = follower.batches()
    batch = await anext(reading)
    oldest = (datetime.now(UTC) - batch[0].recorded_at).total_seconds()

    lag = follower.lag()

    assert lag.events == 2
    assert oldest <= lag.seconds <= (datetime.now(UTC) - batch[0].recorded_at).total_seconds()
    assert oldest >= 0.01
    await reading.aclose()


async def test_lag_before_anything_is_processed(watched: Watched) -> None:
    await watched.inner.append({A: events(2)}, expected={A: 0})
    follower = following(watched)
    assert follower.lag() == Lag(events=0, seconds=0.0)
    gate = asyncio.Event()
    watched.batch_gate = gate
    reading = follower.batches()
    handing = asyncio.ensure_future(anext(reading))
    await watched.read_started.wait()  # the head is looked at, the read is under way

    # Behind by what it has seen, with nothing processed to measure an age from.
    assert follower.lag() == Lag(events=2, seconds=0.0)
    gate.set()
    assert len(await handing) == 2
    await reading.aclose()


async def test_every_caller_waiting_on_reached_is_answered(store: EventStore) -> None:
    await store.append({A: events(2)}, expected={A: 0})
    follower = LogFollower(store, poll_interval=60.0)
    waiting = [asyncio.ensure_future(follower.reached(2)) for _ in range(3)]
    await asyncio.sleep(0)  # each waiter is parked before the follower moves
    received = asyncio.create_task(collect(follower, 2))

    async with asyncio.timeout(30):  # a waiter left unwoken would wait for ever
        assert await asyncio.gather(*waiting) == [True, True, True]
    await received


async def test_a_short_catch_up_looks_at_the_head_only_before_and_beside_its_read(
    watched: Watched,
) -> None:
    await watched.inner.append({A: events(10)}, expected={A: 0})
    follower = following(watched, batch_size=2)

    await collect(follower, 10)

    assert watched.calls["read_all"] == 1
    assert watched.calls["last_position"] == 2


async def test_a_long_catch_up_looks_at_the_head_again_and_fails_with_a_failed_look(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The memory store answers a look within one pass of the loop: no clock involved.
    monkeypatch.setattr(follower_module, "_HEAD_REFRESH", 0.0)  # every batch is "long"
    async with await open_store("memory://") as store:
        watched = Watched(store)
        await store.append({A: events(10)}, expected={A: 0})
        follower = following(watched, batch_size=2)
        reading = follower.batches()
        await batches_in_turn(reading, 3)
        assert watched.calls["last_position"] >= 3
        watched.failures["last_position"] = StoreUnavailable("no head")

        with pytest.raises(StoreUnavailable, match="no head"):
            await batches_in_turn(reading, 3)


async def batches_in_turn(reading: AsyncIterator[list[StoredEvent]], count: int) -> None:
    """Take ``count`` batches, letting the look beside the read end after each."""
    async with asyncio.timeout(30):
        for _ in range(count):
            await anext(reading)
            await asyncio.sleep(0)


async def test_a_follower_behind_an_append_in_flight_pauses_between_reads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with await open_store("memory://") as store:
        watched = Watched(store)
        await store.append({A: [*events(1, "Kept"), *events(2, "Other")]}, expected={A: 0})
        watched.settled_at = 1  # 2 and 3 committed, something below them still in flight
        follower = following(watched, types=["Kept"], poll_interval=60.0)
        received = asyncio.create_task(collect(follower, 2))
        await follower.reached(1)
        watched.read_ended.clear()
        await watched.read_ended.wait()  # a pass that found nothing new has ended
        reads = watched.calls["read_all"]

        # Reading again at once would spin on the loop (the memory store never waits):
        # a read every few turns of the loop, where growing pauses make a handful.
        for _ in range(200):
            await asyncio.sleep(0)
        assert not received.done()
        assert watched.calls["read_all"] - reads <= 10
        assert watched.calls["wait_for_events"] == 0  # behind the head: not asleep either
        assert follower.scanned == 1

        watched.settled_at = None
        await store.append({A: events(1, "Kept")}, expected={A: 3})
        assert [e.position for b in await received for e in b] == [1, 4]


@pytest.fixture
async def postgres_store(tmp_path: Path) -> AsyncIterator[PostgresStore]:
    async with BACKENDS["postgres"].open(tmp_path) as store:
        assert isinstance(store, PostgresStore)
        yield store


async def test_a_filtered_follower_does_not_reach_past_a_matching_append_still_in_flight(
    postgres_store: PostgresStore,
) -> None:
    # A later append commits (3, 4) while an earlier one (2) is in flight: the head is
    # 4, but the follower has not seen 2 and must not count it as looked through.
    store = postgres_store
    await store.append({A: events(1, "Kept")}, expected={A: 0})
    async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as holder:
        await hold_append_open(holder, store.schema, B, count=1, event_type="Kept")
        await store.append({C: events(2, "Other")}, expected={C: 0})
        watched = Watched(store)
        follower = following(watched, types=["Kept"], poll_interval=60.0)
        received = asyncio.create_task(collect(follower, 2))
        await follower.reached(1)
        async with asyncio.timeout(30):
            for _ in range(3):  # it keeps reading while the head is ahead of what settled
                watched.read_ended.clear()
                await watched.read_ended.wait()

        assert follower.scanned == 1
        reached = asyncio.ensure_future(follower.reached(2))
        assert not await finishes(reached)
        await holder.execute("COMMIT")

    assert await reached is True
    assert [(e.position, e.type) for b in await received for e in b] == [(1, "Kept"), (2, "Kept")]
