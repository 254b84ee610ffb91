"""The store backends' calls into the instrumentation seam, in one place.

A backend calls these only when it holds hooks (``if self._hooks is not None``), so an
uninstrumented store builds no record and times nothing; nor does one whose hooks do not
listen to the call (``FanOut.wants``), nor is a record built for a method none overrides.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from eventcore.instrumentation import (
    AppendFinished,
    AppendStarted,
    ConnectionsClosed,
    ConnectionsOpened,
    FanOut,
    ReadFinished,
    ReadStarted,
)
from eventcore.store.protocol import AppendResult
from eventcore.store.request import AppendRequest
from eventcore.types import StoredEvent, StreamId

__all__ = ["announce_connections", "observe_append", "observe_read"]


def announce_connections(
    old: FanOut | None,
    new: FanOut | None,
    backend: str,
    holder: object,
    count: Callable[[], int | None],
) -> None:
    """Tell hooks that stop (``old``) and start (``new``) watching ``holder`` that it
    holds connections; ``count`` is called only when a hook reads it."""
    if old is new:
        return
    if old is not None:
        old.connections_closed(ConnectionsClosed(backend=backend, owner=id(holder)))
    if new is not None:
        new.connections_opened(
            ConnectionsOpened(backend=backend, owner=id(holder), count=lambda: count() or 0)
        )


async def observe_append(
    hooks: FanOut,
    store: str,
    request: AppendRequest,
    append: Callable[[AppendRequest], Awaitable[AppendResult]],
) -> AppendResult:
    starts = hooks.wants("append_started")
    if not starts and not hooks.wants("append_finished"):
        return await append(request)
    streams = len(request.writes)
    scope = (
        hooks.append_started(
            AppendStarted(store=store, events=request.event_count, streams=streams)
        )
        if starts
        else None
    )
    started = time.perf_counter()
    try:
        result = await append(request)
    except BaseException as error:
        hooks.append_finished(
            AppendFinished(
                store=store,
                events=request.event_count,
                streams=streams,
                deduplicated=False,
                last_position=0,
                error=error,
                seconds=time.perf_counter() - started,
            ),
            scope,
        )
        raise
    hooks.append_finished(
        AppendFinished(
            store=store,
            events=request.event_count,
            streams=streams,
            deduplicated=result.deduplicated,
            last_position=result.last_position,
            error=None,
            seconds=time.perf_counter() - started,
        ),
        scope,
    )
    return result


async def observe_read(
    hooks: FanOut,
    store: str,
    stream_id: StreamId,
    from_version: int,
    read: Callable[[StreamId, int], Awaitable[list[StoredEvent]]],
) -> list[StoredEvent]:
    starts = hooks.wants("read_started")
    if not starts and not hooks.wants("read_finished"):
        return await read(stream_id, from_version)
    scope = (
        hooks.read_started(ReadStarted(store=store, stream_id=stream_id, from_version=from_version))
        if starts
        else None
    )
    started = time.perf_counter()
    try:
        events = await read(stream_id, from_version)
    except BaseException as error:
        hooks.read_finished(
            ReadFinished(
                store=store,
                stream_id=stream_id,
                events=0,
                error=error,
                seconds=time.perf_counter() - started,
            ),
            scope,
        )
        raise
    hooks.read_finished(
        ReadFinished(
            store=store,
            stream_id=stream_id,
            events=len(events),
            error=None,
            seconds=time.perf_counter() - started,
        ),
        scope,
    )
    return events
