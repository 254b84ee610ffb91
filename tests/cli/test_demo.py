"""``eventcore demo``: a small bank run on SQLite, its summary, and its verdict."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from eventcore.cli import demo as demo_command
from eventcore.demo.bank import Check
from eventcore.demo.bank_run import BankRun, run_bank
from tests.cli.conftest import invoke, sqlite_url

SMALL = ("--accounts", "4", "--transfers", "40", "--concurrency", "4", "--seed", "11")


def test_demo_on_a_given_store_passes_and_leaves_its_streams(
    runner: CliRunner, tmp_path: Path
) -> None:
    url = sqlite_url(tmp_path / "bank.db")
    result = invoke(runner, "demo", "--store", url, *SMALL)
    assert result.exit_code == 0, result.output
    for label in ("completed", "rejected", "conflicts retried", "events read back", "seed"):
        assert label in result.stdout
    assert "money is conserved" in result.stdout
    assert "all 10 checks hold" in result.stdout

    listed = invoke(runner, "streams", "list", "--store", url)
    assert listed.stdout.count("/account-") == 4


def test_demo_without_store_runs_on_a_temporary_sqlite_file(runner: CliRunner) -> None:
    result = invoke(runner, "demo", *SMALL)
    assert result.exit_code == 0, result.output
    assert "temporary SQLite file" in result.stdout


def test_demo_exits_1_naming_the_check_that_failed(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken_run(*args: Any, **kwargs: Any) -> BankRun:
        run = await run_bank(*args, **kwargs)
        broken = Check("money is conserved", ("accounts hold 1 more than was paid in",), 1)
        return dataclasses.replace(run, checks=(*run.checks[:-1], broken))

    monkeypatch.setattr(demo_command, "run_bank", broken_run)
    result = invoke(runner, "demo", "--store", sqlite_url(tmp_path / "bank.db"), *SMALL)
    assert result.exit_code == 1
    assert "1 of 10 checks failed: money is conserved" in result.stderr
    assert "accounts hold 1 more than was paid in" in result.stdout
