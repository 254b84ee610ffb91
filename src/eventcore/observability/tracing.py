"""Tracing with OpenTelemetry, attached to the instrumentation seam.

Spans, named and attributed after the OpenTelemetry semantic conventions for messaging
and databases:

* ``{CommandType}`` (internal): one per command execution. Its store reads and its
  append are child spans (``read_stream``, ``append``: client spans with
  ``db.system``); it ends with the streams it read, its attempts, its conflicts (each
  also an event on the span) and its outcome. Store calls are traced only under a
  recording span: alone they would each be a trace of one span.
* The command span's W3C trace context is written into every event the command
  appends (``traceparent``, ``tracestate`` in its metadata): the store keeps it, the
  envelope carries it over the bus.
* ``publish {topic}`` (producer): the relay's publish of one batch, linked to each
  event's own context.
* ``process {topic}`` (consumer): the subscriber's handling of one delivery, a child of
  the context its envelope carries, so the handler's commands, and the events they
  write, continue the producing request's trace in the next service.
* ``apply {projection}`` (internal): one projection batch, linked to its events'
  contexts.

A batch (publish, apply) whose traced events all belong to one trace is also made a
child of the first of them, so a request's trace shows its events being published and
projected; a batch mixing requests starts a trace of its own, tied to each by a link.

With ``opentelemetry-api`` alone (no SDK configured), ``tracing_hooks()`` is
``NO_HOOKS``: nothing is recorded, so nothing is called. ``OpenTelemetryHooks`` built
then start no span either, at a test per call, but pass the context on as the API
would: a command run under a current span (one a web framework took from a request)
writes that span's context into its events. Either way a handler's commands
(``Received.run``) write the context of the event they handle.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from contextvars import Token

import msgspec
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import (
    NoOpTracerProvider,
    ProxyTracerProvider,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    Tracer,
    TracerProvider,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from eventcore._version import __version__
from eventcore.instrumentation import (
    NO_HOOKS,
    AppendFinished,
    AppendStarted,
    BatchApplied,
    BatchStarted,
    CommandFailed,
    CommandFinished,
    CommandRetried,
    CommandStarted,
    DeliveryFinished,
    DeliveryRetried,
    DeliveryStarted,
    Hooks,
    PublishFinished,
    PublishStarted,
    ReadFinished,
    ReadStarted,
)
from eventcore.types import Metadata, StoredEvent

__all__ = ["OpenTelemetryHooks", "tracing_hooks"]

#: The instrumentation scope every span is reported under.
TRACER_NAME = "eventcore"
#: Links put on one batch span at most: the SDK's default limit, past which it drops
#: them anyway (so parsing more contexts would be wasted).
MAX_LINKS = 128

_w3c = TraceContextTextMapPropagator()
#: The API's own providers: without an SDK behind them, spans record nothing.
_NO_SDK = (ProxyTracerProvider, NoOpTracerProvider)


class _Scope:
    """A started span and the token that made it current (None: it was not made so)."""

    __slots__ = ("span", "token")

    def __init__(self, span: Span, token: Token[otel_context.Context] | None) -> None:
        self.span = span
        self.token = token


class OpenTelemetryHooks(Hooks):
    """The seam's hooks that trace: install with ``install_hooks(tracing_hooks())``
    before building stores, executors, relays, subscribers and projection runners.

    ``tracer_provider``: where spans go; None (the usual) is the global one, set with
    ``opentelemetry.trace.set_tracer_provider``. Set it *before* building the hooks:
    hooks built while no SDK is configured start no span, ever (that check is made
    once, here, so that such hooks cost next to nothing per call)."""

    def __init__(self, tracer_provider: TracerProvider | None = None) -> None:
        provider = tracer_provider or trace.get_tracer_provider()
        self._tracer: Tracer | None = None
        if not isinstance(provider, _NO_SDK):
            self._tracer = provider.get_tracer(TRACER_NAME, __version__)

    # --- commands ---------------------------------------------------------------------

    def append_metadata(self, metadata: Metadata) -> Metadata:
        current = trace.get_current_span().get_span_context()
        if not current.is_valid:
            return metadata
        traceparent = _traceparent(current)
        state = current.trace_state
        tracestate = state.to_header() if state else None
        if traceparent == metadata.traceparent and tracestate == metadata.tracestate:
            return metadata
        return msgspec.structs.replace(metadata, traceparent=traceparent, tracestate=tracestate)

    def command_started(self, event: CommandStarted) -> object:
        tracer = self._tracer
        if tracer is None:
            return None
        metadata = event.metadata
        parent: otel_context.Context | None = None
        # Under a span already (a subscriber's delivery, a web request): its child. Else
        # the caller may have brought a context from outside, in the metadata.
        if metadata.traceparent and not trace.get_current_span().get_span_context().is_valid:
            parent = _context_of(metadata)
        span = tracer.start_span(
            event.command,
            context=parent,
            kind=SpanKind.INTERNAL,
            attributes=None
            if event.idempotency_key is None
            else {"eventcore.idempotency_key": event.idempotency_key},
        )
        return _entered(span)

    def command_retried(self, event: CommandRetried, scope: object) -> None:
        if isinstance(scope, _Scope) and scope.span.is_recording():
            scope.span.add_event(
                "conflict",
                {
                    "eventcore.attempt": event.attempt,
                    "eventcore.stream_id": event.stream_id,
                    "eventcore.expected_version": event.expected,
                    "eventcore.actual_version": event.actual,
                    "eventcore.retry_delay": event.delay,
                },
            )

    def command_finished(self, event: CommandFinished, scope: object) -> None:
        _ended(scope, _command_attributes(event.outcome, event))

    def command_failed(self, event: CommandFailed, scope: object) -> None:
        cancelled = isinstance(event.error, asyncio.CancelledError)
        _ended(
            scope, _command_attributes("cancelled" if cancelled else "failed", event), event.error
        )

    # --- the store --------------------------------------------------------------------

    def read_started(self, event: ReadStarted) -> object:
        return self._store_span("read_stream", event.store, "eventcore.stream_id", event.stream_id)

    def read_finished(self, event: ReadFinished, scope: object) -> None:
        _store_span_ended(scope, event.error)

    def append_started(self, event: AppendStarted) -> object:
        return self._store_span("append", event.store, "db.operation.batch.size", event.events)

    def append_finished(self, event: AppendFinished, scope: object) -> None:
        _store_span_ended(scope, event.error, event.deduplicated)

    def _store_span(
        self, operation: str, store: str, key: str, value: AttributeValue
    ) -> Span | None:
        # Only under a recording span (a command's): a store call outside any traced
        # operation would be a trace of one span, and with the API alone this keeps
        # every store call down to one context lookup.
        tracer = self._tracer
        if tracer is None:
            return None
        # Looked up once, and handed to the SDK, which would look it up again.
        current = otel_context.get_current()
        if not trace.get_current_span(current).is_recording():
            return None
        # A leaf: not made current, nothing runs under it.
        return tracer.start_span(
            operation,
            context=current,
            kind=SpanKind.CLIENT,
            attributes={"db.system": store, "db.operation.name": operation, key: value},
        )

    # --- the relay --------------------------------------------------------------------

    def publish_started(self, event: PublishStarted) -> object:
        tracer = self._tracer
        if tracer is None:
            return None
        topics = event.topics
        attributes: dict[str, AttributeValue] = {
            "messaging.system": event.bus,
            "messaging.operation.type": "send",
            "messaging.operation.name": "publish",
            "eventcore.service": event.service,
            "eventcore.publish.attempt": event.attempt,
        }
        if len(topics) == 1:
            attributes["messaging.destination.name"] = topics[0]
            name = f"publish {topics[0]}"
        else:
            attributes["eventcore.topics"] = list(topics)
            name = "publish"
        span = tracer.start_span(
            name,
            context=_batch_parent(event.events),
            kind=SpanKind.PRODUCER,
            attributes=attributes,
        )
        _link(span, event.events)
        return _entered(span)

    def publish_finished(self, event: PublishFinished, scope: object) -> None:
        _ended(scope, {"messaging.batch.message_count": event.events}, event.error)

    # --- the subscriber ---------------------------------------------------------------

    def delivery_started(self, event: DeliveryStarted) -> object:
        tracer = self._tracer
        if tracer is None:
            return None
        # The envelope's context, not whatever the subscriber's task holds: the message
        # continues the trace of the command that wrote it. None: a trace of its own.
        parent = _context_of(event.metadata) or otel_context.Context()
        span = tracer.start_span(
            f"process {event.topic}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": event.bus,
                "messaging.operation.type": "process",
                "messaging.operation.name": "process",
                "messaging.destination.name": event.topic,
                "messaging.consumer.group.name": event.group,
                "messaging.message.id": event.message_id,
                "eventcore.event_type": event.event_type,
                "eventcore.stream_id": event.stream_id,
                "eventcore.delivery.attempt": event.attempt,
            },
        )
        return _entered(span)

    def delivery_retried(self, event: DeliveryRetried, scope: object) -> None:
        if isinstance(scope, _Scope) and scope.span.is_recording():
            scope.span.add_event(
                "retry",
                {
                    "eventcore.attempt": event.attempt,
                    "error.type": type(event.error).__qualname__,
                    "eventcore.retry_delay": event.delay,
                },
            )

    def delivery_finished(self, event: DeliveryFinished, scope: object) -> None:
        if not isinstance(scope, _Scope):
            return
        span = scope.span
        if span.is_recording():
            span.set_attributes(
                {"eventcore.delivery.outcome": event.outcome, "eventcore.retries": event.retries}
            )
            if event.outcome == "dead":
                span.set_status(Status(StatusCode.ERROR, event.error))
        _left(scope)

    # --- projections ------------------------------------------------------------------

    def batch_started(self, event: BatchStarted) -> object:
        tracer = self._tracer
        if tracer is None:
            return None
        span = tracer.start_span(
            f"apply {event.projection}",
            context=_batch_parent(event.events),
            kind=SpanKind.INTERNAL,
            attributes={
                "eventcore.projection": event.projection,
                "eventcore.projection.version": event.version,
                "eventcore.source": event.source,
                "eventcore.events": len(event.events),
            },
        )
        _link(span, event.events)
        return _entered(span)

    def batch_applied(self, event: BatchApplied, scope: object) -> None:
        _ended(
            scope,
            {"eventcore.position": event.position, "eventcore.lag_events": event.lag_events},
            event.error,
        )


def tracing_hooks(tracer_provider: TracerProvider | None = None) -> Hooks:
    """Hooks that trace every command, store call, publish, delivery and projection
    batch: ``install_hooks(tracing_hooks())``, once the SDK is configured.

    With no SDK behind ``tracer_provider`` (the global one when None) nothing would be
    recorded: this returns ``NO_HOOKS`` then, so a service that always installs
    tracing pays nothing until an operator configures the SDK. The trace context of
    handled events still flows on (``Received.run`` passes it to the command); for
    hooks that also pass on a current span's context without an SDK, build
    ``OpenTelemetryHooks`` yourself."""
    provider = tracer_provider or trace.get_tracer_provider()
    if isinstance(provider, _NO_SDK):
        return NO_HOOKS
    return OpenTelemetryHooks(provider)


def _entered(span: Span) -> _Scope:
    """``span`` made current until ``_left``: what runs in between is its child. The
    seam calls start and end in the same task, so the token resets where it was set."""
    return _Scope(span, otel_context.attach(trace.set_span_in_context(span)))


def _ended(
    scope: object, attributes: dict[str, AttributeValue], error: BaseException | None = None
) -> None:
    """End the span of ``scope`` (from ``_entered``), with ``attributes`` and, if the work
    failed, ``error`` recorded when the span records."""
    if not isinstance(scope, _Scope):
        return
    span = scope.span
    if span.is_recording():
        span.set_attributes(attributes)
        if error is not None:
            _failed(span, error)
    _left(scope)


def _command_attributes(
    outcome: str, event: CommandFinished | CommandFailed
) -> dict[str, AttributeValue]:
    return {
        "eventcore.command.outcome": outcome,
        "eventcore.command.attempts": event.attempts,
        "eventcore.command.conflicts": event.conflicts,
        "eventcore.command.streams_read": event.streams_read,
    }


def _left(scope: _Scope) -> None:
    if scope.token is not None:
        otel_context.detach(scope.token)
    scope.span.end()


def _store_span_ended(
    scope: object, error: BaseException | None, deduplicated: bool = False
) -> None:
    if not isinstance(scope, Span):
        return
    if error is not None:
        _failed(scope, error)
    elif deduplicated:
        scope.set_attribute("eventcore.deduplicated", True)
    scope.end()


def _failed(span: Span, error: BaseException) -> None:
    if isinstance(error, asyncio.CancelledError):
        # Stopping, or a caller's deadline: the work was dropped, nothing went wrong.
        span.set_attribute("eventcore.cancelled", True)
        return
    span.set_attribute("error.type", type(error).__qualname__)
    span.record_exception(error)
    span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))


def _traceparent(span: SpanContext) -> str:
    return f"00-{span.trace_id:032x}-{span.span_id:016x}-{span.trace_flags:02x}"


def _remote(traceparent: str, tracestate: str | None) -> SpanContext | None:
    """The span context a stored ``traceparent`` names; None when it is not a valid one
    (a producer may write anything into metadata: it must not break the consumer)."""
    carrier = {"traceparent": traceparent}
    if tracestate:
        carrier["tracestate"] = tracestate
    span = trace.get_current_span(_w3c.extract(carrier)).get_span_context()
    return span if span.is_valid else None


def _context_of(metadata: Metadata) -> otel_context.Context | None:
    """A context whose span is the one ``metadata`` carries; None if it carries none."""
    if not metadata.traceparent:
        return None
    span = _remote(metadata.traceparent, metadata.tracestate)
    if span is None:
        return None
    return trace.set_span_in_context(trace.NonRecordingSpan(span), otel_context.Context())


def _batch_parent(events: Sequence[StoredEvent]) -> otel_context.Context:
    """The first traced event's context when every traced event of the batch is of its
    trace, else an empty one (a trace of its own). Compares the trace-id part of the
    strings: cheap enough for the relay's path even when nothing records."""
    first: Metadata | None = None
    trace_id = ""
    for event in events:
        traceparent = event.metadata.traceparent
        if not traceparent:
            continue
        if first is None:
            first, trace_id = event.metadata, traceparent[3:35]
        elif traceparent[3:35] != trace_id:
            return otel_context.Context()
    if first is None:
        return otel_context.Context()
    return _context_of(first) or otel_context.Context()


def _link(span: Span, events: Sequence[StoredEvent]) -> None:
    """Link ``span`` to each distinct context of ``events`` (the first ``MAX_LINKS``);
    only a recording span is worth the parsing."""
    if not span.is_recording():
        return
    seen: set[str] = set()
    for event in events:
        traceparent = event.metadata.traceparent
        if not traceparent or traceparent in seen:
            continue
        seen.add(traceparent)
        linked = _remote(traceparent, event.metadata.tracestate)
        if linked is not None:
            span.add_link(linked)
        if len(seen) >= MAX_LINKS:
            return
