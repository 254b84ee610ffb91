"""Where the store comes from, and the clean errors when it cannot be opened."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from tests.cli.conftest import invoke, sqlite_url


def test_missing_store_says_how_to_give_one(runner: CliRunner) -> None:
    result = invoke(runner, "streams", "list")
    assert result.exit_code == 2
    assert "--store" in result.stderr
    assert "EVENTCORE_STORE" in result.stderr


def test_store_is_taken_from_the_environment(runner: CliRunner, populated: str) -> None:
    result = invoke(runner, "streams", "list", env={"EVENTCORE_STORE": populated})
    assert result.exit_code == 0, result.output
    assert "account-alice" in result.stdout


def test_unknown_scheme_is_a_clean_usage_error(runner: CliRunner) -> None:
    result = invoke(runner, "streams", "list", "--store", "mysql://db/events")
    assert result.exit_code == 2
    assert "invalid URL 'mysql://db/events'" in result.stderr
    assert "unknown scheme" in result.stderr
    assert "Traceback" not in result.output


def test_missing_sqlite_file_is_reported_and_not_created(runner: CliRunner, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.db"
    result = invoke(runner, "events", "tail", "--store", sqlite_url(missing))
    assert result.exit_code == 1  # not found
    assert "no such file" in result.stderr
    assert "Traceback" not in result.output
    assert not missing.exists()


def test_error_message_is_one_line(runner: CliRunner) -> None:
    result = invoke(runner, "streams", "list", "--store", "nonsense")
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("error: ")
