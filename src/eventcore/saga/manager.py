"""``SagaManager``: the programmatic face of a service's sagas — start one, list them,
show one's timeline, retry or abort a stuck one.

It is what ``eventcore sagas list|show|retry|abort`` and the runtime's HTTP status API
call. Inside a running ``SagaWorker`` it is ``worker.manager`` and reads the worker's
live index. A tool that runs no worker opens one over the service's store with
``SagaManager.over(store, registry, sagas, service=...)``: each listing then first
reads what is new in the log. A retry or abort goes through the same driver as every
other input, so it is one append at the version read, whichever process makes it; the
requests it decides leave through the service's outbox, and a ``Local`` or ``Call``
request made by a tool is run by the service's worker when its timeout brings the next
attempt.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from eventcore.errors import SagaNotFound
from eventcore.events import EventRegistry
from eventcore.instrumentation import Hooks
from eventcore.saga.definition import Saga
from eventcore.saga.driver import SagaDriver
from eventcore.saga.index import SagaIndex, SagaSummary
from eventcore.saga.inputs import Abort, Retry
from eventcore.saga.state import SagaState, SagaStatus
from eventcore.saga.streams import SAGA_EVENT_TYPES, load, saga_stream
from eventcore.saga.timeline import SagaView
from eventcore.store.protocol import EventStore
from eventcore.types import StreamId

__all__ = ["SagaManager"]

D = TypeVar("D")


class SagaManager:
    """Start, list, show, retry and abort the sagas of one service; see the module docs."""

    def __init__(self, driver: SagaDriver, index: SagaIndex) -> None:
        self._driver = driver
        self._index = index

    @classmethod
    def over(
        cls,
        store: EventStore,
        registry: EventRegistry,
        sagas: Sequence[Saga[Any]] = (),
        *,
        service: str,
        hooks: Hooks | None = None,
    ) -> SagaManager:
        """A manager for a process that runs no saga worker (a command-line tool).
        ``sagas`` are needed to start, retry or abort; listing and showing need none."""
        driver = SagaDriver(
            store, registry, sagas, service=service, hooks=hooks, run_requests=False
        )
        return cls(driver, SagaIndex(store, registry, hooks=hooks))

    @property
    def index(self) -> SagaIndex:
        return self._index

    # --- starting ------------------------------------------------------------------------

    async def start(self, saga: Saga[D], saga_id: str, data: D) -> SagaState:
        """Start saga ``saga_id`` of ``saga``'s type with ``data``, and return its state
        after its first append. A saga of that id already started is left as it is (its
        current state is returned): the id names the business process.

        Raises ``InvalidSagaInput`` for an id or data the saga refuses."""
        start = saga.start(saga_id, data)
        decision = await self._driver.start(start)
        if decision.state is not None:
            return decision.state
        loaded = await load(self._driver.store, self._driver.registry, self.stream(saga, saga_id))
        assert loaded.state is not None, "a start that changed nothing found a saga"
        return loaded.state

    @staticmethod
    def stream(saga: Saga[Any] | str, saga_id: str) -> StreamId:
        """The stream of saga ``saga_id`` of the type ``saga`` (or so named)."""
        return saga_stream(saga if isinstance(saga, str) else saga.name, saga_id)

    # --- reading -------------------------------------------------------------------------

    async def list(
        self,
        *,
        status: SagaStatus | Sequence[SagaStatus] | None = None,
        saga_type: str | None = None,
    ) -> list[SagaSummary]:
        """The sagas of ``status`` (one or several) and ``saga_type``, oldest first."""
        await self._refresh()
        return self._index.summaries(status=status, saga_type=saga_type)

    async def counts(self) -> dict[str, int]:
        """How many sagas are in each status."""
        await self._refresh()
        return self._index.counts()

    async def state(self, saga_id: str, *, saga_type: str | None = None) -> SagaState:
        """The saga's state, read from its stream now."""
        stream = await self.find(saga_id, saga_type=saga_type)
        loaded = await load(self._driver.store, self._driver.registry, stream)
        if loaded.state is None:
            raise SagaNotFound(saga_id, "no saga of that id is in the store")
        return loaded.state

    async def show(self, saga_id: str, *, saga_type: str | None = None) -> SagaView:
        """The saga's timeline: steps, attempts, replies, durations, every event."""
        stream = await self.find(saga_id, saga_type=saga_type)
        stored = await self._driver.store.read_stream(stream)
        events = [
            self._driver.registry.decode(event)
            for event in stored
            if event.type in SAGA_EVENT_TYPES
        ]
        if not events:
            raise SagaNotFound(saga_id, "no saga of that id is in the store")
        return SagaView.of(events)  # type: ignore[arg-type]

    async def find(self, saga_id: str, *, saga_type: str | None = None) -> StreamId:
        """The stream of saga ``saga_id``: of ``saga_type`` when given, else of the one
        saga type that has a saga of that id. Raises ``SagaNotFound`` when none has, or
        several have (name the type then)."""
        if saga_type is not None:
            return saga_stream(saga_type, saga_id)
        await self._refresh()
        streams = self._index.streams_of(saga_id)
        if not streams:
            raise SagaNotFound(saga_id, "no saga of that id is in the store")
        if len(streams) > 1:
            types = sorted(
                state.saga_type
                for state in (self._index.get(stream) for stream in streams)
                if state is not None
            )
            raise SagaNotFound(
                saga_id, f"sagas of several types have this id ({', '.join(types)}): name one"
            )
        return streams[0]

    async def _refresh(self) -> None:
        await self._index.up_to_date()

    # --- repairing -----------------------------------------------------------------------

    async def retry(
        self, saga_id: str, *, saga_type: str | None = None, operator: str = "", note: str = ""
    ) -> SagaState:
        """Resume a stuck saga: its compensation gets a fresh set of attempts. Raises
        ``InvalidSagaInput`` when it is not stuck (nothing changes)."""
        stream = await self.find(saga_id, saga_type=saga_type)
        decision = await self._driver.apply(stream, Retry(operator=operator, note=note))
        assert decision.state is not None
        return decision.state

    async def abort(
        self, saga_id: str, *, reason: str, saga_type: str | None = None, operator: str = ""
    ) -> SagaState:
        """End a stuck saga as ``aborted``: what was not undone is the operator's.
        Raises ``InvalidSagaInput`` when it is not stuck (nothing changes)."""
        stream = await self.find(saga_id, saga_type=saga_type)
        decision = await self._driver.apply(stream, Abort(reason=reason, operator=operator))
        assert decision.state is not None
        return decision.state
