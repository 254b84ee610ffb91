"""``eventcore services list`` against a SQLite registry holding known instances."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from eventcore.registry import Instance, open_registry
from tests.cli.conftest import invoke, sqlite_url

#: Long enough that the instances outlive the test without a process renewing them.
TTL = 600.0
INSTANCES = [
    Instance.of(
        "payments",
        "http://127.0.0.1:8001",
        instance_id="pay-1",
        version="1.4.2",
        metadata={"zone": "eu-1"},
    ),
    Instance.of("payments", "http://127.0.0.1:8002", instance_id="pay-2", version="1.4.2"),
    Instance.of("orders", "http://127.0.0.1:9001", instance_id="ord-1"),
]


async def _register(url: str, instances: list[Instance]) -> None:
    """Register each instance and abandon it, as a killed process would: it stays listed
    until its TTL runs out."""
    registry = await open_registry(url)
    try:
        for instance in instances:
            registration = registry.register(instance, ttl=TTL)
            running = asyncio.create_task(registration.run())
            await registration.ready()
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
    finally:
        await registry.aclose()


@pytest.fixture
def registry_url(tmp_path: Path) -> str:
    url = sqlite_url(tmp_path / "registry.db")
    asyncio.run(_register(url, INSTANCES))
    return url


def test_list_shows_every_live_instance_by_service(runner: CliRunner, registry_url: str) -> None:
    result = invoke(runner, "services", "list", "--registry", registry_url)

    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if "http://" in line]
    assert [line.split("│")[1].strip() for line in lines] == ["orders", "payments", "payments"]
    assert "zone=eu-1" in result.stdout
    assert "1.4.2" in result.stdout


def test_list_json_prints_one_record_per_instance(runner: CliRunner, registry_url: str) -> None:
    result = invoke(runner, "services", "list", "--registry", registry_url, "--json")

    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert records == [
        {
            "service": each.service,
            "instance_id": each.instance_id,
            "address": each.address,
            "version": each.version,
            "metadata": each.metadata,
        }
        for each in [INSTANCES[2], INSTANCES[0], INSTANCES[1]]
    ]


def test_list_of_one_service_and_the_registry_from_the_environment(
    runner: CliRunner, registry_url: str
) -> None:
    result = invoke(
        runner,
        "services",
        "list",
        "--service",
        "orders",
        "--json",
        env={"EVENTCORE_REGISTRY": registry_url},
    )

    assert result.exit_code == 0, result.output
    assert [json.loads(line)["instance_id"] for line in result.stdout.splitlines()] == ["ord-1"]


def test_an_empty_registry_lists_nothing_and_says_so(runner: CliRunner, tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "empty-registry.db")
    asyncio.run(_register(url, []))

    result = invoke(runner, "services", "list", "--registry", url, "--json")

    assert result.exit_code == 0
    assert result.stdout == ""
    assert "no live instances" in result.stderr


@pytest.mark.parametrize(
    ("args", "code", "said"),
    [
        (["--registry", "bogus://x"], 2, "unknown registry scheme"),
        (["--registry", "nats://admin:hunter2@127.0.0.1:1"], 3, "cannot reach NATS"),
        (["--registry", "nats://admin:hunter2@127.0.0.1:4222?colour=red"], 2, "unknown option"),
        (["--service", "pay ments"], 2, "invalid service"),
        ([], 2, "no registry given"),
    ],
)
def test_bad_input_is_one_line_and_never_shows_a_password(
    runner: CliRunner, registry_url: str, args: list[str], code: int, said: str
) -> None:
    env = {"EVENTCORE_REGISTRY": registry_url if "--registry" not in args and args else ""}

    result = invoke(runner, "services", "list", *args, env=env)

    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert said in lines[0]
    assert "hunter2" not in result.output


def test_a_missing_registry_file_is_not_found_and_not_created(
    runner: CliRunner, tmp_path: Path
) -> None:
    missing = tmp_path / "missing.db"

    result = invoke(runner, "services", "list", "--registry", sqlite_url(missing))

    assert result.exit_code == 1
    assert "not found" in result.stderr
    assert not missing.exists()
