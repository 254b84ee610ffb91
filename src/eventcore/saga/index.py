"""``SagaIndex``: every saga of the owner's store, as of its log.

It follows the store's global log (only the saga event types), folding each saga's
events into its state. The timer reads the deadlines to keep from it, the saga worker
the requests in flight to run again after a restart, and the status API the sagas to
list. Nothing in it is durable: it is rebuilt from the log when it starts, which is what
makes a deadline that fell due while the process was down fire once it is back.

It reports each saga's status changes on the hooks seam (``saga_status_changed``, from
None when it first sees a saga), so a gauge of sagas by status counts every saga in
the store, whichever instance moved it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Sequence

import msgspec

from eventcore.events import EventRegistry
from eventcore.instrumentation import FanOut, Hooks, SagaStatusChanged, resolve
from eventcore.lifecycle import Readiness
from eventcore.saga.state import SagaState, SagaStatus, evolve
from eventcore.saga.streams import SAGA_EVENT_TYPES
from eventcore.store.follower import DEFAULT_POLL_INTERVAL, LogFollower
from eventcore.store.protocol import EventStore
from eventcore.types import StoredEvent, StreamId

__all__ = ["SagaIndex", "SagaSummary"]

_logger = logging.getLogger(__name__)

#: Called with a saga's stream and its state each time the index folds new events of it.
Listener = Callable[[StreamId, SagaState], None]


class SagaSummary(msgspec.Struct, frozen=True, kw_only=True):
    """One line of a saga listing. ``step`` is the step it waits on or compensates next
    (None when it has ended); ``phase`` whether that is its ``action`` or its
    ``compensation``."""

    saga_type: str
    saga_id: str
    status: SagaStatus
    stream: str
    started_at: float
    ended_at: float | None
    step: str | None
    phase: str | None
    stuck_reason: str | None
    events: int

    @classmethod
    def of(cls, stream: StreamId, state: SagaState) -> SagaSummary:
        step: str | None = None
        phase: str | None = None
        if state.pending is not None:
            step, phase = state.pending.step, state.pending.phase
        elif state.status in ("compensating", "stuck") and state.to_compensate:
            step, phase = state.to_compensate[0], "compensation"
        return cls(
            saga_type=state.saga_type,
            saga_id=state.saga_id,
            status=state.status,
            stream=str(stream),
            started_at=state.started_at,
            ended_at=state.ended_at,
            step=step,
            phase=phase,
            stuck_reason=state.stuck_reason,
            events=state.version,
        )


class SagaIndex:
    """The sagas of ``store`` by stream, kept up with its log; see the module docs.

    As a ``Worker`` it follows the log live, and is ready once it has read the log as it
    was when it started. Without running it, ``catch_up()`` reads what is new once (what
    a command-line tool does)."""

    def __init__(
        self,
        store: EventStore,
        registry: EventRegistry,
        *,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        hooks: Hooks | None = None,
    ) -> None:
        self._store = store
        self._registry = registry
        self._poll_interval = poll_interval
        self._hooks: FanOut | None = resolve(hooks)
        self._states: dict[StreamId, SagaState] = {}
        # A stream's version counts its requests too; the state's, saga events only.
        self._versions: dict[StreamId, int] = {}
        self._by_id: dict[str, list[StreamId]] = {}
        self._position = 0
        self._listeners: list[Listener] = []
        self._changed = asyncio.Condition()
        self._readiness = Readiness("saga index")
        self._stopping = asyncio.Event()
        self._follower: LogFollower | None = None
        self._following = False

    # --- reading -------------------------------------------------------------------------

    @property
    def position(self) -> int:
        """The last log position folded in."""
        return self._position

    @property
    def following(self) -> bool:
        """Whether ``run`` keeps it up with the log."""
        return self._following

    def get(self, stream: StreamId) -> SagaState | None:
        return self._states.get(stream)

    def streams_of(self, saga_id: str) -> list[StreamId]:
        """The streams of the sagas called ``saga_id`` (one per saga type using it)."""
        return list(self._by_id.get(saga_id, ()))

    def items(self) -> Iterable[tuple[StreamId, SagaState]]:
        return list(self._states.items())

    def summaries(
        self,
        *,
        status: SagaStatus | Sequence[SagaStatus] | None = None,
        saga_type: str | None = None,
    ) -> list[SagaSummary]:
        """The sagas, oldest first, of ``status`` (one or several) and ``saga_type``."""
        wanted = {status} if isinstance(status, str) else set(status or ())
        found = [
            SagaSummary.of(stream, state)
            for stream, state in self._states.items()
            if (not wanted or state.status in wanted)
            and (saga_type is None or state.saga_type == saga_type)
        ]
        found.sort(key=lambda summary: (summary.started_at, summary.stream))
        return found

    def counts(self) -> dict[str, int]:
        """How many sagas are in each status."""
        counts: dict[str, int] = {}
        for state in self._states.values():
            counts[state.status] = counts.get(state.status, 0) + 1
        return counts

    def listen(self, listener: Listener) -> None:
        """Call ``listener(stream, state)`` for each saga the index folds events of (the
        ones it already holds included, at once)."""
        self._listeners.append(listener)
        for stream, state in list(self._states.items()):
            listener(stream, state)

    async def wait_for(
        self,
        stream: StreamId,
        predicate: Callable[[SagaState], bool],
        timeout: float,  # noqa: ASYNC109
    ) -> SagaState:
        """The saga's state once ``predicate`` holds for it; ``TimeoutError`` after
        ``timeout`` seconds."""
        async with asyncio.timeout(timeout), self._changed:
            while True:
                state = self._states.get(stream)
                if state is not None and predicate(state):
                    return state
                await self._changed.wait()

    # --- keeping up ----------------------------------------------------------------------

    async def up_to_date(self) -> None:
        """Return once everything the log held when called is folded in: what a listing
        needs to show the sagas as they are (an operator's retry just made included)."""
        if not self._following:
            await self.catch_up()
            return
        head = await self._store.last_position()
        follower = self._follower
        if follower is not None:
            await follower.reached(head)

    async def catch_up(self) -> None:
        """Fold in what the log holds past ``position`` now (not while ``run`` follows)."""
        reader = self._store.read_all(after=self._position, types=SAGA_EVENT_TYPES)
        try:
            async for batch in reader:
                await self._fold(batch)
        finally:
            await reader.aclose()  # type: ignore[attr-defined]

    async def run(self) -> None:
        if self._stopping.is_set():
            self._readiness.stopped()
            return
        follower = LogFollower(
            self._store,
            after=self._position,
            types=SAGA_EVENT_TYPES,
            poll_interval=self._poll_interval,
        )
        self._follower = follower
        self._following = True
        try:
            head = await self._store.last_position()
            if self._stopping.is_set():
                follower.stop()
            readying = asyncio.create_task(self._ready_at(follower, head))
            try:
                async for batch in follower.batches():
                    await self._fold(batch)
            finally:
                readying.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await readying
        except BaseException as error:
            self._readiness.fail(error)
            raise
        finally:
            self._following = False
            self._readiness.stopped()

    async def _ready_at(self, follower: LogFollower, head: int) -> None:
        if await follower.reached(head):
            self._readiness.set()
            async with self._changed:
                self._changed.notify_all()

    def stop(self) -> None:
        self._stopping.set()
        if self._follower is not None:
            self._follower.stop()

    async def ready(self) -> None:
        await self._readiness.wait()

    def status(self) -> dict[str, int]:
        """How many sagas are in each status."""
        return self.counts()

    async def _fold(self, batch: Sequence[StoredEvent]) -> None:
        touched: dict[StreamId, SagaState] = {}
        for stored in batch:
            stream = stored.stream_id
            before = self._states.get(stream)
            if before is not None and stored.version <= self._version_of(stream):
                continue  # read twice (a catch-up beside a restart): folded already
            try:
                state = evolve(before, self._registry.decode(stored))  # type: ignore[arg-type]
            except Exception as error:
                # Not a saga's stream after all (a saga event type written by hand):
                # nothing to drive there, and no reason to stop following.
                _logger.warning(
                    "saga index: skipped event %s of stream %s: %r", stored.event_id, stream, error
                )
                continue
            self._states[stream] = state
            self._versions[stream] = stored.version
            if before is None:
                self._by_id.setdefault(state.saga_id, []).append(stream)
            touched[stream] = state
            if self._hooks is not None and (before is None or before.status != state.status):
                self._hooks.saga_status_changed(
                    SagaStatusChanged(
                        saga=state.saga_type,
                        saga_id=state.saga_id,
                        previous=before.status if before is not None else None,
                        status=state.status,
                    )
                )
        if batch:
            self._position = max(self._position, batch[-1].position)
        for stream, state in touched.items():
            for listener in self._listeners:
                listener(stream, state)
        async with self._changed:
            self._changed.notify_all()

    def _version_of(self, stream: StreamId) -> int:
        return self._versions.get(stream, 0)
