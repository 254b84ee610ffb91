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
``eventcore_singleton_leader{worker}``                 1 while this process leads the
                                                       single-leader worker, 0 while it
                                                       follows (sum over instances: 1)
``eventcore_saga_instances{saga,status}``              sagas of the store by type and
                                                       status, as the saga index sees them
``eventcore_saga_step_duration_seconds{saga,step}``    histogram: a step's action, from its
                                                       request to its end (any outcome)
``eventcore_saga_compensations_total{saga,step}``      steps undone (compensations that
                                                       succeeded; retries not counted)
``eventcore_federation_events_total{rule,outcome}``    events the hub settled: routed,
                                                       failed; rule ``""``: unmatched,
                                                       invalid
``eventcore_federation_lag_seconds{origin}``           how far behind a source the hub
                                                       reads, at its last batch
=====================================================  =====================================

A later concern (breakers) adds its event to the seam and its metric the same way: one
``_Family`` in ``FAMILIES``, set by one ``Hooks`` method here.

Sagas by status is a gauge that must be right after a restart and whatever instance
moved a saga, so it is not counted from transitions: each process's saga index reads
the whole log when it starts and reports every saga's status (from None on first
sight), and ``PrometheusHooks`` keeps each saga's last status and counts those. A
restarted process starts from zero and is told every saga again; a second index in the
same process (a worker restarted in place) repeats what is known, and a record whose
``previous`` is not the status already held comes from a view behind this one, so it
is skipped rather than counted twice. Every process with a saga worker reports every
saga of its store: aggregate across instances with ``max``, not ``sum``. Steps and
compensations are reported by the instance whose append ended them, once: those sum.

Hook methods run on the event loop, inline, so the values are plain numbers in dicts
(no lock, no prometheus_client object on the hot path); ``collect``, called by the
registry at each scrape from whatever thread serves it, turns them into metric families.
Reading a dict another thread is adding to is safe under the GIL once copied in one
call (``list(d.items())``), which is how ``collect`` reads.
"""

from __future__ import annotations

import threading
import time
import weakref
from bisect import bisect_left
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

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
    FederationBatch,
    Hooks,
    LeadershipChanged,
    PublishFinished,
    RelayProgress,
    SagaCompensationEnded,
    SagaStatusChanged,
    SagaStepEnded,
    ServiceHealth,
)

__all__ = ["FAMILIES", "METRIC_NAMES", "PrometheusHooks", "metrics_hooks"]

_COMMAND_SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
# A step is a round trip to another service: milliseconds on one machine, up to its
# timeout (minutes, for a step that waits on a person or a slow partner).
_STEP_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)

_Labels = tuple[str, ...]


# eq=False: a family is a dict key on the hot path, hashed by identity (no field tuple).
@dataclass(frozen=True, eq=False)
class _Family:
    """One metric: its name (a counter's without ``_total``), kind, help and labels."""

    name: str
    kind: Literal["counter", "gauge", "histogram"]
    help: str
    labels: _Labels = ()
    buckets: tuple[float, ...] = ()

    @property
    def exposed(self) -> str:
        """The name a query uses (``_total`` on a counter; a histogram's own name)."""
        return f"{self.name}_total" if self.kind == "counter" else self.name


COMMANDS = _Family(
    "eventcore_commands",
    "counter",
    "Commands executed, by command type and outcome.",
    ("command", "outcome"),
)
COMMAND_SECONDS = _Family(
    "eventcore_command_duration_seconds",
    "histogram",
    "Time a command took, its reads, retries and append included.",
    ("command",),
    _COMMAND_SECONDS,
)
COMMAND_ERRORS = _Family(
    "eventcore_command_errors",
    "counter",
    "Commands that failed, by command type and error class.",
    ("command", "error"),
)
COMMAND_CONFLICTS = _Family(
    "eventcore_command_conflicts",
    "counter",
    "Concurrency conflicts commands met (each one read again and retried).",
    ("command",),
)
APPENDED = _Family(
    "eventcore_events_appended",
    "counter",
    "Events committed to the event store (deduplicated appends not counted).",
    ("store",),
)
BATCH_SIZE = _Family(
    "eventcore_append_batch_size",
    "histogram",
    "Events per append to the event store.",
    (),
    _BATCH_SIZES,
)
PUBLISHED = _Family(
    "eventcore_events_published",
    "counter",
    "Messages the relay published and the bus acknowledged, by topic.",
    ("topic",),
)
RELAY_LAG = _Family(
    "eventcore_relay_lag_events",
    "gauge",
    "Store log positions the relay has seen but not yet published.",
    ("service",),
)
CONSUMED = _Family(
    "eventcore_events_consumed",
    "counter",
    "Deliveries a consumer group settled: handled, ignored (no handler) or dead.",
    ("topic", "group", "outcome"),
)
EVENT_LAG = _Family(
    "eventcore_event_lag_seconds",
    "gauge",
    "Age of the latest event a consumer group started handling (now - its time).",
    ("topic", "group"),
)
CONSUMER_LAG = _Family(
    "eventcore_consumer_lag_events",
    "gauge",
    "Messages waiting for this process's members of a consumer group.",
    ("topic", "group"),
)
DEAD_LETTERS = _Family(
    "eventcore_dead_letters",
    "gauge",
    "Dead letters a consumer group holds in the bus's box.",
    ("topic", "group"),
)
PROJECTION_LAG = _Family(
    "eventcore_projection_lag_events",
    "gauge",
    "Store log positions past a projection's last applied batch.",
    ("projection",),
)
HEALTH = _Family(
    "eventcore_service_health",
    "gauge",
    "1 while the service is healthy, 0 while it is not.",
    ("service",),
)
CONNECTIONS = _Family(
    "eventcore_active_connections",
    "gauge",
    "Connections the process's event stores hold open, by backend.",
    ("backend",),
)
LEADER = _Family(
    "eventcore_singleton_leader",
    "gauge",
    "1 while this process leads the single-leader worker, 0 while it follows "
    "(summed over instances: 1 when one leads).",
    ("worker",),
)

SAGAS = _Family(
    "eventcore_saga_instances",
    "gauge",
    "Sagas of the owner's store by type and status (every saga, whichever instance "
    "moved it: aggregate instances with max).",
    ("saga", "status"),
)
SAGA_STEP_SECONDS = _Family(
    "eventcore_saga_step_duration_seconds",
    "histogram",
    "Time a saga step's action took, from its request to its reply, failure or timeout.",
    ("saga", "step"),
    _STEP_SECONDS,
)
SAGA_COMPENSATIONS = _Family(
    "eventcore_saga_compensations",
    "counter",
    "Saga steps undone: compensations that succeeded (each once, however many attempts).",
    ("saga", "step"),
)
FEDERATED = _Family(
    "eventcore_federation_events",
    "counter",
    "Events the federation hub settled, by rule and outcome: routed, failed (parked); "
    'rule "": unmatched (no rule took it) or invalid (unreadable, parked).',
    ("rule", "outcome"),
)
FEDERATION_LAG = _Family(
    "eventcore_federation_lag_seconds",
    "gauge",
    "How long the newest message of the hub's last batch from a source had waited there.",
    ("origin",),
)

#: Every family ``PrometheusHooks`` exposes, in the order of the exposition.
FAMILIES: tuple[_Family, ...] = (
    COMMANDS,
    COMMAND_SECONDS,
    COMMAND_ERRORS,
    COMMAND_CONFLICTS,
    APPENDED,
    BATCH_SIZE,
    PUBLISHED,
    RELAY_LAG,
    CONSUMED,
    EVENT_LAG,
    CONSUMER_LAG,
    DEAD_LETTERS,
    PROJECTION_LAG,
    HEALTH,
    CONNECTIONS,
    LEADER,
    SAGAS,
    SAGA_STEP_SECONDS,
    SAGA_COMPENSATIONS,
    FEDERATED,
    FEDERATION_LAG,
)
#: The names queries use (counters with their ``_total``).
METRIC_NAMES: tuple[str, ...] = tuple(family.exposed for family in FAMILIES)


class _Histogram:
    """One labelled histogram: a count per bucket (not cumulative), the sum, the count."""

    __slots__ = ("counts", "sum")

    def __init__(self, buckets: int) -> None:
        self.counts = [0] * (buckets + 1)  # the last one: above every bound (+Inf)
        self.sum = 0.0


class _Values:
    """The numbers of every family, by label values."""

    def __init__(self) -> None:
        self.numbers: dict[_Family, dict[_Labels, float]] = {
            family: {} for family in FAMILIES if family.kind != "histogram"
        }
        self.histograms: dict[_Family, dict[_Labels, _Histogram]] = {
            family: {} for family in FAMILIES if family.kind == "histogram"
        }

    def add(self, family: _Family, labels: _Labels, amount: float = 1.0) -> None:
        numbers = self.numbers[family]
        numbers[labels] = numbers.get(labels, 0.0) + amount

    def set(self, family: _Family, labels: _Labels, value: float) -> None:
        self.numbers[family][labels] = value

    def observe(self, family: _Family, labels: _Labels, value: float) -> None:
        histograms = self.histograms[family]
        histogram = histograms.get(labels)
        if histogram is None:
            histogram = histograms[labels] = _Histogram(len(family.buckets))
        # bisect_left: a value equal to a bound belongs to that bound's bucket (le).
        histogram.counts[bisect_left(family.buckets, value)] += 1
        histogram.sum += value


def _numbers(family: _Family) -> CounterMetricFamily | GaugeMetricFamily:
    labels = list(family.labels)
    if family.kind == "counter":
        return CounterMetricFamily(family.name, family.help, labels=labels)
    return GaugeMetricFamily(family.name, family.help, labels=labels)


def _histograms(family: _Family) -> HistogramMetricFamily:
    return HistogramMetricFamily(family.name, family.help, labels=list(family.labels))


class _Collector(Collector):
    """What the registry reads at each scrape."""

    def __init__(self, values: _Values, connections: Callable[[], dict[_Labels, float]]) -> None:
        self._values = values
        self._connections = connections

    def describe(self) -> Iterator[Metric]:
        for family in FAMILIES:
            yield _histograms(family) if family.kind == "histogram" else _numbers(family)

    def collect(self) -> Iterator[Metric]:
        for family in FAMILIES:
            yield self._histograms(family) if family.kind == "histogram" else self._numbers(family)

    def _numbers(self, family: _Family) -> Metric:
        metric = _numbers(family)
        if family is CONNECTIONS:
            found = list(self._connections().items())
        else:
            found = list(self._values.numbers[family].items())
        for labels, value in found:
            metric.add_metric(list(labels), value)
        return metric

    def _histograms(self, family: _Family) -> Metric:
        metric = _histograms(family)
        bounds = [*(str(float(bound)) for bound in family.buckets), "+Inf"]
        for labels, histogram in list(self._values.histograms[family].items()):
            running, cumulative = 0, []
            for bound, count in zip(bounds, list(histogram.counts), strict=True):
                running += count
                cumulative.append((bound, float(running)))
            metric.add_metric(list(labels), cumulative, histogram.sum)
        return metric


class PrometheusHooks(Hooks):
    """The hooks that keep eventcore's Prometheus metrics, on ``registry`` (by default
    prometheus_client's global one). Install with ``install_hooks(metrics_hooks())``;
    build one per registry (``metrics_hooks`` does), as a registry refuses a second set
    of the same names."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self._registry = REGISTRY if registry is None else registry
        self._values = values = _Values()
        # The hot path's own dicts, bound once: one lookup each per call.
        self._commands = values.numbers[COMMANDS]
        self._appended = values.numbers[APPENDED]
        self._consumed = values.numbers[CONSUMED]
        self._command_seconds = values.histograms[COMMAND_SECONDS]
        self._batch_sizes = values.histograms[BATCH_SIZE]
        #: Each member's lag, summed per group: members are not a label (they are ids).
        self._member_lags: dict[tuple[str, str], dict[str, int]] = {}
        #: Per backend, each holder's count of open connections (called at a scrape).
        self._holders: dict[str, dict[int, Callable[[], int]]] = {}
        self._holders_lock = threading.Lock()
        #: Each saga's status as last reported, by (saga type, saga id): what makes the
        #: gauge of sagas by status idempotent (see the module docs). Not a label.
        self._saga_status: dict[tuple[str, str], str] = {}
        self._registry.register(_Collector(self._values, self._connections))

    @property
    def registry(self) -> CollectorRegistry:
        return self._registry

    def set_service_health(self, service: str, healthy: bool) -> None:
        """Mark ``service`` healthy (1) or not (0); the runtime calls it as its checks
        change (through the seam's ``service_health``)."""
        self._values.set(HEALTH, (service,), 1.0 if healthy else 0.0)

    # --- commands ------------------------------------------------------------------------

    def command_finished(self, event: CommandFinished, scope: object) -> None:
        # Once per command: written out rather than through _Values, a third faster.
        commands, key = self._commands, (event.command, event.outcome)
        commands[key] = commands.get(key, 0.0) + 1.0
        command = (event.command,)
        histogram = self._command_seconds.get(command)
        if histogram is None:
            histogram = self._command_seconds[command] = _Histogram(len(_COMMAND_SECONDS))
        histogram.counts[bisect_left(_COMMAND_SECONDS, event.seconds)] += 1
        histogram.sum += event.seconds
        if event.conflicts:
            self._values.add(COMMAND_CONFLICTS, command, event.conflicts)

    def command_failed(self, event: CommandFailed, scope: object) -> None:
        values, command = self._values, (event.command,)
        outcome = "rejected" if isinstance(event.error, CommandRejected) else "failed"
        values.add(COMMANDS, (event.command, outcome))
        values.observe(COMMAND_SECONDS, command, event.seconds)
        values.add(COMMAND_ERRORS, (event.command, type(event.error).__name__))
        if event.conflicts:
            values.add(COMMAND_CONFLICTS, command, event.conflicts)

    # --- the store -----------------------------------------------------------------------

    def append_finished(self, event: AppendFinished, scope: object) -> None:
        if event.error is None and not event.deduplicated:
            appended, store, events = self._appended, (event.store,), event.events
            appended[store] = appended.get(store, 0.0) + events
            histogram = self._batch_sizes.get(())
            if histogram is None:
                histogram = self._batch_sizes[()] = _Histogram(len(_BATCH_SIZES))
            histogram.counts[bisect_left(_BATCH_SIZES, events)] += 1
            histogram.sum += events

    def connections_opened(self, event: ConnectionsOpened) -> None:
        with self._holders_lock:
            self._holders.setdefault(event.backend, {})[event.owner] = event.count

    def connections_closed(self, event: ConnectionsClosed) -> None:
        with self._holders_lock:
            self._holders.get(event.backend, {}).pop(event.owner, None)

    def _connections(self) -> dict[_Labels, float]:
        # Called on the scraping thread; the loop adds and drops holders meanwhile.
        with self._holders_lock:
            holders = [
                (backend, list(counts.values())) for backend, counts in self._holders.items()
            ]
        return {(backend,): float(sum(count() for count in counts)) for backend, counts in holders}

    # --- the relay -----------------------------------------------------------------------

    def publish_finished(self, event: PublishFinished, scope: object) -> None:
        if event.error is None:
            for topic, count in event.per_topic.items():
                self._values.add(PUBLISHED, (topic,), count)

    def relay_progress(self, event: RelayProgress) -> None:
        self._values.set(RELAY_LAG, (event.service,), event.lag_events)

    # --- subscribers ---------------------------------------------------------------------

    def deliveries_fetched(self, event: DeliveriesFetched) -> None:
        if event.lag_events is None:
            return
        key = (event.topic, event.group)
        lags = self._member_lags.setdefault(key, {})
        lags[event.member] = event.lag_events
        self._values.set(CONSUMER_LAG, key, sum(lags.values()))

    def delivery_started(self, event: DeliveryStarted) -> object:
        lag = time.time() - event.occurred_at.timestamp()
        self._values.set(EVENT_LAG, (event.topic, event.group), max(lag, 0.0))
        return None

    def delivery_finished(self, event: DeliveryFinished, scope: object) -> None:
        # An abandoned delivery was not settled: it comes again and is counted then.
        if event.outcome != "abandoned":
            consumed, key = self._consumed, (event.topic, event.group, event.outcome)
            consumed[key] = consumed.get(key, 0.0) + 1.0

    def dead_letters_counted(self, event: DeadLettersCounted) -> None:
        self._values.set(DEAD_LETTERS, (event.topic, event.group), event.count)

    # --- projections and the service ------------------------------------------------------

    def batch_applied(self, event: BatchApplied, scope: object) -> None:
        if event.error is None:
            self._values.set(PROJECTION_LAG, (event.projection,), event.lag_events)

    def service_health(self, event: ServiceHealth) -> None:
        self.set_service_health(event.service, event.healthy)

    def leadership_changed(self, event: LeadershipChanged) -> None:
        self._values.set(LEADER, (event.name,), 1.0 if event.leader else 0.0)

    # --- sagas -----------------------------------------------------------------------------

    def saga_status_changed(self, event: SagaStatusChanged) -> None:
        key = (event.saga, event.saga_id)
        held = self._saga_status.get(key)
        if held is not None and event.previous != held:
            # Another view of the log, behind this one (an index started after it):
            # it tells a history already counted.
            return
        if held == event.status:
            return
        self._saga_status[key] = event.status
        values = self._values
        if held is not None:
            values.add(SAGAS, (event.saga, held), -1.0)
        values.add(SAGAS, (event.saga, event.status))

    def saga_step_finished(self, event: SagaStepEnded) -> None:
        self._values.observe(SAGA_STEP_SECONDS, (event.saga, event.step), event.seconds)

    def saga_compensation_finished(self, event: SagaCompensationEnded) -> None:
        if event.outcome == "succeeded":
            self._values.add(SAGA_COMPENSATIONS, (event.saga, event.step))

    # --- the federation hub ----------------------------------------------------------------

    def federation_batch(self, event: FederationBatch) -> None:
        values = self._values
        for rule, outcome, events in event.outcomes:
            values.add(FEDERATED, (rule, outcome), events)
        values.set(FEDERATION_LAG, (event.origin,), event.lag_seconds)


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
