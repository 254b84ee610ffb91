"""The store identity on disk: made by a migration, read back on every open, kept by a
copy, new for a new file or schema; files and schemas of the previous version gain one
on their first open without losing anything."""

from __future__ import annotations

import shutil
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import psycopg
import pytest

from eventcore.store import open_store
from eventcore.store.postgres import _schema as _pg_schema
from eventcore.store.sqlite import SqliteStore
from eventcore.store.sqlite import _schema as _sqlite_schema
from tests.backends import POSTGRES_URL
from tests.builders import events, sid
from tests.schema_history import as_of_version


async def _append_and_read(path: Path, count: int) -> list[Any]:
    async with await SqliteStore.open(path) as store:
        await store.append({sid("a"): events(count)}, expected={sid("a"): 0})
        return [event async for batch in store.read_all() for event in batch]


async def _log_and_id(url: str) -> tuple[list[Any], str]:
    store = await open_store(url)
    try:
        log = [event async for batch in store.read_all() for event in batch]
        return log, await store.store_id()
    finally:
        await store.aclose()


# --- SQLite ----------------------------------------------------------------------------------


async def test_a_sqlite_store_keeps_its_id_across_reopening(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    async with await SqliteStore.open(path) as store:
        made = await store.store_id()

    async with await SqliteStore.open(path) as again:
        assert await again.store_id() == made


async def test_a_copied_file_keeps_the_id_and_a_wiped_file_gets_a_new_one(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    async with await SqliteStore.open(path) as store:
        made = await store.store_id()
    shutil.copy(path, tmp_path / "copy.db")
    for suffix in ("", "-wal", "-shm"):
        (tmp_path / f"events.db{suffix}").unlink(missing_ok=True)

    async with (
        await SqliteStore.open(tmp_path / "copy.db") as copy,
        await SqliteStore.open(path) as wiped,
    ):
        assert await copy.store_id() == made
        assert await wiped.store_id() != made


async def test_a_sqlite_file_of_schema_version_1_gains_an_id_and_keeps_its_events(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "events.db"
    with monkeypatch.context() as previous:
        # The store as it was before the identity.
        as_of_version(previous, _sqlite_schema, 1)
        written = await _append_and_read(path, 5)
    with closing(sqlite3.connect(path)) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    assert "store_identity" not in tables

    log, made = await _log_and_id(f"sqlite://{path.as_posix()}")
    again_log, again = await _log_and_id(f"sqlite://{path.as_posix()}")

    assert log == again_log == written
    assert again == made
    with closing(sqlite3.connect(path)) as connection:
        versions = connection.execute("SELECT version FROM schema_migrations ORDER BY 1")
        assert [row[0] for row in versions] == [1, 2]


# --- PostgreSQL ------------------------------------------------------------------------------


async def test_a_postgres_store_keeps_its_id_and_another_schema_has_its_own(
    schema: str,
) -> None:
    url = f"{POSTGRES_URL}?schema={schema}"
    _, made = await _log_and_id(url)
    _, again = await _log_and_id(url)
    other_schema = f"{schema}_b"
    try:
        _, other = await _log_and_id(f"{POSTGRES_URL}?schema={other_schema}")
    finally:
        async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as admin:
            await admin.execute(f'DROP SCHEMA IF EXISTS "{other_schema}" CASCADE')

    assert again == made
    assert other != made


async def test_a_postgres_schema_of_version_3_gains_an_id_and_keeps_its_events(
    schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"{POSTGRES_URL}?schema={schema}"
    with monkeypatch.context() as previous:
        # The store as it was before the identity: migrations 1 to 3.
        previous.setattr(_pg_schema, "MIGRATIONS", _pg_schema.MIGRATIONS[:3])
        store = await open_store(url)
        try:
            await store.append({sid("a"): events(5)}, expected={sid("a"): 0})
            written = [event async for batch in store.read_all() for event in batch]
        finally:
            await store.aclose()

    log, made = await _log_and_id(url)
    again_log, again = await _log_and_id(url)

    assert log == again_log == written
    assert again == made
    async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as admin:
        cursor = await admin.execute(f'SELECT version FROM "{schema}".schema_migrations ORDER BY 1')
        assert [row[0] for row in await cursor.fetchall()] == [1, 2, 3, 4]
