"""``LogFollower``: follow one store's global log from a checkpoint, then live.

One loop, two phases that are the same code: read the log after the checkpoint in
batches until a read comes back at the head (catch-up), then sleep in
``store.wait_for_events`` until the store knows of something newer — a wake-up from an
in-process append, a PostgreSQL notification, or the poll interval passing — and read
again. The type filter goes to the store, which answers from its (type, position) index.

Backpressure is by construction: ``batches()`` is pulled. The next batch is read (at
most one prefetched, by the SQLite store) only when the consumer asks for it, so a slow
projection slows the reading and nothing queues without bound.

A batch counts as processed when the consumer comes back for the next one; only then
does ``position`` move past it.

The scanned mark (everything up to it is processed or known not to match) moves only to
the store's *settled* position looked at before a read, never to its head: on PostgreSQL
a later append can commit while an earlier one is still in flight, and a filtered read
that found nothing up to the head has not seen that earlier append yet. While the head
is past the settled position for that reason, the follower reads again after a short,
growing pause instead of sleeping until the next append or the poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Collection
from datetime import UTC, datetime
from typing import Any, Final

import msgspec

from eventcore.errors import InvalidInput
from eventcore.store.protocol import EventStore
from eventcore.types import StoredEvent

__all__ = ["DEFAULT_POLL_INTERVAL", "Lag", "LogFollower"]

#: How long a follower sleeps before reading anyway (appends by other processes to a
#: SQLite file, a lost PostgreSQL notification).
DEFAULT_POLL_INTERVAL: Final = 1.0
#: While catching up, how often the head of the log is looked at again (for lag).
_HEAD_REFRESH: Final = 1.0
#: Pauses between passes while an append in flight holds the settled position below the
#: head: most are group commits a few milliseconds from done, a long one must not cost a
#: busy loop.
_FIRST_PAUSE: Final = 0.001
_LONGEST_PAUSE: Final = 0.1


class Lag(msgspec.Struct, frozen=True):
    """How far a follower is behind.

    ``events``: positions of the global log between what it has processed and the
    newest position it has seen (with a type filter, some of them it will skip).
    ``seconds``: the age of the oldest event it holds unprocessed; while it has none in
    hand but is behind, the age of the last one it processed (the next is no older).
    Both are 0 when it is caught up.
    """

    events: int
    seconds: float


class LogFollower:
    """Reads ``store``'s log after ``after``: ``async for batch in follower.batches()``."""

    def __init__(
        self,
        store: EventStore,
        *,
        after: int = 0,
        types: Collection[str] | None = None,
        batch_size: int = 1000,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
    ) -> None:
        if batch_size < 1:
            raise InvalidInput("batch_size must be at least 1")
        if not poll_interval > 0:
            raise InvalidInput("poll_interval must be positive")
        self._store = store
        self._types = None if types is None else sorted(set(types))
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._position = max(after, 0)
        # The log is known to hold nothing more for us up to here (>= position: with a
        # filter, events of other types past our last one have been looked through).
        self._scanned = self._position
        self._head = self._position
        # No append in flight can still commit at or below this (``settled_position``).
        self._settled = self._position
        self._head_looked_at = 0.0
        self._in_hand: datetime | None = None
        self._last_done: datetime | None = None
        self._stopping = asyncio.Event()
        # Set and replaced whenever the follower moves on or stops (see ``reached``).
        self._moved: asyncio.Event | None = None

    # --- state -------------------------------------------------------------------------

    @property
    def position(self) -> int:
        """The last position processed: where a restart would continue after."""
        return self._position

    @property
    def scanned(self) -> int:
        """The log holds nothing more for this follower up to here."""
        return max(self._scanned, self._position)

    @property
    def head(self) -> int:
        """The newest position seen in the store."""
        return max(self._head, self.scanned)

    def lag(self) -> Lag:
        events = self.head - self.scanned
        if self._in_hand is not None:
            since: datetime | None = self._in_hand
        elif events > 0:
            since = self._last_done
        else:
            since = None
        seconds = 0.0 if since is None else max((datetime.now(UTC) - since).total_seconds(), 0.0)
        return Lag(events=events, seconds=seconds)

    async def reached(self, position: int) -> bool:
        """Wait until everything up to ``position`` is processed or known not to match
        (True), or the follower is stopped short of it (False)."""
        while self.scanned < position and not self._stopping.is_set():
            if self._moved is None:
                self._moved = asyncio.Event()
            await self._moved.wait()
        return self.scanned >= position

    def stop(self) -> None:
        """End ``batches()`` cleanly: after the batch in hand, or at once when waiting."""
        self._stopping.set()
        self._announce()

    # --- following ---------------------------------------------------------------------

    async def batches(self) -> AsyncIterator[list[StoredEvent]]:
        """Batches of new events, oldest first, until ``stop()``; never ends by itself."""
        pause = _FIRST_PAUSE
        while not self._stopping.is_set():
            # A settled position looked at before this read starts: the read covers
            # everything up to it. The next look goes on beside the read rather than
            # before it, which keeps a round trip off the path from a wake-up to the batch
            # (live latency); it serves the next pass, and a head it finds past what we
            # scanned makes that pass come at once instead of sleeping.
            if self._head_looked_at == 0.0:
                await self._look_at_head()  # the first pass: lag is right from its start
            horizon = self._settled
            before = self.scanned
            looking = asyncio.ensure_future(self._look_at_head())
            reader = self._store.read_all(
                after=self._position, types=self._types, batch_size=self._batch_size
            )
            try:
                async for batch in reader:
                    self._in_hand = batch[0].recorded_at
                    # The log reaches at least this far, whatever the look beside finds.
                    self._head = max(self._head, batch[-1].position)
                    yield batch
                    self._position = batch[-1].position
                    self._last_done = batch[-1].recorded_at
                    self._in_hand = None
                    self._announce()
                    if self._stopping.is_set():
                        return
                    if looking.done() and time.monotonic() - self._head_looked_at > _HEAD_REFRESH:
                        looking.result()  # a failed look fails the follower, as before
                        looking = asyncio.ensure_future(self._look_at_head())
            finally:
                await _close(reader)
                await _settle(looking)
            # The read covered the settled position it started from: nothing more for us
            # up to there, now or later.
            self._scanned = max(self._scanned, horizon)
            self._announce()
            if self._head <= self.scanned:
                await self._sleep()
                pause = _FIRST_PAUSE
            elif self.scanned == before and self._settled <= self.scanned:
                # Behind the head, yet this pass moved nothing and the look beside it saw
                # nothing newly settled: an append in flight below the head. Reading
                # again at once would spin until it commits.
                await self._pause(pause)
                pause = min(pause * 2, _LONGEST_PAUSE, self._poll_interval)
            else:
                pause = _FIRST_PAUSE

    async def _look_at_head(self) -> None:
        # Settled first: it never passes the head looked at after it.
        settled = await self._store.settled_position()
        self._head = max(self._head, await self._store.last_position())
        self._settled = max(self._settled, settled)
        self._head_looked_at = time.monotonic()

    def _announce(self) -> None:
        if self._moved is not None:
            self._moved.set()
            self._moved = None

    async def _pause(self, seconds: float) -> None:
        """``seconds``, or less if ``stop()`` comes first."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _sleep(self) -> None:
        """Until the store knows of something past what we scanned, the poll, or stop()."""
        waiting = asyncio.ensure_future(
            self._store.wait_for_events(self.scanned, self._poll_interval)
        )
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({waiting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (waiting, stopping):
                task.cancel()
            # Both are ours: let them finish (and surface a store error) before going on.
            await asyncio.wait({waiting, stopping})
        if not waiting.cancelled() and waiting.exception() is not None:
            raise waiting.exception()  # type: ignore[misc]


async def _settle(task: asyncio.Future[None]) -> None:
    """Let a head look end before going on, and surface its error; never leave it behind.

    Awaited in a ``finally``: when we are being cancelled, the look is cancelled too
    and our own cancellation goes on propagating.
    """
    if not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            task.cancel()
            await asyncio.wait({task})
            raise
    if not task.cancelled():
        task.result()


async def _close(reader: AsyncIterator[Any]) -> None:
    """Finish a ``read_all`` iteration left early, so its prefetch does not linger."""
    close = getattr(reader, "aclose", None)
    if close is not None:
        await close()
