"""Bad arguments end in one line on stderr and exit 2, before anything is opened:
bytes that are not UTF-8, numbers out of range, empty names, unknown options.

The standing fuzz of every command is ``tests/adversarial/test_cli_fuzz.py``; these are
the cases issue 9 reported, one by one.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.cli.conftest import invoke, one_line_error, run_eventcore, sqlite_url

HUGE = "99999999999999999999"


@pytest.mark.parametrize(
    "args",
    [
        [b"streams", b"show", b"account-\xff\xfe"],
        [b"streams", b"list", b"--after", b"\xc3\x28"],
        [b"events", b"tail", b"--type", b"Deposited\xff"],
        [b"projections", b"status", b"\xed\xa0\x80"],
    ],
    ids=["stream-id", "after", "type", "projection-name"],
)
def test_an_argument_that_is_not_utf8_is_one_line_and_exit_2(
    args: list[bytes], populated: str, tmp_path: Path
) -> None:
    done = run_eventcore([*args, b"--store", populated.encode()], tmp_path)

    assert done.returncode == 2, done.stderr
    assert b"Traceback" not in done.stderr
    lines = done.stderr.decode().splitlines()
    assert len(lines) == 1
    assert "not valid UTF-8" in lines[0]
    assert done.stdout == b""


def test_a_store_url_that_is_not_utf8_from_the_environment_is_refused(
    runner: CliRunner, tmp_path: Path
) -> None:
    # What os.environ holds for an EVENTCORE_STORE whose bytes are not UTF-8.
    url = f"sqlite://{tmp_path.as_posix()}/ev\udcff.db"
    result = invoke(runner, "streams", "list", env={"EVENTCORE_STORE": url})

    assert result.exit_code == 2
    assert "not valid UTF-8" in one_line_error(result)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "args",
    [
        ["streams", "list", "--limit", HUGE],
        ["streams", "show", "account-alice", "--from-version", HUGE],
        ["events", "tail", "--from", HUGE],
        ["events", "tail", "--limit", HUGE],
        ["streams", "list", "--limit", "-1"],
        ["streams", "show", "account-alice", "--from-version", "0"],
    ],
    ids=["list-limit", "from-version", "tail-from", "tail-limit", "negative", "zero"],
)
def test_a_number_out_of_range_is_a_usage_error(
    runner: CliRunner, populated: str, args: list[str]
) -> None:
    result = invoke(runner, *args, "--store", populated)

    assert result.exit_code == 2
    line = one_line_error(result)
    assert args[-2] in line


def test_a_huge_dlq_limit_is_bad_input_not_a_bus_failure(runner: CliRunner, tmp_path: Path) -> None:
    result = invoke(
        runner, "dlq", "list", "--limit", HUGE, "--bus", sqlite_url(tmp_path / "bus.db")
    )

    assert result.exit_code == 2  # was 3, "store or bus failed"
    assert "--limit" in one_line_error(result)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("option", ["--accounts", "--concurrency", "--transfers", "--seed"])
def test_demo_refuses_numbers_it_could_never_finish(runner: CliRunner, option: str) -> None:
    # --accounts and --concurrency this large used to hang, building ids or tasks.
    result = invoke(runner, "demo", option, HUGE)

    assert result.exit_code == 2
    assert option in one_line_error(result)


def test_demo_help_states_each_bound(runner: CliRunner) -> None:
    result = invoke(runner, "demo", "--help")

    assert result.exit_code == 0
    for bound in ("10000", "1000000", "1000", "4294967295"):
        assert bound in result.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["streams", "list", "--after", "", "--store", "STORE"],
        ["events", "tail", "--type", "", "--store", "STORE"],
        ["dlq", "list", "--group", "", "--bus", "sqlite:///nowhere/bus.db"],
        ["dlq", "show", "", "--bus", "sqlite:///nowhere/bus.db"],
        ["projections", "status", " ", "--target", "sqlite:///nowhere/views.db"],
    ],
    ids=["after", "type", "group", "letter", "projection"],
)
def test_an_empty_name_is_a_usage_error(runner: CliRunner, populated: str, args: list[str]) -> None:
    result = invoke(runner, *[populated if arg == "STORE" else arg for arg in args])

    assert result.exit_code == 2
    assert "must not be empty" in one_line_error(result)


@pytest.mark.parametrize(
    "args",
    [
        ["streams", "list", "--no-such-option"],
        ["streams", "list", "--limit", "many"],
        ["streams", "show"],
        ["streams", "nope"],
        ["dlq", "list", "extra-argument"],
    ],
    ids=["unknown-option", "not-a-number", "missing-argument", "unknown-command", "extra"],
)
def test_a_usage_error_is_one_line_that_points_to_help(runner: CliRunner, args: list[str]) -> None:
    result = invoke(runner, *args)

    assert result.exit_code == 2
    assert "--help" in one_line_error(result)
    assert result.stdout == ""
