"""A projection killed (SIGKILL) at random moments while it catches up, then restarted,
ends with exactly the state a fresh fold of the log gives: no event lost, none twice."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from eventcore import EventStore, open_store
from eventcore.projection import ProjectionRunner, Source, SqliteTarget
from eventcore.projection.target import Target
from tests.backends import BACKENDS, POSTGRES_URL, unavailable_reason
from tests.projection.orders import OrderSummary, append_all, fold_store, random_events, registry

ROOT = Path(__file__).resolve().parents[2]

# Beyond the suite's minute: each test kills and restarts a projection process at
# random moments, every start importing the package (61 s measured on a busy 2-core
# machine).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def kill_at_random_moments(store_url: str, target_spec: str, kills: int, seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(kills):
        child = subprocess.Popen(
            [sys.executable, "-m", "tests.projection.kill_child", store_url, target_spec],
            cwd=ROOT,
            stdout=subprocess.PIPE,
        )
        try:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == b"following"
            # The point of the test: die at an arbitrary moment of the catch-up.
            time.sleep(rng.uniform(0.0, 0.5))
            os.kill(child.pid, signal.SIGKILL)
        finally:
            child.wait()


async def check_fold_after_kills(
    store: EventStore, store_url: str, target_spec: str, target: Target, kills: int, seed: int
) -> None:
    kill_at_random_moments(store_url, target_spec, kills, seed)
    runner = ProjectionRunner(OrderSummary(), target, Source("orders", store, registry))
    await runner.catch_up()
    assert runner.version == 1
    rows = await target._call(  # type: ignore[attr-defined]
        lambda: target._transaction(  # type: ignore[attr-defined]
            lambda run: sorted(tuple(r) for r in run("SELECT * FROM orders").fetchall()), None
        )
    )
    assert rows == await fold_store(store)


@pytest.mark.parametrize("seed", [1, 2])
async def test_sqlite_projection_killed_while_catching_up_ends_equal_to_the_fold(
    tmp_path: Path, seed: int
) -> None:
    store_path = tmp_path / "events.db"
    store_url = f"sqlite://{store_path}"
    async with await open_store(store_url) as store:
        await append_all(store, random_events(random.Random(seed), 100_000))
        async with await SqliteTarget.open(tmp_path / "views.db") as target:
            await check_fold_after_kills(
                store, store_url, str(tmp_path / "views.db"), target, kills=4, seed=seed
            )


@pytest.fixture
async def pg_schema() -> AsyncIterator[str]:
    reason = unavailable_reason(BACKENDS["postgres"])
    if reason is not None:
        pytest.skip(reason)
    import psycopg

    schema = f"test_kill_{uuid.uuid4().hex[:12]}"
    try:
        yield schema
    finally:
        async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as admin:
            await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}_views" CASCADE')


async def test_postgres_projection_killed_while_catching_up_ends_equal_to_the_fold(
    pg_schema: str,
) -> None:
    from eventcore.projection.postgres import PostgresTarget

    store_url = f"{POSTGRES_URL}?schema={pg_schema}"
    target_url = f"{POSTGRES_URL}?schema={pg_schema}_views"
    async with await open_store(store_url) as store:
        await append_all(store, random_events(random.Random(3), 30_000))
        async with await PostgresTarget.open(target_url) as target:
            await check_fold_after_kills(store, store_url, target_url, target, kills=3, seed=3)
