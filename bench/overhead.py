"""What observability costs: workloads b (64 concurrent commands) and j (the relay
publishing a populated log) run plain and with the hooks installed, in turn, and the
medians compared.

    python bench/run.py --only b --overhead --json                   # b, SQLite
    python bench/run.py --backend nats --only j --overhead --json    # j, relay → NATS

Setups, each installed as the process default (``install_hooks``) before the
workload builds its store, executor and relay:

* ``plain`` — no hooks;
* ``otel-api`` — the tracing hooks with OpenTelemetry's API alone: no SDK configured,
  so every span is a non-recording one (target: at most 2% slower than plain);
* ``otel-sdk`` — the tracing hooks on the SDK, sampling every trace into a
  ``BatchSpanProcessor`` whose exporter drops the spans (what is measured is eventcore
  and the SDK, not a collector), plus every hook in ``SDK_EXTRAS`` (target: at most 15%
  slower). Metrics join this setup by registering there.

For j every event carries a trace context of its own (as if each came from a separate
request), so each batch span gets its full share of links. The setups rotate within
each repetition so none always runs first; each prints one JSON line: its median, the
plain median, how much slower it is and whether that meets the target.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import msgspec
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_ON

from bench import eventcore_side, messaging_side
from bench.common import Backend, Context, Sizes, Stopwatch
from eventcore import EventStore, Metadata, StreamId, open_store
from eventcore.instrumentation import Hooks, install_hooks
from eventcore.messaging import open_bus
from eventcore.messaging.relay import Relay
from eventcore.observability import tracing_hooks
from eventcore.types import NewEvent

__all__ = ["SDK_EXTRAS", "WORKLOADS", "OverheadRow", "measure_overhead", "setups"]

#: Hooks the ``otel-sdk`` setup installs beside tracing, by name (e.g. ``"metrics"``).
SDK_EXTRAS: dict[str, Callable[[], Hooks]] = {}


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


def _sdk() -> Callable[[], None]:
    provider = TracerProvider(sampler=ALWAYS_ON)
    provider.add_span_processor(BatchSpanProcessor(_Dropped()))
    install_hooks(tracing_hooks(provider), *(make() for make in SDK_EXTRAS.values()))

    def finish() -> None:
        install_hooks()
        provider.shutdown()

    return finish


def setups() -> list[Setup]:
    sdk_name = "+".join(["otel-sdk", *SDK_EXTRAS])
    return [
        Setup("plain", None, _plain),
        Setup("otel-api", 2.0, _api_only),
        Setup(sdk_name, 15.0, _sdk),
    ]


# --- the workloads -----------------------------------------------------------------------


def _b(ctx: Context) -> float:
    return float(eventcore_side.run("b_new_streams_concurrent", ctx))


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


async def _j_traced(ctx: Context) -> float:
    count = ctx.sizes.relay_events
    stopwatch = Stopwatch()
    async with await open_store(ctx.backend.eventcore_url(ctx.workdir)) as store:
        last = await _populate_traced(store, count)
        bus = await open_bus(ctx.backend.bus_url(ctx.workdir))
        try:
            relay = Relay(store, bus, messaging_side.TOPICS, service=messaging_side.SERVICE)
            with stopwatch.running():
                running = asyncio.create_task(relay.run())
                async with asyncio.timeout(60 + count / 1_000):
                    await messaging_side._until_published(relay, running, last)
            await messaging_side._stop(relay, running)
            if relay.status().published != count:
                raise RuntimeError(f"the relay published {relay.status().published} of {count}")
        finally:
            await bus.aclose()
    return stopwatch.rate(count)


def _j(ctx: Context) -> float:
    return asyncio.run(_j_traced(ctx))


#: Workload letter → (name, unit, measure).
WORKLOADS: dict[str, tuple[str, str, Callable[[Context], float]]] = {
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
    """Run workload ``letter`` under every setup ``repeat`` times (at least 3), rotating
    the order; one row per setup, plain's first."""
    name, unit, measure = WORKLOADS[letter]
    repeat = max(repeat, 3)
    chosen = setups()
    samples: dict[str, list[float]] = {setup.name: [] for setup in chosen}
    for rep in range(repeat):
        order = chosen[rep % len(chosen) :] + chosen[: rep % len(chosen)]
        for setup in order:
            workdir = root / f"overhead-{letter}-{rep}-{setup.name}"
            workdir.mkdir()
            ctx = Context(backend=backend, sizes=sizes, workdir=workdir, cache_dir=root)
            backend.prepare(workdir)
            finish = setup.install()
            started = time.perf_counter()
            try:
                value = measure(ctx)
            finally:
                finish()
                install_hooks()
                backend.cleanup(workdir)
            samples[setup.name].append(value)
            progress(
                f"  [{name} overhead] rep {rep + 1}/{repeat} {setup.name:<16} "
                f"{value:>12,.0f} {unit}  ({time.perf_counter() - started:.1f}s)"
            )
    plain = statistics.median(samples["plain"])
    rows = []
    for setup in chosen:
        median = statistics.median(samples[setup.name])
        slower = (plain - median) / plain * 100 if plain else 0.0
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
                repeat=repeat,
                samples=samples[setup.name],
            )
        )
    return rows
