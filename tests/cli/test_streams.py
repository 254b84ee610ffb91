"""``eventcore streams list`` and ``eventcore streams show``."""

from __future__ import annotations

import re

from typer.testing import CliRunner

from tests.cli.conftest import CORRELATION, invoke


def rows(output: str) -> list[list[str]]:
    """The cells of each table row drawn with rich's box characters."""
    return [
        [cell.strip() for cell in line.strip("│ \n").split("│")]
        for line in output.splitlines()
        if line.startswith("│")
    ]


def test_list_shows_each_stream_with_version_and_last_position(
    runner: CliRunner, populated: str
) -> None:
    result = invoke(runner, "streams", "list", "--store", populated)
    assert result.exit_code == 0, result.output
    assert rows(result.stdout) == [
        ["account-alice", "2", "3"],
        ["account-bob", "2", "4"],
        ["order-7", "1", "5"],
    ]


def test_list_pages_with_limit_and_after(runner: CliRunner, populated: str) -> None:
    first = invoke(runner, "streams", "list", "--store", populated, "--limit", "2")
    assert [row[0] for row in rows(first.stdout)] == ["account-alice", "account-bob"]
    assert "--after 'account-bob'" in first.stderr

    rest = invoke(runner, "streams", "list", "--store", populated, "--after", "account-bob")
    assert [row[0] for row in rows(rest.stdout)] == ["order-7"]


def test_list_of_an_empty_page_says_so(runner: CliRunner, populated: str) -> None:
    result = invoke(runner, "streams", "list", "--store", populated, "--after", "zzz")
    assert result.exit_code == 0
    assert rows(result.stdout) == []
    assert "no streams after 'zzz'" in result.stderr


def test_show_lists_the_stream_events_in_order(runner: CliRunner, populated: str) -> None:
    result = invoke(runner, "streams", "show", "account-alice", "--store", populated)
    assert result.exit_code == 0, result.output
    table = rows(result.stdout)
    assert [row[:3] for row in table] == [["1", "1", "AccountOpened"], ["2", "3", "Withdrawn"]]
    opened = table[0]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}Z", opened[3])
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", opened[4])
    assert opened[5] == '{"initial_balance":100}'
    assert opened[6] == CORRELATION


def test_show_from_version_skips_earlier_events(runner: CliRunner, populated: str) -> None:
    result = invoke(
        runner, "streams", "show", "account-alice", "--from-version", "2", "--store", populated
    )
    assert result.exit_code == 0, result.output
    assert [row[0] for row in rows(result.stdout)] == ["2"]


def test_show_past_the_end_is_not_an_error(runner: CliRunner, populated: str) -> None:
    result = invoke(
        runner, "streams", "show", "order-7", "--from-version", "5", "--store", populated
    )
    assert result.exit_code == 0
    assert "at version 1" in result.stderr


def test_show_unknown_stream_exits_1_with_a_clean_message(
    runner: CliRunner, populated: str
) -> None:
    result = invoke(runner, "streams", "show", "account-carol", "--store", populated)
    assert result.exit_code == 1
    assert result.stderr.strip() == "error: stream 'account-carol' does not exist"
    assert "Traceback" not in result.output


def test_show_invalid_stream_id_is_a_usage_error(runner: CliRunner, populated: str) -> None:
    result = invoke(runner, "streams", "show", "   ", "--store", populated)
    assert result.exit_code == 2
    assert "invalid stream id" in result.stderr
    assert "Traceback" not in result.output
