"""Fixtures for the PostgreSQL-only store tests."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import psycopg
import pytest

from tests.backends import POSTGRES_URL, skip_or_fail


@pytest.fixture
async def schema() -> AsyncIterator[str]:
    """A fresh schema name, dropped after the test."""
    try:
        admin = await psycopg.AsyncConnection.connect(
            POSTGRES_URL, autocommit=True, connect_timeout=5
        )
    except psycopg.OperationalError as error:
        reason = f"PostgreSQL unavailable at {POSTGRES_URL}: {error}"
        skip_or_fail(reason, "the postgres tests must run")
    name = f"test_{uuid.uuid4().hex[:16]}"
    async with admin:
        yield name
        await admin.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
