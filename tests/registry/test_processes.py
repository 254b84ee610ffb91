"""The registry across real processes, on SQLite (one file, shared by the processes of
the machine) and NATS (a JetStream key-value bucket): instances in child processes
register and are listed; one killed with SIGKILL drops out once its TTL runs out; one
stopped with SIGTERM deregisters at once; and a ``ServiceClient`` resolving through the
registry fails over from a killed instance to the live one without a failed call.

Nothing here is timed: a disappearance is waited for, and the test fails only if it
never comes (``PATIENCE``).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from eventcore.registry import Registry, RegistryResolver, open_registry
from eventcore.resilience import ServiceClient
from tests.messaging.buses import NATS_URL, drop_nats_namespace, require_nats

ROOT = Path(__file__).resolve().parents[2]
#: The instances' TTL: a killed one is waited for about this long.
TTL = 2.0
PATIENCE = 60.0


class Child:
    """An instance process (``tests.registry.instance_process``)."""

    def __init__(self, process: asyncio.subprocess.Process, address: str) -> None:
        self.process = process
        self.address = address

    async def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()

    async def terminate(self) -> str:
        """SIGTERM; what the process printed after ``ready``."""
        self.process.send_signal(signal.SIGTERM)
        assert self.process.stdout is not None
        rest = await self.process.stdout.read()
        await self.process.wait()
        return rest.decode()


StartChild = Callable[[str], Awaitable[Child]]


@pytest.fixture(params=["sqlite", "nats"])
async def registry_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite://{tmp_path / 'registry.db'}"
        return
    await require_nats()
    namespace = f"t{uuid.uuid4().hex[:10]}"
    yield f"{NATS_URL}?namespace={namespace}"
    await drop_nats_namespace(namespace)


@pytest.fixture
async def registry(registry_url: str) -> AsyncIterator[Registry]:
    opened = await open_registry(registry_url)
    yield opened
    await opened.aclose()


@pytest.fixture
async def start_child(registry_url: str) -> AsyncIterator[StartChild]:
    children: list[asyncio.subprocess.Process] = []
    environment = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}

    async def start(instance_id: str) -> Child:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.registry.instance_process",
            registry_url,
            "payments",
            instance_id,
            str(TTL),
            cwd=ROOT,
            env=environment,
            stdout=asyncio.subprocess.PIPE,
        )
        children.append(process)
        assert process.stdout is not None
        async with asyncio.timeout(PATIENCE):
            line = (await process.stdout.readline()).decode()
        assert line.startswith("ready "), f"the instance did not start: {line!r}"
        return Child(process, line.split()[1])

    yield start
    for process in children:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PATIENCE
    while not await check():
        if loop.time() > deadline:
            pytest.fail(f"never happened: {what}")
        await asyncio.sleep(0.1)


async def addresses(registry: Registry) -> list[str]:
    return sorted(instance.address for instance in await registry.discover("payments"))


async def test_two_instances_are_listed_and_a_killed_one_drops_out_once_its_ttl_runs_out(
    registry: Registry, registry_url: str, start_child: StartChild
) -> None:
    first, second = await start_child("first"), await start_child("second")
    assert await addresses(registry) == sorted([first.address, second.address])
    assert await registry.services() == ["payments"]
    listed = _services_list(registry_url)
    assert sorted(record["instance_id"] for record in listed) == ["first", "second"]

    await first.kill()

    async def only_second() -> bool:
        return await addresses(registry) == [second.address]

    await until(only_second, "the killed instance dropped out")
    assert [record["instance_id"] for record in _services_list(registry_url)] == ["second"]


async def test_an_instance_stopped_with_sigterm_deregisters_at_once(
    registry: Registry, start_child: StartChild
) -> None:
    staying, leaving = await start_child("staying"), await start_child("leaving")

    said = await leaving.terminate()

    assert said.split() == ["stopped"]
    assert leaving.process.returncode == 0
    # No wait: a clean stop takes the instance off the listing before the process ends.
    assert await addresses(registry) == [staying.address]


async def test_the_client_fails_over_from_a_killed_instance_without_a_failed_call(
    registry: Registry, start_child: StartChild
) -> None:
    first, second = await start_child("first"), await start_child("second")
    # refresh=0: every call asks the registry, so the killed instance is offered for as
    # long as the registry lists it, and the failover is what keeps the calls whole.
    client = ServiceClient(RegistryResolver(registry, refresh=0))
    try:
        answered: list[str] = []
        for _ in range(4):
            answered.append(await _call(client))
        assert set(answered) == {"first", "second"}  # round robin over both

        await first.kill()

        async def dropped_out() -> bool:
            # Each look makes one idempotent call, which must be answered, by the
            # live instance, while the dead one is still listed and after.
            assert await _call(client) == "second"
            return await addresses(registry) == [second.address]

        await until(dropped_out, "the killed instance dropped out")
        for _ in range(4):
            assert await _call(client) == "second"
    finally:
        await client.aclose()


async def _call(client: ServiceClient) -> str:
    response: httpx.Response = await client.get("http://payments/orders/7")
    assert response.status_code == 200
    return str(response.json()["instance"])


def _services_list(registry_url: str) -> list[dict[str, object]]:
    """``eventcore services list --json`` in a process of its own."""
    done = subprocess.run(
        [sys.executable, "-m", "eventcore.cli", "services", "list", "--json"],
        env={**os.environ, "PYTHONPATH": str(ROOT / "src"), "EVENTCORE_REGISTRY": registry_url},
        capture_output=True,
        text=True,
        check=True,
        timeout=PATIENCE,
    )
    return [json.loads(line) for line in done.stdout.splitlines()]
