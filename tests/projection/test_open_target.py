"""open_target: one URL opens any projection target, as open_store and open_bus do."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from eventcore.errors import DatabaseNotFound, InvalidUrl
from eventcore.projection import MemoryTarget, SqliteTarget, open_target
from tests.backends import BACKENDS, POSTGRES_URL, unavailable_reason


async def test_a_memory_url_opens_a_new_memory_target() -> None:
    target = await open_target("memory://")

    assert isinstance(target, MemoryTarget)
    await target.aclose()


async def test_a_sqlite_url_creates_a_target_file_that_a_looking_opener_then_finds(
    tmp_path: Path,
) -> None:
    url = f"sqlite://{tmp_path / 'views.db'}?synchronous=FULL"
    created = await open_target(url)
    await created.aclose()

    found = await open_target(f"sqlite://{tmp_path / 'views.db'}", create=False)

    assert isinstance(created, SqliteTarget)
    assert isinstance(found, SqliteTarget)
    assert found.path == str(tmp_path / "views.db")
    await found.aclose()


@pytest.mark.parametrize(
    "url", ["sqlite:///nowhere/views.db", "memory://"], ids=["missing-file", "memory"]
)
async def test_opening_without_create_refuses_a_target_that_is_not_there(
    url: str, tmp_path: Path
) -> None:
    url = url.replace("/nowhere", str(tmp_path / "nowhere"))

    with pytest.raises(DatabaseNotFound):
        await open_target(url, create=False)

    assert not (tmp_path / "nowhere").exists()


@pytest.mark.parametrize(
    "url",
    [
        "views.db",
        "redis://localhost",
        "sqlite://",
        "memory://somewhere",
        "memory://?synchronous=FULL",
        "sqlite:///tmp/views.db?colour=blue",
    ],
)
async def test_a_bad_url_is_invalid_before_anything_is_opened(url: str) -> None:
    with pytest.raises(InvalidUrl):
        await open_target(url)


async def test_a_postgresql_url_opens_a_target_in_its_schema() -> None:
    reason = unavailable_reason(BACKENDS["postgres"])
    if reason is not None:
        pytest.skip(reason)
    import psycopg

    from eventcore.projection.postgres import PostgresTarget

    schema = f"test_open_{uuid.uuid4().hex[:12]}"
    try:
        target = await open_target(f"{POSTGRES_URL}?schema={schema}")
        try:
            assert isinstance(target, PostgresTarget)
            assert target.schema == schema
        finally:
            await target.aclose()
    finally:
        async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as admin:
            await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
