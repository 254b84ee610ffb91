"""Fixtures of the registry tests: a fresh registry on every backend.

``make_registry`` opens one more handle on the test's registry (memory: the same one);
``registry_url`` is its URL, for tests that hand it to other processes. NATS gets a
fresh namespace per test, dropped afterwards; an unreachable server skips (fails under
``CI=true``).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from eventcore.registry import Registry, open_registry
from eventcore.testing.registry import MakeRegistry
from tests.messaging.buses import NATS_URL, drop_nats_namespace, require_nats

BACKENDS = ["memory", "sqlite", "nats"]


@pytest.fixture(params=BACKENDS, ids=BACKENDS)
def registry_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def registry_url(registry_backend: str, tmp_path: Path) -> AsyncIterator[str]:
    if registry_backend == "memory":
        yield "memory://"
    elif registry_backend == "sqlite":
        yield f"sqlite://{tmp_path / 'registry.db'}"
    else:
        await require_nats()
        namespace = f"t{uuid.uuid4().hex[:10]}"
        yield f"{NATS_URL}?namespace={namespace}"
        await drop_nats_namespace(namespace)


@pytest.fixture
async def make_registry(registry_url: str) -> AsyncIterator[MakeRegistry]:
    opened: list[Registry] = []

    async def make() -> Registry:
        if registry_url == "memory://" and opened:
            return opened[0]
        registry = await open_registry(registry_url)
        opened.append(registry)
        return registry

    yield make
    for registry in opened:
        await registry.aclose()
