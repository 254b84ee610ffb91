"""What observability costs: workloads b (64 concurrent commands) and j (the relay
publishing a populated log) run plain and with the hooks installed, in turn, and the
medians compared.

    python bench/run.py --only b --overhead --json                   # b, SQLite
    python bench/run.py --backend nats --only j --overhead --json    # j, relay → NATS

Setups, each installed as the process default (``install_hooks``) before the
workload builds its store, executor and relay:

* ``plain`` — no hooks;
* ``empty-hook`` — a hook that overrides nothing: it resolves to no hooks at all, so this
  is plain again (the seam calls only the methods a hook overrides), for reference;
* ``every-method-hook`` — a hook that overrides every method with one that does nothing:
  the seam's own cost (records, timing, one contained call each), for reference;
* ``metrics`` — the Prometheus metrics hooks alone, on a registry of their own per run
  (a scrape is not part of it), for reference;
* ``otel-api`` — ``install_hooks(tracing_hooks())`` with OpenTelemetry's API alone, no
  SDK configured: nothing could be recorded, so that installs nothing (target: at most
  2% slower than plain);
* ``otel-api-hooks`` — ``OpenTelemetryHooks()`` installed all the same, without an SDK:
  they start no span but pass on a current span's context, for reference;
* ``otel-sdk`` — the tracing hooks on the SDK, sampling every trace into a
  ``BatchSpanProcessor`` whose exporter drops the spans (what is measured is eventcore
  and the SDK, not a collector), plus every hook in ``SDK_EXTRAS`` (target: at most 15%
  slower): the metrics hooks, so the setup is ``otel-sdk+metrics``;
* ``otel-sdk-10pct`` — the same keeping one trace in ten (``ParentBased(
  TraceIdRatioBased(0.1))``), for reference: what sampling buys back;
* ``sdk-bare-spans`` — not our hooks: the least a tracer could do for the spans the issue
  asks of b (a command span made current, an append span under it; no attributes, no
  trace context into metadata) on the same SDK setup, for reference: the SDK's own floor.

For j every event carries a trace context of its own (as if each came from a separate
request), so each batch span gets its full share of links. The setups rotate within
each repetition so none always runs first; each prints one JSON line: its median, the
plain median, how much slower it is and whether that meets the target, and the CPU
time per operation beside plain's (steadier on a shared machine than throughput).
"""

from __future__ import annotations

import asyncio
import gc
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import msgspec
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_ON,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)
from prometheus_client import CollectorRegistry

from bench import eventcore_side, messaging_side
from bench.common import Backend, Context, Sizes, split
from eventcore import EventStore, Executor, Metadata, StreamId, open_store
from eventcore.instrumentation import (
    AppendFinished,
    AppendStarted,
    CommandFailed,
    CommandFinished,
    CommandStarted,
    Hooks,
    install_hooks,
)
from eventcore.messaging import open_bus
from eventcore.messaging.relay import Relay
from eventcore.observability import OpenTelemetryHooks, PrometheusHooks, tracing_hooks
from eventcore.types import NewEvent

__all__ = ["SDK_EXTRAS", "WORKLOADS", "OverheadRow", "measure_overhead", "setups"]


def _fresh_metrics() -> Hooks:
    """Metrics hooks on a registry of their own, so each run starts from nothing."""
    return PrometheusHooks(CollectorRegistry())


#: Hooks the ``otel-sdk`` setup installs beside tracing, by name.
SDK_EXTRAS: dict[str, Callable[[], Hooks]] = {"metrics": _fresh_metrics}


class _Dropped(SpanExporter):
    """Takes every batch and keeps nothing."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


@dataclass(frozen=True)
class Setup:
    name: str
    #: Percent slower than plain it may be; None for plain itself.
    max_slower: float | None
    #: Installs its hooks; returns what to call once the workload is done.
    install: Callable[[], Callable[[], None]]


def _plain() -> Callable[[], None]:
    install_hooks()
    return lambda: None


def _api_only() -> Callable[[], None]:
    # The global tracer provider is never set in the benchmark's process: the API's own,
    # which hands out non-recording spans, as in a service without the SDK.
    install_hooks(tracing_hooks())
    return install_hooks


def _api_hooks() -> Callable[[], None]:
    install_hooks(OpenTelemetryHooks())
    return install_hooks


def _sdk(sampler: Sampler = ALWAYS_ON) -> Callable[[], None]:
    provider = TracerProvider(sampler=sampler)
    provider.add_span_processor(BatchSpanProcessor(_Dropped()))
    install_hooks(tracing_hooks(provider), *(make() for make in SDK_EXTRAS.values()))

    def finish() -> None:
        install_hooks()
        provider.shutdown()

    return finish


def _empty_hook() -> Callable[[], None]:
    install_hooks(Hooks())
    return install_hooks


def _metrics() -> Callable[[], None]:
    install_hooks(_fresh_metrics())
    return install_hooks


def _does_nothing(name: str) -> Callable[..., Any]:
    if name == "append_metadata":
        return lambda self, metadata: metadata
    return lambda self, *_: None


#: A hook with every method of the seam overridden by one that does nothing.
_Listening = type(
    "_Listening",
    (Hooks,),
    {
        name: _does_nothing(name)
        for name, value in vars(Hooks).items()
        if not name.startswith("_") and callable(value)
    },
)


def _every_method_hook() -> Callable[[], None]:
    install_hooks(_Listening())
    return install_hooks


class _BareSpans(Hooks):
    """A command span, current while the command runs, and an append span under it."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self._tracer = tracer

    def command_started(self, event: CommandStarted) -> object:
        span = self._tracer.start_span(event.command)
        return span, otel_context.attach(trace.set_span_in_context(span))

    def command_finished(self, event: CommandFinished, scope: object) -> None:
        span, token = cast(tuple[trace.Span, Any], scope)
        otel_context.detach(token)
        span.end()

    def command_failed(self, event: CommandFailed, scope: object) -> None:
        self.command_finished(cast(CommandFinished, event), scope)

    def append_started(self, event: AppendStarted) -> object:
        return self._tracer.start_span("append")

    def append_finished(self, event: AppendFinished, scope: object) -> None:
        cast(trace.Span, scope).end()


def _sdk_bare() -> Callable[[], None]:
    provider = TracerProvider(sampler=ALWAYS_ON)
    provider.add_span_processor(BatchSpanProcessor(_Dropped()))
    install_hooks(_BareSpans(provider.get_tracer("bench")))

    def finish() -> None:
        install_hooks()
        provider.shutdown()

    return finish


def setups() -> list[Setup]:
    sdk_name = "+".join(["otel-sdk", *SDK_EXTRAS])
    return [
        Setup("plain", None, _plain),
        # A hook that overrides nothing resolves to none: plain again, for reference.
        Setup("empty-hook", None, _empty_hook),
        # The seam's own cost: what is left of otel-api-hooks' figure past it is the
        # tracing hooks' own.
        Setup("every-method-hook", None, _every_method_hook),
        Setup("metrics", None, _metrics),
        Setup("otel-api", 2.0, _api_only),
        Setup("otel-api-hooks", None, _api_hooks),
        Setup(sdk_name, 15.0, _sdk),
        # What an operator does when every trace costs too much: keep one in ten.
        Setup("otel-sdk-10pct", None, lambda: _sdk(ParentBased(TraceIdRatioBased(0.1)))),
        Setup("sdk-bare-spans", None, _sdk_bare),
    ]


# --- the workloads -----------------------------------------------------------------------


class _Clock:
    """Wall and CPU seconds of what runs inside ``with clock:`` (collected first). CPU
    time is the process's, its threads' included (SQLite's): less swayed than wall time
    by whatever else the machine runs, it is the steadier view of what tracing adds."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0

    def __enter__(self) -> _Clock:
        gc.collect()
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *_: object) -> None:
        self.wall += time.perf_counter() - self._wall
        self.cpu += time.process_time() - self._cpu

    def sample(self, count: int) -> Sample:
        return Sample(rate=count / self.wall, cpu_us=self.cpu / count * 1e6)


@dataclass(frozen=True)
class Sample:
    #: Operations per second (wall clock).
    rate: float
    #: CPU microseconds per operation.
    cpu_us: float


async def _b_concurrent(ctx: Context) -> Sample:
    """Workload b as ``eventcore_side`` runs it: new streams, 64 commands at a time."""
    count = ctx.sizes.concurrent_streams
    commands = [
        eventcore_side.OpenAccount(account=eventcore_side.account(index), owner="bench")
        for index in range(count)
    ]
    async with eventcore_side.opened(ctx.backend.eventcore_url(ctx.workdir)) as store:
        executor = Executor(store, eventcore_side.registry)

        async def worker(mine: list[eventcore_side.OpenAccount]) -> None:
            for command in mine:
                await executor.execute(command)

        shares, start = [], 0
        for quota in split(count, ctx.sizes.concurrency):
            shares.append(commands[start : start + quota])
            start += quota
        clock = _Clock()
        with clock:
            async with asyncio.TaskGroup() as group:
                for share in shares:
                    group.create_task(worker(share))
        return clock.sample(count)


def _b(ctx: Context) -> Sample:
    return asyncio.run(_b_concurrent(ctx))


def _traceparent(rng: random.Random) -> str:
    return f"00-{rng.getrandbits(128):032x}-{rng.getrandbits(64):016x}-01"


async def _populate_traced(store: EventStore, count: int, per_append: int = 1_000) -> int:
    """As j's populating, each event with a trace context of its own."""
    rng = random.Random(7)
    last = 0
    for start in range(0, count, per_append):
        writes: dict[StreamId, list[NewEvent]] = {}
        for number in range(start, min(start + per_append, count)):
            stream = StreamId(f"order-{number // messaging_side.J_STREAM_EVENTS}")
            event = messaging_side.registry.encode(messaging_side._order(number))
            traced = Metadata(traceparent=_traceparent(rng))
            writes.setdefault(stream, []).append(msgspec.structs.replace(event, metadata=traced))
        result = await store.append(writes, expected=dict.fromkeys(writes, 0))
        last = result.last_position
    return last


async def _j_traced(ctx: Context) -> Sample:
    count = ctx.sizes.relay_events
    clock = _Clock()
    async with await open_store(ctx.backend.eventcore_url(ctx.workdir)) as store:
        last = await _populate_traced(store, count)
        bus = await open_bus(ctx.backend.bus_url(ctx.workdir))
        try:
            relay = Relay(store, bus, messaging_side.TOPICS, service=messaging_side.SERVICE)
            with clock:
                running = asyncio.create_task(relay.run())
                async with asyncio.timeout(60 + count / 1_000):
                    await messaging_side._until_published(relay, running, last)
            await messaging_side._stop(relay, running)
            if relay.status().published != count:
                raise RuntimeError(f"the relay published {relay.status().published} of {count}")
        finally:
            await bus.aclose()
    return clock.sample(count)


def _j(ctx: Context) -> Sample:
    return asyncio.run(_j_traced(ctx))


#: Workload letter → (name, unit, measure).
WORKLOADS: dict[str, tuple[str, str, Callable[[Context], Sample]]] = {
    "b": ("b_new_streams_concurrent", "commands/s", _b),
    "j": ("j_relay_throughput_traced", "events/s", _j),
}


@dataclass
class OverheadRow:
    workload: str
    backend: str
    setup: str
    unit: str
    median: float
    plain: float
    #: Percent below plain's throughput (negative: faster, i.e. noise).
    slower_pct: float
    target: str | None
    target_met: bool | None
    #: Median CPU microseconds per operation, and percent more than plain's.
    cpu_us_per_op: float
    cpu_more_pct: float
    repeat: int
    samples: list[float]

    def as_json(self) -> dict[str, Any]:
        return {"kind": "overhead", **asdict(self)}


def measure_overhead(
    letter: str,
    backend: Backend,
    sizes: Sizes,
    repeat: int,
    root: Path,
    progress: Callable[[str], None],
) -> list[OverheadRow]:
    """Run workload ``letter`` under every setup ``repeat`` times (at least 5), rotating
    the order; one row per setup, plain's first."""
    name, unit, measure = WORKLOADS[letter]
    repeat = max(repeat, 5)
    chosen = setups()
    samples: dict[str, list[Sample]] = {setup.name: [] for setup in chosen}
    for rep in range(repeat):
        order = chosen[rep % len(chosen) :] + chosen[: rep % len(chosen)]
        for setup in order:
            workdir = root / f"overhead-{letter}-{rep}-{setup.name}"
            workdir.mkdir()
            ctx = Context(backend=backend, sizes=sizes, workdir=workdir, cache_dir=root)
            backend.prepare(workdir)
            finish = setup.install()
            try:
                sample = measure(ctx)
            finally:
                finish()
                install_hooks()
                backend.cleanup(workdir)
            samples[setup.name].append(sample)
            progress(
                f"  [{name} overhead] rep {rep + 1}/{repeat} {setup.name:<16} "
                f"{sample.rate:>12,.0f} {unit}, {sample.cpu_us:8.1f} CPU µs/op"
            )
    plain = statistics.median(sample.rate for sample in samples["plain"])
    plain_cpu = statistics.median(sample.cpu_us for sample in samples["plain"])
    rows = []
    for setup in chosen:
        median = statistics.median(sample.rate for sample in samples[setup.name])
        cpu = statistics.median(sample.cpu_us for sample in samples[setup.name])
        slower = (plain - median) / plain * 100
        rows.append(
            OverheadRow(
                workload=name,
                backend=backend.name,
                setup=setup.name,
                unit=unit,
                median=median,
                plain=plain,
                slower_pct=round(slower, 2),
                target=None
                if setup.max_slower is None
                else f"≤ {setup.max_slower:g}% slower than plain",
                target_met=None if setup.max_slower is None else slower <= setup.max_slower,
                cpu_us_per_op=round(cpu, 2),
                cpu_more_pct=round((cpu - plain_cpu) / plain_cpu * 100, 2),
                repeat=repeat,
                samples=[sample.rate for sample in samples[setup.name]],
            )
        )
    return rows
