"""Projection targets for the read-side tests (stores come from ``tests/conftest.py``)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from eventcore.projection import SqliteTarget
from eventcore.projection._sql_target import SqlTarget
from tests.backends import BACKENDS, POSTGRES_URL, unavailable_reason


@pytest.fixture(params=["sqlite", "postgres"])
async def target(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlTarget]:
    """A fresh SQL target: a new SQLite file, or a new PostgreSQL schema dropped after."""
    if request.param == "sqlite":
        async with await SqliteTarget.open(tmp_path / "views.db") as sqlite_target:
            yield sqlite_target
        return
    reason = unavailable_reason(BACKENDS["postgres"])
    if reason is not None:
        pytest.skip(reason)
    import psycopg

    from eventcore.projection.postgres import PostgresTarget

    schema = f"test_views_{uuid.uuid4().hex[:12]}"
    try:
        pg_target = await PostgresTarget.open(f"{POSTGRES_URL}?schema={schema}")
    except Exception as error:  # an unreachable server skips, as for the store backend
        pytest.skip(f"postgres target unavailable: {error}")
    try:
        yield pg_target
    finally:
        await pg_target.aclose()
        async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as admin:
            await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


async def table(target: SqlTarget, sql: str) -> list[tuple[object, ...]]:
    """Rows of a query on the target, sorted."""

    def body(run: object) -> list[tuple[object, ...]]:
        return sorted(tuple(r) for r in run(sql).fetchall())  # type: ignore[operator]

    return await target._call(lambda: target._transaction(body, None))
