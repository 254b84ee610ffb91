"""``eventcore projections rebuild`` rebuilds from the source the service's runner follows.

A rebuild under another source name left the runner (``Source("orders", …)``) a
checkpoint of 0 on the new live version: it applied the whole log again on top of the
rebuilt state (a UNIQUE constraint error in the projections guide, double counts here).
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from eventcore import open_store
from eventcore.projection import ProjectionRunner, Source, SqliteTarget
from tests.cli.conftest import invoke, sqlite_url
from tests.projection.orders import OrderSummary, append_all, fold_store, random_events, registry

APP = ("--app", "tests.projection.orders:projections")
REGISTRY = ("--registry", "tests.projection.orders:registry")


async def _follow(store_url: str, target_path: Path, *sources: str) -> None:
    """What the service does: its runner catches up under its own source names."""
    async with (
        await open_store(store_url) as store,
        await SqliteTarget.open(target_path) as target,
    ):
        await ProjectionRunner(
            OrderSummary(), target, [Source(name, store, registry) for name in sources]
        ).catch_up()


async def _fold(store_url: str) -> list[tuple[object, ...]]:
    async with await open_store(store_url) as store:
        return list(await fold_store(store))


def _rows(target_path: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(target_path) as db:
        return sorted(db.execute("SELECT * FROM orders").fetchall())


def _bookkeeping(target_path: Path) -> list[list[tuple[object, ...]]]:
    """Every version and checkpoint the target holds."""
    with sqlite3.connect(target_path) as db:
        return [
            sorted(db.execute(f"SELECT * FROM {table}").fetchall())
            for table in ("eventcore_projections", "eventcore_checkpoints")
        ]


async def _empty_target(target_path: Path) -> None:
    async with await SqliteTarget.open(target_path):
        pass


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    url = sqlite_url(tmp_path / "events.db")

    async def fill() -> None:
        async with await open_store(url) as store:
            await append_all(store, random_events(random.Random(3), 200))

    asyncio.run(fill())
    return url


def _rebuild(runner: CliRunner, store_url: str, target_path: Path, *more: str) -> Result:
    return invoke(
        runner,
        "projections",
        "rebuild",
        "order_summary",
        *APP,
        *REGISTRY,
        "--store",
        store_url,
        "--target",
        sqlite_url(target_path),
        *more,
    )


def test_a_rebuild_without_source_follows_the_live_versions_and_the_runner_carries_on(
    runner: CliRunner, store_url: str, tmp_path: Path
) -> None:
    views = tmp_path / "views.db"
    asyncio.run(_follow(store_url, views, "orders"))

    result = _rebuild(runner, store_url, views)

    assert result.exit_code == 0, result.output
    asyncio.run(_follow(store_url, views, "orders"))
    assert _rows(views) == asyncio.run(_fold(store_url))


@pytest.mark.parametrize(
    ("sources", "more", "words"),
    [
        pytest.param(("orders",), ("--source", "main"), "follows source 'orders'", id="other"),
        pytest.param((), (), "--source NAME", id="no-live-version"),
        pytest.param(("orders", "refunds"), (), "several sources", id="several"),
    ],
)
def test_a_rebuild_from_a_source_the_runner_would_not_follow_is_refused_and_writes_nothing(
    runner: CliRunner,
    store_url: str,
    tmp_path: Path,
    sources: tuple[str, ...],
    more: tuple[str, ...],
    words: str,
) -> None:
    views = tmp_path / "views.db"
    if sources:
        asyncio.run(_follow(store_url, views, *sources))
    else:
        asyncio.run(_empty_target(views))
    before = _bookkeeping(views)

    result = _rebuild(runner, store_url, views, *more)

    assert result.exit_code == 2, result.output
    assert words in result.output
    assert "Traceback" not in result.output
    assert _bookkeeping(views) == before
