"""The pure core of command execution: read, fold, discover, handle, append, retry.

``run_command`` is a generator that performs no I/O. It *yields* the effects it needs
(``ReadStreams``, ``Append``, ``Sleep``, ``FindAppend``) and is resumed with their
outcome: the events read, the append's result, or the ``ConcurrencyConflict`` thrown
into it. The executor
is the thin shell that carries the effects out, so the whole decision logic — folding,
the discovery cap, retry and backoff — is tested without a store or a clock.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Generator, Iterable, Mapping, Sequence
from typing import Any

import msgspec

from eventcore.command import Command, declared_streams
from eventcore.errors import (
    CommandRejected,
    ConcurrencyConflict,
    InvalidCommand,
    RetriesExhausted,
    TooManyStreams,
    UndeclaredStream,
)
from eventcore.events import Event, EventRegistry
from eventcore.retry import RetryPolicy
from eventcore.statecache import CachedState, StateCache
from eventcore.store.protocol import AppendResult
from eventcore.types import EventId, Metadata, NewEvent, StoredEvent, StreamId

__all__ = [
    "Append",
    "CommandResult",
    "Effect",
    "FindAppend",
    "ReadStreams",
    "Sleep",
    "run_command",
]


class ReadStreams(msgspec.Struct, frozen=True):
    """Read each stream from the version given; answer with {stream: events}."""

    streams: tuple[tuple[StreamId, int], ...]


class Append(msgspec.Struct, frozen=True):
    """Append atomically; answer with the ``AppendResult`` or throw the conflict in."""

    writes: dict[StreamId, list[NewEvent]]
    expected: dict[StreamId, int]
    idempotency_key: str | None


class Sleep(msgspec.Struct, frozen=True):
    seconds: float


class FindAppend(msgspec.Struct, frozen=True):
    """Look up the append made under an idempotency key; answer with its result or None."""

    idempotency_key: str


Effect = ReadStreams | Append | Sleep | FindAppend


class CommandResult(msgspec.Struct, frozen=True, kw_only=True):
    """What a command did.

    ``events`` are the events this run decided and wrote (empty when the command had
    nothing to write, or when ``deduplicated``: an earlier run with the same idempotency
    key had written its own). ``stream_versions`` are the written streams' new versions.
    ``attempts`` counts the decisions taken on a state read from the store; a decision on
    a guessed state (``creates_streams``, the state cache) that proved wrong is not one.
    """

    events: tuple[Event, ...]
    event_ids: tuple[EventId, ...]
    stream_versions: dict[str, int]
    positions: tuple[int, ...]
    attempts: int
    deduplicated: bool = False


def run_command(
    command: Command[Any],
    registry: EventRegistry,
    *,
    retry: RetryPolicy,
    max_streams: int,
    metadata: Metadata,
    idempotency_key: str | None = None,
    cache: StateCache | None = None,
    rng: random.Random | None = None,
) -> Generator[Effect, Any, CommandResult]:
    """Decide and write ``command``, yielding the effects it needs (see the module doc)."""
    rng = rng or random.Random()
    name = type(command).__name__
    declared = declared_streams(command)
    if not declared:
        raise InvalidCommand(f"{name} declares no stream fields (annotate a field as StreamId)")
    if len(declared) > max_streams:
        raise TooManyStreams(name, max_streams)
    attempt = 0
    guess = _guess(command, declared, cache)
    while True:
        # A guessed state (see ``_guess``) is decided on without reading. Its decision
        # can only be committed through the append's version check, so a wrong guess
        # costs a conflict and a read, never a wrong write. A guess that leads anywhere
        # but to an append (a refusal, nothing to write) proves nothing: read, decide again.
        attempt += 1
        guessed = guess is not None
        if guess is not None:
            folded, guess = guess, None
        else:
            folded = yield from _read_and_fold(command, registry, declared, max_streams, cache)
        try:
            writes = command.handle(folded.state)
        except CommandRejected:
            if guessed:
                attempt -= 1  # a guess proved nothing; the decision on a read state counts
                continue
            # A command run again under its idempotency key (a redelivered message, a
            # client retrying after a timeout) meets the state its first run created,
            # which may now refuse it. The first run's result is the answer.
            earlier = yield from _earlier_run(idempotency_key, attempt)
            if earlier is None:
                raise
            return earlier
        decided, encoded = _encode(name, writes, registry, folded.versions, metadata)
        if not encoded:
            if guessed:
                attempt -= 1  # a guess proved nothing; the decision on a read state counts
                continue
            earlier = yield from _earlier_run(idempotency_key, attempt)
            return earlier or CommandResult(
                events=(), event_ids=(), stream_versions={}, positions=(), attempts=attempt
            )
        try:
            result: AppendResult = yield Append(encoded, dict(folded.versions), idempotency_key)
        except ConcurrencyConflict as conflict:
            # A cached state stays valid: the next attempt reads what it is missing.
            if guessed:
                # A wrong guess met no contention: it is no attempt, and it reads again
                # at once, without backing off.
                attempt -= 1
                continue
            if attempt >= retry.max_attempts:
                raise RetriesExhausted(name, attempt, conflict) from conflict
            # Another writer won the race: back off so we do not collide again.
            yield Sleep(retry.delay(attempt, rng))
            continue
        if cache is not None and not result.deduplicated:
            _remember_own_write(cache, command, declared, folded, decided, result)
        return CommandResult(
            events=() if result.deduplicated else tuple(event for _, event in decided),
            event_ids=result.event_ids,
            stream_versions=result.stream_versions,
            positions=result.positions,
            attempts=attempt,
            deduplicated=result.deduplicated,
        )


def _guess(
    command: Command[Any], declared: list[StreamId], cache: StateCache | None
) -> CachedState | None:
    """A state to decide on before reading anything, or None to read first.

    A cached state is the best guess: for a stream only this process writes, it is
    exact. A command that says it ``creates_streams`` is guessed to meet empty streams
    — unless it would then discover more streams, which must be read.
    """
    if cache is not None:
        cached = cache.get(command, declared)
        if cached is not None:
            return cached
    if type(command).creates_streams:
        state = command.initial_state()
        if not _discover(command, state):
            return CachedState(state=state, versions=dict.fromkeys(declared, 0))
    return None


def _remember_own_write(
    cache: StateCache,
    command: Command[Any],
    declared: list[StreamId],
    folded: CachedState,
    decided: tuple[tuple[StreamId, Event], ...],
    result: AppendResult,
) -> None:
    """Cache the state after this run's own write, so the next run need not read it back.

    The append succeeded at the versions read, so nothing was written to these streams
    in between: folding our own events, in the order they were appended, onto the state
    they were decided on gives exactly what a full fold would.
    """
    try:
        state = folded.state
        for stream, event in decided:
            state = command.apply(state, stream, event)
    except Exception:
        # The events are written; a bug in ``apply`` must not turn that into a failure.
        cache.forget(command, declared)
        return
    versions = dict(folded.versions)
    for name, version in result.stream_versions.items():
        versions[StreamId(name)] = version
    cache.put(
        command,
        declared,
        CachedState(state=state, versions=versions, last_position=max(result.positions)),
    )


def _earlier_run(
    idempotency_key: str | None, attempt: int
) -> Generator[Effect, Any, CommandResult | None]:
    """The result of an earlier run under the same key, if there was one."""
    if idempotency_key is None:
        return None
    found: AppendResult | None = yield FindAppend(idempotency_key)
    if found is None:
        return None
    return CommandResult(
        events=(),
        event_ids=found.event_ids,
        stream_versions=found.stream_versions,
        positions=found.positions,
        attempts=attempt,
        deduplicated=True,
    )


def _read_and_fold(
    command: Command[Any],
    registry: EventRegistry,
    declared: list[StreamId],
    max_streams: int,
    cache: StateCache | None,
) -> Generator[Effect, Any, CachedState]:
    """Fold every declared and discovered stream into one state.

    A cached state is brought up to date by reading only the events after the versions
    it was folded at — but only when that gives the state a full fold would: every new
    event must come after the last one folded (streams are read one by one, so a read
    can see a later event of one stream and miss an earlier one of another; the append
    then conflicts, and the late event must not be folded out of log order), and
    discovery must name exactly the streams the cached state was folded from (a stream
    no longer named must drop out; a new one may interleave). Otherwise the fold
    starts over.
    """
    cached = cache.get(command, declared) if cache is not None else None
    if cached is not None:
        requests = tuple((stream, version + 1) for stream, version in cached.versions.items())
        read: Mapping[StreamId, list[StoredEvent]] = yield ReadStreams(requests)
        if all(events[0].position > cached.last_position for events in read.values() if events):
            state = _fold(command, registry, cached.state, read.values())
            versions = dict(cached.versions)
            last_position = cached.last_position
            for stream, events in read.items():
                if events:
                    versions[stream] = events[-1].version
                    last_position = max(last_position, events[-1].position)
            if versions.keys() == {*declared, *_discover(command, state)}:
                return _remember(cache, command, declared, state, versions, last_position)

    name = type(command).__name__
    versions = {}
    history: dict[StreamId, list[StoredEvent]] = {}
    pending = list(declared)
    state = command.initial_state()
    while pending:
        read = yield ReadStreams(tuple((stream, 1) for stream in pending))
        for stream in pending:
            events = read.get(stream, [])
            history[stream] = events
            versions[stream] = events[-1].version if events else 0
        # Events from several streams are applied in global-log order, the order in
        # which they happened, so a fold does not depend on how streams were listed.
        state = _fold(command, registry, command.initial_state(), history.values())
        pending = [stream for stream in _discover(command, state) if stream not in versions]
        if len(versions) + len(pending) > max_streams:
            raise TooManyStreams(name, max_streams)
    last_position = max((events[-1].position for events in history.values() if events), default=0)
    return _remember(cache, command, declared, state, versions, last_position)


def _remember(
    cache: StateCache | None,
    command: Command[Any],
    declared: list[StreamId],
    state: Any,
    versions: dict[StreamId, int],
    last_position: int,
) -> CachedState:
    folded = CachedState(state=state, versions=versions, last_position=last_position)
    if cache is not None:
        cache.put(command, declared, folded)
    return folded


def _discover(command: Command[Any], state: Any) -> list[StreamId]:
    return list(dict.fromkeys(StreamId(stream) for stream in command.discover(state)))


def _fold(
    command: Command[Any],
    registry: EventRegistry,
    state: Any,
    streams: Iterable[list[StoredEvent]],
) -> Any:
    lists = [events for events in streams if events]
    ordered: Iterable[StoredEvent] = (
        lists[0] if len(lists) == 1 else heapq.merge(*lists, key=_position)
    )
    apply = command.apply
    decode = registry.decode
    for stored in ordered:
        state = apply(state, stored.stream_id, decode(stored))
    return state


def _position(event: StoredEvent) -> int:
    return event.position


def _encode(
    name: str,
    writes: object,
    registry: EventRegistry,
    read_versions: Mapping[StreamId, int],
    metadata: Metadata,
) -> tuple[tuple[tuple[StreamId, Event], ...], dict[StreamId, list[NewEvent]]]:
    if not isinstance(writes, Mapping):
        raise InvalidCommand(
            f"{name}.handle() must return a mapping of stream to events, "
            f"got {type(writes).__name__}"
        )
    decided: list[tuple[StreamId, Event]] = []
    encoded: dict[StreamId, list[NewEvent]] = {}
    for stream, events in writes.items():
        stream = StreamId(stream)
        if stream not in read_versions:
            raise UndeclaredStream(stream)
        if not isinstance(events, Sequence) or isinstance(events, str | bytes):
            raise InvalidCommand(
                f"{name}.handle() must map each stream to a sequence of events, "
                f"got {type(events).__name__} for {stream!r}"
            )
        for event in events:
            if not isinstance(event, Event):
                raise InvalidCommand(f"{name}.handle() returned {event!r}, which is not an Event")
            encoded.setdefault(stream, []).append(registry.encode(event, metadata=metadata))
            decided.append((stream, event))
    return tuple(decided), encoded
