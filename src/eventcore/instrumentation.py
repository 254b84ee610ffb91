"""The instrumentation seam: hooks that the library calls at each command, append, read,
publish, delivery, dead letter, projection batch, saga step and federation hub batch.

Tracing, metrics and extra logging attach here and nowhere else; nothing in this module
knows about OpenTelemetry or Prometheus. A hook is a subclass of ``Hooks`` that
overrides the methods it cares about (the others do nothing).

Cost when unused: every instrumented object resolves its hooks once, when it is built
(``resolve``), to ``None`` when there are none, and each call site is guarded by
``if hooks is not None`` — no event record is built, no method called. The same holds
per method: a hook is called only for the methods it overrides (``FanOut`` finds them
once, when built), and the library builds no record for a method no hook overrides
(``FanOut.wants``); an object none of whose methods are overridden holds no hooks.

Installing: pass ``hooks=`` to an object (``Executor``, ``MemoryStore``, ``open_store``,
``Relay``, ``Subscriber``, ``ProjectionRunner``, ``SagaWorker``), or install a process
default with ``install_hooks`` before the objects are built; ``hooks=NO_HOOKS`` opts one object out
of the default. The default is read at construction, not at each call, so the hot path
pays nothing for the choice.

Some readings cost a query (the dead letters a group holds): the library takes them only
when a hook overrides the method that receives them (``FanOut.wants``), so tracing alone
does not pay for what only metrics read.

Operations with a duration come in pairs: ``*_started`` returns a *scope* (any value,
e.g. a span and its context token), which the library hands back to the matching
``*_finished``/``*_failed``/``*_retried`` call; both calls run in the same task, so a
hook may make its span current with ``contextvars`` between them. A hook that raises
never breaks the library: the error is contained and logged once per hook and method.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import msgspec

from eventcore.types import Metadata, StoredEvent

__all__ = [
    "NO_HOOKS",
    "AppendFinished",
    "AppendStarted",
    "BatchApplied",
    "BatchStarted",
    "CommandFailed",
    "CommandFinished",
    "CommandRetried",
    "CommandStarted",
    "ConnectionsClosed",
    "ConnectionsOpened",
    "DeadLettered",
    "DeadLettersCounted",
    "DeliveriesFetched",
    "DeliveryFinished",
    "DeliveryRetried",
    "DeliveryStarted",
    "FanOut",
    "FederationBatch",
    "Hooks",
    "LeadershipChanged",
    "PublishFinished",
    "PublishStarted",
    "ReadFinished",
    "ReadStarted",
    "RegistrationRenewed",
    "RelayProgress",
    "SagaCompensationEnded",
    "SagaOpened",
    "SagaStatusChanged",
    "SagaStepEnded",
    "ServiceHealth",
    "default_hooks",
    "install_hooks",
    "resolve",
]

_logger = logging.getLogger("eventcore.instrumentation")


# --- commands (the executor) ---------------------------------------------------------


class CommandStarted(msgspec.Struct, frozen=True, kw_only=True):
    command: str
    idempotency_key: str | None
    metadata: Metadata


class CommandRetried(msgspec.Struct, frozen=True, kw_only=True):
    """A conflict made the command read again; ``delay`` is the backoff before it."""

    command: str
    attempt: int
    stream_id: str
    expected: int
    actual: int
    delay: float


class CommandFinished(msgspec.Struct, frozen=True, kw_only=True):
    """``outcome``: ``"written"``, ``"nothing"`` (no events to write) or
    ``"deduplicated"`` (an earlier run under the same key had written)."""

    command: str
    outcome: str
    attempts: int
    conflicts: int
    streams_read: int
    events: int
    seconds: float


class CommandFailed(msgspec.Struct, frozen=True, kw_only=True):
    command: str
    error: BaseException
    attempts: int
    conflicts: int
    streams_read: int
    seconds: float


# --- the store ------------------------------------------------------------------------


class AppendStarted(msgspec.Struct, frozen=True, kw_only=True):
    """``store``: the backend's name (``memory``, ``sqlite``, ``postgresql``)."""

    store: str
    events: int
    streams: int


class AppendFinished(msgspec.Struct, frozen=True, kw_only=True):
    """``error`` is None when the append committed (or was deduplicated)."""

    store: str
    events: int
    streams: int
    deduplicated: bool
    last_position: int
    error: BaseException | None
    seconds: float


class ReadStarted(msgspec.Struct, frozen=True, kw_only=True):
    store: str
    stream_id: str
    from_version: int


class ReadFinished(msgspec.Struct, frozen=True, kw_only=True):
    store: str
    stream_id: str
    events: int
    error: BaseException | None
    seconds: float


class ConnectionsOpened(msgspec.Struct, frozen=True, kw_only=True):
    """A store (``backend`` as in ``AppendStarted.store``) holds connections from now
    on: ``count()`` says how many are open at the moment it is called (a hook calls it
    when it is read, e.g. at a scrape, never on the hot path). ``owner`` tells this
    holder from others until its ``ConnectionsClosed``."""

    backend: str
    owner: int
    count: Callable[[], int]


class ConnectionsClosed(msgspec.Struct, frozen=True, kw_only=True):
    backend: str
    owner: int


# --- the relay ------------------------------------------------------------------------


class PublishStarted(msgspec.Struct, frozen=True, kw_only=True):
    """A batch the relay hands to the bus (again, ``attempt`` > 1, after a refusal).
    ``events`` carry their metadata, hence each one's trace context; ``bus`` is the
    bus's kind, its URL's scheme (``memory``, ``sqlite``, ``nats``)."""

    service: str
    events: Sequence[StoredEvent]
    topics: tuple[str, ...]
    attempt: int
    bus: str = ""


class PublishFinished(msgspec.Struct, frozen=True, kw_only=True):
    """``per_topic``: how many of the batch's ``events`` messages went to each topic."""

    service: str
    events: int
    per_topic: Mapping[str, int]
    error: BaseException | None
    seconds: float


class RelayProgress(msgspec.Struct, frozen=True, kw_only=True):
    """The bus acknowledged up to store ``position``; ``lag_events``: log positions
    past it that the relay has seen."""

    service: str
    published: int
    position: int
    lag_events: int


# --- the subscriber -------------------------------------------------------------------


class DeliveriesFetched(msgspec.Struct, frozen=True, kw_only=True):
    """A fetch by group ``member`` gave ``count`` deliveries (0: nothing was ready).
    ``lag_events``: messages of its partitions not yet handled, these included, as far
    as the bus said (the fetched partitions only; None when the bus does not say)."""

    topic: str
    group: str
    member: str
    count: int
    lag_events: int | None


class DeliveryStarted(msgspec.Struct, frozen=True, kw_only=True):
    """A message about to be handled. ``metadata`` is the envelope's (its trace context
    is the producing command's); ``occurred_at`` the event's time, for lag; ``bus`` the
    bus's kind, as in ``PublishStarted``."""

    topic: str
    group: str
    message_id: str
    event_type: str
    stream_id: str
    attempt: int
    occurred_at: datetime
    published_at: datetime
    metadata: Metadata
    bus: str = ""


class DeliveryRetried(msgspec.Struct, frozen=True, kw_only=True):
    topic: str
    group: str
    message_id: str
    attempt: int
    error: BaseException
    delay: float


class DeliveryFinished(msgspec.Struct, frozen=True, kw_only=True):
    """``outcome``: ``handled``, ``ignored`` (no handler), ``dead`` (to be parked) or
    ``abandoned`` (left unsettled: stopping, or an outage)."""

    topic: str
    group: str
    message_id: str
    outcome: str
    retries: int
    error: str | None
    seconds: float


class DeadLettered(msgspec.Struct, frozen=True, kw_only=True):
    topic: str
    group: str
    message_id: str
    reason: str
    error_type: str
    attempts: int


class DeadLettersCounted(msgspec.Struct, frozen=True, kw_only=True):
    """The dead letters of ``group`` on ``topic`` in the bus's box, counted at the
    subscriber's retry poll (only when a hook ``wants`` it: it costs a query)."""

    topic: str
    group: str
    count: int


# --- the federation hub -------------------------------------------------------------


class FederationBatch(msgspec.Struct, frozen=True, kw_only=True):
    """One batch the hub (consumer group ``group``) read at ``origin`` (``<bus
    alias>/<topic>``), routed, published and settled.

    ``outcomes`` counts its events as ``(rule, outcome, events)``: ``routed`` (the
    rule's copy reached every target), ``failed`` (the rule's transformations failed:
    the event went to the hub's dead letters); events no rule took count under rule
    ``""`` as ``unmatched``, unreadable messages as ``invalid``. ``lag_seconds``: how
    long before settling the batch its last message reached the source bus — how far
    behind the source the hub reads."""

    group: str
    origin: str
    events: int
    outcomes: tuple[tuple[str, str, int], ...]
    lag_seconds: float
    seconds: float


# --- projections ----------------------------------------------------------------------


class BatchStarted(msgspec.Struct, frozen=True, kw_only=True):
    projection: str
    source: str
    version: int
    events: Sequence[StoredEvent]


class BatchApplied(msgspec.Struct, frozen=True, kw_only=True):
    """``error`` is None when the batch and its checkpoint committed; ``position`` is
    its last event's, ``lag_events`` what the source's log holds past it."""

    projection: str
    source: str
    version: int
    events: int
    position: int
    lag_events: int
    error: BaseException | None
    seconds: float


# --- single-leader workers -------------------------------------------------------------


class LeadershipChanged(msgspec.Struct, frozen=True, kw_only=True):
    """Instance ``member`` became (``leader``) or stopped being the leader of the
    singleton worker ``name``. ``reason``: ``acquired``; or, when it stops, ``released``
    (a clean stop), ``expired`` (no renewal in time), ``taken`` (another member holds
    the lease), ``worker failed``, ``worker ended`` or ``stopped``."""

    name: str
    member: str
    leader: bool
    reason: str


# --- the service ------------------------------------------------------------------------


class RegistrationRenewed(msgspec.Struct, frozen=True, kw_only=True):
    """An instance's registration in the service registry (``backend``: memory, sqlite,
    nats) was made or renewed, or the attempt failed with ``error`` (an outage: it is
    tried again at the next renewal)."""

    service: str
    instance_id: str
    backend: str
    error: BaseException | None
    seconds: float


class ServiceHealth(msgspec.Struct, frozen=True, kw_only=True):
    """Whether ``service`` is healthy, as whoever runs it (the runtime) judges."""

    service: str
    healthy: bool


# --- sagas ------------------------------------------------------------------------------
#
# Sagas span processes and hours, so these are records of what happened, each with its
# duration measured from the saga's own stream, not started/finished pairs: a tracing
# hook makes a span with the recorded start time. The saga worker that committed a
# decision reports its steps and compensations (once per decision, however many
# instances run); status changes come from each process's view of the log, so a gauge of
# sagas by status counts every saga in the store.


class SagaOpened(msgspec.Struct, frozen=True, kw_only=True):
    """A saga started (its ``SagaStarted`` committed)."""

    saga: str
    saga_id: str


class SagaStepEnded(msgspec.Struct, frozen=True, kw_only=True):
    """A step's action ended: ``outcome`` is ``succeeded``, ``failed`` (rejected, or its
    request could not be built) or ``timed out``; ``seconds`` from its request."""

    saga: str
    saga_id: str
    step: str
    outcome: str
    seconds: float
    started_at: float


class SagaCompensationEnded(msgspec.Struct, frozen=True, kw_only=True):
    """An attempt to compensate ``step`` ended: ``succeeded``, ``failed`` or ``timed
    out``; ``seconds`` from its request (0 when it could not be built)."""

    saga: str
    saga_id: str
    step: str
    attempt: int
    outcome: str
    seconds: float
    started_at: float


class SagaStatusChanged(msgspec.Struct, frozen=True, kw_only=True):
    """A saga's status moved from ``previous`` (None: first seen by this process, when it
    starts or reads the saga's first events) to ``status``."""

    saga: str
    saga_id: str
    previous: str | None
    status: str


class Hooks:
    """Override what you need; every method here does nothing.

    Methods are called on the event loop, inline: keep them quick and never block
    (hand slow work to a queue)."""

    def append_metadata(self, metadata: Metadata) -> Metadata:
        """Metadata for the events a command is about to write: return it with what the
        hook adds (e.g. ``traceparent``), called inside the command's scope."""
        return metadata

    def command_started(self, event: CommandStarted) -> object:
        return None

    def command_retried(self, event: CommandRetried, scope: object) -> None:
        pass

    def command_finished(self, event: CommandFinished, scope: object) -> None:
        pass

    def command_failed(self, event: CommandFailed, scope: object) -> None:
        pass

    def append_started(self, event: AppendStarted) -> object:
        return None

    def append_finished(self, event: AppendFinished, scope: object) -> None:
        pass

    def read_started(self, event: ReadStarted) -> object:
        return None

    def read_finished(self, event: ReadFinished, scope: object) -> None:
        pass

    def connections_opened(self, event: ConnectionsOpened) -> None:
        pass

    def connections_closed(self, event: ConnectionsClosed) -> None:
        pass

    def publish_started(self, event: PublishStarted) -> object:
        return None

    def publish_finished(self, event: PublishFinished, scope: object) -> None:
        pass

    def relay_progress(self, event: RelayProgress) -> None:
        pass

    def deliveries_fetched(self, event: DeliveriesFetched) -> None:
        pass

    def delivery_started(self, event: DeliveryStarted) -> object:
        return None

    def delivery_retried(self, event: DeliveryRetried, scope: object) -> None:
        pass

    def delivery_finished(self, event: DeliveryFinished, scope: object) -> None:
        pass

    def dead_lettered(self, event: DeadLettered) -> None:
        pass

    def dead_letters_counted(self, event: DeadLettersCounted) -> None:
        pass

    def federation_batch(self, event: FederationBatch) -> None:
        pass

    def batch_started(self, event: BatchStarted) -> object:
        return None

    def batch_applied(self, event: BatchApplied, scope: object) -> None:
        pass

    def registration_renewed(self, event: RegistrationRenewed) -> None:
        pass

    def service_health(self, event: ServiceHealth) -> None:
        pass

    def leadership_changed(self, event: LeadershipChanged) -> None:
        pass

    def saga_started(self, event: SagaOpened) -> None:
        pass

    def saga_step_finished(self, event: SagaStepEnded) -> None:
        pass

    def saga_compensation_finished(self, event: SagaCompensationEnded) -> None:
        pass

    def saga_status_changed(self, event: SagaStatusChanged) -> None:
        pass


#: Pass as ``hooks=`` to keep one object free of the process default.
NO_HOOKS = Hooks()


class FanOut(Hooks):
    """Calls several hooks in turn, each contained: one that raises is logged (once per
    hook and method) and skipped, and the others and the library carry on. Every hook
    the library holds is wrapped in one (``resolve``).

    The work is done once, when it is built: for each method it finds the hooks that
    override it, and only those are ever called; a method none overrides stays the
    base's no-op, and ``wants`` tells the library so, which then builds no record for
    it at all. A hook's methods are looked up then, not at each call."""

    def __init__(self, *hooks: Hooks) -> None:
        self._hooks = tuple(hook for hook in hooks if hook is not NO_HOOKS)
        self._reported: set[tuple[int, str]] = set()
        wanted = []
        for method, kind in _METHODS.items():
            calls = tuple(
                (index, call)
                for index, hook in enumerate(self._hooks)
                if (call := _overridden(hook, method)) is not None
            )
            if calls:
                wanted.append(method)
                # Shadows the base's no-op on this instance: the call site reaches the
                # overriding hooks' methods through one contained call, no loop over
                # hooks that do not listen.
                setattr(self, method, kind(self, method, calls, len(self._hooks)))
        self._wanted = frozenset(wanted)

    @property
    def hooks(self) -> tuple[Hooks, ...]:
        return self._hooks

    def wants(self, *methods: str) -> bool:
        """Whether any hook overrides any of ``methods``: when none does, the library
        builds no record for them (and takes no reading that costs a query)."""
        return not self._wanted.isdisjoint(methods)

    def _failed(self, index: int, method: str, error: Exception) -> None:
        if (index, method) in self._reported:
            return
        self._reported.add((index, method))
        _logger.warning(
            "hook %r raised in %s (contained; further errors of it there are not logged): %s",
            self._hooks[index],
            method,
            error,
            exc_info=error,
        )


# Scopes: a FanOut of one hook hands that hook's scope back as it is; of several, a
# tuple with one slot per hook (None for a hook that does not override the start).

_Call = Callable[..., Any]
_Calls = tuple[tuple[int, _Call], ...]


def _overridden(hook: Hooks, method: str) -> _Call | None:
    """``hook``'s bound ``method``, or None when it is the base's no-op."""
    call: _Call = getattr(hook, method)
    if getattr(call, "__func__", None) is getattr(Hooks, method):
        return None
    return call


def _start(fan: FanOut, method: str, calls: _Calls, width: int) -> _Call:
    if width == 1:
        [(index, call)] = calls

        def start_one(event: object) -> object:
            try:
                return call(event)
            except Exception as error:
                fan._failed(index, method, error)
                return None

        return start_one

    def start(event: object) -> object:
        scopes: list[object] = [None] * width
        for index, call in calls:
            try:
                scopes[index] = call(event)
            except Exception as error:
                fan._failed(index, method, error)
        return tuple(scopes)

    return start


def _end(fan: FanOut, method: str, calls: _Calls, width: int) -> _Call:
    if width == 1:
        [(index, call)] = calls

        def end_one(event: object, scope: object) -> None:
            try:
                call(event, scope)
            except Exception as error:
                fan._failed(index, method, error)

        return end_one

    def end(event: object, scope: object) -> None:
        # None when no hook overrides the start: the library then built no scope.
        scopes = scope if isinstance(scope, tuple) and len(scope) == width else None
        for index, call in calls:
            try:
                call(event, None if scopes is None else scopes[index])
            except Exception as error:
                fan._failed(index, method, error)

    return end


def _note(fan: FanOut, method: str, calls: _Calls, width: int) -> _Call:
    def note(event: object) -> None:
        for index, call in calls:
            try:
                call(event)
            except Exception as error:
                fan._failed(index, method, error)

    return note


def _metadata(fan: FanOut, method: str, calls: _Calls, width: int) -> _Call:
    def append_metadata(metadata: Metadata) -> Metadata:
        for index, call in calls:
            try:
                added = call(metadata)
            except Exception as error:
                fan._failed(index, method, error)
                continue
            if isinstance(added, Metadata):
                metadata = added
        return metadata

    return append_metadata


def _kind(name: str) -> Callable[[FanOut, str, _Calls, int], _Call]:
    if name == "append_metadata":
        return _metadata
    signature = inspect.signature(getattr(Hooks, name))
    if "scope" in signature.parameters:
        return _end
    # A method that hands back a scope opens a pair; the rest (saga_started among them)
    # are notes, whatever their names say.
    if signature.return_annotation in (object, "object"):
        return _start
    return _note


#: Every method of the seam, with how a FanOut dispatches it.
_METHODS = {
    name: _kind(name)
    for name, value in vars(Hooks).items()
    if not name.startswith("_") and callable(value)
}


_default: FanOut | None = None


def install_hooks(*hooks: Hooks) -> None:
    """Make ``hooks`` the process default for objects built from now on (none: remove
    it). Objects already built keep what they resolved."""
    global _default
    fan = FanOut(*hooks)
    _default = fan if fan._wanted else None


def default_hooks() -> Hooks | None:
    """The process default installed with ``install_hooks``, or None."""
    return _default


def resolve(hooks: Hooks | None, *methods: str) -> FanOut | None:
    """What an object built with ``hooks=`` calls: None when there is nothing to call
    (no hooks given and no default, ``NO_HOOKS``, or hooks that override no method —
    or none of ``methods``, the ones the object calls, when given), else a containing
    ``FanOut``."""
    if hooks is None:
        fan = _default
    elif isinstance(hooks, FanOut):
        fan = hooks
    elif hooks is NO_HOOKS:
        return None
    else:
        fan = FanOut(hooks)
    if fan is None or not fan._wanted or (methods and not fan.wants(*methods)):
        return None
    return fan
