"""What every side of the benchmark shares: sizes, backends, the measurement context, timing."""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

__all__ = [
    "BACKENDS",
    "Backend",
    "Context",
    "MemoryBackend",
    "NatsBackend",
    "PostgresBackend",
    "Sizes",
    "SqliteBackend",
    "Stopwatch",
    "split",
]


@dataclass(frozen=True)
class Sizes:
    """How much work each workload does."""

    # a and c commit (fsync) once per command on every side, ~500-800/s on this machine's
    # disk: 2,000 keeps five repetitions of a full run within ~10 minutes. --scale 5 gives
    # the 10,000 of issue 2.
    new_streams: int = 2_000  # a
    concurrent_streams: int = 5_000  # b
    concurrency: int = 64  # b
    appends: int = 2_000  # c
    transfers: int = 2_000  # d
    transfer_workers: int = 16  # d
    accounts: int = 100  # d
    stream_events: int = 10_000  # e
    log_events: int = 100_000  # f
    replay_events: int = 1_000_000  # g
    projection_events: int = 1_000_000  # h
    latency_samples: int = 1_000  # i
    relay_events: int = 50_000  # j
    #: k appends this many events, paced at ``paced_rate`` per second (10 s at full scale).
    paced_events: int = 10_000  # k
    paced_rate: int = 1_000  # k
    bus_messages: int = 50_000  # l
    #: m: sagas started at once (throughput), then paced at half that rate, at most
    #: ``saga_rate`` per second (half of the 300/s target), for ``saga_paced`` sagas.
    saga_burst: int = 600  # m
    saga_paced: int = 1_000  # m
    saga_rate: int = 150  # m
    #: n: commands sent over HTTP (``concurrency`` clients at once).
    http_commands: int = 5_000  # n
    #: Events per append (or per save) when populating a store for a read workload.
    populate_batch: int = 1_000

    @classmethod
    def default(cls) -> Sizes:
        return cls()

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            new_streams=500,
            concurrent_streams=2_000,
            appends=500,
            transfers=500,
            stream_events=10_000,
            log_events=20_000,
            replay_events=200_000,
            projection_events=100_000,
            latency_samples=300,
            relay_events=10_000,
            paced_events=3_000,
            bus_messages=10_000,
            saga_burst=300,
            saga_paced=300,
            http_commands=2_000,
        )

    def scaled(self, factor: float) -> Sizes:
        """Every count times ``factor`` (never below a size that still exercises the code)."""

        def scale(value: int, minimum: int) -> int:
            return max(minimum, round(value * factor))

        return replace(
            self,
            new_streams=scale(self.new_streams, 10),
            concurrent_streams=scale(self.concurrent_streams, 10),
            appends=scale(self.appends, 10),
            transfers=scale(self.transfers, 10),
            stream_events=scale(self.stream_events, 10),
            log_events=scale(self.log_events, 100),
            replay_events=scale(self.replay_events, 1_000),
            projection_events=scale(self.projection_events, 1_000),
            latency_samples=scale(self.latency_samples, 20),
            relay_events=scale(self.relay_events, 100),
            paced_events=scale(self.paced_events, 50),
            bus_messages=scale(self.bus_messages, 100),
            saga_burst=scale(self.saga_burst, 20),
            saga_paced=scale(self.saga_paced, 20),
            http_commands=scale(self.http_commands, 100),
        )


@dataclass(frozen=True)
class Backend:
    """Where the stores of one benchmark run live. Subclasses say how each side opens one."""

    name: str
    #: Does the raw driver column make sense here (stdlib ``sqlite3``, ``psycopg``)?
    has_raw: bool = False

    def unavailable(self) -> str | None:
        """Why this backend cannot run here, or None."""
        return None

    def eventcore_url(self, workdir: Path) -> str:
        raise NotImplementedError

    def eventsourcing_env(self, workdir: Path) -> dict[str, str]:
        raise NotImplementedError

    def raw_path(self, workdir: Path) -> Path:
        raise NotImplementedError(f"{self.name} has no raw driver side")

    def bus_url(self, workdir: Path) -> str:
        """The message bus of one measurement (workloads j, k, l)."""
        raise NotImplementedError(f"{self.name} has no message bus")

    def prepare(self, workdir: Path) -> None:
        """Before a measurement: create what its sides expect to exist."""

    def cleanup(self, workdir: Path) -> None:
        """After a measurement: remove what it created outside ``workdir``."""

    def finish(self) -> None:
        """After the run: remove whatever is left (stores shared by repetitions, leftovers)."""

    def describe(self) -> str:
        return self.name


@dataclass(frozen=True)
class MemoryBackend(Backend):
    name: str = "memory"

    def eventcore_url(self, workdir: Path) -> str:
        return "memory://"

    def eventsourcing_env(self, workdir: Path) -> dict[str, str]:
        return {"PERSISTENCE_MODULE": "eventsourcing.popo"}

    def bus_url(self, workdir: Path) -> str:
        return "memory://"

    def describe(self) -> str:
        return "memory (eventcore memory://, eventsourcing POPO)"


@dataclass(frozen=True)
class SqliteBackend(Backend):
    """Both libraries on a fresh file in WAL mode with synchronous=FULL."""

    name: str = "sqlite"
    has_raw: bool = True
    synchronous: str = "FULL"

    def unavailable(self) -> str | None:
        if importlib.util.find_spec("eventcore.store.sqlite") is None:
            return "eventcore has no SQLite backend yet (eventcore.store.sqlite is missing)"
        return None

    def eventcore_url(self, workdir: Path) -> str:
        return self.file_url(workdir / "eventcore.db")

    def file_url(self, path: Path, synchronous: str | None = None) -> str:
        return f"sqlite://{path.resolve()}?synchronous={synchronous or self.synchronous}"

    def eventsourcing_env(self, workdir: Path) -> dict[str, str]:
        # eventsourcing's SQLite pool switches a file to WAL itself and leaves synchronous at
        # SQLite's default (FULL); the eventsourcing side checks both on every fresh app.
        return {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": str((workdir / "eventsourcing.db").resolve()),
            "SQLITE_LOCK_TIMEOUT": "30",
        }

    def raw_path(self, workdir: Path) -> Path:
        return (workdir / "raw.db").resolve()

    def bus_url(self, workdir: Path) -> str:
        return f"sqlite://{(workdir / 'bus.db').resolve()}"

    def describe(self) -> str:
        return f"sqlite (fresh file per repetition, WAL, synchronous={self.synchronous})"


def _run_token() -> str:
    return uuid.uuid4().hex[:8]


@dataclass(frozen=True)
class PostgresBackend(Backend):
    """Every side on the shared server, each measurement in a fresh schema, dropped after.

    Schema names carry a random token per run (``bench_<token>_<workdir>``), so runs by
    several people on one server never meet, and ``finish`` drops whatever a crashed
    measurement left behind.
    """

    name: str = "postgres"
    has_raw: bool = True
    url: str = "postgresql://postgres@127.0.0.1:5432/test"
    host: str = "127.0.0.1"
    port: int = 5432
    user: str = "postgres"
    dbname: str = "test"
    token: str = field(default_factory=_run_token)

    def unavailable(self) -> str | None:
        for module in ("psycopg", "psycopg_pool", "eventcore.store.postgres"):
            if importlib.util.find_spec(module) is None:
                return f"cannot import {module}"
        import psycopg

        try:
            with psycopg.connect(self.url, connect_timeout=5) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error as error:
            return f"PostgreSQL unreachable at {self.url}: {error}"
        return None

    @property
    def prefix(self) -> str:
        return f"bench_{self.token}_"

    def schema(self, workdir: Path | str) -> str:
        """The schema of one measurement (or of a named store shared by a run)."""
        name = workdir.name if isinstance(workdir, Path) else workdir
        return self.prefix + "".join(c if c.isalnum() else "_" for c in name.lower())

    def eventcore_url(self, workdir: Path) -> str:
        return self.schema_url(self.schema(workdir))

    def schema_url(self, schema: str, **options: str) -> str:
        query = "&".join(f"{key}={value}" for key, value in {"schema": schema, **options}.items())
        return f"{self.url}?{query}"

    def eventsourcing_env(self, workdir: Path) -> dict[str, str]:
        return self.eventsourcing_env_for(self.schema(workdir))

    def eventsourcing_env_for(self, schema: str) -> dict[str, str]:
        # The names the installed library reads (eventsourcing.postgres.PostgresFactory);
        # it creates its tables, not the schema: ``prepare`` does that.
        return {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": self.dbname,
            "POSTGRES_HOST": self.host,
            "POSTGRES_PORT": str(self.port),
            "POSTGRES_USER": self.user,
            "POSTGRES_PASSWORD": "",
            "POSTGRES_SCHEMA": schema,
            "CREATE_TABLE": "y",
        }

    def _admin(self, statement: str) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(statement)

    def create_schema(self, schema: str) -> None:
        self._admin(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')

    def prepare(self, workdir: Path) -> None:
        self.create_schema(self.schema(workdir))

    def cleanup(self, workdir: Path) -> None:
        self._admin(f'DROP SCHEMA IF EXISTS "{self.schema(workdir)}" CASCADE')

    def finish(self) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
            rows = conn.execute(
                "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, %s)",
                (self.prefix,),
            ).fetchall()
            for (schema,) in rows:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

    def describe(self) -> str:
        return (
            f"postgres ({self.host}:{self.port}/{self.dbname}, fresh schema per repetition "
            "for every side; eventsourcing.postgres)"
        )


@dataclass(frozen=True)
class NatsBackend(SqliteBackend):
    """The bus on the NATS server, the stores in SQLite files as on ``--backend sqlite``.

    Each measurement gets its own bus namespace (``bench<token>_<workdir>``); ``cleanup``
    deletes the JetStream streams (and so the key-value buckets) whose names carry it, and
    ``finish`` whatever a crashed measurement of this run left behind.
    """

    name: str = "nats"
    server: str = "nats://127.0.0.1:4222"
    token: str = field(default_factory=_run_token)

    def unavailable(self) -> str | None:
        for module in ("nats", "eventcore.store.sqlite", "eventcore.messaging.nats"):
            if importlib.util.find_spec(module) is None:
                return f"cannot import {module}"
        try:
            asyncio.run(_delete_streams(self.server, "\0never a stream name"))
        except Exception as error:  # any failure means "cannot run here"
            return f"NATS JetStream unreachable at {self.server}: {error!r}"
        return None

    @property
    def prefix(self) -> str:
        return f"bench{self.token}"

    def namespace(self, workdir: Path) -> str:
        return f"{self.prefix}_" + "".join(c if c.isalnum() else "_" for c in workdir.name)

    def bus_url(self, workdir: Path) -> str:
        return f"{self.server}?namespace={self.namespace(workdir)}"

    def cleanup(self, workdir: Path) -> None:
        asyncio.run(_delete_streams(self.server, self.namespace(workdir)))

    def finish(self) -> None:
        asyncio.run(_delete_streams(self.server, self.prefix))

    def describe(self) -> str:
        return (
            f"nats ({self.server}, a namespace per repetition; stores: SQLite files, WAL, "
            f"synchronous={self.synchronous})"
        )


async def _delete_streams(server: str, marker: str) -> None:
    """Delete every JetStream stream whose name contains ``marker`` (case-insensitive):
    a namespace's topics, and its key-value buckets (streams named ``KV_<bucket>``)."""
    import nats

    conn = await nats.connect(server, connect_timeout=3, max_reconnect_attempts=0)
    try:
        js = conn.jetstream(timeout=5)
        names: list[str] = []
        while True:  # the server lists streams a page at a time
            page = await js.streams_info(offset=len(names))
            names.extend(info.config.name or "" for info in page)
            if not page:
                break
        for name in names:
            if marker.lower() in name.lower():
                await js.delete_stream(name)
    finally:
        await conn.close()


BACKENDS: dict[str, Callable[[], Backend]] = {
    "sqlite": SqliteBackend,
    "memory": MemoryBackend,
    "postgres": PostgresBackend,
    "nats": NatsBackend,
}


@dataclass
class Context:
    """One measurement: a backend, the sizes, a fresh working directory, a shared cache dir."""

    backend: Backend
    sizes: Sizes
    workdir: Path
    #: Lives for the whole run: files that are expensive to build (the 1M-event log).
    cache_dir: Path
    #: Free-form facts a side found out while measuring (conflicts retried, …).
    facts: dict[str, str] = field(default_factory=dict)


class Stopwatch:
    """Times only what runs inside ``with stopwatch.running():`` (garbage collected first)."""

    def __init__(self) -> None:
        self.seconds = 0.0

    @contextmanager
    def running(self) -> Iterator[None]:
        gc.collect()
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds += time.perf_counter() - start

    def rate(self, count: int) -> float:
        return count / self.seconds if self.seconds > 0 else float("inf")


def split(total: int, parts: int) -> list[int]:
    """``total`` as ``parts`` near-equal shares (each worker's quota)."""
    base, extra = divmod(total, parts)
    return [base + (1 if index < extra else 0) for index in range(parts)]
