"""``eventcore dlq list|show|retry|drop`` against a SQLite bus file with known letters."""

from __future__ import annotations

import asyncio
import importlib
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from eventcore.cli import app
from eventcore.messaging import DeadLetter, open_bus
from tests.backends import skip_or_fail
from tests.cli.conftest import invoke, sqlite_url
from tests.cli.samples import LETTERS


@pytest.fixture(autouse=True)
def _sqlite_bus() -> None:
    try:
        importlib.import_module("eventcore.messaging.sqlite")
    except ImportError as error:
        reason = f"the SQLite bus is needed across CLI invocations: {error}"
        skip_or_fail(reason, "every bus must run")


async def _letters(url: str) -> dict[str, DeadLetter]:
    bus = await open_bus(url, create=False)
    try:
        return {each.letter_id: each for each in await bus.dead_letters.letters()}
    finally:
        await bus.aclose()


def rows(output: str) -> list[list[str]]:
    """Each listed letter as [id, type, stream, attempts, status, failed at, reason]: a
    line of fields two spaces apart, then its reason on an indented line."""
    found: list[list[str]] = []
    for line in output.splitlines():
        if line.startswith("  ") and found:
            found[-1].append(line.strip())
        elif line.strip():
            letter_id, kind, stream, attempts, status, failed_at = line.split("  ")
            found.append(
                [
                    letter_id,
                    kind,
                    stream.removeprefix("stream "),
                    attempts.removeprefix("attempts "),
                    status,
                    failed_at,
                ]
            )
    return found


def test_list_shows_every_letter_oldest_first(runner: CliRunner, bus_url: str) -> None:
    result = invoke(runner, "dlq", "list", "--bus", bus_url)
    assert result.exit_code == 0, result.output
    table = rows(result.stdout)
    assert [row[:5] for row in table] == [
        ["ledger:deposits:m-1", "Deposited", "account-alice", "5", "dead"],
        ["ledger:deposits:m-2", "?", "account-alice", "5", "dead"],
        ["ledger:withdrawals:m-3", "?", "account-alice", "5", "dead"],
        ["audit:deposits:m-4", "?", "account-alice", "5", "dead"],
    ]
    assert table[0][5] == "2026-11-26 12:01:00.000Z"
    # The whole reason, never cut (it is what the reader came for).
    assert table[0][6] == LETTERS[0].reason.strip()


async def _claim(url: str, letter_id: str, holder: str) -> DeadLetter:
    bus = await open_bus(url, create=False)
    try:
        await bus.dead_letters.request_retry(letter_id)
        letter = await bus.dead_letters.get(letter_id)
        (claimed,) = await bus.dead_letters.claim_retries(
            letter.group, letter.topic, holder=holder, lease=600.0
        )
        return claimed
    finally:
        await bus.aclose()


def test_list_shows_a_claimed_letter_with_its_holder(runner: CliRunner, bus_url: str) -> None:
    claimed = asyncio.run(_claim(bus_url, "ledger:deposits:m-2", "worker-7"))
    assert claimed.claimed_until is not None

    listed = invoke(runner, "dlq", "list", "--bus", bus_url, "--group", "ledger")
    as_json = invoke(runner, "dlq", "list", "--bus", bus_url, "--json", "--topic", "deposits")

    assert listed.exit_code == 0, listed.output
    statuses = {row[0]: row[4] for row in rows(listed.stdout)}
    assert statuses["ledger:deposits:m-1"] == "dead"
    assert statuses["ledger:deposits:m-2"].startswith("claimed by worker-7 until ")
    records = {each["letter_id"]: each for each in map(json.loads, as_json.stdout.splitlines())}
    assert records["ledger:deposits:m-2"]["status"] == "claimed"
    assert records["ledger:deposits:m-2"]["claimed_by"] == "worker-7"
    assert records["ledger:deposits:m-2"]["claimed_until"].endswith("Z")
    assert records["ledger:deposits:m-1"]["claimed_by"] is None


def test_list_filters_by_group_and_topic_and_pages(runner: CliRunner, bus_url: str) -> None:
    ledger = invoke(runner, "dlq", "list", "--bus", bus_url, "--group", "ledger")
    assert [row[0] for row in rows(ledger.stdout)] == [
        "ledger:deposits:m-1",
        "ledger:deposits:m-2",
        "ledger:withdrawals:m-3",
    ]
    deposits = invoke(runner, "dlq", "list", "--bus", bus_url, "--topic", "deposits")
    assert len(rows(deposits.stdout)) == 3

    first = invoke(runner, "dlq", "list", "--bus", bus_url, "--limit", "2")
    assert len(rows(first.stdout)) == 2
    assert "--after 'ledger:deposits:m-2'" in first.stderr
    rest = invoke(runner, "dlq", "list", "--bus", bus_url, "--after", "ledger:deposits:m-2")
    assert [row[0] for row in rows(rest.stdout)] == [
        "ledger:withdrawals:m-3",
        "audit:deposits:m-4",
    ]


def test_list_of_nothing_says_so(runner: CliRunner, bus_url: str) -> None:
    result = invoke(runner, "dlq", "list", "--bus", bus_url, "--group", "nobody")
    assert result.exit_code == 0
    assert rows(result.stdout) == []
    assert "no dead letters" in result.stderr


def test_show_prints_everything_and_the_body_as_json(runner: CliRunner, bus_url: str) -> None:
    result = invoke(runner, "dlq", "show", "ledger:deposits:m-1", "--bus", bus_url)
    assert result.exit_code == 0, result.output
    out = result.stdout
    for words in (
        "ledger:deposits:m-1",
        "account-alice",
        "RuntimeError",
        "2026-11-26 12:01:00.000Z",
        "Deposited",
        "corr-7",
        "the ledger is on fire the ledger is on fire",
    ):
        assert words in out, words
    body = out[out.index("bytes):") + len("bytes):") :]
    assert json.loads(body)["type"] == "Deposited"
    assert '\n  "type": "Deposited"' in body


def test_show_a_body_that_is_not_json(runner: CliRunner, bus_url: str) -> None:
    result = invoke(runner, "dlq", "show", "audit:deposits:m-4", "--bus", bus_url)
    assert result.exit_code == 0, result.output
    assert "\\x00\\xffbinary" in result.stdout


def test_retry_marks_one_letter(runner: CliRunner, bus_url: str) -> None:
    result = invoke(runner, "dlq", "retry", "ledger:deposits:m-2", "--bus", bus_url)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "marked for retry: ledger:deposits:m-2"
    statuses = {key: each.status for key, each in asyncio.run(_letters(bus_url)).items()}
    assert statuses == {
        "ledger:deposits:m-1": "dead",
        "ledger:deposits:m-2": "retry",
        "ledger:withdrawals:m-3": "dead",
        "audit:deposits:m-4": "dead",
    }


def test_retry_all_of_a_group(runner: CliRunner, bus_url: str) -> None:
    result = invoke(
        runner,
        "dlq",
        "retry",
        "--all",
        "--group",
        "ledger",
        "--topic",
        "deposits",
        "--bus",
        bus_url,
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "marked for retry: ledger:deposits:m-1",
        "marked for retry: ledger:deposits:m-2",
    ]
    assert "2 dead letters marked for retry" in result.stderr
    retrying = {
        key for key, each in asyncio.run(_letters(bus_url)).items() if each.status == "retry"
    }
    assert retrying == {"ledger:deposits:m-1", "ledger:deposits:m-2"}


def test_drop_one_letter(runner: CliRunner, bus_url: str) -> None:
    result = invoke(runner, "dlq", "drop", "ledger:withdrawals:m-3", "--bus", bus_url)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "dropped: ledger:withdrawals:m-3"
    assert "ledger:withdrawals:m-3" not in asyncio.run(_letters(bus_url))


def test_drop_all_asks_first(runner: CliRunner, bus_url: str) -> None:
    refused = runner.invoke(
        app, ["dlq", "drop", "--all", "--group", "ledger", "--bus", bus_url], input="n\n"
    )
    assert refused.exit_code == 1
    assert "nothing dropped" in refused.stderr
    assert len(asyncio.run(_letters(bus_url))) == 4

    result = invoke(runner, "dlq", "drop", "--all", "--group", "ledger", "--yes", "--bus", bus_url)
    assert result.exit_code == 0, result.output
    assert "3 dead letters dropped" in result.stderr
    assert set(asyncio.run(_letters(bus_url))) == {"audit:deposits:m-4"}


@pytest.mark.parametrize("command", ["show", "retry", "drop"])
def test_an_unknown_letter_is_one_line_and_exit_1(
    runner: CliRunner, bus_url: str, command: str
) -> None:
    result = invoke(runner, "dlq", command, "ledger:deposits:nope", "--bus", bus_url)
    assert result.exit_code == 1
    assert result.stderr.strip() == "error: dead letter 'ledger:deposits:nope' does not exist"
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["retry"], "give a letter id, or --all --group GROUP"),
        (["retry", "--all"], "--all needs --group"),
        (["drop", "x:y:z", "--all", "--group", "g"], "not both"),
        (["drop", "x:y:z", "--group", "g"], "go with --all"),
        (["list", "--group", "bad group"], "invalid group"),
    ],
)
def test_bad_usage_is_exit_2(runner: CliRunner, bus_url: str, args: list[str], words: str) -> None:
    result = invoke(runner, "dlq", *args, "--bus", bus_url)
    assert result.exit_code == 2
    assert words in result.stderr
    assert "Traceback" not in result.output


def test_the_bus_comes_from_the_environment_or_is_asked_for(
    runner: CliRunner, bus_url: str
) -> None:
    missing = invoke(runner, "dlq", "list", env={"EVENTCORE_BUS": ""})
    assert missing.exit_code == 2
    assert "--bus" in missing.stderr
    assert "EVENTCORE_BUS" in missing.stderr
    found = invoke(runner, "dlq", "list", env={"EVENTCORE_BUS": bus_url})
    assert found.exit_code == 0, found.output
    assert len(rows(found.stdout)) == 4


def test_a_missing_bus_file_is_an_error_and_not_created(runner: CliRunner, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.db"
    result = invoke(runner, "dlq", "list", "--bus", sqlite_url(missing))
    assert result.exit_code == 1  # not found
    assert "no such file" in result.stderr
    assert "Traceback" not in result.output
    assert not missing.exists()
