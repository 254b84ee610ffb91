"""Every metric of issue 12 is there after a short workload, with the values of what
happened (10 commands: ``eventcore_commands_total`` sums to 10), and no label carries a
stream id, an event id or a user's value."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.samples import Sample

from eventcore.instrumentation import DeliveriesFetched, Hooks
from eventcore.observability import METRIC_NAMES, PrometheusHooks, metrics_hooks
from tests.observability.workload import GROUP, SERVICE, TOPIC, fresh_metrics, running_service


def samples(registry: CollectorRegistry) -> Iterator[Sample]:
    for family in registry.collect():
        yield from family.samples


def total(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    return sum(
        sample.value
        for sample in samples(registry)
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def series(registry: CollectorRegistry) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    return {
        (sample.name, tuple(sorted(sample.labels.items())))
        for sample in samples(registry)
        if sample.name.startswith("eventcore_")
    }


@pytest.fixture(params=["memory", "sqlite"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


#: Sagas', the hub's and single-leader workers' (tests/observability/test_metrics_sagas.py,
#: _federation.py, _seam.py).
COORDINATION = ("eventcore_saga_", "eventcore_federation_", "eventcore_singleton_")


async def test_every_metric_appears_after_a_short_workload(tmp_path: Path) -> None:
    metrics = fresh_metrics()
    async with running_service(metrics, tmp_path, backend="sqlite"):
        names = {sample.name for sample in samples(metrics.registry)}
    service_names = [name for name in METRIC_NAMES if not name.startswith(COORDINATION)]
    missing = [
        name
        for name in service_names
        if not ({name, f"{name}_count"} & names)  # a histogram shows as _bucket/_count/_sum
    ]
    assert missing == []
    assert len(service_names) == 15
    assert len(METRIC_NAMES) == 21


async def test_the_command_metrics_count_what_the_commands_did(
    tmp_path: Path, backend: str
) -> None:
    metrics = fresh_metrics()
    registry = metrics.registry
    async with running_service(metrics, tmp_path, backend=backend, streams=8) as ran:
        assert ran.commands == 10
        assert total(registry, "eventcore_commands_total") == 10
        assert total(registry, "eventcore_commands_total", outcome="written") == ran.written
        assert total(registry, "eventcore_commands_total", outcome="rejected") == ran.rejected
        assert total(registry, "eventcore_command_duration_seconds_count", command="Deposit") == 10
        assert (
            total(registry, "eventcore_command_errors_total", error="CommandRejected")
            == ran.rejected
        )
        assert total(registry, "eventcore_command_conflicts_total", command="Deposit") == 1


async def test_the_store_relay_and_subscriber_metrics_count_the_events(
    tmp_path: Path, backend: str
) -> None:
    metrics = fresh_metrics()
    registry = metrics.registry
    async with running_service(metrics, tmp_path, backend=backend) as ran:
        # One append per event here: each command writes one, and so does the rival.
        assert total(registry, "eventcore_events_appended_total", store=ran.store) == ran.events
        assert total(registry, "eventcore_append_batch_size_count") == ran.events
        assert total(registry, "eventcore_append_batch_size_sum") == ran.events
        assert total(registry, "eventcore_events_published_total", topic=TOPIC) == ran.events
        assert total(registry, "eventcore_relay_lag_events", service=SERVICE) == 0
        where = {"topic": TOPIC, "group": GROUP}
        consumed = "eventcore_events_consumed_total"
        assert total(registry, consumed, **where, outcome="handled") == ran.events - 1
        assert total(registry, consumed, **where, outcome="dead") == 1
        assert total(registry, "eventcore_dead_letters", **where) == 1
        assert total(registry, "eventcore_consumer_lag_events", **where) == 0
        assert total(registry, "eventcore_event_lag_seconds", **where) > 0
        assert total(registry, "eventcore_projection_lag_events", projection="balance") == 0
        assert total(registry, "eventcore_service_health", service=SERVICE) == 1


async def test_active_connections_follow_the_store_from_open_to_close(tmp_path: Path) -> None:
    metrics = fresh_metrics()
    async with running_service(metrics, tmp_path, backend="sqlite"):
        # The SQLite store's writer and its two readers.
        assert total(metrics.registry, "eventcore_active_connections", backend="sqlite") == 3
    assert total(metrics.registry, "eventcore_active_connections", backend="sqlite") == 0


class Lags(Hooks):
    def __init__(self) -> None:
        self.seen: list[int | None] = []

    def deliveries_fetched(self, event: DeliveriesFetched) -> None:
        self.seen.append(event.lag_events)


async def test_the_consumer_lag_is_the_backlog_at_each_fetch_and_zero_once_caught_up(
    tmp_path: Path, backend: str
) -> None:
    metrics, lags = fresh_metrics(), Lags()
    async with running_service(metrics, tmp_path, backend=backend, also=lags) as ran:
        pass
    # The first fetch found every message waiting; the last one, none.
    assert max(value or 0 for value in lags.seen) == ran.events
    assert lags.seen[-1] == 0
    assert total(metrics.registry, "eventcore_consumer_lag_events") == 0


async def test_no_label_takes_a_stream_id_an_event_id_or_a_users_value(tmp_path: Path) -> None:
    few, many = fresh_metrics(), fresh_metrics()
    async with running_service(few, tmp_path / "few", backend="memory", streams=3):
        seen_few = series(few.registry)
    async with running_service(many, tmp_path / "many", backend="memory", streams=120) as ran:
        seen_many = series(many.registry)
        stored = [event async for batch in ran.store_object.read_all() for event in batch]
    # Forty times the streams, the same series: nothing per stream, event or message.
    assert seen_many == seen_few
    ids = {str(event.stream_id) for event in stored} | {str(event.event_id) for event in stored}
    values = {value for _, labels in seen_many for _, value in labels}
    assert not values & ids
    assert not any(value.startswith("account-") for value in values)


def test_metrics_hooks_gives_one_set_per_registry() -> None:
    registry = CollectorRegistry()
    assert metrics_hooks(registry) is metrics_hooks(registry)
    assert isinstance(metrics_hooks(registry), PrometheusHooks)
    assert metrics_hooks(CollectorRegistry()) is not metrics_hooks(registry)
