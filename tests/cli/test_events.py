"""``eventcore events tail``: the global log, filtered, bounded, and followed."""

from __future__ import annotations

import asyncio
import os
import queue
import signal
import subprocess
import sys
import sysconfig
import threading
from pathlib import Path

import psycopg
from typer.testing import CliRunner

from eventcore.store import open_store
from eventcore.store.postgres import PostgresStore
from eventcore.types import StreamId
from tests.backends import POSTGRES_URL
from tests.builders import events
from tests.cli.conftest import HISTORY, invoke, process_environment, write_history
from tests.held_append import hold_append_open


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


async def test_follow_with_a_type_prints_an_event_that_commits_after_later_ones(
    schema_url: str,
) -> None:
    # On PostgreSQL an append (2) can commit after later ones (3, 4): a filtered tail
    # that moved on to the head it saw (4) would never print 2.
    kept, other, held = StreamId("kept"), StreamId("other"), StreamId("held")
    async with await open_store(schema_url) as store:
        assert isinstance(store, PostgresStore)
        await store.append({kept: events(1, "Kept")}, expected={kept: 0})
        holder = await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True)
        async with holder:
            await hold_append_open(holder, store.schema, held, count=1, event_type="Kept")
            await store.append({other: events(2, "Other")}, expected={other: 0})
            tail = await asyncio.create_subprocess_exec(
                sys.executable,
                "-P",
                "-c",
                "from eventcore.cli import main; main()",
                *("events", "tail", "--follow", "--type", "Kept", "--limit", "2"),
                *("--store", schema_url),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=process_environment(),
            )
            try:
                assert tail.stdout is not None
                first = await asyncio.wait_for(tail.stdout.readline(), 60)
                assert first.split()[:3] == [b"1", b"kept@1", b"Kept"]
                await holder.execute("COMMIT")
                # A tail that skipped the late event would wait for ever: bounded here.
                rest, errors = await asyncio.wait_for(tail.communicate(), 30)
            finally:
                if tail.returncode is None:
                    tail.kill()
                    await tail.wait()

    assert [line.split()[:3] for line in rest.splitlines()] == [[b"2", b"held@1", b"Kept"]]
    assert tail.returncode == 0, errors
