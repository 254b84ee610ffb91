"""The contract every event store keeps (docs/architecture.md#the-store-contract), written
as a Protocol.

The guarantees each method states are proven for every backend by one shared test
suite (``tests/store/contract``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol, runtime_checkable

import msgspec

from eventcore.types import EventId, NewEvent, StoredEvent, StreamHead, StreamId

__all__ = ["AppendResult", "EventStore"]


class AppendResult(msgspec.Struct, frozen=True, kw_only=True):
    """What one append wrote.

    ``stream_versions`` holds the new version of every stream written;
    ``positions`` and ``event_ids`` list the events in the order they were given.
    ``deduplicated`` is true when an earlier append with the same idempotency key
    had already written them and this call wrote nothing.
    """

    stream_versions: dict[str, int]
    positions: tuple[int, ...]
    event_ids: tuple[EventId, ...]
    deduplicated: bool = False

    @property
    def last_position(self) -> int:
        return self.positions[-1] if self.positions else 0


@runtime_checkable
class EventStore(AbstractAsyncContextManager["EventStore", None], Protocol):
    """Streams of events with a global log.

    * A stream's versions start at 1 and are contiguous.
    * ``append`` is all or nothing across every stream it names.
    * Positions in the global log are unique; a reader that follows the log from a
      position never misses an event committed after it read.

    ``async with await open_store(url) as store:`` closes it (``aclose``) however the
    block ends.
    """

    async def append(
        self,
        writes: Mapping[StreamId, Sequence[NewEvent]],
        *,
        expected: Mapping[StreamId, int],
        idempotency_key: str | None = None,
    ) -> AppendResult:
        """Write events to several streams atomically.

        ``expected`` holds the version read of *every* stream the caller decided on,
        written or not (0 = the stream did not exist). If any stream is elsewhere, raise
        ``ConcurrencyConflict`` and write nothing. Writing a stream missing from
        ``expected`` raises ``UndeclaredStream``. A stream given an empty list of events is
        read-only: its expected version is checked, nothing is written to it, and it is
        not in the result's ``stream_versions``; an append with no events at all is
        ``EmptyAppend``. With an ``idempotency_key`` already used, write nothing and
        return the first append's result (``deduplicated=True``).
        """
        ...

    async def find_append(self, idempotency_key: str) -> AppendResult | None:
        """The result of the append that used ``idempotency_key`` (``deduplicated=True``),
        or None if no append has used it."""
        ...

    async def read_stream(self, stream_id: StreamId, *, from_version: int = 1) -> list[StoredEvent]:
        """The events of one stream from ``from_version`` on, oldest first; [] if none."""
        ...

    def read_all(
        self,
        *,
        after: int = 0,
        types: Collection[str] | None = None,
        batch_size: int = 1000,
        limit: int | None = None,
    ) -> AsyncIterator[list[StoredEvent]]:
        """The global log after position ``after`` in batches, oldest first.

        Only ``types`` are returned when given. Batches are fetched lazily, so a log of
        any length is read in bounded memory. The iteration ends at the head of the log
        as it was when each batch was fetched.
        """
        ...

    async def stream_version(self, stream_id: StreamId) -> int:
        """The stream's current version; 0 if it has no events."""
        ...

    async def list_streams(
        self, *, after: StreamId | None = None, limit: int = 100
    ) -> list[StreamHead]:
        """Stream heads in name order, starting after ``after``."""
        ...

    async def store_id(self) -> str:
        """The identity of this store's log: a UUID made with the store (its SQLite file,
        its PostgreSQL schema, the ``MemoryStore`` object) and kept for its lifetime.

        Positions count one log; a checkpoint keeps this id beside its position
        (``eventcore.store.checkpoint``), so that a checkpoint counted in another store is
        never taken for a position in this one. A copy of the store (a file copied, a
        database restored) keeps the id: it is the same log.
        """
        ...

    async def last_position(self) -> int:
        """The position of the newest event in the global log; 0 when empty."""
        ...

    async def settled_position(self) -> int:
        """The highest position below which the log is final: no append still in flight
        can commit an event at or below it, and every event up to it can be read now.

        A reader that has read the log (or a filtered part of it) up to this position has
        seen everything it ever will there, so it may move its mark to it. The head
        (``last_position``) gives no such promise where appends commit out of position
        order (PostgreSQL: a later append may commit while an earlier one is in flight);
        there the settled position may lag the head while such an append is open. Where
        commits are serialised (memory, SQLite) it is the head. Never above
        ``last_position``; never moves back.
        """
        ...

    async def wait_for_events(self, after: int, timeout: float) -> bool:  # noqa: ASYNC109
        """Wait until the store knows of a committed event with a position above ``after``.

        True as soon as it does (at once if it already does); False when ``timeout``
        seconds pass first. It never spins: it sleeps until an append through this store,
        a notification from the server, or the timeout. Appends made by other processes
        may be seen only at the timeout, so a follower reads the log after either answer
        (False means "poll now"). Raises ``StoreClosed`` once the store is closed.

        (A ``timeout`` argument rather than ``asyncio.timeout``: running out is the
        normal answer here, not a failure, and the backend may need the bound itself.)
        """
        ...

    async def aclose(self) -> None:
        """Release every resource. Idempotent; later calls raise ``StoreClosed``."""
        ...
