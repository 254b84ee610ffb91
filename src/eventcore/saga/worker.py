"""``SagaWorker``: drives every saga of a service from its stream.

One worker per process of the owning service. It runs, as one ``Worker``:

- the ``SagaIndex``, which follows the store's log and knows every saga;
- the ``SagaTimer``, which fires the deadlines kept in the sagas' streams;
- a ``Subscriber`` of the sagas' reply topic (``<service>-saga-replies``, group
  ``<service>-sagas``), which hands each participant's reply to its saga;
- a ``Subscriber`` per ``start_topics`` topic (group ``<service>-saga-starts``), which
  starts a saga for each event a ``StartOn`` names.

Every input goes through the ``SagaDriver``: read the stream, ``decide``, append the
events and the requests in one append at the version read. So a crash anywhere resumes
where the stream says: a request recorded is in the outbox (the service's ``Relay``
must run), a deadline recorded is fired by the timer after the restart even if it fell
due meanwhile, a ``Local`` command or ``Call`` in flight is run again under the same
idempotency key once the index has read the log, and a reply that came while the
process was down waits on the bus.

Several processes of the service run a worker each on the same store and bus: replies
are shared out by the consumer group, every timer fires every deadline, and the saga
stream's expected version makes sure one input moves a saga once — the other decides
again on what the winner wrote, and finds nothing left to do.

A reply that names no saga of this store, or a request the saga never sent, is ignored
and counted (``status().ignored_replies``), with the reason in the log.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Sequence
from typing import Any, Final

import msgspec

from eventcore.errors import InvalidInput, InvalidSagaInput, SagaNotFound
from eventcore.events import Event, EventRegistry
from eventcore.executor import Executor
from eventcore.instrumentation import Hooks
from eventcore.lifecycle import Readiness, Worker
from eventcore.messaging.bus import DEFAULT_ACK_WAIT, Bus
from eventcore.messaging.commands import COMMAND_EVENTS, CommandReplied
from eventcore.messaging.inbox import Received
from eventcore.messaging.names import check_name
from eventcore.messaging.subscriber import Subscriber, SubscriberStatus
from eventcore.saga.decide import InvokeCall, RunLocal, outstanding
from eventcore.saga.definition import Saga
from eventcore.saga.driver import SagaDriver, reply_of
from eventcore.saga.index import SagaIndex
from eventcore.saga.manager import SagaManager
from eventcore.saga.state import TERMINAL, SagaState, SagaStatus
from eventcore.saga.streams import STREAM_PREFIX, saga_stream
from eventcore.saga.timers import SagaTimer, TimerStatus
from eventcore.store.follower import DEFAULT_POLL_INTERVAL
from eventcore.store.protocol import EventStore
from eventcore.types import StreamId

__all__ = ["ENDED", "SagaWorker", "SagaWorkerStatus"]

_logger = logging.getLogger(__name__)

#: Statuses a saga waits in for nothing but an operator, or never leaves.
ENDED: Final[frozenset[SagaStatus]] = frozenset({*TERMINAL, "stuck"})


class SagaWorkerStatus(msgspec.Struct, frozen=True, kw_only=True):
    """What the worker has done since it started. ``sagas``: how many are in each status
    (every saga in the store); ``replies``: replies that moved a saga;
    ``duplicate_replies``: a reply taken already (a redelivery, or a ``Local`` reply
    that also came over the bus); ``ignored_replies``: replies for no saga here, or for
    a request the saga never sent; ``started``: sagas started from events;
    ``recovered``: ``Local``/``Call`` requests run again after a restart;
    ``conflicts``: appends that lost a race to another instance."""

    service: str
    sagas: dict[str, int]
    replies: int
    duplicate_replies: int
    ignored_replies: int
    started: int
    recovered: int
    in_flight: int
    conflicts: int
    timer: TimerStatus
    reply_subscriber: SubscriberStatus


class SagaWorker:
    """Drives the ``sagas`` owned by ``service``; see the module docs.

    ``registry`` is the registry of ``store`` (the saga and command events are added to
    it). ``executor`` runs ``Local`` steps. ``start_topics``: topics whose events start
    sagas (``StartOn``). The service's ``Relay`` must run beside it: the requests leave
    through it. ``clock`` (seconds since the epoch) is for tests; deadlines are stored
    in it.
    """

    def __init__(
        self,
        store: EventStore,
        bus: Bus,
        sagas: Sequence[Saga[Any]],
        *,
        service: str,
        registry: EventRegistry,
        executor: Executor | None = None,
        start_topics: Collection[str] = (),
        reply_to: str | None = None,
        group: str | None = None,
        member: str | None = None,
        ack_wait: float = DEFAULT_ACK_WAIT,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        hooks: Hooks | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._service = check_name("service", service)
        self._driver = SagaDriver(
            store,
            registry,
            sagas,
            service=service,
            reply_to=reply_to,
            executor=executor,
            hooks=hooks,
            clock=clock,
        )
        self._index = SagaIndex(store, registry, poll_interval=poll_interval, hooks=hooks)
        self._timer = SagaTimer(self._index, self._driver)
        self.manager = SagaManager(self._driver, self._index)
        self._replies = Subscriber(
            bus,
            self._driver.reply_to,
            {CommandReplied: self._on_reply},
            group=group or check_name("group", f"{service}-sagas"),
            registry=EventRegistry(COMMAND_EVENTS),
            member=member,
            ack_wait=ack_wait,
            hooks=hooks,
        )
        self._starts_on: dict[type[Event], list[Saga[Any]]] = {}
        for saga in sagas:
            for trigger in saga.start_on:
                self._starts_on.setdefault(trigger.event_type, []).append(saga)
        self._starters: list[Subscriber] = []
        if start_topics and not self._starts_on:
            raise InvalidInput("start_topics given, but no saga here starts on an event (StartOn)")
        if start_topics:
            # The owner's own events share its topics with the ones that start sagas:
            # they are known here (and ignored), not parked as a drifted contract.
            start_registry = EventRegistry([*registry, *self._starts_on])
            for topic in start_topics:
                self._starters.append(
                    Subscriber(
                        bus,
                        topic,
                        {event_type: self._on_start for event_type in self._starts_on},
                        group=check_name("group", f"{service}-saga-starts"),
                        registry=start_registry,
                        member=member,
                        ack_wait=ack_wait,
                        hooks=hooks,
                    )
                )
        self._readiness = Readiness(f"saga worker {service}")
        self._stopping = asyncio.Event()
        self._replied = self._duplicates = self._ignored = self._started = 0
        self._recovered = 0

    # --- the lifecycle -------------------------------------------------------------------

    async def run(self) -> None:
        if self._stopping.is_set():
            self._readiness.stopped()
            return
        workers: list[Worker[Any]] = [self._index, self._timer, self._replies, *self._starters]
        tasks = [asyncio.create_task(worker.run()) for worker in workers]
        readying = asyncio.create_task(self._get_ready(workers))
        stopping = asyncio.create_task(self._stopping.wait())
        try:
            await asyncio.wait({*tasks, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for worker in workers:
                worker.stop()
            stopping.cancel()
            readying.cancel()
            outcomes = await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.gather(readying, stopping, return_exceptions=True)
            await self._driver.aclose()
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                self._readiness.fail(outcome)
                raise outcome
        self._readiness.stopped()

    async def _get_ready(self, workers: Sequence[Worker[Any]]) -> None:
        for worker in workers:
            await worker.ready()
        self._recover()
        self._readiness.set()

    def _recover(self) -> None:
        """Run again the ``Local`` commands and ``Call``s the log says are in flight: this
        process may have died before they ran, or before their reply was recorded."""
        sagas = self._driver.sagas
        for stream, state in self._index.items():
            if state.status in TERMINAL or state.pending is None:
                continue
            saga = sagas.get(state.saga_type)
            if saga is None:
                continue
            try:
                request = outstanding(saga, state)
            except InvalidSagaInput as error:
                _logger.warning(
                    "saga %s: its request in flight cannot be rebuilt: %s", stream, error
                )
                continue
            if isinstance(request, RunLocal | InvokeCall):
                self._recovered += 1
                self._driver.launch(stream, request)

    def stop(self) -> None:
        self._stopping.set()

    async def ready(self) -> None:
        await self._readiness.wait()

    def status(self) -> SagaWorkerStatus:
        return SagaWorkerStatus(
            service=self._service,
            sagas=self._index.counts(),
            replies=self._replied,
            duplicate_replies=self._duplicates,
            ignored_replies=self._ignored,
            started=self._started,
            recovered=self._recovered,
            in_flight=self._driver.in_flight,
            conflicts=self._driver.conflicts,
            timer=self._timer.status(),
            reply_subscriber=self._replies.status(),
        )

    # --- what the worker offers ----------------------------------------------------------

    @property
    def driver(self) -> SagaDriver:
        return self._driver

    @property
    def index(self) -> SagaIndex:
        return self._index

    async def start(self, saga: Saga[Any], saga_id: str, data: Any) -> SagaState:
        """``manager.start``: start a saga (a second start of its id is a no-op)."""
        return await self.manager.start(saga, saga_id, data)

    async def wait(
        self,
        saga: Saga[Any] | str,
        saga_id: str,
        *,
        until: Collection[SagaStatus] = ENDED,
        after: SagaState | None = None,
        timeout: float = 30.0,  # noqa: ASYNC109
    ) -> SagaState:
        """The saga's state once its status is one of ``until`` (completed, compensated,
        stuck or aborted unless given), as this worker's index sees it — and it has seen
        the saga move past ``after`` (a state an operator's retry returned, say);
        ``TimeoutError`` after ``timeout`` seconds."""
        name = saga if isinstance(saga, str) else saga.name
        wanted = frozenset(until)
        since = after.version if after is not None else 0
        return await self._index.wait_for(
            saga_stream(name, saga_id),
            lambda state: state.status in wanted and state.version > since,
            timeout,
        )

    # --- inputs from the bus -------------------------------------------------------------

    async def _on_reply(self, received: Received[CommandReplied]) -> None:
        replied = received.event
        named = received.envelope.correlationid or ""
        if not named.startswith(STREAM_PREFIX):
            self._ignore(replied, f"it names no saga (its correlation id is {named!r})")
            return
        stream = StreamId(named)
        reply = reply_of(replied)
        try:
            decision = await self._driver.apply(stream, reply)
        except SagaNotFound:
            self._ignore(replied, f"there is no saga {named!r} in this service's store")
            return
        except InvalidSagaInput as error:
            self._ignore(replied, error.reason)
            return
        except InvalidInput as error:
            self._ignore(replied, f"{named!r} is not a saga's stream: {error}")
            return
        if decision.changed:
            self._replied += 1
            return
        state = decision.state
        if state is not None and replied.correlation_id in state.answered:
            self._duplicates += 1
        else:
            self._ignore(replied, f"saga {named!r} sent no request of that correlation id")

    def _ignore(self, replied: CommandReplied, reason: str) -> None:
        self._ignored += 1
        _logger.info(
            "saga worker %s: ignored a reply from %s to %s (request %s): %s",
            self._service,
            replied.service,
            replied.command_type,
            replied.correlation_id,
            reason,
        )

    async def _on_start(self, received: Received[Event]) -> None:
        event = received.event
        for saga in self._starts_on.get(type(event), ()):
            start = saga.start_from(event)
            if start is not None:
                decision = await self._driver.start(start)
                if decision.changed:
                    self._started += 1
