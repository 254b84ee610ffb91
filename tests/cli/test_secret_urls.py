"""The command line never prints a password or token given in a store, bus or registry URL:
everything it writes (stdout, stderr, in-process and as a process of its own, with the
logs) is scanned, for URLs that fail in every way a URL can and for ones that work."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest
from typer.testing import CliRunner

from eventcore.registry import Instance, open_registry
from tests.backends import POSTGRES_URL
from tests.cli.conftest import invoke, run_eventcore
from tests.messaging.auth_nats import PASSWORD, free_port

WRONG = "Wrong-pg-password-6170"
SECRETS = (PASSWORD, WRONG)
_HOST = POSTGRES_URL.split("://", 1)[1].split("/", 1)[0].rpartition("@")[2]
_USER = POSTGRES_URL.split("://", 1)[1].partition("@")[0]


def pg(password: str, *, host: str = _HOST, database: str = "test", query: str = "") -> str:
    return f"postgresql://{_USER}:{password}@{host}/{database}{query}"


def store_commands(url: str) -> list[list[str]]:
    return [
        ["streams", "list", "--store", url],
        ["streams", "show", "account-1", "--store", url],
        ["events", "tail", "--store", url, "--limit", "1"],
        ["sagas", "list", "--store", url],
        ["db", "migrate", "--store", url.replace("schema=", "x=")],
    ]


STORE_URLS = [
    # The test server trusts local connections, so a wrong password gets in: the schema
    # it names is missing, or the option is unknown, or the database is.
    pg(WRONG, query="?schema=missing_schema_for_secrets"),
    pg(WRONG, query="?bogus=1"),
    pg(WRONG, database="no_such_database_here"),
    pg(WRONG, host=f"127.0.0.1:{free_port()}"),
    pg(WRONG, query="?sslmode=require&sslpassword=" + WRONG + "&schema=missing_schema"),
]


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


@pytest.mark.parametrize(
    "url", STORE_URLS, ids=["no-schema", "bad-option", "no-db", "no-server", "ssl"]
)
def test_store_commands_with_a_wrong_password_print_no_password(
    runner: CliRunner, url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for args in store_commands(url):
        result = invoke(runner, *args)

        assert result.exit_code != 0, (args, result.output)
        assert_no_secret(result.output)
        assert_no_secret(result.stderr)
        assert_no_secret(repr(result.exception))
    assert_no_secret(caplog.text)


def test_a_failing_store_url_in_a_process_of_its_own_prints_no_password(tmp_path: Path) -> None:
    done = run_eventcore([b"streams", b"list", b"--store", STORE_URLS[0].encode()], tmp_path)

    assert done.returncode != 0
    assert b"***" in done.stderr
    assert_no_secret(done.stdout.decode() + done.stderr.decode())


def test_the_store_url_in_the_environment_is_redacted_too(runner: CliRunner) -> None:
    result = invoke(runner, "streams", "list", env={"EVENTCORE_STORE": STORE_URLS[0]})

    assert result.exit_code != 0
    assert "***" in result.stderr
    assert_no_secret(result.output)


def nats_commands(url: str) -> list[list[str]]:
    return [
        ["dlq", "list", "--bus", url],
        ["dlq", "show", "x", "--bus", url],
        ["services", "list", "--registry", url],
        ["services", "list", "--registry", url, "--service", "payments", "--json"],
    ]


@pytest.mark.parametrize(
    "credentials",
    [f"alice:{PASSWORD}@", f"alice:{WRONG}@", f"{WRONG}@"],
    ids=["right-password", "wrong-password", "token"],
)
def test_bus_and_registry_commands_with_nats_credentials_print_no_secret(
    runner: CliRunner, nats_user_server: int, credentials: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"nats://{credentials}127.0.0.1:{nats_user_server}?namespace=never_used_by_a_bus"
    for args in nats_commands(url):
        result = invoke(runner, *args)

        assert result.exit_code != 0, (args, result.output)
        assert_no_secret(result.output)
        assert_no_secret(result.stderr)
        assert_no_secret(repr(result.exception))
    assert_no_secret(caplog.text)


@pytest.mark.parametrize(
    ("flag", "command"),
    [("--bus", ["dlq", "list"]), ("--registry", ["services", "list"])],
    ids=["bus", "registry"],
)
def test_a_refused_nats_password_says_so_in_one_line(
    runner: CliRunner, nats_user_server: int, flag: str, command: list[str]
) -> None:
    url = f"nats://alice:{WRONG}@127.0.0.1:{nats_user_server}"

    result = invoke(runner, *command, flag, url)

    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"error: NATS at 127.0.0.1:{nats_user_server} refused the credentials given: "
        "nats: 'Authorization Violation'"
    )


async def _register_and_abandon(url: str, instance: Instance) -> None:
    """Leave ``instance`` listed until its TTL, as a killed process would."""
    registry = await open_registry(url)
    try:
        registration = registry.register(instance, ttl=600.0)
        running = asyncio.create_task(registration.run())
        await registration.ready()
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    finally:
        await registry.aclose()


def test_services_list_with_a_password_in_the_registry_url_lists_and_hides_it(
    runner: CliRunner, nats_user_server: int, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"nats://alice:{PASSWORD}@127.0.0.1:{nats_user_server}?namespace=cli_services"
    instance = Instance.of("payments", "http://127.0.0.1:8001", instance_id="pay-1")
    asyncio.run(_register_and_abandon(url, instance))

    listed = invoke(runner, "services", "list", "--registry", url, "--json")
    from_env = invoke(runner, "services", "list", env={"EVENTCORE_REGISTRY": url})
    wrong = run_eventcore(
        [b"services", b"list", b"--registry", url.replace(PASSWORD, WRONG).encode()], tmp_path
    )

    assert listed.exit_code == 0, listed.output
    assert [json.loads(line)["instance_id"] for line in listed.stdout.splitlines()] == ["pay-1"]
    assert from_env.exit_code == 0, from_env.output
    assert "pay-1" in from_env.stdout
    assert wrong.returncode == 1
    assert wrong.stderr.decode().count("\n") == 1
    assert "refused the credentials" in wrong.stderr.decode()
    for text in (listed.output, listed.stderr, from_env.output, from_env.stderr, caplog.text):
        assert_no_secret(text)
    assert_no_secret(wrong.stdout.decode() + wrong.stderr.decode())
