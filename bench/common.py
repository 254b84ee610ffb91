"""What every side of the benchmark shares: sizes, backends, the measurement context, timing."""

from __future__ import annotations

import gc
import importlib.util
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

__all__ = [
    "BACKENDS",
    "Backend",
    "Context",
    "MemoryBackend",
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
        )


@dataclass(frozen=True)
class Backend:
    """Where the stores of one benchmark run live. Subclasses say how each side opens one."""

    name: str
    #: Does the raw driver column make sense here (stdlib ``sqlite3``)?
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

    def describe(self) -> str:
        return self.name


@dataclass(frozen=True)
class MemoryBackend(Backend):
    name: str = "memory"

    def eventcore_url(self, workdir: Path) -> str:
        return "memory://"

    def eventsourcing_env(self, workdir: Path) -> dict[str, str]:
        return {"PERSISTENCE_MODULE": "eventsourcing.popo"}

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

    def describe(self) -> str:
        return f"sqlite (fresh file per repetition, WAL, synchronous={self.synchronous})"


@dataclass(frozen=True)
class PostgresBackend(Backend):
    name: str = "postgres"
    url: str = "postgresql://postgres@127.0.0.1:5432/test"

    def unavailable(self) -> str | None:
        if importlib.util.find_spec("eventcore.store.postgres") is None:
            return (
                "not yet: eventcore has no PostgreSQL backend yet (eventcore.store.postgres is "
                "missing); the postgres benchmark will run once it lands"
            )
        # TODO(postgres): fresh schema per repetition for both sides (eventsourcing takes
        # POSTGRES_SCHEMA; eventcore's store needs an equivalent option) — then drop this.
        return "not yet: the postgres side of the harness is waiting for eventcore's store"

    def eventcore_url(self, workdir: Path) -> str:
        return self.url

    def eventsourcing_env(self, workdir: Path) -> dict[str, str]:
        return {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": "test",
            "POSTGRES_HOST": "127.0.0.1",
            "POSTGRES_PORT": "5432",
            "POSTGRES_USER": "postgres",
            "POSTGRES_PASSWORD": "",
            "POSTGRES_SCHEMA": f"bench_{workdir.name}".replace("-", "_"),
        }


BACKENDS: dict[str, Callable[[], Backend]] = {
    "sqlite": SqliteBackend,
    "memory": MemoryBackend,
    "postgres": PostgresBackend,
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
