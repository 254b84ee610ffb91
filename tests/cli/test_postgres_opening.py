"""PostgreSQL URLs on the command line: a server that is not there is one line, soon
(issue 9, defect 11), and looking at a schema never creates or migrates it (defect 15).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from eventcore.cli.options import CONNECT_TIMEOUT, with_connect_timeout
from eventcore.store import StoreUrl
from eventcore.store.postgres._schema import MIGRATIONS
from eventcore.store.postgres.store import DEFAULT_CONNECT_TIMEOUT, PostgresConfig
from tests.cli.conftest import invoke, one_line_error, run_eventcore, schema_exists

Admin = psycopg.Connection[tuple[object, ...]]


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on: connecting is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts connections and never answers: a server that hangs."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)  # the kernel completes handshakes; nobody ever reads
        yield listener.getsockname()[1]


@pytest.mark.parametrize(
    "args",
    [["streams", "list", "--store"], ["events", "tail", "--store"], ["db", "migrate"]],
    ids=["streams-list", "events-tail", "db-migrate"],
)
def test_an_unreachable_server_is_one_line_without_pool_warnings(
    closed_port: int, tmp_path: Path, args: list[str]
) -> None:
    # A real process: the pool's warnings went to stderr through logging's last resort,
    # which a test runner's log capture would hide.
    url = f"postgresql://postgres@127.0.0.1:{closed_port}/test"
    done = run_eventcore([arg.encode() for arg in [*args, url]], tmp_path)

    assert done.returncode == 3
    lines = done.stderr.decode().splitlines()
    assert len(lines) == 1, lines  # no psycopg_pool warnings, no libpq line breaks
    assert lines[0].startswith("error: cannot connect to PostgreSQL")
    assert "Connection refused" in lines[0]


def test_a_server_that_never_answers_fails_at_the_urls_connect_timeout(
    runner: CliRunner, silent_port: int
) -> None:
    url = f"postgresql://postgres@127.0.0.1:{silent_port}/test?connect_timeout=2"
    result = invoke(runner, "streams", "list", "--store", url)

    assert result.exit_code == 3
    line = one_line_error(result)
    assert "cannot connect to PostgreSQL" in line
    assert "timeout" in line


def test_the_command_line_waits_briefly_unless_the_url_says_otherwise() -> None:
    assert with_connect_timeout("postgresql://h/db") == (
        f"postgresql://h/db?connect_timeout={CONNECT_TIMEOUT}"
    )
    assert with_connect_timeout("postgres://h/db?schema=a").endswith(
        f"?schema=a&connect_timeout={CONNECT_TIMEOUT}"
    )
    assert with_connect_timeout("postgresql://h/db?connect_timeout=30").endswith("=30")
    assert with_connect_timeout("sqlite:///tmp/e.db") == "sqlite:///tmp/e.db"
    assert CONNECT_TIMEOUT < DEFAULT_CONNECT_TIMEOUT


def test_the_library_always_gives_libpq_a_connect_timeout() -> None:
    # Without one libpq waits for the operating system's TCP timeout (minutes).
    config = PostgresConfig.from_url(StoreUrl.parse("postgresql://h/db"))
    assert f"connect_timeout={DEFAULT_CONNECT_TIMEOUT}" in config.conninfo
    given = PostgresConfig.from_url(StoreUrl.parse("postgresql://h/db?connect_timeout=3"))
    assert given.connect_timeout == 3
    assert "connect_timeout=3" in given.conninfo


@pytest.mark.parametrize("value", ["0", "-1", "soon", "99999999999999999999"])
def test_a_bad_connect_timeout_is_refused_before_connecting(
    runner: CliRunner, closed_port: int, value: str
) -> None:
    url = f"postgresql://postgres@127.0.0.1:{closed_port}/test?connect_timeout={value}"
    result = invoke(runner, "streams", "list", "--store", url)

    assert result.exit_code == 2
    assert "connect_timeout" in one_line_error(result)


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["streams", "list"], "--store"),
        (["streams", "show", "account-alice"], "--store"),
        (["events", "tail"], "--store"),
        (["projections", "list"], "--target"),
        (["projections", "status", "order_summary"], "--target"),
    ],
    ids=["streams-list", "streams-show", "events-tail", "projections-list", "status"],
)
def test_looking_at_a_schema_that_does_not_exist_is_not_found_and_creates_nothing(
    runner: CliRunner, admin: Admin, schema_url: str, args: list[str], option: str
) -> None:
    result = invoke(runner, *args, option, schema_url)

    assert result.exit_code == 1
    line = one_line_error(result)
    assert "not found" in line
    assert not schema_exists(admin, schema_url)


def test_looking_at_a_store_that_needs_migrating_migrates_nothing(
    runner: CliRunner, admin: Admin, schema_url: str
) -> None:
    schema = schema_url.rpartition("schema=")[2]
    admin.execute(f'CREATE SCHEMA "{schema}"')
    admin.execute(
        f'CREATE TABLE "{schema}".schema_migrations'
        " (version integer PRIMARY KEY, description text NOT NULL,"
        " applied_at timestamptz NOT NULL DEFAULT now())"
    )
    admin.execute(f"INSERT INTO \"{schema}\".schema_migrations VALUES (1, 'events', now())")

    result = invoke(runner, "streams", "list", "--store", schema_url)

    assert result.exit_code == 3
    assert "db migrate" in one_line_error(result)
    versions = admin.execute(f'SELECT version FROM "{schema}".schema_migrations').fetchall()
    assert versions == [(1,)]
    assert len(MIGRATIONS) > 1


def test_looking_at_a_migrated_store_works(
    runner: CliRunner, admin: Admin, schema_url: str
) -> None:
    assert invoke(runner, "db", "migrate", schema_url).exit_code == 0

    result = invoke(runner, "streams", "list", "--store", schema_url)

    assert result.exit_code == 0, result.output
    assert "no streams" in result.stderr
