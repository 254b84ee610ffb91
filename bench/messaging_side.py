"""The messaging workloads (issue 5), eventcore only: the eventsourcing library has no relay,
no bus and no subscriber to compare with.

j: relay throughput — a populated store's events published by ``Relay`` to the bus (events/s).
k: end-to-end latency — service A appends at a steady rate, its relay publishes, service B's
   ``Subscriber`` runs a command per event on B's store; p99 from A's append returning to
   B's command having committed (ms).
k (cross-process hop, SQLite only): A appends one event at a time at an idle pace
   (``K_HOP_RATE``/s); a ``LogFollower`` on the same store file in another process notes when
   each event reached it; p99 of that one hop (ms). Before it starts, the follower's process
   CPU is measured while it waits on an idle store (a fact).
l: bus throughput — publish in batches while one consumer fetches batches and acks (msgs/s).

On the SQLite and NATS buses, service B of k runs in a process of its own, started as

    python bench/messaging_side.py k-subscriber <bus url> <store url> <warm-up> <count> <out>

The follower of the cross-process hop is started as

    python bench/messaging_side.py k-follower <store url> <count> <out>

It prints ``ready`` once it waits at the head, then ``cpu <percent of one core>`` after
``K_HOP_IDLE`` s of waiting with nothing appended; once it has had ``count`` events it
writes ``{number: time.monotonic()}`` to ``out``, prints ``done`` and exits.

Service B prints ``warm`` once it has handled the warm-up events; once it has handled the others
it writes to file ``out`` one JSON object (for each event number, the ``time.monotonic()``
its handler was called and its command committed; the clock is system-wide), prints
``done`` and exits. On the memory bus, which lives in one process, B runs
beside A. Besides the p99, k's facts break the latency down: A's append → the relay's
publish acknowledged → B's handler called → B's command committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

if __package__ in {None, ""}:  # run as a script: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Backend, Context, Sizes, Stopwatch
from eventcore import (
    Command,
    Event,
    EventRegistry,
    EventStore,
    Executor,
    StreamId,
    Writes,
    open_store,
)
from eventcore.messaging import Bus, OutgoingMessage, TopicMap, open_bus
from eventcore.messaging.envelope import DistributedEvent, encode_envelope
from eventcore.messaging.inbox import Received
from eventcore.messaging.relay import Relay
from eventcore.messaging.subscriber import Subscriber
from eventcore.store.follower import LogFollower
from eventcore.types import NewEvent

__all__ = ["WORKLOADS", "describe", "measure", "measure_raw"]

SERVICE = "orders"
TOPIC = "orders"
GROUP = "shipping"
#: Messages per publish and per fetch in l (and the raw sides' transaction size in j).
L_BATCH = 500
#: Events per stream when populating j's store: many streams, spread over the partitions.
J_STREAM_EVENTS = 50
#: Streams A appends to in k (one append per event).
K_STREAMS = 64
K_WARM_UP = 20
#: The cross-process hop of k: appends per second (each finds the follower waiting), and
#: how long the follower's idle CPU is measured.
K_HOP_RATE = 50.0
K_HOP_IDLE = 3.0
_SCRIPT = Path(__file__).resolve()

registry = EventRegistry()


@registry.register
class OrderPlaced(Event):
    """About 300 bytes of JSON: the size of a typical domain event."""

    number: int
    customer: str
    lines: list[str]


@registry.register
class ShipmentRequested(Event):
    number: int


class RequestShipment(Command[int]):
    """Service B's reaction: one event on the customer's shipment stream."""

    shipments: StreamId
    number: int

    def initial_state(self) -> int:
        return 0

    def apply(self, state: int, stream_id: StreamId, event: Event) -> int:
        return state + 1

    def handle(self, state: int) -> Writes:
        return {self.shipments: [ShipmentRequested(number=self.number)]}


TOPICS = TopicMap({OrderPlaced: TOPIC})


def _order(number: int) -> OrderPlaced:
    lines = [
        f"sku-{(number * 7 + i) % 100_000:05d}:qty-{i + 1}:price-{i * 1999:06d}" for i in range(8)
    ]
    return OrderPlaced(number=number, customer=f"customer-{number % 1_000:04d}", lines=lines)


def _messages(count: int) -> list[OutgoingMessage]:
    """``count`` messages shaped as the relay publishes them (envelopes of ``OrderPlaced``
    events on many streams), for the sides that publish without a store."""
    now = datetime.now(UTC)
    messages = []
    for number in range(count):
        event = registry.encode(_order(number))
        stream = f"order-{number // J_STREAM_EVENTS}"
        envelope = DistributedEvent(
            specversion="1.0",
            datacontenttype="application/json",
            id=str(event.event_id),
            source=SERVICE,
            type=event.type,
            subject=stream,
            time=now,
            data=msgspec.Raw(event.data),
            streamversion=str(number % J_STREAM_EVENTS + 1),
            publishedat=now.isoformat().replace("+00:00", "Z"),
        )
        messages.append(OutgoingMessage(TOPIC, envelope.id, stream, encode_envelope(envelope)))
    return messages


async def _populate(store: EventStore, count: int, per_append: int = 1_000) -> int:
    """Append ``count`` events, ``J_STREAM_EVENTS`` per new stream; the last position."""
    last = 0
    for start in range(0, count, per_append):
        writes: dict[StreamId, list[NewEvent]] = {}
        for number in range(start, min(start + per_append, count)):
            stream = StreamId(f"order-{number // J_STREAM_EVENTS}")
            writes.setdefault(stream, []).append(registry.encode(_order(number)))
        # per_append is a multiple of J_STREAM_EVENTS, so every stream here is new.
        result = await store.append(writes, expected=dict.fromkeys(writes, 0))
        last = result.last_position
    return last


async def _until_published(relay: Relay, running: asyncio.Task[None], position: int) -> None:
    """Wait for the relay to reach ``position``; raise what stopped it if it stopped first."""
    reaching = asyncio.ensure_future(relay.published(position))
    try:
        await asyncio.wait({reaching, running}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not reaching.done():
            reaching.cancel()
    if running.done():
        running.result()  # raises what stopped the relay
        raise RuntimeError(f"the relay stopped at {relay.position}, before {position}")
    reaching.result()


async def _stop(relay: Relay, running: asyncio.Task[None]) -> None:
    relay.stop()
    await running


# j ----------------------------------------------------------------------------------------


async def j_relay_throughput(ctx: Context) -> float:
    count = ctx.sizes.relay_events
    stopwatch = Stopwatch()
    async with await open_store(ctx.backend.eventcore_url(ctx.workdir)) as store:
        last = await _populate(store, count)
        bus = await open_bus(ctx.backend.bus_url(ctx.workdir))
        try:
            relay = Relay(store, bus, TOPICS, service=SERVICE)
            with stopwatch.running():
                running = asyncio.create_task(relay.run())
                # A stuck relay fails the measurement instead of hanging the run.
                async with asyncio.timeout(60 + count / 1_000):
                    await _until_published(relay, running, last)
            await _stop(relay, running)
            status = relay.status()
            if status.published != count:
                raise RuntimeError(f"the relay published {status.published} of {count}")
        finally:
            await bus.aclose()
    return stopwatch.rate(count)


# k ----------------------------------------------------------------------------------------


class _ServiceB:
    """Handles each ``OrderPlaced`` with a command on its own store, noting when the
    handler was called and when the command committed. Event numbers below zero are the
    warm-up."""

    def __init__(self, bus: Bus, store: EventStore, warm_up: int, count: int) -> None:
        self.executor = Executor(store, registry, cache_size=1_000)
        self.subscriber = Subscriber(
            bus, TOPIC, {OrderPlaced: self._handle}, group=GROUP, registry=registry
        )
        self.received: dict[int, float] = {}
        self.committed: dict[int, float] = {}
        self._warm_up_left = warm_up
        self._left = count
        self.warm = asyncio.Event()
        self.done = asyncio.Event()
        if warm_up == 0:
            self.warm.set()

    async def _handle(self, received: Received) -> None:
        called = time.monotonic()
        event = received.event
        assert isinstance(event, OrderPlaced)
        command = RequestShipment(
            shipments=StreamId(f"shipments-{event.customer}"), number=event.number
        )
        await received.run(self.executor, command)
        committed = time.monotonic()
        if event.number < 0:
            self._warm_up_left -= 1
            if self._warm_up_left <= 0:
                self.warm.set()
        elif event.number not in self.committed:  # a redelivery keeps the first commit
            self.received[event.number] = called
            self.committed[event.number] = committed
            self._left -= 1
            if self._left <= 0:
                self.done.set()


async def _serve_b(bus_url: str, store_url: str, warm_up: int, count: int, out: Path) -> None:
    """Service B in a process of its own (see the module docs)."""
    async with await open_store(store_url) as store:
        bus = await open_bus(bus_url)
        try:
            service = _ServiceB(bus, store, warm_up, count)
            async with asyncio.TaskGroup() as group:
                group.create_task(service.subscriber.run())
                await service.warm.wait()
                print("warm", flush=True)
                await service.done.wait()
                service.subscriber.stop()
            moments = {
                "received": service.received,
                "committed": service.committed,
                "status": msgspec.to_builtins(service.subscriber.status()),
            }
            out.write_bytes(msgspec.json.encode(moments))  # noqa: ASYNC240 (after the clock)
            print("done", flush=True)
        finally:
            await bus.aclose()


class _RemoteB:
    """Service B as a child process, read through its stdout."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(
        cls, bus_url: str, store_url: str, warm_up: int, count: int, out: Path
    ) -> _RemoteB:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(_SCRIPT),
            "k-subscriber",
            bus_url,
            store_url,
            str(warm_up),
            str(count),
            str(out),
            stdout=asyncio.subprocess.PIPE,
        )
        return cls(process)

    async def line(self, timeout: float) -> str:  # noqa: ASYNC109
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        if not line:
            code = await self.process.wait()
            raise RuntimeError(f"service B exited ({code}) before saying what it did")
        return line.decode().strip()

    async def close(self) -> None:
        if self.process.returncode is None:
            try:
                await asyncio.wait_for(self.process.wait(), 30)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


class _Moments(msgspec.Struct):
    """When each measured event (by number) passed each point on its way."""

    appended: dict[int, float] = msgspec.field(default_factory=dict)
    published: dict[int, float] = msgspec.field(default_factory=dict)
    received: dict[int, float] = msgspec.field(default_factory=dict)
    committed: dict[int, float] = msgspec.field(default_factory=dict)
    #: Event id → number, to know which event a published message carries.
    numbers: dict[str, int] = msgspec.field(default_factory=dict)
    #: B's ``Subscriber.status()`` at the end.
    subscriber: dict[str, Any] = msgspec.field(default_factory=dict)


class _BSide(msgspec.Struct):
    received: dict[int, float]
    committed: dict[int, float]
    status: dict[str, Any]


class _PublishClock:
    """A's bus, noting when the publish of each measured event was acknowledged."""

    def __init__(self, bus: Bus, moments: _Moments) -> None:
        self._bus = bus
        self._moments = moments

    def __getattr__(self, name: str) -> Any:
        return getattr(self._bus, name)

    async def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        await self._bus.publish(messages)
        now = time.monotonic()
        numbers, published = self._moments.numbers, self._moments.published
        for message in messages:
            number = numbers.get(message.message_id)
            if number is not None:
                published.setdefault(number, now)


async def _append_paced(
    store: EventStore, numbers: range, rate: float, moments: _Moments | None
) -> None:
    """Append one event per number, each on its own, starting one every ``1/rate`` s
    (at once when behind); note when each append returned."""
    versions: dict[StreamId, int] = {}
    started = time.monotonic()
    for index, number in enumerate(numbers):
        delay = started + index / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        stream = StreamId(f"customer-{number % K_STREAMS}" if number >= 0 else "warm-up")
        version = versions.get(stream, 0)
        event = registry.encode(_order(number))
        if moments is not None:
            moments.numbers[str(event.event_id)] = number
        await store.append({stream: [event]}, expected={stream: version})
        if moments is not None:
            moments.appended[number] = time.monotonic()
        versions[stream] = version + 1


async def k_end_to_end_latency(ctx: Context) -> float:
    count, rate = ctx.sizes.paced_events, ctx.sizes.paced_rate
    backend = ctx.backend
    in_process = backend.name == "memory"
    store_b_url = "memory://" if in_process else _file_url(backend, ctx.workdir / "b.db")
    moments = _Moments()
    async with await open_store(backend.eventcore_url(ctx.workdir)) as store_a:
        bus = await open_bus(backend.bus_url(ctx.workdir))
        relay = Relay(store_a, _PublishClock(bus, moments), TOPICS, service=SERVICE)  # type: ignore[arg-type]
        running = asyncio.create_task(relay.run())
        try:
            if in_process:
                await _k_in_process(store_a, bus, store_b_url, count, rate, moments)
            else:
                bus_url, out = backend.bus_url(ctx.workdir), ctx.workdir / "b.json"
                await _k_with_remote_b(store_a, bus_url, store_b_url, count, rate, moments, out)
            await _stop(relay, running)
        finally:
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
            await bus.aclose()
    return _latency_facts(ctx, moments, count)


def _latency_facts(ctx: Context, moments: _Moments, count: int) -> float:
    """The p99 from append to commit; p50, the worst, and p50/p99 of each leg as facts."""
    legs = (
        ("total", moments.appended, moments.committed),
        ("append_to_published", moments.appended, moments.published),
        ("published_to_handler", moments.published, moments.received),
        ("handler_to_commit", moments.received, moments.committed),
    )
    p99 = 0.0
    for name, since, until in legs:
        latencies = [(until[n] - since[n]) * 1_000 for n in range(count)]
        cuts = statistics.quantiles(latencies, n=100)
        if name == "total":
            p99 = cuts[98]
            ctx.facts["p50_ms"] = f"{cuts[49]:.2f}"
            ctx.facts["max_ms"] = f"{max(latencies):.2f}"
        else:
            ctx.facts[f"{name}_p50_p99_ms"] = f"{cuts[49]:.2f}/{cuts[98]:.2f}"
    appending = moments.appended[count - 1] - moments.appended[0]
    if appending > 0:
        ctx.facts["a_appends_per_s"] = f"{(count - 1) / appending:,.0f}"
    status = moments.subscriber
    ctx.facts["b_handled_retried_dead"] = (
        f"{status.get('handled')}/{status.get('retried')}/{status.get('dead_lettered')}"
    )
    if status.get("last_error"):
        ctx.facts["b_last_error"] = str(status["last_error"])
    return p99


async def _k_in_process(
    store_a: EventStore,
    bus: Bus,
    store_b_url: str,
    count: int,
    rate: float,
    moments: _Moments,
) -> None:
    async with await open_store(store_b_url) as store_b:
        service = _ServiceB(bus, store_b, K_WARM_UP, count)
        async with asyncio.TaskGroup() as group:
            group.create_task(service.subscriber.run())
            await _append_paced(store_a, range(-K_WARM_UP, 0), 100.0, None)
            async with asyncio.timeout(60):
                await service.warm.wait()
            await _append_paced(store_a, range(count), rate, moments)
            async with asyncio.timeout(60):
                await service.done.wait()
            service.subscriber.stop()
        moments.received, moments.committed = service.received, service.committed
        moments.subscriber = msgspec.to_builtins(service.subscriber.status())


async def _k_with_remote_b(
    store_a: EventStore,
    bus_url: str,
    store_b_url: str,
    count: int,
    rate: float,
    moments: _Moments,
    out: Path,
) -> None:
    remote = await _RemoteB.start(bus_url, store_b_url, K_WARM_UP, count, out)
    try:
        await _append_paced(store_a, range(-K_WARM_UP, 0), 100.0, None)
        if (said := await remote.line(timeout=60)) != "warm":
            raise RuntimeError(f"service B said {said!r}, not 'warm'")
        await _append_paced(store_a, range(count), rate, moments)
        if (said := await remote.line(timeout=60 + count / rate)) != "done":
            raise RuntimeError(f"service B said {said!r}, not 'done'")
        b_side = msgspec.json.decode(out.read_bytes(), type=_BSide)  # noqa: ASYNC240
        moments.received, moments.committed = b_side.received, b_side.committed
        moments.subscriber = b_side.status
    finally:
        await remote.close()


async def _follow_hop(store_url: str, count: int, out: Path) -> None:
    """The far end of k's cross-process hop (see the module docs)."""
    async with await open_store(store_url, create=False) as store:
        follower = LogFollower(store, after=await store.last_position())
        arrived: dict[int, float] = {}
        following = asyncio.create_task(_note_arrivals(follower, count, arrived))
        await follower.reached(await store.last_position())
        print("ready", flush=True)
        cpu, wall = time.process_time(), time.monotonic()
        await asyncio.sleep(K_HOP_IDLE)
        share = (time.process_time() - cpu) / (time.monotonic() - wall) * 100
        print(f"cpu {share:.2f}", flush=True)
        await following
        out.write_bytes(msgspec.json.encode(arrived))  # noqa: ASYNC240 (after the clock)
        print("done", flush=True)


async def _note_arrivals(follower: LogFollower, count: int, arrived: dict[int, float]) -> None:
    async for batch in follower.batches():
        now = time.monotonic()
        for event in batch:
            arrived[msgspec.json.decode(event.data, type=OrderPlaced).number] = now
        if len(arrived) >= count:
            follower.stop()


async def k_cross_process_hop(ctx: Context) -> float:
    count = max(ctx.sizes.paced_events // 20, 100)
    store_url = ctx.backend.eventcore_url(ctx.workdir)
    moments = _Moments()
    out = ctx.workdir / "hop.json"
    async with await open_store(store_url) as store:
        await _append_paced(store, range(-K_WARM_UP, 0), 100.0, None)
        follower = await asyncio.create_subprocess_exec(
            sys.executable,
            str(_SCRIPT),
            "k-follower",
            store_url,
            str(count),
            str(out),
            stdout=asyncio.subprocess.PIPE,
        )
        remote = _RemoteB(follower)
        try:
            if (said := await remote.line(timeout=60)) != "ready":
                raise RuntimeError(f"the follower said {said!r}, not 'ready'")
            cpu = await remote.line(timeout=60 + K_HOP_IDLE)
            ctx.facts["idle_follower_cpu_percent"] = cpu.removeprefix("cpu ")
            await _append_paced(store, range(count), K_HOP_RATE, moments)
            if (said := await remote.line(timeout=60 + count / K_HOP_RATE)) != "done":
                raise RuntimeError(f"the follower said {said!r}, not 'done'")
        finally:
            await remote.close()
    arrived = msgspec.json.decode(out.read_bytes(), type=dict[int, float])
    hops = [(arrived[n] - moments.appended[n]) * 1_000 for n in range(count)]
    cuts = statistics.quantiles(hops, n=100)
    ctx.facts["p50_ms"] = f"{cuts[49]:.2f}"
    ctx.facts["max_ms"] = f"{max(hops):.2f}"
    return cuts[98]


def _file_url(backend: Backend, path: Path) -> str:
    file_url: Callable[[Path], str] = backend.file_url  # type: ignore[attr-defined]
    return file_url(path)


# l ----------------------------------------------------------------------------------------


async def l_bus_throughput(ctx: Context) -> float:
    count = ctx.sizes.bus_messages
    messages = _messages(count)
    stopwatch = Stopwatch()
    bus = await open_bus(ctx.backend.bus_url(ctx.workdir))
    try:
        consumer = await bus.consumer(TOPIC, GROUP)

        async def publish() -> None:
            for start in range(0, count, L_BATCH):
                await bus.publish(messages[start : start + L_BATCH])

        async def consume() -> None:
            seen: set[str] = set()
            while len(seen) < count:
                deliveries = await consumer.fetch(L_BATCH, 1.0)
                if deliveries:
                    await consumer.ack(deliveries)
                    seen.update(delivery.message_id for delivery in deliveries)

        with stopwatch.running():
            async with asyncio.timeout(60 + count / 100), asyncio.TaskGroup() as group:
                group.create_task(publish())
                group.create_task(consume())
        await consumer.aclose()
    finally:
        await bus.aclose()
    return stopwatch.rate(count)


# raw sides ---------------------------------------------------------------------------------


def _raw_sqlite_publish(ctx: Context, with_consumer: bool) -> float:
    """The raw SQLite side of j (inserts only) and l (inserts, then per batch a select of
    what follows the group's offsets and an offset update): the bus file's own tables and
    pragmas (WAL, synchronous=FULL), one transaction per batch, nothing else."""
    from eventcore.messaging.bus import partition_of
    from eventcore.messaging.sqlite._schema import connect

    count = ctx.sizes.bus_messages if with_consumer else ctx.sizes.relay_events
    batch = L_BATCH if with_consumer else 512
    path = str((ctx.workdir / "raw-bus.db").resolve())
    connection = connect(f"sqlite://{path}", path, create=True)
    rows = []
    heads: dict[int, int] = {}
    for message in _messages(count):
        partition = partition_of(message.key, 8)
        heads[partition] = heads.get(partition, 0) + 1
        rows.append(
            (TOPIC, partition, heads[partition], message.message_id, message.key, message.body)
        )
    connection.execute(
        "INSERT INTO bus_offsets VALUES "
        + ", ".join(f"('{GROUP}', '{TOPIC}', {partition}, 0)" for partition in range(8))
    )
    insert = (
        "INSERT OR IGNORE INTO bus_messages (topic, partition, seq, message_id, key, body,"
        " published_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
    )
    select = (
        "SELECT m.partition, m.seq, m.message_id, m.key, m.body, m.published_at"
        " FROM bus_offsets o JOIN bus_messages m ON m.topic = o.topic"
        " AND m.partition = o.partition AND m.seq > o.committed"
        " WHERE o.grp = ? AND o.topic = ? ORDER BY m.partition, m.seq LIMIT ?"
    )
    update = "UPDATE bus_offsets SET committed = ? WHERE grp = ? AND topic = ? AND partition = ?"
    consumed = 0
    stopwatch = Stopwatch()
    try:
        with stopwatch.running():
            for start in range(0, count, batch):
                now = time.time()
                connection.execute("BEGIN IMMEDIATE")
                connection.executemany(insert, [(*row, now) for row in rows[start : start + batch]])
                connection.execute("COMMIT")
                if with_consumer:
                    fetched = connection.execute(select, (GROUP, TOPIC, batch)).fetchall()
                    offsets: dict[int, int] = {}
                    for partition, seq, *_ in fetched:
                        offsets[partition] = seq
                    connection.execute("BEGIN IMMEDIATE")
                    connection.executemany(
                        update, [(seq, GROUP, TOPIC, part) for part, seq in offsets.items()]
                    )
                    connection.execute("COMMIT")
                    consumed += len(fetched)
    finally:
        connection.close()
    if with_consumer and consumed != count:
        raise RuntimeError(f"the raw consumer saw {consumed} of {count}")
    return stopwatch.rate(count)


def _raw(name: str, ctx: Context) -> float:
    if ctx.backend.name == "nats":
        from bench import raw_nats

        namespace: str = ctx.backend.namespace(ctx.workdir)  # type: ignore[attr-defined]
        server: str = ctx.backend.server  # type: ignore[attr-defined]
        if name == "j_relay_throughput":
            messages = _messages(ctx.sizes.relay_events)
            return asyncio.run(raw_nats.publish_rate(server, namespace, messages))
        messages = _messages(ctx.sizes.bus_messages)
        return asyncio.run(raw_nats.through_rate(server, namespace, messages, L_BATCH))
    return _raw_sqlite_publish(ctx, with_consumer=name == "l_bus_throughput")


# the harness's view ----------------------------------------------------------------------

WORKLOADS = {
    "j_relay_throughput": j_relay_throughput,
    "k_end_to_end_latency_p99": k_end_to_end_latency,
    "k_cross_process_hop_p99": k_cross_process_hop,
    "l_bus_throughput": l_bus_throughput,
}


def measure(name: str) -> Callable[[Context], float]:
    return lambda ctx: asyncio.run(WORKLOADS[name](ctx))


def measure_raw(name: str) -> Callable[[Context], float]:
    return lambda ctx: _raw(name, ctx)


def _store_of(backend: Backend) -> str:
    if backend.name == "memory":
        return "memory:// stores"
    synchronous = getattr(backend, "synchronous", "?")
    return f"SQLite file stores (WAL, synchronous={synchronous})"


def describe(name: str, sizes: Sizes, backend: Backend, *, raw: bool) -> str:
    """What a messaging workload did on ``backend``, for the notes."""
    bus = {"nats": "NATS JetStream", "sqlite": "the SQLite bus", "memory": "the memory bus"}
    on = bus.get(backend.name, backend.name)
    if name == "j_relay_throughput":
        note = (
            f"{sizes.relay_events:,} events (~300-byte payloads, {J_STREAM_EVENTS} per stream) "
            f"appended untimed to {_store_of(backend)}, then Relay (default window and batch) "
            f"from checkpoint 0 until published(last position) to {on}; eventsourcing has no "
            "relay"
        )
        if backend.name == "nats":
            note += (
                "; raw = nats-py js.publish_async of the same number of pre-encoded envelopes "
                "with Nats-Msg-Id headers to a fresh file-backed stream, all acks awaited"
            )
        elif backend.name == "sqlite" and raw:
            note += (
                "; raw = sqlite3 executemany of the same messages into the bus file's "
                "bus_messages table (same pragmas), 512 per transaction: a floor for what "
                "the bus's publish costs, not a relay"
            )
        return note
    if name == "k_cross_process_hop_p99":
        return (
            f"A appends {max(sizes.paced_events // 20, 100):,} events one at a time at "
            f"{K_HOP_RATE:.0f}/s to a SQLite file store; a LogFollower on the same file in "
            "another process notes each one's arrival; value = p99 of append returning → "
            "batch handed to the follower (p50, max and the waiting follower's CPU over "
            f"{K_HOP_IDLE:.0f} s idle in facts); eventsourcing has no follower woken "
            "from another process (its runners prompt followers within one process)"
        )
    if name == "k_end_to_end_latency_p99":
        where = "in the same process" if backend.name == "memory" else "in its own process"
        return (
            f"service A appends {sizes.paced_events:,} events one at a time at "
            f"{sizes.paced_rate:,}/s to its store, its Relay publishes to {on}; service B "
            f"({where}) handles each with Subscriber + received.run(executor, command) on its "
            f"own store (inbox + commit); latency = A's append returning → B's command "
            f"committed, value = p99 (p50 in facts); {_store_of(backend)}; after "
            f"{K_WARM_UP} warm-up events; eventsourcing has no equivalent"
        )
    note = (
        f"{sizes.bus_messages:,} messages (~650-byte envelopes) published {L_BATCH} per call "
        f"while one consumer fetches up to {L_BATCH} and acks each batch, on {on}, until all "
        "were acknowledged; eventsourcing has no bus"
    )
    if backend.name == "nats":
        note += (
            "; raw = nats-py publish_async of the same messages while one pull consumer "
            f"(explicit ack) fetches {L_BATCH} at a time and acks each message"
        )
    elif backend.name == "sqlite" and raw:
        note += (
            "; raw = sqlite3 on the bus file's own tables: per batch one insert transaction, "
            "then a select past the group's offsets and an offset update (no per-delivery "
            "bookkeeping, no leases)"
        )
    return note


if __name__ == "__main__":
    if sys.argv[1:2] == ["k-follower"] and len(sys.argv) == 5:
        asyncio.run(_follow_hop(sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])))
        raise SystemExit(0)
    if sys.argv[1:2] != ["k-subscriber"] or len(sys.argv) != 7:
        raise SystemExit(__doc__)
    bus_url, store_url, warm_up, count, out = sys.argv[2:]
    asyncio.run(_serve_b(bus_url, store_url, int(warm_up), int(count), Path(out)))
