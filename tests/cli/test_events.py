"""``eventcore events tail``: the global log, filtered, bounded, and followed."""

from __future__ import annotations

import asyncio
import os
import queue
import signal
import subprocess
import sysconfig
import threading
from pathlib import Path

from typer.testing import CliRunner

from tests.cli.conftest import HISTORY, invoke, write_history


def lines(output: str) -> list[list[str]]:
    return [line.split(None, 3) for line in output.splitlines()]


def test_tail_prints_the_whole_log_in_order(runner: CliRunner, populated: str) -> None:
    result = invoke(runner, "events", "tail", "--no-follow", "--store", populated)
    assert result.exit_code == 0, result.output
    assert lines(result.stdout) == [
        [str(position), f"{stream}@{version}", event_type, payload.decode()]
        for position, (stream, version, event_type, payload) in enumerate(
            [
                ("account-alice", 1, *HISTORY[0][1:]),
                ("account-bob", 1, *HISTORY[1][1:]),
                ("account-alice", 2, *HISTORY[2][1:]),
                ("account-bob", 2, *HISTORY[3][1:]),
                ("order-7", 1, *HISTORY[4][1:]),
            ],
            start=1,
        )
    ]


def test_tail_type_filter_keeps_only_those_types(runner: CliRunner, populated: str) -> None:
    result = invoke(
        runner,
        "events", "tail", "--store", populated, "--type", "Deposited", "--type", "OrderPlaced",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert [(line[0], line[2]) for line in lines(result.stdout)] == [
        ("4", "Deposited"),
        ("5", "OrderPlaced"),
    ]


def test_tail_from_position_and_limit(runner: CliRunner, populated: str) -> None:
    result = invoke(runner, "events", "tail", "--store", populated, "--from", "2", "--limit", "2")
    assert result.exit_code == 0, result.output
    assert [line[0] for line in lines(result.stdout)] == ["2", "3"]


def test_follow_with_a_limit_stops_once_it_is_reached(runner: CliRunner, populated: str) -> None:
    result = invoke(runner, "events", "tail", "--follow", "--limit", "3", "--store", populated)
    assert result.exit_code == 0, result.output
    assert [line[0] for line in lines(result.stdout)] == ["1", "2", "3"]


def test_tail_of_an_empty_range_prints_nothing(runner: CliRunner, populated: str) -> None:
    result = invoke(runner, "events", "tail", "--store", populated, "--from", "99")
    assert result.exit_code == 0
    assert result.stdout == ""


def test_follow_prints_new_events_and_ctrl_c_exits_cleanly(populated: str) -> None:
    script = Path(sysconfig.get_path("scripts")) / "eventcore"
    process = subprocess.Popen(
        [str(script), "events", "tail", "--follow", "--store", populated],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "250"},
    )
    printed: queue.Queue[str] = queue.Queue()
    output = process.stdout
    assert output is not None

    def read_lines() -> None:
        # A thread, so the test can wait on each line with a timeout instead of sleeping.
        for line in output:
            printed.put(line)

    reader = threading.Thread(target=read_lines)
    reader.start()
    try:
        backlog = [printed.get(timeout=60) for _ in HISTORY]
        assert [line.split()[0] for line in backlog] == ["1", "2", "3", "4", "5"]

        asyncio.run(write_history(populated, [("order-8", "OrderPlaced", b'{"items":[]}')]))
        followed = printed.get(timeout=60)
        assert followed.split()[:3] == ["6", "order-8@1", "OrderPlaced"]

        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0
        assert process.stderr is not None
        assert "Traceback" not in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=60)
        reader.join(timeout=60)
