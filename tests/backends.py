"""The event-store backends the contract suite runs on: name → factory of a fresh, empty store.

A factory is an async context manager: it opens a new, empty store and, on exit, closes it
(and removes whatever it created, for a server backend). ``tests/store/conftest.py``
parametrises the ``store`` fixture over every entry of ``BACKENDS``.

A backend whose driver cannot be imported is skipped with the reason; under ``CI=true``
it fails instead, so CI never passes by skipping a backend.
"""

from __future__ import annotations

import importlib
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

from eventcore.store import EventStore, open_store

__all__ = ["BACKENDS", "Backend", "StoreFactory", "skip_or_fail", "unavailable_reason"]

#: ``factory(workdir, max_payload_bytes=None)`` → an async context manager of a fresh store.
#: ``workdir`` is an empty directory the factory may use; ``None`` keeps the store's default.
StoreFactory = Callable[..., AbstractAsyncContextManager[EventStore]]


@dataclass(frozen=True)
class Backend:
    name: str
    open: StoreFactory
    #: Modules that must import for this backend to run (its implementation, its driver).
    requires: tuple[str, ...] = ()


def unavailable_reason(backend: Backend) -> str | None:
    """Why ``backend`` cannot run here, or ``None`` when it can."""
    for module in backend.requires:
        try:
            importlib.import_module(module)
        except ImportError as error:
            return f"{backend.name} backend unavailable: cannot import {module} ({error})"
    return None


def running_in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def skip_or_fail(reason: str, why: str = "every server-backed test must run") -> NoReturn:
    """Skip the test with ``reason``; under ``CI=true`` fail it instead, so CI never
    passes by skipping what it is there to run."""
    if running_in_ci():
        pytest.fail(f"{reason} (CI=true: {why})", pytrace=False)
    pytest.skip(reason)


@asynccontextmanager
async def _closing(url: str, max_payload_bytes: int | None) -> AsyncIterator[EventStore]:
    store = await open_store(url, max_payload_bytes=max_payload_bytes)
    try:
        yield store
    finally:
        await store.aclose()


def _memory(
    workdir: Path, *, max_payload_bytes: int | None = None
) -> AbstractAsyncContextManager[EventStore]:
    return _closing("memory://", max_payload_bytes)


def _sqlite(
    workdir: Path, *, max_payload_bytes: int | None = None
) -> AbstractAsyncContextManager[EventStore]:
    # ``workdir`` is absolute, so this is sqlite:///abs/path/events.db.
    return _closing(f"sqlite://{workdir.resolve().as_posix()}/events.db", max_payload_bytes)


#: The server the postgres backend uses; each store gets a fresh schema there.
POSTGRES_URL = os.environ.get(
    "EVENTCORE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


@asynccontextmanager
async def _postgres(
    workdir: Path, *, max_payload_bytes: int | None = None
) -> AsyncIterator[EventStore]:
    """A store in a new, uniquely named schema, dropped (with everything in it) on exit.

    An unreachable server skips the test with the reason; under ``CI=true`` it fails.
    """
    import psycopg

    try:
        admin = await psycopg.AsyncConnection.connect(
            POSTGRES_URL, autocommit=True, connect_timeout=5
        )
    except psycopg.OperationalError as error:
        reason = f"postgres backend unavailable: cannot reach {POSTGRES_URL} ({error})"
        skip_or_fail(reason, "every backend must run")
    schema = f"test_{uuid.uuid4().hex[:16]}"
    async with admin:
        try:
            async with _closing(f"{POSTGRES_URL}?schema={schema}", max_payload_bytes) as store:
                yield store
        finally:
            await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


BACKENDS: dict[str, Backend] = {
    "memory": Backend("memory", _memory),
    "sqlite": Backend("sqlite", _sqlite, requires=("eventcore.store.sqlite",)),
    "postgres": Backend(
        "postgres", _postgres, requires=("psycopg", "psycopg_pool", "eventcore.store.postgres")
    ),
}


#: ``await make_store()`` opens one more fresh, empty store on the test's backend;
#: ``await make_store(max_payload_bytes=10)`` opens one with a payload limit.
MakeStore = Callable[..., Awaitable[EventStore]]
