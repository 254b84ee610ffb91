"""The projection-target contract (``eventcore.testing.target``) on every target:
``MemoryTarget``, a SQLite file and a PostgreSQL schema (an unreachable server skips, or
fails under ``CI=true``)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from eventcore.projection import MemoryTarget, SqliteTarget
from eventcore.projection.target import Target
from eventcore.testing.target import (
    MEMORY_RECORDER,
    SQL_RECORDER,
    MakeTarget,
    Recorder,
    TargetContract,
)
from tests.backends import BACKENDS, POSTGRES_URL, skip_or_fail, unavailable_reason


class TestMemoryTarget(TargetContract):
    atomic = False  # applied, then the checkpoint moves: at least once

    @pytest.fixture
    def recorder(self) -> Recorder:
        return MEMORY_RECORDER

    @pytest.fixture
    def make_target(self) -> MakeTarget:
        target = MemoryTarget()

        async def make() -> Target:
            return target

        return make


class TestSqliteTarget(TargetContract):
    @pytest.fixture
    def recorder(self) -> Recorder:
        return SQL_RECORDER

    @pytest.fixture
    async def make_target(self, tmp_path: Path) -> AsyncIterator[MakeTarget]:
        async with AsyncExitStack() as stack:

            async def make() -> Target:
                target = await SqliteTarget.open(tmp_path / "views.db")
                stack.push_async_callback(target.aclose)
                return target

            yield make


class TestPostgresTarget(TargetContract):
    @pytest.fixture
    def recorder(self) -> Recorder:
        return SQL_RECORDER

    @pytest.fixture
    async def make_target(self) -> AsyncIterator[MakeTarget]:
        reason = unavailable_reason(BACKENDS["postgres"])
        if reason is not None:
            skip_or_fail(reason, "every target must run")
        import psycopg

        from eventcore.projection.postgres import PostgresTarget

        try:
            admin = await psycopg.AsyncConnection.connect(
                POSTGRES_URL, autocommit=True, connect_timeout=5
            )
        except psycopg.OperationalError as error:
            skip_or_fail(f"postgres target unavailable: {error}", "every target must run")
        schema = f"test_views_{uuid.uuid4().hex[:12]}"
        async with admin, AsyncExitStack() as stack:
            stack.push_async_callback(admin.execute, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

            async def make() -> Target:
                target = await PostgresTarget.open(f"{POSTGRES_URL}?schema={schema}")
                stack.push_async_callback(target.aclose)
                return target

            yield make
