"""Fixtures shared by the whole suite: a fresh store on every backend in ``tests/backends.py``."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from eventcore.store import EventStore
from tests.backends import (
    BACKENDS,
    Backend,
    MakeStore,
    skip_or_fail,
    unavailable_reason,
)


@pytest.fixture(params=list(BACKENDS), ids=list(BACKENDS))
def backend(request: pytest.FixtureRequest) -> Backend:
    backend = BACKENDS[request.param]
    reason = unavailable_reason(backend)
    if reason is not None:
        skip_or_fail(reason, "every backend must run")
    return backend


@pytest.fixture
async def make_store(backend: Backend, tmp_path: Path) -> AsyncIterator[MakeStore]:
    """A factory of fresh stores on the backend; each is closed when the test ends."""
    counter = itertools.count(1)
    async with AsyncExitStack() as stack:

        async def make(*, max_payload_bytes: int | None = None) -> EventStore:
            workdir = tmp_path / f"store-{next(counter)}"
            workdir.mkdir()
            return await stack.enter_async_context(
                backend.open(workdir, max_payload_bytes=max_payload_bytes)
            )

        yield make


@pytest.fixture
async def store(make_store: MakeStore) -> EventStore:
    """A fresh, empty store on each backend; always closed after the test."""
    return await make_store()
