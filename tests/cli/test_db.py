"""``eventcore db migrate``, against the real PostgreSQL server and a SQLite file."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from tests.cli.conftest import invoke, sqlite_url


def test_migrate_applies_every_migration_once_then_nothing(
    runner: CliRunner, schema_url: str
) -> None:
    from eventcore.store.postgres._schema import MIGRATIONS

    first = invoke(runner, "db", "migrate", schema_url)
    assert first.exit_code == 0, first.output
    assert first.stdout.splitlines() == [f"applied migration {m.version}" for m in MIGRATIONS]

    again = invoke(runner, "db", "migrate", schema_url)
    assert again.exit_code == 0, again.output
    assert again.stdout == ""
    assert "up to date" in again.stderr


def test_migrate_a_sqlite_file_says_opening_migrates_it(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    result = invoke(runner, "db", "migrate", sqlite_url(path))
    assert result.exit_code == 0, result.output
    assert "when opened" in result.stderr
    assert path.exists()


def test_migrate_memory_is_a_usage_error(runner: CliRunner) -> None:
    result = invoke(runner, "db", "migrate", "memory://")
    assert result.exit_code == 2
    assert "nothing to migrate" in result.stderr


def test_migrate_a_bad_url_is_a_usage_error_without_traceback(runner: CliRunner) -> None:
    result = invoke(runner, "db", "migrate", "postgresql://localhost/db?schema=Bad")
    assert result.exit_code == 2
    assert "schema" in result.stderr
    assert "Traceback" not in result.output
