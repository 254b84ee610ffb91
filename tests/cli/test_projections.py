"""``eventcore projections list|status|rebuild`` on a SQLite store and target."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.cli.conftest import invoke, run_eventcore


def test_list_shows_each_version_with_its_state_and_checkpoints(
    runner: CliRunner, urls: tuple[str, str]
) -> None:
    result = invoke(runner, "projections", "list", "--target", urls[1])

    assert result.exit_code == 0, result.output
    assert "order_summary" in result.output
    assert "live" in result.output
    assert "main@300" in result.output


def test_status_reports_position_and_lag_against_the_store(
    runner: CliRunner, urls: tuple[str, str]
) -> None:
    result = invoke(
        runner, "projections", "status", "order_summary", "--target", urls[1], "--store", urls[0]
    )

    assert result.exit_code == 0, result.output
    assert "300" in result.output
    assert " 10 " in result.output  # ten appended after the catch-up


def test_status_of_an_unknown_projection_fails_with_not_found(
    runner: CliRunner, urls: tuple[str, str]
) -> None:
    result = invoke(runner, "projections", "status", "nope", "--target", urls[1])

    assert result.exit_code == 1
    assert "nope" in result.output


def test_rebuild_builds_a_new_version_and_makes_it_live(
    runner: CliRunner, urls: tuple[str, str]
) -> None:
    result = invoke(
        runner,
        "projections",
        "rebuild",
        "order_summary",
        "--app",
        "tests.projection.orders:projections",
        "--registry",
        "tests.projection.orders:registry",
        "--store",
        urls[0],
        "--target",
        urls[1],
    )

    assert result.exit_code == 0, result.output
    assert "version 2 is live" in result.output
    listed = invoke(runner, "projections", "list", "--target", urls[1]).output
    assert "main@310" in listed


def test_rebuild_with_a_bad_app_reference_is_a_usage_error(
    runner: CliRunner, urls: tuple[str, str]
) -> None:
    result = invoke(
        runner,
        "projections",
        "rebuild",
        "order_summary",
        "--app",
        "no_such_module:x",
        "--registry",
        "tests.projection.orders:registry",
        "--store",
        urls[0],
        "--target",
        urls[1],
    )

    assert result.exit_code == 2


def test_rebuild_finds_the_app_module_in_the_current_directory(
    urls: tuple[str, str], tmp_path: Path
) -> None:
    # As with uvicorn: a module beside the user needs no PYTHONPATH=. (issue 9, defect 17).
    # A real process, started as the console script is (see run_eventcore).
    workdir = tmp_path / "service"
    workdir.mkdir()
    (workdir / "shop_views.py").write_text(
        "from tests.projection.orders import projections, registry\n", encoding="utf-8"
    )
    args = [
        *("projections", "rebuild", "order_summary"),
        *("--app", "shop_views:projections", "--registry", "shop_views:registry"),
        *("--store", urls[0], "--target", urls[1]),
    ]
    done = run_eventcore([arg.encode() for arg in args], workdir)

    assert done.returncode == 0, done.stderr
    assert b"version 2 is live" in done.stderr


def test_an_app_module_that_fails_to_load_is_one_line(
    runner: CliRunner, urls: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))  # load_reference adds the directory
    (tmp_path / "broken_views_module.py").write_text("raise RuntimeError('boom')\n")
    result = invoke(
        runner,
        *("projections", "rebuild", "order_summary"),
        *("--app", "broken_views_module:projections", "--registry", "x:y"),
        *("--store", urls[0], "--target", urls[1]),
    )

    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "error: importing 'broken_views_module' failed: RuntimeError: boom"
    ]
