"""The executor: the I/O shell around the pure command pipeline.

It carries out the effects ``run_command`` yields — reads, the append, backoff
sleeps — under one deadline, and fills in the metadata every written event carries.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Mapping
from typing import Any

from eventcore.command import Command
from eventcore.errors import CommandTimeout, ConcurrencyConflict, InvalidInput
from eventcore.events import EventRegistry
from eventcore.instrumentation import (
    CommandFailed,
    CommandFinished,
    CommandRetried,
    CommandStarted,
    FanOut,
    Hooks,
    resolve,
)
from eventcore.pipeline import (
    Append,
    CommandResult,
    FindAppend,
    ReadStreams,
    Sleep,
    run_command,
)
from eventcore.retry import RetryPolicy
from eventcore.statecache import StateCache
from eventcore.store.protocol import EventStore
from eventcore.types import Metadata, StoredEvent, StreamId

__all__ = ["Executor"]

DEFAULT_MAX_STREAMS = 64


class Executor:
    """Runs commands against one store.

    ``retry`` governs conflicts; ``max_streams`` caps how many streams one command may
    read including discovered ones; ``cache_size`` > 0 keeps folded states between runs
    (only for commands whose states are immutable values, see ``eventcore.statecache``).
    """

    def __init__(
        self,
        store: EventStore,
        registry: EventRegistry,
        *,
        retry: RetryPolicy | None = None,
        max_streams: int = DEFAULT_MAX_STREAMS,
        cache_size: int = 0,
        rng: random.Random | None = None,
        hooks: Hooks | None = None,
    ) -> None:
        if max_streams < 1:
            raise InvalidInput(f"max_streams must be at least 1, got {max_streams}")
        if cache_size < 0:
            raise InvalidInput(f"cache_size must not be negative, got {cache_size}")
        self.store = store
        self.registry = registry
        self.retry = retry or RetryPolicy()
        self.max_streams = max_streams
        self._cache = StateCache(cache_size) if cache_size else None
        self._rng = rng or random.Random()
        # None unless a hook listens to commands: the store reports its own calls.
        self._hooks = resolve(hooks, *_COMMAND_METHODS)

    async def execute(
        self,
        command: Command[Any],
        *,
        metadata: Metadata | None = None,
        idempotency_key: str | None = None,
        # A deadline for the whole run (reads, retries, backoff), not per call; it is
        # turned into the typed CommandTimeout, which a bare asyncio.timeout cannot do.
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> CommandResult:
        """Run ``command`` to completion: its events are written, or an error says why not.

        Every event gets ``metadata``, with a fresh ``correlation_id`` when none is given
        and the run's own id as ``causation_id`` when none is given.
        """
        run_id = str(uuid.uuid4())
        metadata = metadata or Metadata()
        if metadata.correlation_id is None or metadata.causation_id is None:
            metadata = Metadata(
                correlation_id=metadata.correlation_id or run_id,
                causation_id=metadata.causation_id or run_id,
                traceparent=metadata.traceparent,
                tracestate=metadata.tracestate,
                actor=metadata.actor,
                extra=metadata.extra,
            )
        hooks = self._hooks
        if hooks is not None:
            return await self._observed(hooks, command, metadata, idempotency_key, timeout)
        return await self._run(command, metadata, idempotency_key, timeout, None)

    async def _observed(
        self,
        hooks: FanOut,
        command: Command[Any],
        metadata: Metadata,
        idempotency_key: str | None,
        timeout: float | None,  # noqa: ASYNC109
    ) -> CommandResult:
        name = type(command).__name__
        started = time.perf_counter()
        scope = (
            hooks.command_started(
                CommandStarted(command=name, idempotency_key=idempotency_key, metadata=metadata)
            )
            if hooks.wants("command_started")
            else None
        )
        # Asked inside the command's scope, so a tracing hook writes the command span's
        # context into every event the command appends.
        metadata = hooks.append_metadata(metadata)
        run = _Observed(hooks, name, scope)
        try:
            result = await self._run(command, metadata, idempotency_key, timeout, run)
        except BaseException as error:
            hooks.command_failed(
                CommandFailed(
                    command=name,
                    error=error,
                    attempts=getattr(error, "attempts", run.appends),
                    conflicts=run.conflicts,
                    streams_read=run.streams_read,
                    seconds=time.perf_counter() - started,
                ),
                scope,
            )
            raise
        hooks.command_finished(
            CommandFinished(
                command=name,
                outcome="deduplicated"
                if result.deduplicated
                else ("written" if result.event_ids else "nothing"),
                attempts=result.attempts,
                conflicts=run.conflicts,
                streams_read=run.streams_read,
                events=len(result.event_ids),
                seconds=time.perf_counter() - started,
            ),
            scope,
        )
        return result

    async def _run(
        self,
        command: Command[Any],
        metadata: Metadata,
        idempotency_key: str | None,
        timeout: float | None,  # noqa: ASYNC109
        run: _Observed | None,
    ) -> CommandResult:
        pipeline = run_command(
            command,
            self.registry,
            retry=self.retry,
            max_streams=self.max_streams,
            metadata=metadata,
            idempotency_key=idempotency_key,
            cache=self._cache,
            rng=self._rng,
        )
        if timeout is None:
            return await self._drive(pipeline, run)
        deadline = asyncio.timeout(timeout)
        try:
            async with deadline:
                return await self._drive(pipeline, run)
        except TimeoutError as error:
            # Only our own deadline is a CommandTimeout; a TimeoutError raised by the
            # store (a driver's own timeout) passes through as what it is.
            if not deadline.expired():
                raise
            raise CommandTimeout(type(command).__name__, timeout) from error

    async def _drive(self, pipeline: Any, run: _Observed | None) -> CommandResult:
        outcome: Any = None
        failure: BaseException | None = None
        conflict: ConcurrencyConflict | None = None
        while True:
            try:
                effect = pipeline.send(outcome) if failure is None else pipeline.throw(failure)
            except StopIteration as done:
                result: CommandResult = done.value
                return result
            outcome, failure = None, None
            if isinstance(effect, ReadStreams):
                if run is not None:
                    run.streams_read += len(effect.streams)
                outcome = await self._read(effect)
            elif isinstance(effect, Append):
                if run is not None:
                    run.appends += 1
                try:
                    outcome = await self.store.append(
                        effect.writes,
                        expected=effect.expected,
                        idempotency_key=effect.idempotency_key,
                    )
                except ConcurrencyConflict as refused:
                    failure = conflict = refused
                    if run is not None:
                        run.conflicts += 1
            elif isinstance(effect, Sleep):
                if run is not None and conflict is not None:
                    run.retried(conflict, effect.seconds)
                await asyncio.sleep(effect.seconds)
            elif isinstance(effect, FindAppend):
                outcome = await self.store.find_append(effect.idempotency_key)

    async def _read(self, effect: ReadStreams) -> Mapping[StreamId, list[StoredEvent]]:
        read = self.store.read_stream
        if len(effect.streams) == 1:
            stream, version = effect.streams[0]
            return {stream: await read(stream, from_version=version)}
        results = await asyncio.gather(
            *(read(stream, from_version=version) for stream, version in effect.streams)
        )
        return {stream: events for (stream, _), events in zip(effect.streams, results, strict=True)}


_COMMAND_METHODS = (
    "append_metadata",
    "command_started",
    "command_retried",
    "command_finished",
    "command_failed",
)


class _Observed:
    """What one observed run did, counted as its effects go by."""

    __slots__ = ("appends", "command", "conflicts", "hooks", "scope", "streams_read")

    def __init__(self, hooks: FanOut, command: str, scope: object) -> None:
        self.hooks = hooks
        self.command = command
        self.scope = scope
        self.appends = self.conflicts = self.streams_read = 0

    def retried(self, conflict: ConcurrencyConflict, delay: float) -> None:
        self.hooks.command_retried(
            CommandRetried(
                command=self.command,
                attempt=self.appends,
                stream_id=str(conflict.stream_id),
                expected=conflict.expected,
                actual=conflict.actual,
                delay=delay,
            ),
            self.scope,
        )
