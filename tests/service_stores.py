"""A service's event store, opened and then replaced the ways an operator replaces one:
the SQLite file wiped, or the service moved to a fresh PostgreSQL schema. For the tests
of checkpoints that must notice their store changed (issue 9, defect 13)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

from eventcore import EventStore, open_store
from tests.backends import POSTGRES_URL, skip_or_fail

__all__ = ["ServiceStores"]


class ServiceStores:
    """The service's stores, opened and replaced as an operator would. Use it as
    ``async with ServiceStores.in_directory(path) as stores``: every store is closed (and
    every PostgreSQL schema dropped) at the end."""

    def __init__(self, directory: Path, stack: AsyncExitStack) -> None:
        self._directory = directory
        self._stack = stack

    @classmethod
    @asynccontextmanager
    async def in_directory(cls, directory: Path) -> AsyncIterator[ServiceStores]:
        async with AsyncExitStack() as stack:
            yield cls(directory, stack)

    async def sqlite(self) -> EventStore:
        store = await open_store(f"sqlite://{self._directory.as_posix()}/events.db")
        self._stack.push_async_callback(store.aclose)
        return store

    async def wiped(self, old: EventStore) -> EventStore:
        """The SQLite file deleted and the service started again on the same path."""
        await old.aclose()
        for suffix in ("", "-wal", "-shm"):
            (self._directory / f"events.db{suffix}").unlink(missing_ok=True)
        return await self.sqlite()

    async def postgres(self) -> EventStore:
        import psycopg

        try:
            admin = await psycopg.AsyncConnection.connect(
                POSTGRES_URL, autocommit=True, connect_timeout=5
            )
        except psycopg.OperationalError as error:
            skip_or_fail(f"PostgreSQL unavailable at {POSTGRES_URL}: {error}")
        schema = f"test_{uuid.uuid4().hex[:16]}"

        async def drop() -> None:
            async with admin:
                await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

        self._stack.push_async_callback(drop)
        store = await open_store(f"{POSTGRES_URL}?schema={schema}")
        self._stack.push_async_callback(store.aclose)
        return store

    async def replacement(self, kind: str, old: EventStore) -> EventStore:
        if kind == "wiped-sqlite-file":
            return await self.wiped(old)
        await old.aclose()
        return await self.postgres()
