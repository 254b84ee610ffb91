"""A short workload for the metrics tests: one service's commands (one meeting a
conflict, one rejected), its relay, a subscriber whose handler parks one message as a
dead letter, and a projection — all reporting to one ``PrometheusHooks``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry

from eventcore import (
    AppendResult,
    Command,
    CommandRejected,
    Event,
    EventRegistry,
    EventStore,
    Executor,
    MemoryTarget,
    MemoryTransaction,
    Projection,
    ProjectionRunner,
    RetryPolicy,
    Source,
    StoredEvent,
    StreamId,
    Writes,
    handles,
    open_store,
)
from eventcore.instrumentation import (
    DeadLettersCounted,
    DeliveriesFetched,
    DeliveryFinished,
    FanOut,
    Hooks,
)
from eventcore.messaging import Bus, open_bus
from eventcore.messaging.relay import Relay
from eventcore.messaging.subscriber import Received, Subscriber
from eventcore.messaging.topics import TopicMap
from eventcore.observability import PrometheusHooks
from eventcore.types import NewEvent

#: Bounds the waits for what takes milliseconds; only a hang reaches it.
PATIENCE = 20.0
TOPIC = "deposits"
GROUP = "ledger"
SERVICE = "bank"
#: The rival's deposit: the subscriber's handler refuses it, so it is parked.
REFUSED = 100


class Deposited(Event):
    amount: int


registry = EventRegistry([Deposited])


class Deposit(Command[int]):
    account: StreamId
    amount: int

    def initial_state(self) -> int:
        return 0

    def apply(self, state: int, stream_id: StreamId, event: Event) -> int:
        assert isinstance(event, Deposited)
        return state + event.amount

    def handle(self, state: int) -> Writes:
        if self.amount <= 0:
            raise CommandRejected("a deposit must be positive")
        return {self.account: [Deposited(amount=self.amount)]}


class Balance(Projection):
    name = "balance"

    @handles(Deposited)
    async def deposited(self, tx: MemoryTransaction, event: Deposited, stored: StoredEvent) -> None:
        tx.state["total"] = tx.state.get("total", 0) + event.amount


class Rival:
    """A store on which another writer appends to the stream just before the first
    append through it: the command meets one conflict."""

    def __init__(self, inner: EventStore, stream: StreamId) -> None:
        self.inner = inner
        self.stream = stream
        self.raced = False

    async def append(
        self,
        writes: Mapping[StreamId, Sequence[NewEvent]],
        *,
        expected: Mapping[StreamId, int],
        idempotency_key: str | None = None,
    ) -> AppendResult:
        if not self.raced:
            self.raced = True
            rival = registry.encode(Deposited(amount=REFUSED))
            await self.inner.append({self.stream: [rival]}, expected={self.stream: 0})
        return await self.inner.append(writes, expected=expected, idempotency_key=idempotency_key)

    async def read_stream(self, stream_id: StreamId, *, from_version: int = 1) -> list[StoredEvent]:
        return await self.inner.read_stream(stream_id, from_version=from_version)

    async def find_append(self, idempotency_key: str) -> AppendResult | None:
        return await self.inner.find_append(idempotency_key)


class Settled(Hooks):
    """Sets ``done`` once ``handled`` messages were handled, the box was seen to hold
    ``letters`` dead letters and a fetch after that found nothing left."""

    def __init__(self, handled: int, letters: int) -> None:
        self.handled = 0
        self.letters = 0
        self.want = (handled, letters)
        self.done = asyncio.Event()

    def deliveries_fetched(self, event: DeliveriesFetched) -> None:
        if event.count == 0 and (self.handled, self.letters) == self.want:
            self.done.set()

    def delivery_finished(self, event: DeliveryFinished, scope: object) -> None:
        if event.outcome == "handled":
            self.handled += 1

    def dead_letters_counted(self, event: DeadLettersCounted) -> None:
        self.letters = event.count


@dataclass
class Ran:
    """What the workload did, to compare the metrics with."""

    commands: int
    written: int
    rejected: int
    conflicts: int
    events: int
    store: str
    store_object: EventStore
    bus: Bus


async def open_backends(backend: str, tmp_path: Path, hooks: Hooks) -> tuple[EventStore, Bus]:
    if backend == "memory":
        return await open_store("memory://", hooks=hooks), await open_bus("memory://")
    store = await open_store(f"sqlite:///{tmp_path}/events.db", hooks=hooks)
    return store, await open_bus(f"sqlite:///{tmp_path}/bus.db")


@asynccontextmanager
async def running_service(
    metrics: PrometheusHooks,
    tmp_path: Path,
    *,
    backend: str = "sqlite",
    streams: int = 8,
    also: Hooks | None = None,
) -> AsyncIterator[Ran]:
    """Run the workload on ``streams`` accounts, then yield (its relay and subscriber
    still running, everything settled) what it did. ``also`` hears the subscriber."""
    store, bus = await open_backends(backend, tmp_path, metrics)
    async with store, bus:
        executor = Executor(store, registry, hooks=metrics)
        for number in range(streams):
            await executor.execute(Deposit(account=StreamId(f"account-{number}"), amount=1))
        contested = StreamId("contested")
        racing = Executor(
            Rival(store, contested),  # type: ignore[arg-type]
            registry,
            retry=RetryPolicy(initial_delay=0.0),
            hooks=metrics,
        )
        await racing.execute(Deposit(account=contested, amount=2))
        with suppress(CommandRejected):
            await executor.execute(Deposit(account=contested, amount=-1))
        events = streams + 2  # the rival's and the contested deposit's

        async def on_deposit(received: Received[Deposited]) -> None:
            if received.event.amount == REFUSED:
                raise CommandRejected("this deposit is refused")

        settled = Settled(handled=events - 1, letters=1)
        relay = Relay(store, bus, TopicMap({Deposited: TOPIC}), service=SERVICE, hooks=metrics)
        subscriber = Subscriber(
            bus,
            TOPIC,
            [on_deposit],
            group=GROUP,
            registry=registry,
            retry_poll=0.05,
            hooks=FanOut(metrics, settled, *([also] if also else [])),
        )
        runner = ProjectionRunner(
            Balance(), MemoryTarget(), Source(SERVICE, store, registry), hooks=metrics
        )
        metrics.set_service_health(SERVICE, True)
        async with asyncio.TaskGroup() as tasks:
            workers: list[Relay | Subscriber] = [relay]
            tasks.create_task(relay.run())
            try:
                async with asyncio.timeout(PATIENCE):
                    await relay.published(await store.last_position())
                    # Every message is on the bus before the subscriber's first fetch.
                    workers.append(subscriber)
                    tasks.create_task(subscriber.run())
                    await settled.done.wait()
                    await runner.catch_up()
                yield Ran(
                    commands=streams + 2,
                    written=streams + 1,
                    rejected=1,
                    conflicts=1,
                    events=events,
                    store="memory" if backend == "memory" else "sqlite",
                    store_object=store,
                    bus=bus,
                )
            finally:
                for worker in workers:
                    worker.stop()


def fresh_metrics() -> PrometheusHooks:
    return PrometheusHooks(CollectorRegistry())
