"""The workloads: what each measures, in which unit, on which sides, and their targets.

Issue 2's targets apply to the SQLite and memory backends, issue 3's to PostgreSQL; the
messaging workloads (j, k, l: issue 5) carry their own per backend, and run on the backends
that have a bus (``--backend nats`` runs only them), as does the federation hub's (o:
issue 15). n (issue 14) is commands over HTTP through ``eventcore serve``, on SQLite.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from bench import (
    eventcore_side,
    eventsourcing_side,
    federation_side,
    http_side,
    messaging_side,
    projection_side,
    raw_sqlite,
    replay_memory,
    saga_side,
)
from bench.common import Backend, Context, Sizes

__all__ = ["WORKLOADS", "Target", "Workload", "select"]

Measure = Callable[[Context], float]
#: Measures return None where a side has nothing to measure on this backend.
STORE_BACKENDS = frozenset({"sqlite", "memory", "postgres"})
BUS_BACKENDS = frozenset({"sqlite", "memory", "nats"})


@dataclass(frozen=True)
class Target:
    """A target: a floor on eventcore's figure, on the ratio to eventsourcing and/or on the
    share of the raw side's figure it reaches, or a ceiling (MB, ms)."""

    text: str
    minimum: float | None = None
    min_ratio: float | None = None
    maximum: float | None = None
    #: eventcore's figure divided by the raw side's (throughput) must reach this.
    min_raw_share: float | None = None

    def met(
        self, eventcore: float | None, ratio: float | None, raw: float | None = None
    ) -> bool | None:
        if eventcore is None:
            return None
        checks: list[bool] = []
        if self.min_raw_share is not None:
            if not raw:
                return None
            checks.append(eventcore / raw >= self.min_raw_share)
        if self.minimum is not None:
            checks.append(eventcore >= self.minimum)
        if self.maximum is not None:
            checks.append(eventcore < self.maximum)
        if self.min_ratio is not None:
            if ratio is None:
                return None
            checks.append(ratio >= self.min_ratio)
        return all(checks)


@dataclass(frozen=True)
class Workload:
    name: str
    unit: str
    eventcore: Measure
    eventsourcing: Measure | None
    raw: Measure | None
    note: Callable[[Sizes], str]
    target: Target | None = None
    #: Issue 3's target on PostgreSQL (issue 2's ``target`` does not apply there).
    postgres_target: Target | None = None
    #: Fewer repetitions for a workload whose figure hardly varies but takes long.
    max_repeat: int | None = None
    #: The backends it runs on.
    backends: frozenset[str] = STORE_BACKENDS
    #: When given, the only targets: one per backend name (none on the others).
    backend_targets: Mapping[str, Target] = field(default_factory=dict)
    #: Another library measured on the same workload (its column: ``peer``); its measure
    #: raises ``saga_side.PeerUnavailable`` (the reason goes into the notes) where it
    #: cannot run.
    peer_name: str | None = None
    peer: Measure | None = None

    @property
    def letter(self) -> str:
        return self.name[0]

    def target_for(self, backend: Backend) -> Target | None:
        if self.backend_targets:
            return self.backend_targets.get(backend.name)
        return self.postgres_target if backend.name == "postgres" else self.target

    def describe(self, sizes: Sizes, backend: Backend) -> str:
        """The note, with what the raw side does on ``backend`` (when it runs there)."""
        if self.name in messaging_side.WORKLOADS:
            return messaging_side.describe(self.name, sizes, backend, raw=self.raw is not None)
        raw = _raw_descriptions(backend).get(self.name)
        if self.raw is None or raw is None or not backend.has_raw:
            return self.note(sizes)
        return f"{self.note(sizes)}; raw = {raw}"

    @property
    def lower_is_better(self) -> bool:
        return self.unit in {"MB", "ms"}

    def ratio(self, eventcore: float | None, eventsourcing: float | None) -> float | None:
        """How many times better eventcore is: ec/es for throughput, es/ec for memory."""
        if eventcore is None or eventsourcing is None:
            return None
        if self.lower_is_better:
            # RSS growth can be ~0; divide by at least 1 MB so the ratio stays meaningful.
            return eventsourcing / max(eventcore, 1.0)
        return eventcore / eventsourcing if eventsourcing > 0 else None


def _ec(name: str) -> Measure:
    return lambda ctx: float(eventcore_side.run(name, ctx))


def _es(name: str) -> Measure:
    return lambda ctx: eventsourcing_side.run(name, ctx)


def _raw(name: str) -> Measure:
    def measure(ctx: Context) -> float:
        if ctx.backend.name == "postgres":
            from bench import raw_postgres  # needs psycopg: imported only when used

            return raw_postgres.run(name, ctx)
        return raw_sqlite.run(name, ctx)

    return measure


def _raw_descriptions(backend: Backend) -> dict[str, str]:
    if backend.name == "postgres":
        from bench import raw_postgres

        return raw_postgres.DESCRIPTIONS
    return raw_sqlite.DESCRIPTIONS


WORKLOADS: tuple[Workload, ...] = (
    Workload(
        "a_new_streams_sequential",
        "commands/s",
        _ec("a_new_streams_sequential"),
        _es("a_new_streams_sequential"),
        _raw("a_new_streams_sequential"),
        lambda s: (
            f"{s.new_streams:,} commands one at a time, each a new one-event stream; eventcore "
            "decides on the empty stream (creates_streams) then appends; eventsourcing saves "
            "a new aggregate"
        ),
        Target("≥1.3× eventsourcing", min_ratio=1.3),
        Target("≥1.5× eventsourcing", min_ratio=1.5),
    ),
    Workload(
        "b_new_streams_concurrent",
        "commands/s",
        _ec("b_new_streams_concurrent"),
        _es("b_new_streams_concurrent"),
        None,
        lambda s: (
            f"{s.concurrent_streams:,} new-stream commands from {s.concurrency} coroutines "
            f"(eventcore, one Executor) / {s.concurrency} threads (eventsourcing); "
            "raw not measured "
            "(one connection, the sequential figure is its ceiling)"
        ),
        Target("≥15,000 commands/s", minimum=15_000),
        Target("≥5,000 commands/s and ≥3× eventsourcing", minimum=5_000, min_ratio=3.0),
    ),
    Workload(
        "c_append_one_stream",
        "commands/s",
        _ec("c_append_one_stream"),
        _es("c_append_one_stream"),
        _raw("c_append_one_stream"),
        lambda s: (
            f"{s.appends:,} deposits to one stream one at a time; both cached so only new "
            "events are read: eventcore Executor(cache_size=1000), eventsourcing "
            "AGGREGATE_CACHE_MAXSIZE=1000 + AGGREGATE_CACHE_FASTFORWARD=y (its default "
            "deep copy from the cache kept)"
        ),
        Target("≥1.5× eventsourcing", min_ratio=1.5),
    ),
    Workload(
        "d_transfers_concurrent",
        "commands/s",
        _ec("d_transfers_concurrent"),
        _es("d_transfers_concurrent"),
        None,
        lambda s: (
            f"{s.transfers:,} transfers over {s.accounts} accounts from {s.transfer_workers} "
            "coroutines / threads: read both, check balance, one event to each in one "
            "transaction (eventsourcing: app.save(a, b), retried on IntegrityError); no state "
            "cache on either side, so each command refolds both accounts"
        ),
        None,
        Target("≥3,000 commands/s", minimum=3_000),
    ),
    Workload(
        "e_read_fold_stream",
        "events/s",
        _ec("e_read_fold_stream"),
        _es("e_read_fold_stream"),
        _raw("e_read_fold_stream"),
        lambda s: (
            f"one {s.stream_events:,}-event stream: eventcore read_stream + decode + fold; "
            "eventsourcing repository.get without cache"
        ),
        Target("≥3× eventsourcing", min_ratio=3.0),
    ),
    Workload(
        "f_read_global_log",
        "events/s",
        _ec("f_read_global_log"),
        _es("f_read_global_log"),
        _raw("f_read_global_log"),
        lambda s: (
            f"the whole {s.log_events:,}-event log in pages of 1,000: eventcore read_all + "
            "decode; eventsourcing select_notifications + mapper.to_domain_event"
        ),
        Target("≥250,000 events/s and ≥1.5× eventsourcing", minimum=250_000, min_ratio=1.5),
        Target("≥200,000 events/s", minimum=200_000),
    ),
    Workload(
        "g_replay_memory",
        "MB",
        lambda ctx: replay_memory.measure(ctx, "eventcore"),
        lambda ctx: replay_memory.measure(ctx, "eventsourcing"),
        None,
        lambda s: (
            f"RSS growth (peak during replay − RSS before it, fresh subprocess) replaying "
            f"{s.replay_events:,} events with decoding (eventcore read_all, eventsourcing "
            "select_notifications pages); populated file built once per run; at most 3 "
            "repetitions; ratio = eventsourcing / max(eventcore, 1 MB)"
        ),
        Target("RSS growth < 100 MB", maximum=100.0),
        max_repeat=3,
    ),
    Workload(
        "h_projection_catch_up",
        "events/s",
        lambda ctx: projection_side.run("h_projection_catch_up", ctx),
        None,
        None,
        lambda s: (
            f"catch-up of {s.projection_events:,} events into a SQLite projection table (one "
            "upsert per event over 10,000 rows; batch + checkpoint in one transaction, "
            "synchronous=NORMAL); populated log copied from a per-run cache; eventcore only"
        ),
        Target("≥100,000 events/s", minimum=100_000),
    ),
    Workload(
        "i_live_latency_p99",
        "ms",
        lambda ctx: projection_side.run("i_live_latency_p99", ctx),
        None,
        None,
        lambda s: (
            f"{s.latency_samples:,} appends one at a time while a runner follows live: time from "
            "append call to the projection's commit returning, p99; target in the backend's "
            "database (SQLite file; PostgreSQL schema on --backend postgres); eventcore only"
        ),
        Target("≤20 ms on SQLite", maximum=20.0),
        Target("≤10 ms on PostgreSQL", maximum=10.0),
    ),
    Workload(
        "j_relay_throughput",
        "events/s",
        messaging_side.measure("j_relay_throughput"),
        None,
        messaging_side.measure_raw("j_relay_throughput"),
        lambda s: "",  # messaging_side.describe
        backends=BUS_BACKENDS,
        backend_targets={
            "nats": Target("≥30,000 events/s and ≥50% of raw", minimum=30_000, min_raw_share=0.5)
        },
    ),
    Workload(
        "k_end_to_end_latency_p99",
        "ms",
        messaging_side.measure("k_end_to_end_latency_p99"),
        None,
        None,
        lambda s: "",
        backends=BUS_BACKENDS,
        backend_targets={
            "nats": Target("≤15 ms on NATS", maximum=15.0),
            "sqlite": Target("≤50 ms on the SQLite bus", maximum=50.0),
        },
    ),
    Workload(
        "k_cross_process_hop_p99",
        "ms",
        messaging_side.measure("k_cross_process_hop_p99"),
        None,
        None,
        lambda s: "",
        backends=frozenset({"sqlite"}),
        backend_targets={"sqlite": Target("≤20 ms between processes", maximum=20.0)},
    ),
    Workload(
        "l_bus_throughput",
        "messages/s",
        messaging_side.measure("l_bus_throughput"),
        None,
        messaging_side.measure_raw("l_bus_throughput"),
        lambda s: "",
        backends=BUS_BACKENDS,
        backend_targets={"sqlite": Target("≥10,000 messages/s", minimum=10_000)},
    ),
    Workload(
        "m_saga_throughput",
        "sagas/s",
        saga_side.throughput,
        None,
        None,
        lambda s: (
            f"{saga_side.NOTE}; {s.saga_burst:,} sagas started at once, completed sagas/s from "
            "the first start to the last completion"
        ),
        backends=frozenset({"sqlite", "nats"}),
        backend_targets={
            "sqlite": Target("≥300 sagas/s", minimum=300),
            "nats": Target("≥300 sagas/s", minimum=300),
        },
        peer_name="natsaga",
        peer=saga_side.peer_throughput,
    ),
    Workload(
        "m_saga_latency_p99",
        "ms",
        saga_side.latency,
        None,
        None,
        lambda s: (
            f"{saga_side.NOTE}; {s.saga_paced:,} sagas started at a steady rate (half a "
            f"burst's throughput measured first, at most {s.saga_rate}/s), p99 "
            "start→completed"
        ),
        backends=frozenset({"sqlite", "nats"}),
        backend_targets={
            "sqlite": Target("≤100 ms at half of 300/s", maximum=100.0),
            "nats": Target("≤100 ms at half of 300/s", maximum=100.0),
        },
        peer_name="natsaga",
        peer=saga_side.peer_latency,
    ),
    Workload(
        "n_http_commands",
        "commands/s",
        http_side.eventcore,
        http_side.eventsourcing,
        None,
        lambda s: (
            f"{http_side.NOTE}; {s.http_commands:,} commands, {s.concurrency} clients at once;"
            " eventsourcing = the same endpoint in Starlette over its SQLite recorder"
        ),
        backends=frozenset({"sqlite"}),
        backend_targets={
            "sqlite": Target(
                "≥2,000 commands/s and ≥2× eventsourcing", minimum=2_000, min_ratio=2.0
            )
        },
    ),
    Workload(
        "o_hub_throughput",
        "events/s",
        federation_side.measure,
        None,
        federation_side.measure_relay,
        federation_side.describe,
        backends=BUS_BACKENDS,
        backend_targets={
            "nats": Target(
                "≥20,000 events/s and ≥50% of the relay (j, raw column)",
                minimum=20_000,
                min_raw_share=0.5,
            )
        },
    ),
)


def select(only: str | None, backend: str = "sqlite") -> list[Workload]:
    """The workloads named by ``--only`` (letters or full names, comma-separated), or all
    that run on ``backend``."""
    runnable = [w for w in WORKLOADS if backend in w.backends]
    if not only:
        return runnable
    wanted = [item.strip() for item in only.split(",") if item.strip()]
    chosen: list[Workload] = []
    for item in wanted:
        matches = [w for w in WORKLOADS if w.name == item or w.letter == item]
        if not matches:
            known = ", ".join(w.name for w in WORKLOADS)
            raise SystemExit(f"unknown workload {item!r}; known: {known}")
        here = [w for w in matches if w in runnable]
        if not here:
            # A letter names a family (k: in one process, across processes); only a
            # name or a letter with no member on this backend is a mistake.
            names = ", ".join(w.name for w in matches)
            raise SystemExit(f"{names} does not run on --backend {backend}")
        chosen.extend(m for m in here if m not in chosen)
    return sorted(chosen, key=lambda w: w.name)
