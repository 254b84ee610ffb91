"""Fixtures shared by the whole suite: a fresh store on every backend in ``tests/backends.py``,
and throwaway nats-servers that demand credentials (``tests/messaging/auth_nats.py``)."""

from __future__ import annotations

import faulthandler
import itertools
import os
import sys
from collections.abc import AsyncIterator, Generator, Iterator
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
from tests.messaging.auth_nats import serve_with_auth

#: How long a test's teardown may take before the run is ended. pytest-timeout's alarm
#: (pyproject.toml) fires once per test: when it has failed a hung test, the teardown
#: that follows (closing a store, stopping a relay) may hang on the same fault, and
#: nothing would end it. pytest's own faulthandler timer is no backstop: pytest cancels
#: it as soon as a test fails.
TEARDOWN_PATIENCE = 120.0

#: A copy of the real stderr, taken while pytest's capture is suspended, for the
#: watchdog's dump of every thread's stack.
_stderr_fd = -1


def pytest_configure(config: pytest.Config) -> None:
    global _stderr_fd
    _stderr_fd = os.dup(sys.stderr.fileno())


def pytest_unconfigure(config: pytest.Config) -> None:
    os.close(_stderr_fd)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, object, object]:
    """End the run, with every thread's stack, if a teardown hangs."""
    faulthandler.dump_traceback_later(TEARDOWN_PATIENCE, exit=True, file=_stderr_fd)
    try:
        return (yield)
    finally:
        faulthandler.cancel_dump_traceback_later()


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


@pytest.fixture(scope="session")
def nats_user_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """The port of a nats-server that lets in the user ``alice`` with ``auth_nats.PASSWORD``
    only; one for the session (tests keep apart by namespace)."""
    yield from serve_with_auth(tmp_path_factory.mktemp("nats-users"), "users")


@pytest.fixture(scope="session")
def nats_token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """The port of a nats-server that lets in ``auth_nats.TOKEN`` only."""
    yield from serve_with_auth(tmp_path_factory.mktemp("nats-token"), "token")
