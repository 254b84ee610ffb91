"""``SagaDriver``: one input to a saga becomes one append to its stream.

Every input — a start, a reply, a deadline, an operator's retry or abort — takes the
same path: read the saga's stream (or take the state this driver last appended), ask
``decide``, and append the decision's events *and its requests to other services*
(``CommandRequested``, which the owner's relay publishes) in one append that expects
the version read. So a request leaves exactly when the step's request is recorded, and
never by a direct publish.

That expected version is also what lets several instances of the owning service share
the sagas: any of them may take any input for any saga, and when two decide on the same
saga at once one append wins and the other conflicts, reads the stream again, and
decides on what the winner wrote (usually: nothing more to do). No lease has to be held
or handed over when an instance dies, and a reply is never parked waiting for the
instance that "owns" its saga: the stream's version is the lock, taken for the length
of one append.

The requests no outbox carries run here, right after their append: a ``Local`` command
on the owner's ``Executor`` — wrapped so that its reply is stored in the command's own
append (as a command received over the bus is answered), and that reply also reaches
the saga through the relay and the reply topic if this process dies before it feeds it
— and a ``Call``, awaited with its idempotency key. A saga worker that restarts runs the
one in flight again (``SagaWorker``); the key makes the second run no second effect.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

from eventcore.command import Command
from eventcore.errors import (
    CommandRejected,
    ConcurrencyConflict,
    InvalidInput,
    InvalidSagaInput,
    SagaNotFound,
    StoreClosed,
)
from eventcore.events import EventRegistry
from eventcore.executor import Executor
from eventcore.instrumentation import (
    FanOut,
    Hooks,
    SagaCompensationEnded,
    SagaOpened,
    SagaStepEnded,
    resolve,
)
from eventcore.messaging.commands import COMMAND_EVENTS, CommandReplied, request_for
from eventcore.messaging.commands.answering import Request as Answer
from eventcore.messaging.commands.answering import answering
from eventcore.messaging.commands.records import command_type_of
from eventcore.messaging.names import check_name
from eventcore.saga.decide import Decision, InvokeCall, Request, RunLocal, SendCommand, decide
from eventcore.saga.definition import Local, Saga
from eventcore.saga.events import (
    SAGA_EVENTS,
    SagaCompensationFailed,
    SagaCompensationSucceeded,
    SagaEvent,
    SagaStarted,
    SagaStepFailed,
    SagaStepSucceeded,
    SagaStepTimedOut,
)
from eventcore.saga.inputs import Input, Reply, Start
from eventcore.saga.state import Pending, SagaState, evolve
from eventcore.saga.streams import Loaded, load, saga_stream
from eventcore.store.protocol import EventStore
from eventcore.types import Metadata, NewEvent, StreamId

__all__ = ["SagaDriver", "reply_of", "saga_replies_topic"]

_logger = logging.getLogger(__name__)

#: How often one input is decided again after its append conflicted. Each conflict
#: means another instance moved the saga on; a handful in a row means a hot loop.
_MAX_CONFLICTS: Final = 16
#: How often a reply run here (a Local's, a Call's) is offered to a store that fails.
_FEED_ATTEMPTS: Final = 5


def saga_replies_topic(service: str) -> str:
    """The topic the replies to ``service``'s sagas come back on: its own, so that a
    ``CommandSender`` of the service never sees them."""
    return check_name("reply topic", f"{check_name('service', service)}-saga-replies")


class SagaDriver:
    """Decides and appends each input of the sagas of ``service``; see the module docs.

    ``registry`` is the registry of ``store``: the saga and command events are
    registered with it. ``executor`` runs ``Local`` steps (required when a saga has one);
    its registry gets the command events too. ``clock`` gives seconds since the epoch —
    deadlines are stored as such, so every instance must agree on it.
    ``run_requests=False`` (a command-line tool): ``Local`` and ``Call`` requests it
    decides are only recorded; the service's worker runs them when their timeout brings
    the next attempt.
    """

    def __init__(
        self,
        store: EventStore,
        registry: EventRegistry,
        sagas: Sequence[Saga[Any]],
        *,
        service: str,
        reply_to: str | None = None,
        executor: Executor | None = None,
        hooks: Hooks | None = None,
        clock: Callable[[], float] = time.time,
        cache_size: int = 10_000,
        run_requests: bool = True,
    ) -> None:
        self._service = check_name("service", service)
        self._reply_to = check_name("reply topic", reply_to or saga_replies_topic(service))
        self._sagas: dict[str, Saga[Any]] = {}
        for saga in sagas:
            if not isinstance(saga, Saga):
                raise InvalidInput(f"{saga!r} is not a Saga")
            if saga.name in self._sagas:
                raise InvalidInput(f"two sagas are called {saga.name!r}")
            if run_requests and executor is None and _has_local(saga):
                raise InvalidInput(f"saga {saga.name!r} has Local steps: give an executor")
            self._sagas[saga.name] = saga
        for event_type in (*SAGA_EVENTS, *COMMAND_EVENTS):
            registry.register(event_type)
        if executor is not None:
            for event_type in COMMAND_EVENTS:
                executor.registry.register(event_type)
        self._store = store
        self._registry = registry
        self._executor = executor
        self._hooks: FanOut | None = resolve(hooks)
        self._clock = clock
        self._cache: OrderedDict[StreamId, Loaded] = OrderedDict()
        self._cache_size = cache_size
        self._running: dict[str, asyncio.Task[None]] = {}
        self._rng = random.Random()
        self._run_requests = run_requests
        self.conflicts = 0

    @property
    def store(self) -> EventStore:
        return self._store

    @property
    def registry(self) -> EventRegistry:
        return self._registry

    @property
    def service(self) -> str:
        return self._service

    @property
    def reply_to(self) -> str:
        return self._reply_to

    @property
    def sagas(self) -> dict[str, Saga[Any]]:
        return dict(self._sagas)

    @property
    def in_flight(self) -> int:
        """``Local`` commands and ``Call``s running now."""
        return len(self._running)

    def now(self) -> float:
        return self._clock()

    # --- inputs ------------------------------------------------------------------------

    async def start(self, start: Start) -> Decision:
        """Start a saga; a second start of its id decides nothing (``changed`` False)."""
        if start.saga_type not in self._sagas:
            raise InvalidSagaInput(start.saga_type, start.saga_id, "no such saga type here")
        return await self.apply(saga_stream(start.saga_type, start.saga_id), start)

    async def apply(self, stream: StreamId, input: Input) -> Decision:
        """Decide ``input`` for the saga of ``stream`` and append what it decides.

        Raises ``SagaNotFound`` when the stream holds no saga (for anything but a
        start), ``InvalidSagaInput`` when the saga refuses the input or its type has no
        definition here; nothing is written then."""
        cached = True
        for conflict in range(_MAX_CONFLICTS):
            loaded = self._cache.get(stream) if cached else None
            cached = loaded is not None
            if loaded is None:
                loaded = await load(self._store, self._registry, stream)
            state = loaded.state
            if state is None and not isinstance(input, Start):
                raise SagaNotFound(str(stream), "the owner's store holds no saga of this stream")
            saga = self._definition(state, input)
            decision = decide(saga, state, input, self._clock())
            if not decision.changed:
                if cached:
                    # Nothing to do, by what this instance appended last; another may
                    # have moved the saga since (sent the request this reply answers,
                    # set the deadline that fires): ask the stream before ignoring it.
                    cached = False
                    continue
                return decision
            writes, unsendable = self._writes(stream, decision)
            try:
                await self._store.append({stream: writes}, expected={stream: loaded.version})
            except ConcurrencyConflict:
                self.conflicts += 1
                self._cache.pop(stream, None)
                cached = False
                # Another instance took an input for this saga at the same moment; a
                # short random pause keeps two of them from colliding again in step.
                await asyncio.sleep(self._rng.uniform(0, 0.002 * (conflict + 1)))
                continue
            except BaseException:
                self._cache.pop(stream, None)
                raise
            self._remember(stream, Loaded(decision.state, loaded.version + len(writes)))
            if self._hooks is not None:
                self._report(state, decision.events)
            for request in decision.requests:
                if isinstance(request, RunLocal | InvokeCall):
                    self.launch(stream, request)
            for request, reason in unsendable:
                # The request was recorded but cannot travel: its step (or attempt)
                # fails with the reason, as if its builder had raised.
                self.feed(stream, Reply.rejection(request.correlation_id, reason))
            return decision
        raise ConcurrencyConflict(str(stream), -1, -1)

    def _definition(self, state: SagaState | None, input: Input) -> Saga[Any]:
        name = state.saga_type if state is not None else input.saga_type  # type: ignore[union-attr]
        saga = self._sagas.get(name)
        if saga is None:
            saga_id = state.saga_id if state is not None else input.saga_id  # type: ignore[union-attr]
            raise InvalidSagaInput(name, saga_id, f"service {self._service!r} has no such saga")
        return saga

    def _remember(self, stream: StreamId, loaded: Loaded) -> None:
        self._cache[stream] = loaded
        self._cache.move_to_end(stream)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def forget(self, stream: StreamId) -> None:
        """Drop what this driver holds of ``stream``: the next input reads it."""
        self._cache.pop(stream, None)

    def _writes(
        self, stream: StreamId, decision: Decision
    ) -> tuple[list[NewEvent], list[tuple[Request, str]]]:
        # Correlated by the saga's stream: the participant's reply carries it back (the
        # receiver runs a command under the request's metadata), which is how a reply
        # finds its saga.
        metadata = Metadata(correlation_id=str(stream))
        if self._hooks is not None:
            metadata = self._hooks.append_metadata(metadata)
        writes = [self._registry.encode(event, metadata=metadata) for event in decision.events]
        unsendable: list[tuple[Request, str]] = []
        for request in decision.requests:
            if not isinstance(request, SendCommand):
                continue
            try:
                stored = request_for(
                    request.service,
                    request.command,
                    idempotency_key=request.idempotency_key,
                    correlation_id=request.correlation_id,
                    reply_to=self._reply_to,
                )
            except InvalidInput as error:
                unsendable.append((request, f"its request cannot be sent: {error}"))
                continue
            writes.append(self._registry.encode(stored, metadata=metadata))
        return writes, unsendable

    # --- the requests no outbox carries --------------------------------------------------

    def launch(self, stream: StreamId, request: Request) -> None:
        """Run a ``Local`` or ``Call`` request in the background and feed its reply to the
        saga (nothing when the same attempt runs here already)."""
        if not self._run_requests or request.correlation_id in self._running:
            return
        if isinstance(request, RunLocal):
            work = self._run_local(stream, request)
        elif isinstance(request, InvokeCall):
            work = self._run_call(stream, request)
        else:
            return
        task = asyncio.create_task(work)
        self._running[request.correlation_id] = task
        task.add_done_callback(lambda _: self._running.pop(request.correlation_id, None))

    def feed(self, stream: StreamId, reply: Reply) -> None:
        """Give ``reply`` to the saga in the background."""
        task = asyncio.create_task(self._feed(stream, reply))
        self._running[f"reply:{reply.correlation_id}"] = task
        task.add_done_callback(lambda _: self._running.pop(f"reply:{reply.correlation_id}", None))

    async def _feed(self, stream: StreamId, reply: Reply) -> None:
        for attempt in range(_FEED_ATTEMPTS):
            try:
                await self.apply(stream, reply)
                return
            except (InvalidInput, SagaNotFound, StoreClosed) as error:
                failure: Exception = error
                break
            except Exception as error:
                # An outage of the owner's store: a Call's reply lives only here, so it
                # is worth a few tries before the step's timeout decides instead.
                failure = error
                self._cache.pop(stream, None)
                await asyncio.sleep(0.05 * 2**attempt)
        # The saga's timeout (or the reply coming again over the bus, for a Local)
        # decides what becomes of the attempt.
        _logger.warning(
            "saga %s: the reply to %s could not be recorded: %r",
            stream,
            reply.correlation_id,
            failure,
        )

    def _remaining(self, request: Request) -> float | None:
        if request.timeout_at is None:
            return None
        return max(request.timeout_at - self._clock(), 0.0)

    async def _run_local(self, stream: StreamId, request: RunLocal) -> None:
        executor = self._executor
        command = request.command
        if executor is None or not isinstance(command, Command):
            reason = (
                "no executor runs local commands here"
                if executor is None
                else f"a Local step must build a Command, not {type(command).__name__}"
            )
            await self._feed(stream, Reply.rejection(request.correlation_id, reason))
            return
        action = self._action(request)
        result_of = action.result if isinstance(action, Local) else None
        wrapped = answering(
            command,
            Answer(
                service=self._service,
                sender=self._service,
                command_type=command_type_of(type(command)),
                idempotency_key=request.idempotency_key,
                correlation_id=request.correlation_id,
                reply_to=self._reply_to,
            ),
            result_of,
        )
        try:
            result = await executor.execute(
                wrapped,
                idempotency_key=f"command:{self._service}:{self._service}:{request.correlation_id}",
                metadata=Metadata(correlation_id=str(stream)),
                timeout=self._remaining(request),
            )
        except Exception as error:
            # Not a refusal (that is a reply): a bug or an outage. As for a command sent
            # over the bus, the step's timeout decides.
            _logger.warning(
                "saga %s: local command %s for step %r failed without an answer: %r",
                stream,
                type(command).__name__,
                request.step,
                error,
            )
            return
        replied = result.events[-1] if result.events else None
        if isinstance(replied, CommandReplied):
            await self._feed(stream, reply_of(replied))
        # Else this attempt was answered before: that reply is on its way over the bus.

    async def _run_call(self, stream: StreamId, request: InvokeCall) -> None:
        remaining = self._remaining(request)
        try:
            async with asyncio.timeout(remaining):
                result = await request.invoke()
        except TimeoutError:
            return  # the saga's own deadline fires at the same time
        except CommandRejected as refusal:
            reply = Reply.rejection(request.correlation_id, str(refusal) or "rejected")
        except Exception as error:
            reply = Reply.rejection(request.correlation_id, f"the call raised {error!r}")
        else:
            reply = Reply.success(request.correlation_id, result)
        await self._feed(stream, reply)

    def _action(self, request: Request) -> object:
        saga = self._sagas.get(request.saga_type)
        if saga is None:
            return None
        try:
            step = saga.step(request.step)
        except KeyError:
            return None
        return step.action if request.phase == "action" else step.compensation

    async def aclose(self) -> None:
        """Cancel what runs in the background (a restart runs it again)."""
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # --- instrumentation ---------------------------------------------------------------

    def _report(self, state: SagaState | None, events: Iterable[SagaEvent]) -> None:
        hooks = self._hooks
        assert hooks is not None
        for event in events:
            before = state
            state = evolve(state, event)
            saga, saga_id = state.saga_type, state.saga_id
            if isinstance(event, SagaStarted):
                hooks.saga_started(SagaOpened(saga=saga, saga_id=saga_id))
                continue
            pending = before.pending if before is not None else None
            if isinstance(event, SagaStepSucceeded | SagaStepFailed | SagaStepTimedOut):
                outcome = (
                    "succeeded"
                    if isinstance(event, SagaStepSucceeded)
                    else "failed"
                    if isinstance(event, SagaStepFailed)
                    else "timed out"
                )
                began = _began(pending, event.correlation_id, event.at)
                hooks.saga_step_finished(
                    SagaStepEnded(
                        saga=saga,
                        saga_id=saga_id,
                        step=event.step,
                        outcome=outcome,
                        seconds=max(event.at - began, 0.0),
                        started_at=began,
                    )
                )
            elif isinstance(event, SagaCompensationSucceeded | SagaCompensationFailed):
                if isinstance(event, SagaCompensationFailed):
                    outcome = "timed out" if event.timed_out else "failed"
                    attempt = event.attempt
                else:
                    outcome = "succeeded"
                    attempt = before.attempts.get(event.step, 0) if before is not None else 0
                began = _began(pending, event.correlation_id, event.at)
                hooks.saga_compensation_finished(
                    SagaCompensationEnded(
                        saga=saga,
                        saga_id=saga_id,
                        step=event.step,
                        attempt=attempt,
                        outcome=outcome,
                        seconds=max(event.at - began, 0.0),
                        started_at=began,
                    )
                )


def reply_of(replied: CommandReplied) -> Reply:
    """The core's ``Reply`` for a participant's stored reply."""
    return Reply(
        correlation_id=replied.correlation_id,
        succeeded=replied.succeeded,
        result=replied.result_value() if replied.succeeded else None,
        reason=replied.reason,
    )


def _began(pending: Pending | None, correlation_id: str | None, at: float) -> float:
    """When the request that ``correlation_id`` answers was sent: the pending request's
    time if it is that one, else ``at`` (the outcome's own time, so zero seconds)."""
    if pending is not None and pending.correlation_id == correlation_id:
        return pending.requested_at
    return at


def _has_local(saga: Saga[Any]) -> bool:
    return any(
        isinstance(step.action, Local) or isinstance(step.compensation, Local)
        for step in saga.steps
    )
