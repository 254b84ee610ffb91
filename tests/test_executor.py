"""The executor, the I/O shell around the pipeline, on every store backend.

Faults come from stores that wrap a real one (``Delegating`` subclasses), never from
a mocking library: one conflicts on its first appends, one never answers a read.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Collection, Mapping, Sequence

import pytest

from eventcore import (
    AppendResult,
    Command,
    CommandRejected,
    CommandTimeout,
    ConcurrencyConflict,
    Event,
    EventRegistry,
    EventStore,
    Executor,
    InvalidInput,
    Metadata,
    RetryPolicy,
    StoredEvent,
    StreamHead,
    StreamId,
    TooManyStreams,
    Writes,
)
from eventcore.types import NewEvent
from tests.store.reading import read_log


class Deposited(Event):
    amount: int


class Withdrawn(Event):
    amount: int


registry = EventRegistry([Deposited, Withdrawn])

A, B = StreamId("account-a"), StreamId("account-b")

FAST = RetryPolicy(max_attempts=10, initial_delay=0.0)


class Deposit(Command[int]):
    """Deposits ``amount`` into ``account`` as ``times`` separate events."""

    account: StreamId
    amount: int = 1
    times: int = 1

    def initial_state(self) -> int:
        return 0

    def apply(self, state: int, stream_id: StreamId, event: Event) -> int:
        assert isinstance(event, Deposited)
        return state + event.amount

    def handle(self, state: int) -> Writes:
        return {self.account: [Deposited(amount=self.amount) for _ in range(self.times)]}


class Move(Command[int]):
    """Withdraws from ``source`` twice and deposits the total into ``target``."""

    source: StreamId
    target: StreamId
    amount: int

    def initial_state(self) -> int:
        return 0

    def apply(self, state: int, stream_id: StreamId, event: Event) -> int:
        return state

    def handle(self, state: int) -> Writes:
        return {
            self.source: [Withdrawn(amount=self.amount), Withdrawn(amount=self.amount)],
            self.target: [Deposited(amount=2 * self.amount)],
        }


# --- doubles ---------------------------------------------------------------------------------


class Delegating:
    """An ``EventStore`` that passes every call to ``inner``; subclasses change one."""

    def __init__(self, inner: EventStore) -> None:
        self.inner = inner

    async def append(
        self,
        writes: Mapping[StreamId, Sequence[NewEvent]],
        *,
        expected: Mapping[StreamId, int],
        idempotency_key: str | None = None,
    ) -> AppendResult:
        return await self.inner.append(writes, expected=expected, idempotency_key=idempotency_key)

    async def find_append(self, idempotency_key: str) -> AppendResult | None:
        return await self.inner.find_append(idempotency_key)

    async def read_stream(self, stream_id: StreamId, *, from_version: int = 1) -> list[StoredEvent]:
        return await self.inner.read_stream(stream_id, from_version=from_version)

    def read_all(
        self,
        *,
        after: int = 0,
        types: Collection[str] | None = None,
        batch_size: int = 1000,
        limit: int | None = None,
    ) -> AsyncIterator[list[StoredEvent]]:
        return self.inner.read_all(after=after, types=types, batch_size=batch_size, limit=limit)

    async def stream_version(self, stream_id: StreamId) -> int:
        return await self.inner.stream_version(stream_id)

    async def list_streams(
        self, *, after: StreamId | None = None, limit: int = 100
    ) -> list[StreamHead]:
        return await self.inner.list_streams(after=after, limit=limit)

    async def last_position(self) -> int:
        return await self.inner.last_position()

    async def settled_position(self) -> int:
        return await self.inner.settled_position()

    async def aclose(self) -> None:
        await self.inner.aclose()


class ConflictsFirst(Delegating):
    """Refuses the first ``conflicts`` appends with a ``ConcurrencyConflict``, then delegates."""

    def __init__(self, inner: EventStore, conflicts: int) -> None:
        super().__init__(inner)
        self.conflicts = conflicts
        self.appends = 0

    async def append(
        self,
        writes: Mapping[StreamId, Sequence[NewEvent]],
        *,
        expected: Mapping[StreamId, int],
        idempotency_key: str | None = None,
    ) -> AppendResult:
        self.appends += 1
        if self.appends <= self.conflicts:
            stream = next(iter(expected))
            raise ConcurrencyConflict(stream, expected[stream], expected[stream] + 1)
        return await super().append(writes, expected=expected, idempotency_key=idempotency_key)


class NeverAnswers(Delegating):
    """A store whose reads wait for an event that is never set."""

    def __init__(self, inner: EventStore) -> None:
        super().__init__(inner)
        self.never = asyncio.Event()

    async def read_stream(self, stream_id: StreamId, *, from_version: int = 1) -> list[StoredEvent]:
        await self.never.wait()
        raise AssertionError("unreachable: the event is never set")


class CountsReads(Delegating):
    """Counts the stream reads made through it."""

    def __init__(self, inner: EventStore) -> None:
        super().__init__(inner)
        self.reads = 0

    async def read_stream(self, stream_id: StreamId, *, from_version: int = 1) -> list[StoredEvent]:
        self.reads += 1
        return await super().read_stream(stream_id, from_version=from_version)


class ReadTimesOut(Delegating):
    """A store whose driver gives up on every read with its own ``TimeoutError``."""

    async def read_stream(self, stream_id: StreamId, *, from_version: int = 1) -> list[StoredEvent]:
        raise TimeoutError("the driver's own read timeout")


def executor(store: EventStore, **options: object) -> Executor:
    return Executor(store, registry, retry=FAST, **options)  # type: ignore[arg-type]


# --- the result ------------------------------------------------------------------------------


async def test_result_lists_the_events_decided_and_where_they_were_written(
    store: EventStore,
) -> None:
    await executor(store).execute(Deposit(account=B))
    result = await executor(store).execute(Move(source=A, target=B, amount=5))
    log = await read_log(store, after=1)
    assert result.events == (Withdrawn(amount=5), Withdrawn(amount=5), Deposited(amount=10))
    assert result.event_ids == tuple(event.event_id for event in log)
    assert result.positions == tuple(event.position for event in log)
    assert result.stream_versions == {A: 2, B: 2}
    assert result.attempts == 1
    assert not result.deduplicated


async def test_written_events_decode_to_the_events_decided(store: EventStore) -> None:
    result = await executor(store).execute(Deposit(account=A, amount=7, times=2))
    stored = await store.read_stream(A)
    assert tuple(registry.decode(event) for event in stored) == result.events


async def test_a_command_that_writes_nothing_leaves_the_store_unchanged(
    store: EventStore,
) -> None:
    result = await executor(store).execute(Deposit(account=A, times=0))
    assert result.events == ()
    assert await store.last_position() == 0


# --- settings --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options", [{"max_streams": 0}, {"cache_size": -1}], ids=["max_streams", "cache_size"]
)
async def test_settings_out_of_range_are_refused(
    store: EventStore, options: dict[str, int]
) -> None:
    with pytest.raises(InvalidInput):
        Executor(store, registry, **options)  # type: ignore[arg-type]


async def test_a_cap_of_one_stream_runs_a_one_stream_command_and_refuses_two(
    store: EventStore,
) -> None:
    run = executor(store, max_streams=1)
    assert (await run.execute(Deposit(account=A))).stream_versions == {A: 1}
    with pytest.raises(TooManyStreams):
        await run.execute(Move(source=A, target=B, amount=1))


@pytest.mark.parametrize(("cache_size", "reads"), [(0, 1), (1, 0)], ids=["off", "one-entry"])
async def test_a_cache_spares_the_next_run_its_read(
    store: EventStore, cache_size: int, reads: int
) -> None:
    counting = CountsReads(store)
    run = executor(counting, cache_size=cache_size)
    await run.execute(Deposit(account=A))
    counting.reads = 0
    await run.execute(Deposit(account=A))
    assert counting.reads == reads
    assert await store.stream_version(A) == 2


# --- metadata --------------------------------------------------------------------------------


async def test_every_event_gets_a_fresh_correlation_and_causation_id_when_none_is_given(
    store: EventStore,
) -> None:
    await executor(store).execute(Deposit(account=A, times=2))
    await executor(store).execute(Deposit(account=B))
    first, second, other = (event.metadata for event in await read_log(store))
    assert first.correlation_id is not None
    assert first.causation_id is not None
    assert (second.correlation_id, second.causation_id) == (
        first.correlation_id,
        first.causation_id,
    )
    assert other.correlation_id not in {None, first.correlation_id}
    assert other.causation_id not in {None, first.causation_id}


async def test_every_event_keeps_the_metadata_the_caller_gave(store: EventStore) -> None:
    given = Metadata(
        correlation_id="request-1",
        causation_id="message-9",
        actor="alice",
        extra={"tenant": "acme"},
    )
    await executor(store).execute(Move(source=A, target=B, amount=1), metadata=given)
    assert [event.metadata for event in await read_log(store)] == [given] * 3


async def test_a_missing_causation_id_is_filled_and_the_given_correlation_id_kept(
    store: EventStore,
) -> None:
    await executor(store).execute(
        Deposit(account=A), metadata=Metadata(correlation_id="request-1", actor="bob")
    )
    (event,) = await read_log(store)
    assert event.metadata.correlation_id == "request-1"
    assert event.metadata.causation_id not in {None, "request-1"}
    assert event.metadata.actor == "bob"


# --- idempotency -----------------------------------------------------------------------------


async def test_the_same_idempotency_key_twice_writes_once(store: EventStore) -> None:
    run = executor(store)
    await run.execute(Deposit(account=A), idempotency_key="deposit-1")
    await run.execute(Deposit(account=A), idempotency_key="deposit-1")
    assert await store.stream_version(A) == 1


async def test_a_repeated_idempotency_key_returns_the_first_write_as_deduplicated(
    store: EventStore,
) -> None:
    run = executor(store)
    first = await run.execute(Deposit(account=A), idempotency_key="deposit-1")
    again = await run.execute(Deposit(account=A), idempotency_key="deposit-1")
    assert again.deduplicated
    assert again.events == ()
    assert again.event_ids == first.event_ids
    assert again.positions == first.positions


class OpenOnce(Command[int]):
    """Opens ``account``; refuses when it is already open."""

    account: StreamId

    def initial_state(self) -> int:
        return 0

    def apply(self, state: int, stream_id: StreamId, event: Event) -> int:
        return state + 1

    def handle(self, state: int) -> Writes:
        if state:
            raise CommandRejected(f"{self.account} is already open")
        return {self.account: [Deposited(amount=0)]}


async def test_a_rerun_that_its_first_run_now_refuses_returns_the_first_result(
    store: EventStore,
) -> None:
    # A redelivered message or a client retrying after a timeout meets the state its
    # own first run created; the first run's result is the answer, not a rejection.
    run = Executor(store, registry, retry=FAST)
    first = await run.execute(OpenOnce(account=A), idempotency_key="open-a")
    again = await run.execute(OpenOnce(account=A), idempotency_key="open-a")
    assert again.deduplicated
    assert (again.positions, again.event_ids) == (first.positions, first.event_ids)
    with pytest.raises(CommandRejected):
        await run.execute(OpenOnce(account=A), idempotency_key="open-a-later")
    assert await store.stream_version(A) == 1


async def test_different_idempotency_keys_both_write(store: EventStore) -> None:
    run = executor(store)
    await run.execute(Deposit(account=A), idempotency_key="deposit-1")
    result = await run.execute(Deposit(account=A), idempotency_key="deposit-2")
    assert not result.deduplicated
    assert await store.stream_version(A) == 2


# --- deadline --------------------------------------------------------------------------------


async def test_a_run_past_its_deadline_raises_command_timeout(store: EventStore) -> None:
    with pytest.raises(CommandTimeout) as raised:
        await executor(NeverAnswers(store)).execute(Deposit(account=A), timeout=0.01)
    assert raised.value.command == "Deposit"
    assert raised.value.seconds == 0.01


async def test_a_store_timeout_within_the_deadline_is_not_a_command_timeout(
    store: EventStore,
) -> None:
    with pytest.raises(TimeoutError) as raised:
        await executor(ReadTimesOut(store)).execute(Deposit(account=A), timeout=3600)
    assert not isinstance(raised.value, CommandTimeout)


# --- conflicts -------------------------------------------------------------------------------


@pytest.mark.parametrize("conflicts", [1, 3])
async def test_a_conflicted_command_succeeds_on_the_attempt_after_the_conflicts(
    store: EventStore, conflicts: int
) -> None:
    result = await executor(ConflictsFirst(store, conflicts)).execute(Deposit(account=A))
    assert result.attempts == conflicts + 1
    assert await store.stream_version(A) == 1


async def test_a_conflicted_command_waits_its_backoff_before_the_next_attempt(
    store: EventStore,
) -> None:
    conflicting = ConflictsFirst(store, conflicts=1)
    # A delay drawn (seeded) below a minute's ceiling: far longer than the steps below.
    policy = RetryPolicy(max_attempts=2, initial_delay=60.0, max_delay=60.0)
    run = Executor(conflicting, registry, retry=policy, rng=random.Random(1))
    task = asyncio.ensure_future(run.execute(Deposit(account=A)))
    try:
        # The wrapper's count is the signal; each step lets the executor go on.
        while conflicting.appends < 1:  # noqa: ASYNC110
            await asyncio.sleep(0)
        for _ in range(50):
            await asyncio.sleep(0)
        assert conflicting.appends == 1, "the next attempt did not wait for its backoff"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_conflicted_attempts_write_nothing_of_their_own(store: EventStore) -> None:
    conflicting = ConflictsFirst(store, 2)
    result = await executor(conflicting).execute(Deposit(account=A, times=2))
    assert [event.event_id for event in await read_log(store)] == list(result.event_ids)
    assert conflicting.appends == 3


async def test_ids_differ_between_runs(store: EventStore) -> None:
    run = executor(store)
    first = await run.execute(Deposit(account=A))
    second = await run.execute(Deposit(account=A))
    assert isinstance(first.event_ids[0], uuid.UUID)
    assert first.event_ids != second.event_ids


class OpenFresh(OpenOnce):
    """``OpenOnce`` that expects its stream to be new and decides before reading."""

    creates_streams = True


async def test_a_command_that_creates_streams_still_refuses_an_existing_one(
    store: EventStore,
) -> None:
    # The guess of an empty stream is appended at version 0; the store's check refuses
    # it, and the decision on the real state (already open) stands.
    run = Executor(store, registry, retry=FAST)
    await run.execute(OpenFresh(account=A))
    with pytest.raises(CommandRejected):
        await run.execute(OpenFresh(account=A))
    assert await store.stream_version(A) == 1


async def test_a_cached_state_that_went_stale_is_read_again_before_writing(
    store: EventStore,
) -> None:
    # Another writer moves the stream behind the cache's back: the guessed decision
    # conflicts, and the retried one is taken on the real balance.
    cached = Executor(store, registry, retry=FAST, cache_size=8)
    other = Executor(store, registry, retry=FAST)
    await cached.execute(Deposit(account=A, amount=5))
    await other.execute(Deposit(account=A, amount=7))
    result = await cached.execute(Deposit(account=A, amount=1))
    assert result.attempts == 1  # the stale guess met no contention: it is no attempt
    assert result.stream_versions == {A: 3}
    folded = [registry.decode(event) for event in await store.read_stream(A)]
    assert sum(event.amount for event in folded if isinstance(event, Deposited)) == 13
