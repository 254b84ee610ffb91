"""What the commands open, and what opening may not do: write into a file of another
kind (issue 9, defect 10) or create and migrate anything while only looking (defect 15).

Every case compares the directory's bytes before and after the command.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from eventcore.messaging import open_bus
from eventcore.projection import SqliteTarget
from tests.cli.conftest import invoke, one_line_error, snapshot, sqlite_url
from tests.messaging.buses import NATS_URL, drop_nats_namespace, require_nats


async def _new_bus(path: Path) -> None:
    bus = await open_bus(sqlite_url(path))
    await bus.aclose()


async def _new_target(path: Path) -> None:
    target = await SqliteTarget.open(path)
    await target.aclose()


@pytest.fixture
def files(populated: str, tmp_path: Path) -> dict[str, str]:
    """One file of each kind, by kind: their sqlite:// URLs."""
    asyncio.run(_new_bus(tmp_path / "bus.db"))
    asyncio.run(_new_target(tmp_path / "views.db"))
    return {
        "store": populated,
        "bus": sqlite_url(tmp_path / "bus.db"),
        "target": sqlite_url(tmp_path / "views.db"),
    }


# (command, the kind of file it opens, the option naming it)
COMMANDS = [
    (["streams", "list"], "store", "--store"),
    (["streams", "show", "account-alice"], "store", "--store"),
    (["events", "tail"], "store", "--store"),
    (["dlq", "list"], "bus", "--bus"),
    (["dlq", "show", "g:t:m"], "bus", "--bus"),
    (["dlq", "retry", "--all", "--group", "g"], "bus", "--bus"),
    (["dlq", "drop", "--all", "--group", "g", "--yes"], "bus", "--bus"),
    (["projections", "list"], "target", "--target"),
    (["projections", "status", "order_summary"], "target", "--target"),
]
NOUNS = {"store": "an event store", "bus": "a message bus", "target": "a projection target"}


@pytest.mark.parametrize(
    ("args", "kind", "option", "other"),
    [
        (args, kind, option, other)
        for args, kind, option in COMMANDS
        for other in NOUNS
        if other != kind
    ],
    ids=lambda value: value if isinstance(value, str) else "-".join(value),
)
def test_a_file_of_another_kind_is_refused_and_left_untouched(
    runner: CliRunner,
    files: dict[str, str],
    tmp_path: Path,
    args: list[str],
    kind: str,
    option: str,
    other: str,
) -> None:
    before = snapshot(tmp_path)

    result = invoke(runner, *args, option, files[other])

    assert result.exit_code == 2
    line = one_line_error(result)
    assert f"is {NOUNS[other]}, not {NOUNS[kind]}" in line
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    ("args", "kind", "option"), COMMANDS, ids=lambda v: "-".join(v) if isinstance(v, list) else v
)
def test_an_empty_file_is_not_found_and_stays_empty(
    runner: CliRunner, tmp_path: Path, args: list[str], kind: str, option: str
) -> None:
    empty = tmp_path / "empty.db"
    empty.touch()

    result = invoke(runner, *args, option, sqlite_url(empty))

    assert result.exit_code == 1
    assert "not found" in one_line_error(result)
    assert [each.name for each in tmp_path.iterdir()] == ["empty.db"]
    assert empty.stat().st_size == 0


@pytest.mark.parametrize(
    ("args", "kind", "option"), COMMANDS, ids=lambda v: "-".join(v) if isinstance(v, list) else v
)
def test_a_missing_file_is_not_found_and_not_created(
    runner: CliRunner, tmp_path: Path, args: list[str], kind: str, option: str
) -> None:
    result = invoke(runner, *args, option, sqlite_url(tmp_path / "missing.db"))

    assert result.exit_code == 1
    assert "not found" in one_line_error(result)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "args",
    [["streams", "list"], ["streams", "show", "account-alice"], ["events", "tail"]],
    ids=["list", "show", "tail"],
)
def test_inspecting_a_store_changes_no_byte_of_it(
    runner: CliRunner, populated: str, tmp_path: Path, args: list[str]
) -> None:
    before = snapshot(tmp_path)

    result = invoke(runner, *args, "--store", populated)

    assert result.exit_code == 0, result.output
    assert snapshot(tmp_path) == before


def test_inspecting_a_memory_store_is_refused(runner: CliRunner) -> None:
    # A new process's memory:// store is always empty: "no streams" would mislead.
    result = invoke(runner, "streams", "list", "--store", "memory://")

    assert result.exit_code == 1
    assert "memory://" in one_line_error(result)


async def _nats_streams(namespace: str) -> list[str]:
    import nats

    client = await nats.connect(NATS_URL, connect_timeout=5, allow_reconnect=False)
    try:
        infos = await client.jsm().streams_info()
        return [info.config.name or "" for info in infos if namespace in (info.config.name or "")]
    finally:
        await client.close()


@pytest.mark.parametrize(
    "args",
    [["dlq", "list"], ["dlq", "show", "g:t:m"], ["dlq", "retry", "--all", "--group", "g"]],
    ids=["list", "show", "retry"],
)
def test_inspecting_a_nats_namespace_no_bus_has_used_creates_nothing(
    runner: CliRunner, args: list[str]
) -> None:
    asyncio.run(require_nats())
    namespace = f"typo{uuid.uuid4().hex[:10]}"
    url = f"{NATS_URL}?namespace={namespace}"
    try:
        result = invoke(runner, *args, "--bus", url)

        assert result.exit_code == 1
        assert "not found" in one_line_error(result)
        assert asyncio.run(_nats_streams(namespace)) == []
    finally:
        asyncio.run(drop_nats_namespace(namespace))
