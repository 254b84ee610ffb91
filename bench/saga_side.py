"""The saga workload (issue 13), eventcore side; the ``natsaga`` peer is in ``saga_peer.py``.

m: 3-step sagas across three participant services. The owner ``orders`` runs a
``SagaWorker`` over its store; ``inventory``, ``payments`` and ``shipping`` each run a
``CommandReceiver`` and a relay over a store of their own; the owner's relay carries the
requests. All four services run in this one process (one event loop), each with its own
store, talking only over the bus — so the figure includes every service's CPU on the
same loop (two shared cores: the services of a real deployment would each have their own).

- throughput: ``saga_burst`` sagas started at once; completed sagas per second from the
  first start to the last completion (as the owner's saga index sees it).
- latency: sagas started at a steady rate — half the throughput of a burst measured just
  before, at most ``saga_rate`` — for ``saga_paced`` sagas; p99 start→completed (ms).

``--backend sqlite``: SQLite stores (a file each, WAL, synchronous as the backend says)
and the SQLite bus. ``--backend nats``: PostgreSQL stores (a schema each on the server
at 127.0.0.1:5432/test) and NATS JetStream. Every relay, receiver and the worker run
with their default settings (poll intervals, batch sizes, ack waits).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, ClassVar

import msgspec

from bench.common import Context, PostgresBackend
from eventcore import Command, Event, EventRegistry, Executor, StreamId, open_store
from eventcore.command import Writes
from eventcore.lifecycle import running
from eventcore.messaging import TopicMap, open_bus
from eventcore.messaging.commands import COMMAND_EVENTS, CommandReceiver
from eventcore.messaging.relay import Relay
from eventcore.saga import Saga, SagaContext, SagaWorker, Send, Step
from eventcore.saga.state import SagaState
from eventcore.store import EventStore

__all__ = ["NOTE", "latency", "throughput"]

SERVICES = ("orders", "inventory", "payments", "shipping")
PARTICIPANTS = SERVICES[1:]
#: Long enough that a loaded machine never times a step out (a timed-out step would
#: compensate: the measure counts only sagas that completed, and says so).
STEP_TIMEOUT = 30.0

NOTE = (
    "3-step sagas (reserve → charge → ship, each a command sent over the bus to its own "
    "participant service, answered through the participant's outbox) driven by a "
    "SagaWorker; owner + 3 participants in one process, one event loop, separate stores"
)


class Effect(Event):
    order_id: str
    kind: str


class Undone(Event):
    order_id: str
    kind: str


class _Act(Command[int]):
    stream: StreamId
    order_id: str
    KIND: ClassVar[str] = ""

    def initial_state(self) -> int:
        return 0

    def apply(self, state: int, stream_id: StreamId, event: Event) -> int:
        return state + (1 if isinstance(event, Effect) else -1)

    def handle(self, state: int) -> Writes:
        return {self.stream: [Effect(order_id=self.order_id, kind=self.KIND)]}


class _Undo(_Act):
    def handle(self, state: int) -> Writes:
        if state <= 0:
            return {}
        return {self.stream: [Undone(order_id=self.order_id, kind=self.KIND)]}


class ReserveStock(_Act):
    KIND: ClassVar[str] = "reserve"


class ReleaseStock(_Undo):
    KIND: ClassVar[str] = "reserve"


class ChargeCard(_Act):
    KIND: ClassVar[str] = "charge"


class RefundPayment(_Undo):
    KIND: ClassVar[str] = "charge"


class BookShipment(_Act):
    KIND: ClassVar[str] = "ship"


class CancelShipment(_Undo):
    KIND: ClassVar[str] = "ship"


ACCEPTS: dict[str, tuple[type[_Act], type[_Act]]] = {
    "inventory": (ReserveStock, ReleaseStock),
    "payments": (ChargeCard, RefundPayment),
    "shipping": (BookShipment, CancelShipment),
}


class Order(msgspec.Struct, frozen=True):
    order_id: str
    amount: int


class Ref(msgspec.Struct, frozen=True):
    ref: str


def _result(command: _Act, events: tuple[Event, ...]) -> dict[str, str]:
    return {"ref": f"{command.KIND}-{command.order_id}"}


def _send(service: str, command: type[_Act]) -> Send[Order]:
    def build(context: SagaContext[Order]) -> _Act:
        order = context.data.order_id
        return command(stream=StreamId(f"{service}-order-{order}"), order_id=order)

    return Send(service, build)


def order_saga() -> Saga[Order]:
    steps: list[Step[Order, Any]] = []
    for name, service in zip(("reserve", "charge", "ship"), PARTICIPANTS, strict=True):
        action, undo = ACCEPTS[service]
        steps.append(
            Step(
                name,
                action=_send(service, action),
                compensation=_send(service, undo),
                result=Ref,
                timeout=STEP_TIMEOUT,
            )
        )
    return Saga("place-order", data=Order, steps=steps)


class Sagas:
    """The running owner: start sagas, note when each completed."""

    def __init__(self, worker: SagaWorker, saga: Saga[Order]) -> None:
        self.worker = worker
        self.saga = saga
        self.started: dict[str, float] = {}
        self.ended: dict[str, tuple[float, str]] = {}
        self._all_ended = asyncio.Event()
        self._expected = 0
        worker.index.listen(self._seen)

    def _seen(self, stream: StreamId, state: SagaState) -> None:
        if state.status in {"running", "compensating"} or state.saga_id in self.ended:
            return
        self.ended[state.saga_id] = (time.perf_counter(), state.status)
        if len(self.ended) >= self._expected:
            self._all_ended.set()

    def expect(self, count: int) -> None:
        self._expected = count
        self._all_ended.clear()

    async def start(self, saga_id: str) -> None:
        self.started[saga_id] = time.perf_counter()
        await self.worker.start(self.saga, saga_id, Order(order_id=saga_id, amount=100))

    async def all_ended(self, timeout: float) -> None:  # noqa: ASYNC109
        await asyncio.wait_for(self._all_ended.wait(), timeout)

    def completed(self, ids: list[str]) -> list[str]:
        return [i for i in ids if self.ended.get(i, (0.0, ""))[1] == "completed"]


def _store_urls(ctx: Context, stack: AsyncExitStack) -> dict[str, str]:
    if ctx.backend.name == "nats":
        # PostgreSQL stores, a schema per service, dropped with the measurement.
        postgres = PostgresBackend()
        reason = postgres.unavailable()
        if reason is not None:
            raise RuntimeError(reason)
        urls: dict[str, str] = {}
        for service in SERVICES:
            schema = postgres.schema(f"{ctx.workdir.name}-{service}")
            postgres.create_schema(schema)
            stack.callback(postgres._admin, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            urls[service] = postgres.schema_url(schema)
        return urls
    file_url = getattr(ctx.backend, "file_url", None)
    if file_url is None:
        return {service: "memory://" for service in SERVICES}
    return {service: file_url(ctx.workdir / f"{service}.db") for service in SERVICES}


@asynccontextmanager
async def owner(ctx: Context) -> AsyncIterator[Sagas]:
    """The four services running; yields the owner's saga starter."""
    async with AsyncExitStack() as stack:
        urls = _store_urls(ctx, stack)
        ctx.facts["site"] = (
            "PostgreSQL stores (a schema each) + NATS JetStream"
            if ctx.backend.name == "nats"
            else f"{ctx.backend.name} stores (a file each) + {ctx.backend.name} bus"
        )
        bus = await open_bus(ctx.backend.bus_url(ctx.workdir))
        stack.push_async_callback(bus.aclose)
        stores: dict[str, EventStore] = {}
        for service in SERVICES:
            stores[service] = await open_store(urls[service])
            stack.push_async_callback(stores[service].aclose)
        workers: list[Any] = [
            Relay(stores[service], bus, TopicMap(), service=service) for service in SERVICES
        ]
        for service in PARTICIPANTS:
            executor = Executor(stores[service], EventRegistry([Effect, Undone, *COMMAND_EVENTS]))
            workers.append(
                CommandReceiver(
                    bus, executor, dict.fromkeys(ACCEPTS[service], _result), service=service
                )
            )
        saga = order_saga()
        worker = SagaWorker(
            stores["orders"], bus, [saga], service="orders", registry=EventRegistry()
        )
        workers.append(worker)
        sagas = Sagas(worker, saga)
        async with running(*workers):
            yield sagas


async def _burst(sagas: Sagas, count: int, prefix: str) -> tuple[float, list[str]]:
    ids = [f"{prefix}-{n}" for n in range(count)]
    sagas.expect(len(sagas.ended) + count)
    began = time.perf_counter()
    await asyncio.gather(*(sagas.start(i) for i in ids))
    await sagas.all_ended(timeout=STEP_TIMEOUT * 4)
    last = max(sagas.ended[i][0] for i in ids)
    return last - began, ids


async def _warm_up(sagas: Sagas) -> None:
    await _burst(sagas, 10, "warm")


async def _throughput(ctx: Context) -> float:
    count = ctx.sizes.saga_burst
    async with owner(ctx) as sagas:
        await _warm_up(sagas)
        seconds, ids = await _burst(sagas, count, "s")
        done = sagas.completed(ids)
    ctx.facts["completed"] = f"{len(done)}/{count} in {seconds:.2f}s"
    return len(done) / seconds


async def _latency(ctx: Context) -> float:
    async with owner(ctx) as sagas:
        await _warm_up(sagas)
        seconds, ids = await _burst(sagas, min(ctx.sizes.saga_burst, 200), "b")
        rate = min(float(ctx.sizes.saga_rate), len(sagas.completed(ids)) / seconds / 2)
        count = ctx.sizes.saga_paced
        paced = [f"p-{n}" for n in range(count)]
        sagas.expect(len(sagas.ended) + count)
        began = time.perf_counter()
        starts: list[asyncio.Task[None]] = []
        for n, saga_id in enumerate(paced):
            delay = began + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            starts.append(asyncio.create_task(sagas.start(saga_id)))
        await asyncio.gather(*starts)
        await sagas.all_ended(timeout=STEP_TIMEOUT * 4)
        done = sagas.completed(paced)
        took = sorted((sagas.ended[i][0] - sagas.started[i]) * 1000 for i in done)
    p50 = statistics.median(took)
    p99 = took[min(len(took) - 1, int(len(took) * 0.99))]
    ctx.facts["rate"] = f"{rate:.0f}/s"
    ctx.facts["p50"] = f"{p50:.0f} ms"
    ctx.facts["completed"] = f"{len(done)}/{count}"
    return p99


def throughput(ctx: Context) -> float:
    return asyncio.run(_throughput(ctx))


def latency(ctx: Context) -> float:
    return asyncio.run(_latency(ctx))


class PeerUnavailable(Exception):
    """The peer cannot run here; the message says why (it goes into the notes)."""


def _peer(mode: str, ctx: Context) -> float:
    import json
    import subprocess
    import sys
    from pathlib import Path

    from bench import saga_peer

    if ctx.backend.name != "nats":
        raise PeerUnavailable("natsaga runs on NATS JetStream + PostgreSQL only (--backend nats)")
    reason = saga_peer.unavailable()
    if reason is not None:
        raise PeerUnavailable(reason)
    postgres = PostgresBackend()
    reason = postgres.unavailable()
    if reason is not None:
        raise PeerUnavailable(reason)
    schema = postgres.schema(f"{ctx.workdir.name}-natsaga")
    postgres.create_schema(schema)
    namespace = getattr(ctx.backend, "namespace", lambda w: "natsaga")(ctx.workdir)
    sizes = {
        "saga_burst": ctx.sizes.saga_burst,
        "saga_paced": ctx.sizes.saga_paced,
        "saga_rate": ctx.sizes.saga_rate,
    }
    try:
        done = subprocess.run(
            [
                sys.executable,
                str(Path(saga_peer.__file__)),
                mode,
                postgres.url,
                schema,
                getattr(ctx.backend, "server", "nats://127.0.0.1:4222"),
                namespace,
                json.dumps(sizes),
            ],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
    finally:
        postgres._admin(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
        raise PeerUnavailable(f"natsaga failed here: {tail[0]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    for key, value in result["facts"].items():
        ctx.facts[key] = value
    return float(result["value"])


def peer_throughput(ctx: Context) -> float:
    return _peer("tp", ctx)


def peer_latency(ctx: Context) -> float:
    return _peer("lat", ctx)
