"""The seam's additions for metrics: readings that cost a query are taken only for a
hook that wants them; a failed command counts as failed with its error class; service
health and store connections reach the gauges."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from eventcore import Command, Event, Executor, StreamId, Writes, open_store
from eventcore.instrumentation import (
    DeadLettersCounted,
    DeliveriesFetched,
    FanOut,
    Hooks,
    ServiceHealth,
)
from eventcore.leases import MemoryLeases
from eventcore.messaging import open_bus
from eventcore.messaging.subscriber import Received, Subscriber
from eventcore.singleton import Singleton
from tests.backends import BACKENDS
from tests.observability.test_metrics import total
from tests.observability.workload import PATIENCE, TOPIC, Deposited, fresh_metrics, registry


class Fetches(Hooks):
    """Sets ``fetched`` after a few fetches."""

    def __init__(self) -> None:
        self.left = 3
        self.fetched = asyncio.Event()

    def deliveries_fetched(self, event: DeliveriesFetched) -> None:
        self.left -= 1
        if self.left <= 0:
            self.fetched.set()


class Counts(Fetches):
    def __init__(self) -> None:
        super().__init__()
        self.counted: list[int] = []

    def dead_letters_counted(self, event: DeadLettersCounted) -> None:
        self.counted.append(event.count)


async def counting_calls(hooks: Fetches, monkeypatch: pytest.MonkeyPatch) -> int:
    """Run a subscriber until ``hooks`` saw three fetches; how often the box was counted."""
    calls = 0
    async with await open_bus("memory://") as bus:
        count = bus.dead_letters.count

        async def counted(**filters: str | None) -> int:
            nonlocal calls
            calls += 1
            return await count(**filters)

        monkeypatch.setattr(bus.dead_letters, "count", counted)

        async def ignore(received: Received[Deposited]) -> None:
            pass

        subscriber = Subscriber(
            bus, TOPIC, [ignore], group="ledger", registry=registry, retry_poll=0.01, hooks=hooks
        )
        running = asyncio.create_task(subscriber.run())
        async with asyncio.timeout(PATIENCE):
            await hooks.fetched.wait()
        subscriber.stop()
        await running
    return calls


async def test_the_dead_letters_are_counted_only_for_a_hook_that_wants_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert await counting_calls(Fetches(), monkeypatch) == 0
    counts = Counts()
    assert await counting_calls(counts, monkeypatch) > 0
    assert set(counts.counted) == {0}


def test_wants_is_true_only_for_a_hook_that_overrides_the_method() -> None:
    assert not FanOut(Hooks(), Fetches()).wants("dead_letters_counted")
    assert FanOut(Hooks(), Counts()).wants("dead_letters_counted")
    assert FanOut(fresh_metrics()).wants("dead_letters_counted")


class Broken(Command[int]):
    account: StreamId

    def initial_state(self) -> int:
        return 0

    def apply(self, state: int, stream_id: StreamId, event: Event) -> int:
        return state

    def handle(self, state: int) -> Writes:
        raise LookupError("a bug in the command")


async def test_a_command_that_raises_counts_as_failed_with_its_error_class() -> None:
    metrics = fresh_metrics()
    async with await open_store("memory://") as store:
        with pytest.raises(LookupError):
            await Executor(store, registry, hooks=metrics).execute(
                Broken(account=StreamId("account-1"))
            )
    assert total(metrics.registry, "eventcore_commands_total", outcome="failed") == 1
    assert total(metrics.registry, "eventcore_command_errors_total", error="LookupError") == 1


def test_service_health_is_set_through_the_seam_and_by_the_setter() -> None:
    metrics = fresh_metrics()
    hooks = FanOut(metrics)
    hooks.service_health(ServiceHealth(service="orders", healthy=True))
    metrics.set_service_health("billing", False)
    assert total(metrics.registry, "eventcore_service_health", service="orders") == 1
    assert total(metrics.registry, "eventcore_service_health", service="billing") == 0
    hooks.service_health(ServiceHealth(service="orders", healthy=False))
    assert total(metrics.registry, "eventcore_service_health", service="orders") == 0


async def test_a_singleton_reports_whether_this_process_leads_it() -> None:
    metrics = fresh_metrics()
    leases = MemoryLeases()
    stopped = asyncio.Event()

    class Idle:
        async def run(self) -> None:
            await stopped.wait()

        def stop(self) -> None:
            stopped.set()

        def status(self) -> None:
            return None

        async def ready(self) -> None:
            pass

    leader = Singleton("orders.summary", leases, Idle, member="a", hooks=metrics)
    running = asyncio.create_task(leader.run())
    await leader.ready()
    assert total(metrics.registry, "eventcore_singleton_leader", worker="orders.summary") == 1

    leader.stop()
    await running
    assert total(metrics.registry, "eventcore_singleton_leader", worker="orders.summary") == 0


async def test_a_store_given_other_hooks_moves_its_connections_to_them(tmp_path: Path) -> None:
    first, second = fresh_metrics(), fresh_metrics()
    store = await open_store(f"sqlite:///{tmp_path}/events.db", hooks=first)
    async with store:
        assert total(first.registry, "eventcore_active_connections", backend="sqlite") == 3
        store.use_hooks(second)  # type: ignore[attr-defined]
        assert total(first.registry, "eventcore_active_connections") == 0
        assert total(second.registry, "eventcore_active_connections", backend="sqlite") == 3
    assert total(second.registry, "eventcore_active_connections") == 0


async def test_a_postgresql_store_reports_its_pools_connections(tmp_path: Path) -> None:
    metrics = fresh_metrics()
    async with BACKENDS["postgres"].open(tmp_path) as store:
        store.use_hooks(metrics)  # type: ignore[attr-defined]
        await store.append(
            {StreamId("account-1"): [registry.encode(Deposited(amount=1))]},
            expected={StreamId("account-1"): 0},
        )
        # Opened on demand: at least the one the append used, at most the pool's size.
        assert total(metrics.registry, "eventcore_active_connections", backend="postgresql") >= 1
        assert total(metrics.registry, "eventcore_events_appended_total", store="postgresql") == 1
    assert total(metrics.registry, "eventcore_active_connections") == 0


def test_without_prometheus_client_the_package_imports_and_metrics_name_the_extra() -> None:
    script = (
        "import sys\n"
        "sys.modules['prometheus_client'] = None  # as if it were not installed\n"
        "import eventcore.observability as observability\n"
        "from eventcore.errors import MissingDependency\n"
        "try:\n"
        "    observability.metrics_hooks\n"
        "except MissingDependency as error:\n"
        "    print(error)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "pip install 'eventcore[metrics]'" in done.stdout
