"""The instrumentation seam: hooks that the library calls at each command, append, read,
publish, delivery, dead letter, projection batch, saga step and federation hub batch.

Tracing, metrics and extra logging attach here and nowhere else; nothing in this module
knows about OpenTelemetry or Prometheus. A hook is a subclass of ``Hooks`` that
overrides the methods it cares about (the others do nothing).

Cost when unused: every instrumented object resolves its hooks once, when it is built
(``resolve``), to ``None`` when there are none, and each call site is guarded by
``if hooks is not None`` — no event record is built, no method called.

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

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

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
    "PublishFinished",
    "PublishStarted",
    "ReadFinished",
    "ReadStarted",
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


# --- the service ------------------------------------------------------------------------


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

    def service_health(self, event: ServiceHealth) -> None:
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
    the library holds is wrapped in one (``resolve``)."""

    def __init__(self, *hooks: Hooks) -> None:
        self._hooks = tuple(hook for hook in hooks if hook is not NO_HOOKS)
        self._reported: set[tuple[int, str]] = set()

    @property
    def hooks(self) -> tuple[Hooks, ...]:
        return self._hooks

    def wants(self, method: str) -> bool:
        """Whether any hook overrides ``method``: readings that cost a query are taken
        only for a hook that receives them."""
        plain = getattr(Hooks, method)
        return any(getattr(type(hook), method, plain) is not plain for hook in self._hooks)

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

    def _start(self, method: str, event: object) -> tuple[object, ...]:
        scopes: list[object] = []
        for index, hook in enumerate(self._hooks):
            try:
                scopes.append(getattr(hook, method)(event))
            except Exception as error:
                self._failed(index, method, error)
                scopes.append(None)
        return tuple(scopes)

    def _end(self, method: str, event: object, scope: object) -> None:
        scopes = scope if isinstance(scope, tuple) else ()
        for index, hook in enumerate(self._hooks):
            try:
                getattr(hook, method)(event, scopes[index] if index < len(scopes) else None)
            except Exception as error:
                self._failed(index, method, error)

    def _note(self, method: str, event: object) -> None:
        for index, hook in enumerate(self._hooks):
            try:
                getattr(hook, method)(event)
            except Exception as error:
                self._failed(index, method, error)

    def append_metadata(self, metadata: Metadata) -> Metadata:
        for index, hook in enumerate(self._hooks):
            try:
                added = hook.append_metadata(metadata)
            except Exception as error:
                self._failed(index, "append_metadata", error)
                continue
            if isinstance(added, Metadata):
                metadata = added
        return metadata

    def command_started(self, event: CommandStarted) -> object:
        return self._start("command_started", event)

    def command_retried(self, event: CommandRetried, scope: object) -> None:
        self._end("command_retried", event, scope)

    def command_finished(self, event: CommandFinished, scope: object) -> None:
        self._end("command_finished", event, scope)

    def command_failed(self, event: CommandFailed, scope: object) -> None:
        self._end("command_failed", event, scope)

    def append_started(self, event: AppendStarted) -> object:
        return self._start("append_started", event)

    def append_finished(self, event: AppendFinished, scope: object) -> None:
        self._end("append_finished", event, scope)

    def read_started(self, event: ReadStarted) -> object:
        return self._start("read_started", event)

    def read_finished(self, event: ReadFinished, scope: object) -> None:
        self._end("read_finished", event, scope)

    def connections_opened(self, event: ConnectionsOpened) -> None:
        self._note("connections_opened", event)

    def connections_closed(self, event: ConnectionsClosed) -> None:
        self._note("connections_closed", event)

    def publish_started(self, event: PublishStarted) -> object:
        return self._start("publish_started", event)

    def publish_finished(self, event: PublishFinished, scope: object) -> None:
        self._end("publish_finished", event, scope)

    def relay_progress(self, event: RelayProgress) -> None:
        self._note("relay_progress", event)

    def deliveries_fetched(self, event: DeliveriesFetched) -> None:
        self._note("deliveries_fetched", event)

    def delivery_started(self, event: DeliveryStarted) -> object:
        return self._start("delivery_started", event)

    def delivery_retried(self, event: DeliveryRetried, scope: object) -> None:
        self._end("delivery_retried", event, scope)

    def delivery_finished(self, event: DeliveryFinished, scope: object) -> None:
        self._end("delivery_finished", event, scope)

    def dead_lettered(self, event: DeadLettered) -> None:
        self._note("dead_lettered", event)

    def dead_letters_counted(self, event: DeadLettersCounted) -> None:
        self._note("dead_letters_counted", event)

    def federation_batch(self, event: FederationBatch) -> None:
        self._note("federation_batch", event)

    def batch_started(self, event: BatchStarted) -> object:
        return self._start("batch_started", event)

    def batch_applied(self, event: BatchApplied, scope: object) -> None:
        self._end("batch_applied", event, scope)

    def service_health(self, event: ServiceHealth) -> None:
        self._note("service_health", event)

    def saga_started(self, event: SagaOpened) -> None:
        self._note("saga_started", event)

    def saga_step_finished(self, event: SagaStepEnded) -> None:
        self._note("saga_step_finished", event)

    def saga_compensation_finished(self, event: SagaCompensationEnded) -> None:
        self._note("saga_compensation_finished", event)

    def saga_status_changed(self, event: SagaStatusChanged) -> None:
        self._note("saga_status_changed", event)


_default: FanOut | None = None


def install_hooks(*hooks: Hooks) -> None:
    """Make ``hooks`` the process default for objects built from now on (none: remove
    it). Objects already built keep what they resolved."""
    global _default
    fan = FanOut(*hooks)
    _default = fan if fan.hooks else None


def default_hooks() -> Hooks | None:
    """The process default installed with ``install_hooks``, or None."""
    return _default


def resolve(hooks: Hooks | None) -> FanOut | None:
    """What an object built with ``hooks=`` calls: None when there is nothing to call
    (no hooks given and no default, or ``NO_HOOKS``), else a containing ``FanOut``."""
    if hooks is None:
        return _default
    if isinstance(hooks, FanOut):
        return hooks if hooks.hooks else None
    if hooks is NO_HOOKS:
        return None
    return FanOut(hooks)
