"""``Service``: declared once, run as one unit; ready when its workers are; a crashed
worker rebuilt after a backoff and shown in health; a drain that refuses new work, lets
admitted work finish and publishes everything committed."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from eventcore.demo.bank import AccountOpened, OpenAccount, registry
from eventcore.errors import InvalidUrl, WorkerStopped
from eventcore.events import EventRegistry
from eventcore.instrumentation import Hooks, ServiceHealth
from eventcore.lifecycle import Readiness
from eventcore.messaging import open_bus
from eventcore.messaging.commands import CommandSender, Succeeded
from eventcore.messaging.memory import MemoryBus
from eventcore.messaging.subscriber import Received
from eventcore.messaging.topics import TopicMap
from eventcore.projection import MemoryTarget, MemoryTransaction, Projection, handles
from eventcore.registry import open_registry
from eventcore.service import (
    InvalidService,
    Service,
    ServiceDraining,
    Wiring,
    readiness,
    status,
)
from eventcore.store.memory import MemoryStore
from eventcore.types import StoredEvent, StreamId
from tests.web.serving import environment


def bank(**options: Any) -> Service:
    return Service(
        "bank",
        events=registry,
        commands=[OpenAccount],
        topics=TopicMap({AccountOpened: "bank"}),
        store=options.pop("store", None) or MemoryStore(),
        bus=options.pop("bus", None) or MemoryBus(),
        **options,
    )


class Crashing:
    """A worker that gets ready, then fails as soon as ``crash`` is set; counts builds
    and sets ``rebuilt`` at the second."""

    builds = 0
    rebuilt: asyncio.Event | None = None

    def __init__(self, crash: asyncio.Event) -> None:
        type(self).builds += 1
        rebuilt = type(self).rebuilt
        if type(self).builds >= 2 and rebuilt is not None:
            rebuilt.set()
        self._crash = crash
        self._stopping = asyncio.Event()
        self._ready = Readiness("crashing")

    async def run(self) -> None:
        self._ready.set()
        stopping = asyncio.ensure_future(self._stopping.wait())
        crashing = asyncio.ensure_future(self._crash.wait())
        await asyncio.wait({stopping, crashing}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        crashing.cancel()
        if not self._stopping.is_set():
            self._crash.clear()
            raise RuntimeError("boom")

    def stop(self) -> None:
        self._stopping.set()

    def status(self) -> str:
        return "running"

    async def ready(self) -> None:
        await self._ready.wait()


async def test_a_started_service_runs_commands_and_its_relay_publishes_them() -> None:
    bus = MemoryBus()
    async with bank(bus=bus) as service:
        result = await service.execute(OpenAccount(account=StreamId("a"), initial_balance=5))
        relay = service.relay()
        assert relay is not None
        await relay.published(result.positions[-1])
        assert service.state == "ready"
        assert (await readiness(service)).status == "ready"
    assert service.workers()[0].state == "stopped"
    checkpoint = await bus.load_checkpoint("bank")
    assert checkpoint is not None
    assert checkpoint.position == result.positions[-1]


async def test_a_crashed_worker_is_rebuilt_and_its_restarts_show_in_health() -> None:
    crash = asyncio.Event()
    Crashing.builds = 0
    Crashing.rebuilt = asyncio.Event()
    service = bank(backoff=(0.001, 0.002))
    service.worker("crashing", lambda wiring: Crashing(crash))
    async with service:
        crash.set()
        await Crashing.rebuilt.wait()
        health = service.workers()[0]
        assert health.state in ("starting", "ready")
        assert health.restarts == 1
        assert health.last_error == "RuntimeError: boom"
        checks = {check.name: check for check in (await readiness(service)).checks}
        assert "after 1 restarts" in checks["worker:crashing"].detail


async def test_a_draining_service_refuses_new_commands_and_finishes_admitted_ones() -> None:
    async with bank() as service:
        admitted = service.intake.admit()
        admitted.__enter__()
        draining = asyncio.create_task(service.drain())
        await asyncio.sleep(0)
        with pytest.raises(ServiceDraining):
            await service.execute(OpenAccount(account=StreamId("b"), initial_balance=1))
        assert not draining.done()
        assert (await readiness(service)).status == "draining"
        admitted.__exit__(None, None, None)
        assert await draining is True
        assert (await status(service)).state == "draining"


async def test_a_worker_factory_gets_the_opened_parts() -> None:
    seen: list[Wiring] = []

    def make(wiring: Wiring) -> Crashing:
        seen.append(wiring)
        return Crashing(asyncio.Event())

    store = MemoryStore()
    service = bank(store=store)
    service.worker("probe", make)
    async with service:
        assert seen[0].store is store
        assert seen[0].service == "bank"


async def test_a_service_without_a_store_does_not_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EVENTCORE_STORE", raising=False)
    service = Service("bank", events=registry, commands=[OpenAccount])
    with pytest.raises(InvalidService, match="has no store"):
        await service.start()


async def test_a_service_that_publishes_needs_a_bus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EVENTCORE_BUS", raising=False)
    service = Service(
        "bank", events=registry, topics=TopicMap({AccountOpened: "bank"}), store=MemoryStore()
    )
    with pytest.raises(InvalidService, match="needs a bus"):
        await service.start()
    assert service.state == "stopped"


async def test_stopping_before_ready_raises_worker_stopped_from_ready() -> None:
    never = asyncio.Event()

    class NeverReady(Crashing):
        async def run(self) -> None:
            await self._stopping.wait()

    service = bank()
    service.worker("never", lambda wiring: NeverReady(never))
    await service.start()
    waiting = asyncio.create_task(service.ready())
    await service.aclose()
    with pytest.raises(WorkerStopped):
        await waiting


def test_declarations_are_checked_when_made() -> None:
    service = bank()
    service.worker("x", lambda wiring: Crashing(asyncio.Event()))
    with pytest.raises(InvalidService, match="two workers"):
        service.worker("x", lambda wiring: Crashing(asyncio.Event()))
    with pytest.raises(InvalidService, match="not a Command"):
        Service("bank", events=registry, commands=[AccountOpened])  # type: ignore[list-item]


class Opened(Projection):
    name = "opened"

    @handles(AccountOpened)
    def on_opened(self, tx: MemoryTransaction, event: AccountOpened, stored: StoredEvent) -> None:
        tx.state[str(stored.stream_id)] = event.initial_balance


async def test_subscriptions_and_projections_run_under_the_service() -> None:
    bus = MemoryBus()
    heard: list[str] = []
    all_heard = asyncio.Event()

    async def on_opened(received: Received[AccountOpened]) -> None:
        heard.append(received.envelope.subject or "")
        if len(heard) == 2:
            all_heard.set()

    target = MemoryTarget()
    bank_service = bank(bus=bus)
    bank_service.project(Opened(), target)
    audit = Service("audit", events=registry, store=MemoryStore(), bus=bus)
    audit.subscribe("bank", {AccountOpened: on_opened})
    async with audit, bank_service:
        for account in ("a", "b"):
            await bank_service.execute(OpenAccount(account=StreamId(account), initial_balance=7))
        await all_heard.wait()
        runner = bank_service.workers()[0]
        assert runner.kind == "projection"
        assert {worker.kind for worker in audit.workers()} == {"subscriber"}
        assert "bank" in audit.consumed_topics
    assert target.state("opened") == {"a": 7, "b": 7}


class Recording:
    """A registry that records what the service told it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    async def register(
        self,
        service: str,
        instance: str,
        address: str,
        *,
        version: str,
        metadata: Mapping[str, str],
    ) -> None:
        self.calls.append(("register", service, instance, address, version))

    async def deregister(self, service: str, instance: str) -> None:
        self.calls.append(("deregister", service, instance))


async def test_an_instance_registers_once_started_and_deregisters_when_it_stops() -> None:
    registry_ = Recording()
    service = bank(registry=registry_, version="2.1")
    service.address = "http://127.0.0.1:9"
    async with service:
        assert registry_.calls == [
            ("register", "bank", service.instance, "http://127.0.0.1:9", "2.1")
        ]
    assert registry_.calls[-1] == ("deregister", "bank", service.instance)


async def test_a_registry_lists_the_instance_while_it_runs() -> None:
    directory = await open_registry("memory://")
    service = bank(registry=directory, version="3")
    service.address = "http://127.0.0.1:9"
    async with service:
        [listed] = await directory.discover("bank")
        assert listed.instance_id == service.instance
        assert len((await status(service)).registrations) == 1
        assert listed.address == "http://127.0.0.1:9"
    assert await directory.discover("bank") == []
    await directory.aclose()


async def test_a_bad_registry_url_stops_the_start_before_anything_opens() -> None:
    store = MemoryStore()
    service = bank(store=store, registry="ftp://registry")
    with pytest.raises(InvalidUrl):
        await service.start()
    assert service.state == "stopped"
    assert await store.last_position() == 0


async def test_commands_accepted_over_the_bus_are_answered_through_the_relay() -> None:
    bus = MemoryBus()
    senders: list[CommandSender] = []

    def sender(wiring: Wiring) -> CommandSender:
        senders.append(
            CommandSender(wiring.store, wiring.needed_bus(), wiring.events, service="client")
        )
        return senders[-1]

    client = Service(
        "client", events=EventRegistry(), topics=TopicMap(), store=MemoryStore(), bus=bus
    )
    client.worker("sender", sender)
    accepting = bank(bus=bus, bus_commands=[OpenAccount])
    async with accepting, client:
        reply = await senders[-1].send(
            "bank", OpenAccount(account=StreamId("z"), initial_balance=4), deadline=30
        )
        assert isinstance(reply, Succeeded)
        assert await accepting.store.stream_version(StreamId("z")) == 1


async def test_a_service_given_no_urls_takes_them_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EVENTCORE_STORE", "memory://")
    monkeypatch.setenv("EVENTCORE_BUS", "memory://")
    service = Service("bank", events=registry, topics=TopicMap({AccountOpened: "bank"}))
    async with service:
        assert service.bus is not None
        assert (await status(service)).store != ""


RUN_UNTIL_SIGNAL = """
import asyncio, sys
from eventcore.demo.bank import OpenAccount
from eventcore.demo.bank_service import service
from eventcore.types import StreamId

async def main():
    running = asyncio.create_task(service.run())
    await service.ready()
    await service.execute(OpenAccount(account=StreamId("a"), initial_balance=1))
    print("ready", flush=True)
    await running
    print("stopped", service.state, flush=True)

asyncio.run(main())
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_run_drains_and_returns_on_a_signal(tmp_path: Path, sig: signal.Signals) -> None:
    store, bus = f"sqlite:///{tmp_path / 'bank.db'}", f"sqlite:///{tmp_path / 'bus.db'}"
    env = {**environment(), "EVENTCORE_STORE": store, "EVENTCORE_BUS": bus}
    process = subprocess.Popen(  # noqa: ASYNC220 - read line by line, as the child writes
        [sys.executable, "-c", RUN_UNTIL_SIGNAL],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert (await asyncio.to_thread(process.stdout.readline)).strip() == "ready"
    process.send_signal(sig)
    out, err = await asyncio.to_thread(process.communicate, timeout=60)
    assert process.returncode == 0, err
    assert out.strip() == "stopped stopped"
    opened = await open_bus(bus, create=False)
    try:
        checkpoint = await opened.load_checkpoint("bank")
    finally:
        await opened.aclose()
    assert checkpoint is not None
    assert checkpoint.position == 1


class HealthRecorder(Hooks):
    def __init__(self) -> None:
        self.reported: list[bool] = []
        self.changed = asyncio.Event()

    def service_health(self, event: ServiceHealth) -> None:
        self.reported.append(event.healthy)
        self.changed.set()


async def test_health_changes_are_reported_through_the_hooks() -> None:
    hooks = HealthRecorder()
    crash = asyncio.Event()
    Crashing.builds = 0
    Crashing.rebuilt = asyncio.Event()
    service = bank(hooks=hooks, backoff=(0.001, 0.002))
    service.worker("crashing", lambda wiring: Crashing(crash))
    async with service:
        # Started, then ready: not healthy until every worker is.
        assert hooks.reported == [False, True]
        hooks.changed.clear()
        crash.set()
        await hooks.changed.wait()
        assert hooks.reported == [False, True, False]
        while len(hooks.reported) < 4:
            hooks.changed.clear()
            await hooks.changed.wait()
        assert hooks.reported == [False, True, False, True]
    assert hooks.reported == [False, True, False, True, False]
