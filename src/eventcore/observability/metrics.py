"""Prometheus metrics from the instrumentation seam: ``PrometheusHooks`` turns what the
executor, stores, relay, subscribers and projection runners report into the metrics
below, and ``eventcore.observability.exposition`` serves them.

Names follow Prometheus's conventions: base units (seconds, events), ``_total`` on
counters, and labels only from names the code chose (command and error classes,
stores, topics, groups, services, projections) — never a stream id, event id, member id
or anything a user typed, so the number of series stays what the code makes it.

=====================================================  =====================================
metric                                                 from
=====================================================  =====================================
``eventcore_commands_total{command,outcome}``          each command's end; ``outcome``:
                                                       written, nothing, deduplicated,
                                                       rejected or failed
``eventcore_command_duration_seconds{command}``        histogram of the same
``eventcore_command_errors_total{command,error}``      failed commands by error class
``eventcore_command_conflicts_total{command}``         conflicts met (each cost a retry)
``eventcore_events_appended_total{store}``             events committed (not deduplicated)
``eventcore_append_batch_size``                        histogram: events per append
``eventcore_events_published_total{topic}``            messages the bus acknowledged
``eventcore_relay_lag_events{service}``                log positions not yet published
``eventcore_events_consumed_total{topic,group,``       deliveries settled: handled,
``outcome}``                                           ignored or dead
``eventcore_event_lag_seconds{topic,group}``           now − the event's time, at handling
``eventcore_consumer_lag_events{topic,group}``         messages waiting for the group's
                                                       members in this process
``eventcore_dead_letters{topic,group}``                letters in the bus's box
``eventcore_projection_lag_events{projection}``        log positions past the last batch
``eventcore_service_health{service}``                  1 healthy, 0 not (``set_service_``
                                                       ``health``, or the seam's
                                                       ``service_health``)
``eventcore_active_connections{backend}``              connections the stores hold, read
                                                       at each scrape
=====================================================  =====================================

A later concern (sagas, breakers) adds its event to the seam and its families the same
way: declared in ``_Families``, set by one ``Hooks`` method here.

Hook methods run on the event loop and only touch in-memory values; the labelled
children are kept in plain dicts so the hot path takes one dict lookup per metric.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from eventcore.errors import CommandRejected
from eventcore.instrumentation import (
    AppendFinished,
    BatchApplied,
    CommandFailed,
    CommandFinished,
    ConnectionsClosed,
    ConnectionsOpened,
    DeadLettersCounted,
    DeliveriesFetched,
    DeliveryFinished,
    DeliveryStarted,
    Hooks,
    PublishFinished,
    RelayProgress,
    ServiceHealth,
)

__all__ = ["METRIC_NAMES", "PrometheusHooks", "metrics_hooks"]

_COMMAND_SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)

_Child = TypeVar("_Child")


class _Families:
    """Every metric family, registered on one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.commands = Counter(
            "eventcore_commands",
            "Commands executed, by command type and outcome.",
            ["command", "outcome"],
            registry=registry,
        )
        self.command_seconds = Histogram(
            "eventcore_command_duration_seconds",
            "Time a command took, its reads, retries and append included.",
            ["command"],
            buckets=_COMMAND_SECONDS,
            registry=registry,
        )
        self.command_errors = Counter(
            "eventcore_command_errors",
            "Commands that failed, by command type and error class.",
            ["command", "error"],
            registry=registry,
        )
        self.command_conflicts = Counter(
            "eventcore_command_conflicts",
            "Concurrency conflicts commands met (each one read again and retried).",
            ["command"],
            registry=registry,
        )
        self.appended = Counter(
            "eventcore_events_appended",
            "Events committed to the event store (deduplicated appends not counted).",
            ["store"],
            registry=registry,
        )
        self.batch_size = Histogram(
            "eventcore_append_batch_size",
            "Events per append to the event store.",
            buckets=_BATCH_SIZES,
            registry=registry,
        )
        self.published = Counter(
            "eventcore_events_published",
            "Messages the relay published and the bus acknowledged, by topic.",
            ["topic"],
            registry=registry,
        )
        self.relay_lag = Gauge(
            "eventcore_relay_lag_events",
            "Store log positions the relay has seen but not yet published.",
            ["service"],
            registry=registry,
        )
        self.consumed = Counter(
            "eventcore_events_consumed",
            "Deliveries a consumer group settled: handled, ignored (no handler) or dead.",
            ["topic", "group", "outcome"],
            registry=registry,
        )
        self.event_lag = Gauge(
            "eventcore_event_lag_seconds",
            "Age of the latest event a consumer group started handling (now - its time).",
            ["topic", "group"],
            registry=registry,
        )
        self.consumer_lag = Gauge(
            "eventcore_consumer_lag_events",
            "Messages waiting for this process's members of a consumer group.",
            ["topic", "group"],
            registry=registry,
        )
        self.dead_letters = Gauge(
            "eventcore_dead_letters",
            "Dead letters a consumer group holds in the bus's box.",
            ["topic", "group"],
            registry=registry,
        )
        self.projection_lag = Gauge(
            "eventcore_projection_lag_events",
            "Store log positions past a projection's last applied batch.",
            ["projection"],
            registry=registry,
        )
        self.health = Gauge(
            "eventcore_service_health",
            "1 while the service is healthy, 0 while it is not.",
            ["service"],
            registry=registry,
        )
        self.connections = Gauge(
            "eventcore_active_connections",
            "Connections the process's event stores hold open, by backend.",
            ["backend"],
            registry=registry,
        )


#: Every family ``PrometheusHooks`` exposes (counters with their ``_total``).
METRIC_NAMES: tuple[str, ...] = (
    "eventcore_commands_total",
    "eventcore_command_duration_seconds",
    "eventcore_command_errors_total",
    "eventcore_command_conflicts_total",
    "eventcore_events_appended_total",
    "eventcore_append_batch_size",
    "eventcore_events_published_total",
    "eventcore_relay_lag_events",
    "eventcore_events_consumed_total",
    "eventcore_event_lag_seconds",
    "eventcore_consumer_lag_events",
    "eventcore_dead_letters",
    "eventcore_projection_lag_events",
    "eventcore_service_health",
    "eventcore_active_connections",
)


class _Children(Generic[_Child]):
    """A family's labelled children by label values, looked up without the family's
    lock once made."""

    def __init__(self, make: Callable[..., _Child]) -> None:
        self._make = make
        self._made: dict[tuple[str, ...], _Child] = {}

    def __call__(self, *labels: str) -> _Child:
        child = self._made.get(labels)
        if child is None:
            child = self._made[labels] = self._make(*labels)
        return child


class PrometheusHooks(Hooks):
    """The hooks that keep eventcore's Prometheus metrics, on ``registry`` (by default
    prometheus_client's global one). Install with ``install_hooks(metrics_hooks())``;
    build one per registry (``metrics_hooks`` does), as a registry refuses a second set
    of the same names."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self._registry = REGISTRY if registry is None else registry
        self._families = families = _Families(self._registry)
        self._commands = _Children(families.commands.labels)
        self._command_seconds = _Children(families.command_seconds.labels)
        self._command_errors = _Children(families.command_errors.labels)
        self._command_conflicts = _Children(families.command_conflicts.labels)
        self._appended = _Children(families.appended.labels)
        self._published = _Children(families.published.labels)
        self._relay_lag = _Children(families.relay_lag.labels)
        self._consumed = _Children(families.consumed.labels)
        self._event_lag = _Children(families.event_lag.labels)
        self._consumer_lag = _Children(families.consumer_lag.labels)
        self._dead_letters = _Children(families.dead_letters.labels)
        self._projection_lag = _Children(families.projection_lag.labels)
        #: Each member's lag, summed per group: members are not a label (they are ids).
        self._member_lags: dict[tuple[str, str], dict[str, int]] = {}
        #: Per backend, each holder's count of open connections (called at a scrape).
        self._holders: dict[str, dict[int, Callable[[], int]]] = {}
        self._holders_lock = threading.Lock()

    @property
    def registry(self) -> CollectorRegistry:
        return self._registry

    def set_service_health(self, service: str, healthy: bool) -> None:
        """Mark ``service`` healthy (1) or not (0); the runtime calls it as its checks
        change (through the seam's ``service_health``)."""
        self._families.health.labels(service).set(1 if healthy else 0)

    # --- commands ------------------------------------------------------------------------

    def command_finished(self, event: CommandFinished, scope: object) -> None:
        self._commands(event.command, event.outcome).inc()
        self._command_seconds(event.command).observe(event.seconds)
        if event.conflicts:
            self._command_conflicts(event.command).inc(event.conflicts)

    def command_failed(self, event: CommandFailed, scope: object) -> None:
        outcome = "rejected" if isinstance(event.error, CommandRejected) else "failed"
        self._commands(event.command, outcome).inc()
        self._command_seconds(event.command).observe(event.seconds)
        self._command_errors(event.command, type(event.error).__name__).inc()
        if event.conflicts:
            self._command_conflicts(event.command).inc(event.conflicts)

    # --- the store -----------------------------------------------------------------------

    def append_finished(self, event: AppendFinished, scope: object) -> None:
        if event.error is None and not event.deduplicated:
            self._appended(event.store).inc(event.events)
            self._families.batch_size.observe(event.events)

    def connections_opened(self, event: ConnectionsOpened) -> None:
        with self._holders_lock:
            holders = self._holders.get(event.backend)
            if holders is None:
                holders = self._holders[event.backend] = {}
                self._families.connections.labels(event.backend).set_function(
                    _summing(holders, self._holders_lock)
                )
            holders[event.owner] = event.count

    def connections_closed(self, event: ConnectionsClosed) -> None:
        with self._holders_lock:
            self._holders.get(event.backend, {}).pop(event.owner, None)

    # --- the relay -----------------------------------------------------------------------

    def publish_finished(self, event: PublishFinished, scope: object) -> None:
        if event.error is None:
            for topic, count in event.per_topic.items():
                self._published(topic).inc(count)

    def relay_progress(self, event: RelayProgress) -> None:
        self._relay_lag(event.service).set(event.lag_events)

    # --- subscribers ---------------------------------------------------------------------

    def deliveries_fetched(self, event: DeliveriesFetched) -> None:
        if event.lag_events is None:
            return
        key = (event.topic, event.group)
        lags = self._member_lags.setdefault(key, {})
        lags[event.member] = event.lag_events
        self._consumer_lag(*key).set(sum(lags.values()))

    def delivery_started(self, event: DeliveryStarted) -> object:
        lag = time.time() - event.occurred_at.timestamp()
        self._event_lag(event.topic, event.group).set(max(lag, 0.0))
        return None

    def delivery_finished(self, event: DeliveryFinished, scope: object) -> None:
        # An abandoned delivery was not settled: it comes again and is counted then.
        if event.outcome != "abandoned":
            self._consumed(event.topic, event.group, event.outcome).inc()

    def dead_letters_counted(self, event: DeadLettersCounted) -> None:
        self._dead_letters(event.topic, event.group).set(event.count)

    # --- projections and the service ------------------------------------------------------

    def batch_applied(self, event: BatchApplied, scope: object) -> None:
        if event.error is None:
            self._projection_lag(event.projection).set(event.lag_events)

    def service_health(self, event: ServiceHealth) -> None:
        self.set_service_health(event.service, event.healthy)


def _summing(holders: dict[int, Callable[[], int]], lock: threading.Lock) -> Callable[[], float]:
    def total() -> float:
        # Called on the scraping thread; the loop adds and drops holders meanwhile.
        with lock:
            counts = list(holders.values())
        return float(sum(count() for count in counts))

    return total


_by_registry: weakref.WeakKeyDictionary[CollectorRegistry, PrometheusHooks] = (
    weakref.WeakKeyDictionary()
)
_made_lock = threading.Lock()


def metrics_hooks(registry: CollectorRegistry | None = None) -> PrometheusHooks:
    """The ``PrometheusHooks`` of ``registry`` (by default prometheus_client's global
    one), made on the first call and the same one after: a registry takes each metric
    name once."""
    chosen = REGISTRY if registry is None else registry
    with _made_lock:
        hooks = _by_registry.get(chosen)
        if hooks is None:
            hooks = _by_registry[chosen] = PrometheusHooks(chosen)
        return hooks
