"""Workload g: memory while replaying a long log, measured in a fresh subprocess per sample.

The populated SQLite files (PostgreSQL schemas) are built once per run (in the run's
cache directory; schemas named by the run, dropped by ``Backend.finish``) and reused by
every repetition: they are only read. The memory backend cannot share a store across
processes, so there the subprocess populates its own before taking its baseline.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from bench.common import Context, PostgresBackend, SqliteBackend

__all__ = ["REPO", "measure"]

REPO = Path(__file__).resolve().parent.parent


def _built(ctx: Context, name: str) -> bool:
    """Whether the run already populated the shared store ``name`` (marks it if not)."""
    marker = ctx.cache_dir / f"{name}.built"
    if marker.exists():
        return True
    marker.touch()
    return False


def _eventcore_postgres(ctx: Context, backend: PostgresBackend) -> str:
    schema = backend.schema(f"g_eventcore_{ctx.sizes.replay_events}")
    if not _built(ctx, schema):
        from bench.eventcore_side import opened, populate_log

        async def build() -> None:
            # Set-up: no live followers, so no notifications.
            async with opened(backend.schema_url(schema, notify="off")) as store:
                await populate_log(store, ctx.sizes.replay_events, 10 * ctx.sizes.populate_batch)

        asyncio.run(build())
    return backend.schema_url(schema)


def _eventsourcing_postgres(ctx: Context, backend: PostgresBackend) -> str:
    schema = backend.schema(f"g_eventsourcing_{ctx.sizes.replay_events}")
    if not _built(ctx, schema):
        from bench.eventsourcing_side import opened, populate_replay

        backend.create_schema(schema)
        with opened(backend.eventsourcing_env_for(schema)) as app:
            populate_replay(app, ctx.sizes.replay_events, ctx.sizes.populate_batch, None)
    return schema


def _eventcore_target(ctx: Context) -> str:
    backend = ctx.backend
    if isinstance(backend, PostgresBackend):
        return _eventcore_postgres(ctx, backend)
    if not isinstance(backend, SqliteBackend):
        return "memory://"
    path = ctx.cache_dir / f"g-eventcore-{ctx.sizes.replay_events}.db"
    if not path.exists():
        from bench.eventcore_side import opened, populate_log

        building = path.with_suffix(".building.db")

        async def build() -> None:
            # Populating is set-up, so it may skip fsyncs; the replay reopens with FULL.
            async with opened(backend.file_url(building, synchronous="OFF")) as store:
                await populate_log(store, ctx.sizes.replay_events, 10 * ctx.sizes.populate_batch)

        asyncio.run(build())
        building.rename(path)
        for suffix in ("-wal", "-shm"):
            Path(str(building) + suffix).unlink(missing_ok=True)
    return backend.file_url(path)


def _eventsourcing_target(ctx: Context) -> str:
    if ctx.backend.name == "memory":
        return ""
    if isinstance(ctx.backend, PostgresBackend):
        return _eventsourcing_postgres(ctx, ctx.backend)
    path = ctx.cache_dir / f"g-eventsourcing-{ctx.sizes.replay_events}.db"
    if not path.exists():
        from bench.eventsourcing_side import opened, populate_replay

        building = path.with_suffix(".building.db")
        env = {**ctx.backend.eventsourcing_env(ctx.workdir), "SQLITE_DBNAME": str(building)}
        with opened(env) as app:
            populate_replay(app, ctx.sizes.replay_events, ctx.sizes.populate_batch, str(building))
        building.rename(path)
        for suffix in ("-wal", "-shm"):
            Path(str(building) + suffix).unlink(missing_ok=True)
    return str(path)


def measure(ctx: Context, library: str) -> float:
    """RSS growth in MB while ``library`` replays the log; the replay rate goes to facts."""
    if ctx.backend.name not in {"memory", "sqlite", "postgres"}:
        raise NotImplementedError(f"replay memory on {ctx.backend.name}")
    target = _eventcore_target(ctx) if library == "eventcore" else _eventsourcing_target(ctx)
    command = [
        sys.executable,
        "-m",
        "bench.rss_probe",
        f"--library={library}",
        f"--backend={ctx.backend.name}",
        f"--target={target}",
        f"--events={ctx.sizes.replay_events}",
        f"--per-stream={ctx.sizes.populate_batch}",
    ]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"rss probe failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    ctx.facts["replay_rate"] = f"{report['events'] / report['seconds']:,.0f} events/s"
    ctx.facts["baseline_mb"] = f"{report['baseline_mb']:.1f}"
    return float(report["growth_mb"])
