"""The command line never prints a password or token given in a store or bus URL:
everything it writes (stdout, stderr, in-process and as a process of its own, with the
logs) is scanned, for URLs that fail in every way a URL can and for ones that work."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.backends import POSTGRES_URL
from tests.cli.conftest import invoke, run_eventcore
from tests.messaging.auth_nats import PASSWORD, free_port, serve_with_auth

WRONG = "Wrong-pg-password-6170"
SECRETS = (PASSWORD, WRONG)
_HOST = POSTGRES_URL.split("://", 1)[1].split("/", 1)[0].rpartition("@")[2]
_USER = POSTGRES_URL.split("://", 1)[1].partition("@")[0]


def pg(password: str, *, host: str = _HOST, database: str = "test", query: str = "") -> str:
    return f"postgresql://{_USER}:{password}@{host}/{database}{query}"


@pytest.fixture(scope="module")
def nats_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    yield from serve_with_auth(tmp_path_factory.mktemp("cli-nats"), "users")


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


@pytest.mark.parametrize(
    "credentials",
    [f"alice:{PASSWORD}@", f"alice:{WRONG}@", f"{WRONG}@"],
    ids=["right-password", "wrong-password", "token"],
)
def test_dlq_commands_with_nats_credentials_print_no_secret(
    runner: CliRunner, nats_port: int, credentials: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"nats://{credentials}127.0.0.1:{nats_port}?namespace=never_used_by_a_bus"
    for args in (["dlq", "list", "--bus", url], ["dlq", "show", "x", "--bus", url]):
        result = invoke(runner, *args)

        assert result.exit_code != 0, result.output
        assert_no_secret(result.output)
        assert_no_secret(result.stderr)
        assert_no_secret(repr(result.exception))
    assert_no_secret(caplog.text)


def test_a_refused_nats_password_says_so_in_one_line(runner: CliRunner, nats_port: int) -> None:
    url = f"nats://alice:{WRONG}@127.0.0.1:{nats_port}"

    result = invoke(runner, "dlq", "list", "--bus", url)

    assert result.stderr.strip() == (
        f"error: NATS at 127.0.0.1:{nats_port} refused the credentials given: "
        "nats: 'Authorization Violation'"
    )
