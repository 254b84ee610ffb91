"""The pure command pipeline, driven by hand: no store, no clock, no event loop.

``Driver`` answers the effects ``run_command`` yields from a ``History`` of stored
events kept in memory, throws ``ConcurrencyConflict`` in when told to, and records
every effect, so each test can say exactly what the pipeline asked for.
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Callable, Generator, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventcore import (
    Command,
    CommandRejected,
    ConcurrencyConflict,
    Event,
    EventRegistry,
    InvalidCommand,
    InvalidInput,
    Metadata,
    NewEvent,
    RetriesExhausted,
    RetryPolicy,
    StoredEvent,
    StreamId,
    TooManyStreams,
    UndeclaredStream,
    Writes,
)
from eventcore.pipeline import (
    Append,
    CommandResult,
    Effect,
    FindAppend,
    ReadStreams,
    Sleep,
    run_command,
)
from eventcore.statecache import StateCache
from eventcore.store.protocol import AppendResult

# --- a tiny domain ---------------------------------------------------------------------------


class Noted(Event):
    text: str


registry = EventRegistry([Noted])

A, B, C, D = (StreamId(name) for name in ("a", "b", "c", "d"))

#: A state that records what was folded, in order: (stream, text) pairs.
Seen = tuple[tuple[str, str], ...]


class Note(Command[Seen]):
    """Reads ``main``, ``also`` and ``listed``; writes one note saying how much it saw."""

    main: StreamId
    also: tuple[StreamId, ...] = ()
    listed: list[StreamId] = msgspec.field(default_factory=list)
    target: str | None = None

    def initial_state(self) -> Seen:
        return ()

    def apply(self, state: Seen, stream_id: StreamId, event: Event) -> Seen:
        assert isinstance(event, Noted)
        return (*state, (str(stream_id), event.text))

    def handle(self, state: Seen) -> Writes:
        return {StreamId(self.target or self.main): [Noted(text=f"saw {len(state)}")]}


class Quiet(Note):
    """Reads like ``Note`` but decides to write nothing."""

    def handle(self, state: Seen) -> Writes:
        return {}


class Refuse(Note):
    def handle(self, state: Seen) -> Writes:
        raise CommandRejected("no")


class Follow(Note):
    """Also reads every stream named by a ``link:<stream>`` note it has seen."""

    def discover(self, state: Seen) -> Iterable[StreamId]:
        return [StreamId(text[5:]) for _, text in state if text.startswith("link:")]


class Fragile(Note):
    """Like ``Note``, but ``apply`` fails on a ``poison`` note when ``strict``."""

    strict: bool = False

    def apply(self, state: Seen, stream_id: StreamId, event: Event) -> Seen:
        assert isinstance(event, Noted)
        if self.strict and event.text == "poison":
            raise ValueError("poison")
        return super().apply(state, stream_id, event)


class NoStreams(Command[int]):
    amount: int

    def initial_state(self) -> int:
        return 0


# --- the driver ------------------------------------------------------------------------------


class History:
    """Stored events by stream, with a global position counter (positions may be forced)."""

    def __init__(self) -> None:
        self.streams: dict[StreamId, list[StoredEvent]] = {}
        self.next_position = 1

    def add(self, stream: StreamId, *texts: str, position: int | None = None) -> None:
        for text in texts:
            encoded = registry.encode(Noted(text=text))
            self.store(stream, encoded.type, encoded.data, encoded.event_id, position)
            position = None

    def store(
        self, stream: StreamId, type: str, data: bytes, event_id: Any, position: int | None
    ) -> StoredEvent:
        events = self.streams.setdefault(stream, [])
        if position is None:
            position = self.next_position
        self.next_position = max(self.next_position, position + 1)
        stored = StoredEvent(
            position=position,
            stream_id=stream,
            version=len(events) + 1,
            event_id=event_id,
            type=type,
            schema_version=1,
            data=data,
            metadata=Metadata(),
            recorded_at=datetime(2025, 1, 1, tzinfo=UTC),
        )
        events.append(stored)
        return stored

    def version(self, stream: StreamId) -> int:
        return len(self.streams.get(stream, ()))


class Driver:
    """Carries out a pipeline's effects against a ``History`` and records them.

    ``conflicts`` appends are answered with a thrown ``ConcurrencyConflict`` before any
    is checked; ``before_append`` runs before each append (a concurrent writer).
    Other appends check the expected versions against the history, as a store would.
    """

    def __init__(
        self,
        history: History | None = None,
        *,
        conflicts: int = 0,
        before_append: Callable[[History], None] | None = None,
    ) -> None:
        self.history = history or History()
        self.conflicts = conflicts
        self.before_append = before_append
        self.reads: list[ReadStreams] = []
        self.appends: list[Append] = []
        self.sleeps: list[float] = []
        self.thrown: list[ConcurrencyConflict] = []
        self.lookups: list[str] = []
        #: Results of earlier appends, by idempotency key (answers ``FindAppend``).
        self.earlier: dict[str, AppendResult] = {}

    def run(self, pipeline: Generator[Effect, Any, CommandResult]) -> CommandResult:
        outcome: Any = None
        failure: ConcurrencyConflict | None = None
        while True:
            try:
                effect = pipeline.send(outcome) if failure is None else pipeline.throw(failure)
            except StopIteration as done:
                result: CommandResult = done.value
                return result
            outcome, failure = None, None
            if isinstance(effect, ReadStreams):
                self.reads.append(effect)
                outcome = self._read(effect)
            elif isinstance(effect, Append):
                self.appends.append(effect)
                try:
                    outcome = self._append(effect)
                except ConcurrencyConflict as conflict:
                    self.thrown.append(conflict)
                    failure = conflict
            elif isinstance(effect, FindAppend):
                self.lookups.append(effect.idempotency_key)
                outcome = self.earlier.get(effect.idempotency_key)
            else:
                assert isinstance(effect, Sleep)
                self.sleeps.append(effect.seconds)

    def _read(self, effect: ReadStreams) -> dict[StreamId, list[StoredEvent]]:
        return {
            stream: self.history.streams.get(stream, [])[version - 1 :]
            for stream, version in effect.streams
        }

    def _append(self, effect: Append) -> AppendResult:
        if self.before_append is not None:
            self.before_append(self.history)
        key = effect.idempotency_key
        if key is not None and key in self.earlier:
            # As a store does: a used key writes nothing, whatever the versions.
            return msgspec.structs.replace(self.earlier[key], deduplicated=True)
        if self.conflicts:
            self.conflicts -= 1
            stream = next(iter(effect.expected))
            raise ConcurrencyConflict(stream, effect.expected[stream], 99)
        for stream, version in effect.expected.items():
            if self.history.version(stream) != version:
                raise ConcurrencyConflict(stream, version, self.history.version(stream))
        stored = [
            self.history.store(stream, new.type, new.data, new.event_id, None)
            for stream, batch in effect.writes.items()
            for new in batch
        ]
        result = AppendResult(
            stream_versions={stream: self.history.version(stream) for stream in effect.writes},
            positions=tuple(event.position for event in stored),
            event_ids=tuple(event.event_id for event in stored),
        )
        if key is not None:
            self.earlier[key] = result
        return result


def pipeline(
    command: Command[Any],
    *,
    retry: RetryPolicy | None = None,
    max_streams: int = 16,
    cache: StateCache | None = None,
    rng: random.Random | None = None,
    idempotency_key: str | None = None,
) -> Generator[Effect, Any, CommandResult]:
    return run_command(
        command,
        registry,
        retry=retry or RetryPolicy(max_attempts=5, initial_delay=0.0),
        max_streams=max_streams,
        metadata=Metadata(),
        idempotency_key=idempotency_key,
        cache=cache,
        rng=rng or random.Random(0),
    )


def streams_read(read: ReadStreams) -> set[StreamId]:
    return {stream for stream, _ in read.streams}


def texts(writes: Mapping[StreamId, list[NewEvent]]) -> dict[str, list[str]]:
    """The notes an append would write, by stream."""
    decoded: dict[str, list[str]] = {}
    for stream, batch in writes.items():
        for new in batch:
            event = registry.decode_payload(new.type, new.schema_version, new.data)
            assert isinstance(event, Noted)
            decoded.setdefault(stream, []).append(event.text)
    return decoded


def history_of(streams: Mapping[StreamId, Iterable[str]]) -> History:
    history = History()
    for stream, notes in streams.items():
        history.add(stream, *notes)
    return history


# --- declared streams ------------------------------------------------------------------------


def test_reads_every_declared_stream_from_version_one() -> None:
    driver = Driver()
    driver.run(pipeline(Note(main=A, also=(B, C), listed=[D])))
    assert driver.reads[0].streams == ((A, 1), (B, 1), (C, 1), (D, 1))


def test_a_stream_named_twice_is_read_once() -> None:
    driver = Driver()
    driver.run(pipeline(Note(main=A, also=(A, B), listed=[B])))
    assert driver.reads[0].streams == ((A, 1), (B, 1))


def test_command_without_stream_fields_is_invalid() -> None:
    with pytest.raises(InvalidCommand):
        Driver().run(pipeline(NoStreams(amount=1)))


def test_more_declared_streams_than_the_cap_is_too_many() -> None:
    driver = Driver()
    with pytest.raises(TooManyStreams) as raised:
        driver.run(pipeline(Note(main=A, also=(B, C)), max_streams=2))
    assert (raised.value.command, raised.value.limit) == ("Note", 2)
    assert driver.reads == []


def test_as_many_declared_streams_as_the_cap_are_allowed() -> None:
    driver = Driver()
    driver.run(pipeline(Note(main=A, also=(B, C)), max_streams=3))
    assert driver.reads[0].streams == ((A, 1), (B, 1), (C, 1))
    assert len(driver.appends) == 1


# --- folding ---------------------------------------------------------------------------------


def test_events_of_several_streams_are_folded_in_global_position_order() -> None:
    history = History()
    history.add(B, "b1")
    history.add(A, "a1")
    history.add(B, "b2")
    history.add(A, "a2")
    seen: list[Seen] = []

    class Spy(Note):
        def handle(self, state: Seen) -> Writes:
            seen.append(state)
            return {}

    Driver(history).run(pipeline(Spy(main=A, also=(B,))))
    assert seen == [(("b", "b1"), ("a", "a1"), ("b", "b2"), ("a", "a2"))]


# --- appending -------------------------------------------------------------------------------


def test_append_expects_the_version_read_of_every_stream_including_read_only_ones() -> None:
    driver = Driver(history_of({A: ["a1"], B: ["b1", "b2"], C: []}))
    driver.run(pipeline(Note(main=A, also=(B, C))))
    (append,) = driver.appends
    assert append.expected == {A: 1, B: 2, C: 0}
    assert texts(append.writes) == {"a": ["saw 3"]}


def test_result_carries_the_decided_events_and_what_the_append_wrote() -> None:
    driver = Driver(history_of({A: ["a1"]}))
    result = driver.run(pipeline(Note(main=A)))
    assert result.events == (Noted(text="saw 1"),)
    assert result.stream_versions == {A: 2}
    assert result.positions == (2,)
    assert result.event_ids == (driver.history.streams[A][1].event_id,)
    assert result.attempts == 1
    assert not result.deduplicated


def test_writing_a_stream_that_was_not_read_is_undeclared_and_appends_nothing() -> None:
    driver = Driver()
    with pytest.raises(UndeclaredStream) as raised:
        driver.run(pipeline(Note(main=A, target="elsewhere")))
    assert raised.value.stream_id == "elsewhere"
    assert driver.appends == []


def test_no_writes_returns_an_empty_result_without_appending() -> None:
    driver = Driver(history_of({A: ["a1"]}))
    result = driver.run(pipeline(Quiet(main=A)))
    assert driver.appends == []
    assert result == CommandResult(
        events=(), event_ids=(), stream_versions={}, positions=(), attempts=1
    )
    assert result.deduplicated is False


@pytest.mark.parametrize("returned", [[Noted(text="x")], None, "a"], ids=["list", "none", "string"])
def test_handle_returning_a_non_mapping_is_invalid(returned: object) -> None:
    class Odd(Note):
        def handle(self, state: Seen) -> Writes:
            return returned  # type: ignore[return-value]

    driver = Driver()
    with pytest.raises(InvalidCommand):
        driver.run(pipeline(Odd(main=A)))
    assert driver.appends == []


@pytest.mark.parametrize(
    "events",
    [["not an event"], [Noted(text="ok"), 42], Noted(text="bare"), 7],
    ids=["string", "int-after-event", "bare-event", "int"],
)
def test_handle_returning_something_other_than_events_is_invalid(events: object) -> None:
    class Odd(Note):
        def handle(self, state: Seen) -> Writes:
            return {self.main: events}  # type: ignore[dict-item]

    driver = Driver()
    with pytest.raises(InvalidCommand):
        driver.run(pipeline(Odd(main=A)))
    assert driver.appends == []


# --- rejection and retry ---------------------------------------------------------------------


def test_a_rejected_command_is_not_retried() -> None:
    driver = Driver(history_of({A: ["a1"]}))
    with pytest.raises(CommandRejected):
        driver.run(pipeline(Refuse(main=A)))
    assert len(driver.reads) == 1
    assert driver.sleeps == []
    assert driver.appends == []


EARLIER = AppendResult(
    stream_versions={A: 2}, positions=(7,), event_ids=(uuid.UUID(int=7),), deduplicated=True
)


def test_a_rejection_under_a_used_idempotency_key_returns_the_earlier_result() -> None:
    driver = Driver(history_of({A: ["a1"]}))
    driver.earlier["key-1"] = EARLIER
    result = driver.run(pipeline(Refuse(main=A), idempotency_key="key-1"))
    assert driver.lookups == ["key-1"]
    assert result.deduplicated
    assert (result.positions, result.event_ids, result.events) == ((7,), (uuid.UUID(int=7),), ())


def test_a_rejection_under_an_unused_idempotency_key_is_raised() -> None:
    driver = Driver(history_of({A: ["a1"]}))
    with pytest.raises(CommandRejected):
        driver.run(pipeline(Refuse(main=A), idempotency_key="key-1"))
    assert driver.lookups == ["key-1"]


def test_a_rejection_without_an_idempotency_key_looks_nothing_up() -> None:
    driver = Driver(history_of({A: ["a1"]}))
    with pytest.raises(CommandRejected):
        driver.run(pipeline(Refuse(main=A)))
    assert driver.lookups == []


def test_nothing_to_write_under_a_used_idempotency_key_returns_the_earlier_result() -> None:
    driver = Driver(history_of({A: ["a1"]}))
    driver.earlier["key-1"] = EARLIER
    result = driver.run(pipeline(Quiet(main=A), idempotency_key="key-1"))
    assert result.deduplicated
    assert result.positions == (7,)
    assert driver.appends == []


def test_a_decision_to_write_does_not_look_up_its_idempotency_key() -> None:
    # The append itself deduplicates; looking the key up first would cost a round trip.
    driver = Driver(history_of({A: ["a1"]}))
    driver.run(pipeline(Note(main=A), idempotency_key="key-1"))
    assert driver.lookups == []
    assert [append.idempotency_key for append in driver.appends] == ["key-1"]


def test_a_conflict_rereads_and_decides_again_on_the_new_state() -> None:
    writers = iter([lambda history: history.add(B, "b-late")])

    def concurrent_writer(history: History) -> None:
        next(writers, lambda _: None)(history)

    driver = Driver(history_of({A: ["a1"], B: ["b1"]}), before_append=concurrent_writer)
    result = driver.run(pipeline(Note(main=A, also=(B,))))
    assert len(driver.reads) == 2
    assert [append.expected for append in driver.appends] == [{A: 1, B: 1}, {A: 1, B: 2}]
    assert texts(driver.appends[1].writes) == {"a": ["saw 3"]}
    assert result.attempts == 2


def test_each_conflict_is_followed_by_one_sleep_before_the_next_attempt() -> None:
    driver = Driver(conflicts=3)
    result = driver.run(pipeline(Note(main=A)))
    assert result.attempts == 4
    assert len(driver.sleeps) == 3
    assert len(driver.reads) == 4


def test_backoff_sleeps_stay_under_the_exponential_ceilings() -> None:
    policy = RetryPolicy(max_attempts=10, initial_delay=0.01, multiplier=2.0, max_delay=0.5)
    driver = Driver(conflicts=9)
    driver.run(pipeline(Note(main=A), retry=policy, rng=random.Random(1234)))
    ceilings = [min(0.5, 0.01 * 2.0**n) for n in range(9)]
    assert len(driver.sleeps) == 9
    assert all(
        0 <= slept <= ceiling for slept, ceiling in zip(driver.sleeps, ceilings, strict=True)
    )


def test_backoff_with_the_same_seed_sleeps_the_same() -> None:
    runs = []
    for _ in range(2):
        driver = Driver(conflicts=4)
        driver.run(pipeline(Note(main=A), retry=RetryPolicy(), rng=random.Random(99)))
        runs.append(driver.sleeps)
    assert runs[0] == runs[1]


def test_conflicts_past_max_attempts_exhaust_the_retries() -> None:
    driver = Driver(conflicts=100)
    with pytest.raises(RetriesExhausted) as raised:
        driver.run(pipeline(Note(main=A), retry=RetryPolicy(max_attempts=3, initial_delay=0)))
    assert raised.value.attempts == 3
    assert raised.value.last is driver.thrown[-1]
    assert len(driver.appends) == 3
    assert len(driver.sleeps) == 2


# --- discovery -------------------------------------------------------------------------------


def test_discovered_streams_are_read_and_folded() -> None:
    history = history_of({A: ["link:b"], B: ["b1"]})
    driver = Driver(history)
    driver.run(pipeline(Follow(main=A)))
    assert [read.streams for read in driver.reads] == [((A, 1),), ((B, 1),)]
    assert texts(driver.appends[0].writes) == {"a": ["saw 2"]}


def test_discovered_streams_take_part_in_the_expected_versions() -> None:
    history = history_of({A: ["link:b"], B: ["b1", "b2"]})
    driver = Driver(history)
    driver.run(pipeline(Follow(main=A)))
    assert driver.appends[0].expected == {A: 1, B: 2}


def test_a_discovered_stream_may_be_written() -> None:
    driver = Driver(history_of({A: ["link:b"]}))
    result = driver.run(pipeline(Follow(main=A, target="b")))
    assert result.stream_versions == {B: 1}


def test_discovery_that_keeps_naming_new_streams_stops_at_the_cap() -> None:
    chain = {StreamId(f"s{n}"): [f"link:s{n + 1}"] for n in range(50)}
    driver = Driver(history_of(chain))
    with pytest.raises(TooManyStreams) as raised:
        driver.run(pipeline(Follow(main=StreamId("s0")), max_streams=5))
    assert raised.value.limit == 5
    assert len(set().union(*map(streams_read, driver.reads))) <= 5
    assert driver.appends == []


def chain_of(length: int) -> History:
    """s0 links to s1, … up to s<length-1>, which links nowhere: ``length`` streams in all."""
    return history_of(
        {StreamId(f"s{n}"): [f"link:s{n + 1}" if n + 1 < length else "end"] for n in range(length)}
    )


@pytest.mark.parametrize(
    ("length", "allowed"), [(4, True), (5, True), (6, False)], ids=["under", "at", "over"]
)
def test_discovery_may_reach_exactly_the_cap_and_no_further(length: int, allowed: bool) -> None:
    driver = Driver(chain_of(length))
    run = pipeline(Follow(main=StreamId("s0")), max_streams=5)
    if allowed:
        driver.run(run)
        assert driver.appends[0].expected == {StreamId(f"s{n}"): 1 for n in range(length)}
    else:
        with pytest.raises(TooManyStreams):
            driver.run(run)
        assert len(set().union(*map(streams_read, driver.reads))) == 5
        assert driver.appends == []


# --- the state cache -------------------------------------------------------------------------


def test_a_cached_state_is_brought_up_to_date_from_the_versions_it_was_folded_at() -> None:
    cache = StateCache(8)
    driver = Driver(history_of({A: ["a1", "a2"], B: ["b1"]}))
    driver.run(pipeline(Note(main=A, also=(B,)), cache=cache))
    driver.history.add(B, "b2")
    driver.reads.clear()
    driver.run(pipeline(Note(main=A, also=(B,)), cache=cache))
    # The cache holds the state after the run's own note ("saw 3"): the second run first
    # decides on it unread, conflicts on b2, and reads only what came after.
    assert driver.appends[-2].expected == {A: 3, B: 1}
    assert [read.streams for read in driver.reads] == [((A, 4), (B, 2))]
    assert texts(driver.appends[-1].writes) == {"a": ["saw 5"]}


def test_a_cached_state_gives_the_same_decision_as_a_full_fold() -> None:
    cache = StateCache(8)
    history = history_of({A: ["a1"], B: ["b1"]})
    driver = Driver(history)
    driver.run(pipeline(Quiet(main=A, also=(B,)), cache=cache))
    history.add(B, "b2")
    history.add(A, "a2")
    cached = Driver(history).run(pipeline(Note(main=A, also=(B,)), cache=cache))
    history.streams[A].pop()  # undo the cached run's note, then decide without a cache
    full = Driver(history).run(pipeline(Note(main=A, also=(B,))))
    assert cached.events == full.events


def test_a_newly_discovered_stream_forces_a_full_refold() -> None:
    cache = StateCache(8)
    history = history_of({A: ["a1"], B: ["b1"]})
    driver = Driver(history)
    driver.run(pipeline(Follow(main=A), cache=cache))
    history.add(A, "link:b")
    driver.reads.clear()
    driver.run(pipeline(Follow(main=A), cache=cache))
    assert [read.streams for read in driver.reads] == [((A, 3),), ((A, 1),), ((B, 1),)]
    assert driver.appends[-1].expected == {A: 3, B: 1}
    assert texts(driver.appends[-1].writes) == {"a": ["saw 4"]}


def test_a_stream_no_longer_discovered_is_not_folded_from_the_cache() -> None:
    class Latest(Note):
        """Follows the stream named by the newest ``link:`` note, none after ``unlink``."""

        def discover(self, state: Seen) -> Iterable[StreamId]:
            marks = [text for stream, text in state if stream == "a" and "link" in text]
            if not marks or marks[-1] == "unlink":
                return []
            return [StreamId(marks[-1][5:])]

    cache = StateCache(8)
    history = history_of({A: ["link:b"], B: ["b1"]})
    Driver(history).run(pipeline(Latest(main=A), cache=cache))
    history.add(A, "unlink")
    history.add(B, "b2")
    driver = Driver(history)
    driver.run(pipeline(Latest(main=A), cache=cache))
    assert driver.appends[-1].expected == {A: 3}
    assert texts(driver.appends[-1].writes) == {"a": ["saw 3"]}


def test_a_conflict_with_a_cached_state_rereads_only_what_is_missing() -> None:
    cache = StateCache(8)
    writers = iter([lambda history: history.add(B, "b-late")])
    driver = Driver(
        history_of({A: ["a1"], B: ["b1"]}),
        before_append=lambda history: next(writers, lambda _: None)(history),
    )
    driver.run(pipeline(Note(main=A, also=(B,)), cache=cache))
    assert [read.streams for read in driver.reads] == [((A, 1), (B, 1)), ((A, 2), (B, 2))]
    assert texts(driver.appends[-1].writes) == {"a": ["saw 3"]}


def test_a_cached_state_missing_an_earlier_event_is_refolded_in_log_order() -> None:
    # A read that saw b1 (position 3) but not a2 (position 2), as two separate stream
    # reads can when a writer commits between them: the append conflicts, and the
    # retry must fold a2 before b1 rather than after the state cached from that read.
    history = History()
    history.add(A, "a1", position=1)
    history.add(B, "b1", position=3)
    late = iter([lambda history: history.add(A, "a2", position=2)])
    driver = Driver(history, before_append=lambda h: next(late, lambda _: None)(h))
    spy = Spy(main=A, also=(B,))
    driver.run(pipeline(spy, cache=StateCache(8)))
    assert spy.seen[-1] == (("a", "a1"), ("a", "a2"), ("b", "b1"))


class Spy(Note):
    """A ``Note`` that records every state it decides on in ``seen``."""

    seen: list[Seen] = msgspec.field(default_factory=list)

    def handle(self, state: Seen) -> Writes:
        self.seen.append(state)
        return super().handle(state)


def in_log_order(history: History) -> Seen:
    stored = sorted(
        (event for events in history.streams.values() for event in events),
        key=lambda event: event.position,
    )
    return tuple((str(event.stream_id), decode_text(event)) for event in stored)


def decode_text(event: StoredEvent) -> str:
    decoded = registry.decode(event)
    assert isinstance(decoded, Noted)
    return decoded.text


def test_a_cached_state_remembers_the_last_position_of_a_full_fold() -> None:
    # The read saw a1 a2 of "a" and b1 b2 of "b"; a3 committed in between at a position
    # below b2's. The append conflicts, and a3 must be folded before b2: the cache's
    # last position is b2's (the highest read), not a stream's first or lowest last.
    history = History()
    history.add(A, "a1", position=1)
    history.add(B, "b1", position=2)
    history.add(A, "a2", position=4)
    history.add(B, "b2", position=6)
    # a4 lands after b2: only the first new event of a stream tells whether it was missed.
    driver = Driver(history, before_append=late_write_before_append(1, A, 5, "a3", "a4"))
    spy = Spy(main=A, also=(B,))
    driver.run(pipeline(spy, cache=StateCache(8)))
    history.streams[A].pop()  # the run's own note
    assert spy.seen[-1] == in_log_order(history)


def late_write_before_append(number: int, stream: StreamId, position: int, *texts: str) -> Any:
    """A ``before_append`` hook: another writer commits ``texts``, the first at ``position``,
    just before the ``number``-th append (counting from 1)."""
    count = 0

    def hook(history: History) -> None:
        nonlocal count
        count += 1
        if count == number:
            history.add(stream, *texts, position=position)

    return hook


def test_a_cached_state_brought_up_to_date_remembers_the_last_position_read() -> None:
    cache = StateCache(8)
    history = History()
    history.add(A, "a1", position=1)
    history.add(B, "b1", position=2)
    Driver(history).run(pipeline(Spy(main=A, also=(B,)), cache=cache))  # writes at 3
    history.add(A, "a3", position=4)
    history.add(B, "b2", position=5)
    history.add(A, "a4", position=7)
    history.add(B, "b3", position=9)
    # The cached guess conflicts; the read of a3 a4 b2 b3 brings the state up to date,
    # and the decision on it conflicts too: a5 committed below b3, after that read saw
    # b3. The next fold must put a5 before b3: the cache's last position is b3's.
    driver = Driver(history, before_append=late_write_before_append(2, A, 8, "a5"))
    spy = Spy(main=A, also=(B,))
    driver.run(pipeline(spy, cache=cache))
    history.streams[A].pop()  # the run's own note
    assert spy.seen[-1] == in_log_order(history)


def test_a_cached_state_of_empty_streams_is_brought_up_to_date_without_a_refold() -> None:
    cache = StateCache(8)
    history = History()
    Driver(history).run(pipeline(Quiet(main=A), cache=cache))
    history.add(A, "a1")
    driver = Driver(history)
    driver.run(pipeline(Quiet(main=A), cache=cache))
    assert [read.streams for read in driver.reads] == [((A, 1),)]


def test_a_cached_state_remembers_the_last_version_read_of_each_stream() -> None:
    cache = StateCache(8)
    history = history_of({A: ["a1"]})
    Driver(history).run(pipeline(Note(main=A), cache=cache))  # cached at version 2
    history.add(A, "a3", "a4")
    driver = Driver(history)
    driver.run(pipeline(Note(main=A), cache=cache))
    # The guess conflicts; the read of a3 a4 brings the state to version 4, and the
    # decision on it is appended at 4 without a second conflict.
    assert [read.streams for read in driver.reads] == [((A, 3),)]
    assert [append.expected for append in driver.appends] == [{A: 2}, {A: 4}]
    assert texts(driver.appends[-1].writes) == {"a": ["saw 4"]}


def test_a_deduplicated_append_is_not_cached_as_the_runs_own_write() -> None:
    # The first run wrote "saw 1" under the key; the rerun decides "saw 2", which the
    # store does not write. The cache must hold what was read, not the rerun's decision.
    cache = StateCache(8)
    driver = Driver(history_of({A: ["a1"]}))
    driver.run(pipeline(Note(main=A), idempotency_key="key-1"))
    rerun = driver.run(pipeline(Note(main=A), idempotency_key="key-1", cache=cache))
    assert rerun.deduplicated
    assert rerun.events == ()  # the rerun's own decision was not written
    driver.run(pipeline(Note(main=A), cache=cache))
    assert texts(driver.appends[-1].writes) == {"a": ["saw 2"]}
    assert [decode_text(event) for event in driver.history.streams[A]] == [
        "a1",
        "saw 1",
        "saw 2",
    ]


def test_the_cache_keeps_the_most_recently_used_states_up_to_its_size() -> None:
    cache = StateCache(2)
    history = history_of({A: ["a1"], B: ["b1"], C: ["c1"]})
    for stream in (A, B, A, C):  # A is used again after B, so B is the one to go for C
        Driver(history).run(pipeline(Note(main=stream), cache=cache))
    for stream, read in ((A, False), (C, False), (B, True)):
        driver = Driver(history)
        driver.run(pipeline(Note(main=stream), cache=cache))
        assert bool(driver.reads) is read, stream


def continued(
    first: Effect, rest: Generator[Effect, Any, CommandResult]
) -> Generator[Effect, Any, CommandResult]:
    """A pipeline already started by hand (``first`` is what it yielded), to be driven on.
    Conflicts thrown in are not passed on: use it only where none occurs."""
    outcome = yield first
    while True:
        try:
            effect = rest.send(outcome)
        except StopIteration as done:
            result: CommandResult = done.value
            return result
        outcome = yield effect


def test_a_run_that_ends_after_another_counts_as_the_more_recent_use() -> None:
    # Runs of one executor share its cache and interleave: the run on "a" takes its
    # cached state, the run on "b" starts and ends, then the run on "a" ends. "a" was
    # used last, so caching "c" pushes "b" out.
    cache = StateCache(2)
    history = history_of({A: ["a1"], B: ["b1"], C: ["c1"]})
    Driver(history).run(pipeline(Note(main=A), cache=cache))
    on_a = pipeline(Note(main=A), cache=cache)
    first = next(on_a)
    Driver(history).run(pipeline(Note(main=B), cache=cache))
    Driver(history).run(continued(first, on_a))
    Driver(history).run(pipeline(Note(main=C), cache=cache))
    for stream, read in ((A, False), (B, True)):
        driver = Driver(history)
        driver.run(pipeline(Note(main=stream), cache=cache))
        assert bool(driver.reads) is read, stream


def test_a_failing_apply_leaves_the_cached_state_usable() -> None:
    cache = StateCache(8)
    history = history_of({A: ["a1"]})
    Driver(history).run(pipeline(Fragile(main=A), cache=cache))
    history.add(A, "poison", "a4")
    with pytest.raises(ValueError, match="poison"):
        Driver(history).run(pipeline(Fragile(main=A, strict=True), cache=cache))
    driver = Driver(history)
    driver.run(pipeline(Fragile(main=A), cache=cache))
    assert driver.reads[0].streams == ((A, 3),)
    assert texts(driver.appends[-1].writes) == {"a": ["saw 4"]}


def test_an_apply_failing_on_the_runs_own_events_keeps_the_write_and_drops_the_cache() -> None:
    class Poisoner(Fragile):
        def handle(self, state: Seen) -> Writes:
            return {self.main: [Noted(text="poison")]}

    cache = StateCache(8)
    history = history_of({A: ["a1"]})
    written = Driver(history).run(pipeline(Poisoner(main=A, strict=True), cache=cache))
    assert written.stream_versions == {A: 2}
    driver = Driver(history)
    driver.run(pipeline(Poisoner(main=A), cache=cache))
    assert driver.reads[0].streams == ((A, 1),)  # nothing cached: folded from the start
    assert driver.thrown == []


def test_a_rejecting_handle_leaves_the_cached_state_usable() -> None:
    class Picky(Note):
        refuse: bool = False

        def handle(self, state: Seen) -> Writes:
            if self.refuse:
                raise CommandRejected("no")
            return super().handle(state)

    cache = StateCache(8)
    history = history_of({A: ["a1", "a2"]})
    with pytest.raises(CommandRejected):
        Driver(history).run(pipeline(Picky(main=A, refuse=True), cache=cache))
    history.add(A, "a3")
    driver = Driver(history)
    driver.run(pipeline(Picky(main=A), cache=cache))
    assert driver.reads[0].streams == ((A, 3),)
    assert texts(driver.appends[-1].writes) == {"a": ["saw 3"]}


# --- the retry policy ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"max_attempts": 0},
        {"initial_delay": -0.1},
        {"max_delay": -1.0},
        {"multiplier": 0.5},
        {"initial_delay": float("nan")},
        {"max_delay": float("inf")},
        {"multiplier": float("inf")},
    ],
    ids=lambda options: ",".join(f"{k}={v}" for k, v in options.items()),
)
def test_retry_policy_rejects_invalid_settings(options: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput):
        RetryPolicy(**options)


def exponential_ceiling(attempt: int, initial: float, maximum: float, multiplier: float) -> float:
    """min(maximum, initial * multiplier ** (attempt - 1)), without overflowing."""
    if initial == 0 or maximum == 0:
        return 0.0
    growth = (attempt - 1) * math.log(multiplier)
    if math.log(initial) + growth > math.log(maximum) + 1:
        return maximum
    return min(maximum, initial * multiplier ** (attempt - 1))


@given(
    attempt=st.integers(min_value=1, max_value=100_000),
    initial=st.floats(min_value=0, max_value=10),
    maximum=st.floats(min_value=0, max_value=60),
    multiplier=st.floats(min_value=1, max_value=100),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_retry_delay_is_between_zero_and_the_capped_exponential_ceiling(
    attempt: int, initial: float, maximum: float, multiplier: float, seed: int
) -> None:
    policy = RetryPolicy(initial_delay=initial, max_delay=maximum, multiplier=multiplier)
    delay = policy.delay(attempt, random.Random(seed))
    assert 0 <= delay <= exponential_ceiling(attempt, initial, maximum, multiplier)


# --- deciding before reading (a guessed state) ---------------------------------------------


class Create(Note):
    """A ``Note`` that usually meets empty streams."""

    creates_streams = True


class CreateUnlessEmpty(Create):
    """Refuses on empty streams: a guess of empty streams must not be believed."""

    def handle(self, state: Seen) -> Writes:
        if not state:
            raise CommandRejected("nothing to note")
        return super().handle(state)


class QuietWhenEmpty(Create):
    def handle(self, state: Seen) -> Writes:
        return {} if not state else super().handle(state)


def test_a_command_that_creates_streams_appends_without_reading() -> None:
    driver = Driver()
    result = driver.run(pipeline(Create(main=A, also=(B,))))
    assert driver.reads == []
    assert driver.appends[0].expected == {A: 0, B: 0}
    assert result.attempts == 1


def test_a_command_that_creates_streams_appends_without_reading_when_nothing_is_cached() -> None:
    driver = Driver()
    driver.run(pipeline(Create(main=A), cache=StateCache(8)))
    assert driver.reads == []
    assert driver.appends[0].expected == {A: 0}


def test_a_created_stream_that_exists_after_all_is_read_and_decided_again() -> None:
    driver = Driver(history_of({A: ["a1"]}))
    driver.run(pipeline(Create(main=A)))
    assert [append.expected for append in driver.appends] == [{A: 0}, {A: 1}]
    assert texts(driver.appends[-1].writes) == {"a": ["saw 1"]}
    assert driver.sleeps == []  # a wrong guess is not contention: no backoff


def test_a_refusal_on_a_guessed_state_is_decided_again_on_a_read_state() -> None:
    driver = Driver(history_of({A: ["a1"]}))
    driver.run(pipeline(CreateUnlessEmpty(main=A)))
    assert len(driver.reads) == 1
    assert texts(driver.appends[0].writes) == {"a": ["saw 1"]}


def test_nothing_to_write_on_a_guessed_state_is_decided_again_on_a_read_state() -> None:
    driver = Driver(history_of({A: ["a1"]}))
    driver.run(pipeline(QuietWhenEmpty(main=A)))
    assert len(driver.reads) == 1
    assert texts(driver.appends[0].writes) == {"a": ["saw 1"]}


def test_a_refusal_on_a_read_state_still_stands_after_a_guess() -> None:
    driver = Driver()
    with pytest.raises(CommandRejected):
        driver.run(pipeline(CreateUnlessEmpty(main=A)))
    assert len(driver.reads) == 1
    assert driver.appends == []


def test_a_command_that_creates_streams_but_discovers_more_reads_first() -> None:
    class CreateAndFollow(Create):
        def discover(self, state: Seen) -> Iterable[StreamId]:
            return [B]

    driver = Driver()
    driver.run(pipeline(CreateAndFollow(main=A)))
    assert [streams_read(read) for read in driver.reads] == [{A}, {B}]


def test_the_next_run_decides_on_the_cached_state_after_its_own_write_without_reading() -> None:
    cache = StateCache(8)
    driver = Driver(history_of({A: ["a1"]}))
    driver.run(pipeline(Note(main=A), cache=cache))
    driver.reads.clear()
    result = driver.run(pipeline(Note(main=A), cache=cache))
    assert driver.reads == []
    assert driver.appends[-1].expected == {A: 2}
    assert texts(driver.appends[-1].writes) == {"a": ["saw 2"]}
    assert result.attempts == 1


def test_a_cached_state_after_own_writes_matches_a_full_fold() -> None:
    cache = StateCache(8)
    history = history_of({A: ["a1"], B: ["b1"]})
    for _ in range(3):
        Driver(history).run(pipeline(Note(main=A, also=(B,)), cache=cache))
    cached = Driver(history)
    cached.run(pipeline(Note(main=A, also=(B,)), cache=cache))
    fresh = Driver(history_of({A: ["a1"], B: ["b1"]}))
    for _ in range(4):
        fresh.run(pipeline(Note(main=A, also=(B,))))
    assert texts(cached.appends[-1].writes) == texts(fresh.appends[-1].writes) == {"a": ["saw 5"]}


def conflict_once_after_a_read(driver: Driver) -> Driver:
    """Make another writer add to ``a`` just before the first append decided on a read."""
    done: list[bool] = []

    def late_writer(history: History) -> None:
        if driver.reads and not done:
            done.append(True)
            history.add(A, "a-late")

    driver.before_append = late_writer
    return driver


#: Sets up a run whose first decision is a wrong guess: the driver, the command, its cache.
Arrange = Callable[[], tuple[Driver, Command[Any], StateCache]]


def guessed_on_empty(command: type[Create]) -> Arrange:
    def arrange() -> tuple[Driver, Command[Any], StateCache]:
        return Driver(history_of({A: ["a1"]})), command(main=A), StateCache(8)

    return arrange


def guessed_on_a_stale_cache() -> tuple[Driver, Command[Any], StateCache]:
    cache = StateCache(8)
    history = history_of({A: ["a1"]})
    Driver(history).run(pipeline(Note(main=A), cache=cache))
    history.add(A, "a-other")  # another process writes: the cached state is stale
    return Driver(history), Note(main=A), cache


@pytest.mark.parametrize(
    "arrange",
    [
        pytest.param(guessed_on_empty(CreateUnlessEmpty), id="refused-by-the-command"),
        pytest.param(guessed_on_empty(QuietWhenEmpty), id="nothing-to-write"),
        pytest.param(guessed_on_empty(Create), id="created-stream-exists"),
        pytest.param(guessed_on_a_stale_cache, id="stale-cached-state"),
    ],
)
def test_a_wrong_guess_does_not_use_up_a_retry_attempt(arrange: Arrange) -> None:
    # Two attempts allowed, and the first decision on a read state meets a real
    # conflict: the second attempt is still there, whatever became of the guess.
    driver, command, cache = arrange()
    conflict_once_after_a_read(driver)
    result = driver.run(
        pipeline(command, cache=cache, retry=RetryPolicy(max_attempts=2, initial_delay=0.0))
    )
    assert result.attempts == 2
    assert len(driver.sleeps) == 1
    assert len(driver.thrown) == len(driver.appends) - 1
    assert texts(driver.appends[-1].writes)["a"][-1].startswith("saw ")
