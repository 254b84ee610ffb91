"""A small SQLite store with known contents, a fresh PostgreSQL schema, and a runner that
invokes the CLI in-process."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner, Result

import eventcore
from eventcore.cli import app
from eventcore.store import open_store
from eventcore.types import Metadata, StreamId
from tests.backends import POSTGRES_URL, skip_or_fail
from tests.builders import new_event
from tests.cli.samples import fill_letters, project

#: What ``populated`` holds, in log order: (stream, type, payload).
HISTORY: list[tuple[str, str, bytes]] = [
    ("account-alice", "AccountOpened", b'{"initial_balance":100}'),
    ("account-bob", "AccountOpened", b'{"initial_balance":50}'),
    ("account-alice", "Withdrawn", b'{"amount":30,"transfer_id":"t-1"}'),
    ("account-bob", "Deposited", b'{"amount":30,"transfer_id":"t-1"}'),
    ("order-7", "OrderPlaced", b'{"items":["kettle"]}'),
]
CORRELATION = "corr-42"


def sqlite_url(path: Path) -> str:
    return f"sqlite://{path.resolve().as_posix()}"


async def write_history(url: str, history: list[tuple[str, str, bytes]]) -> None:
    store = await open_store(url)
    try:
        for stream, event_type, payload in history:
            stream_id = StreamId(stream)
            version = await store.stream_version(stream_id)
            event = new_event(event_type, payload, metadata=Metadata(correlation_id=CORRELATION))
            await store.append({stream_id: [event]}, expected={stream_id: version})
    finally:
        await store.aclose()


@pytest.fixture
def populated(tmp_path: Path) -> str:
    """The URL of a SQLite store holding ``HISTORY``."""
    url = sqlite_url(tmp_path / "events.db")
    asyncio.run(write_history(url, HISTORY))
    return url


@pytest.fixture
def bus_url(tmp_path: Path) -> str:
    """The URL of a SQLite bus holding ``samples.LETTERS``."""
    url = sqlite_url(tmp_path / "bus.db")
    asyncio.run(fill_letters(url))
    return url


@pytest.fixture
def urls(tmp_path: Path) -> tuple[str, str]:
    """A store and a target where ``order_summary`` is live, ten events behind."""
    store_url = sqlite_url(tmp_path / "events.db")
    asyncio.run(project(store_url, tmp_path / "views.db"))
    return store_url, sqlite_url(tmp_path / "views.db")


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def invoke(runner: CliRunner, *args: str, env: dict[str, str] | None = None) -> Result:
    """Run ``eventcore *args`` in-process, wide enough that no table cell wraps."""
    environment = {"COLUMNS": "250", "EVENTCORE_STORE": "", **(env or {})}
    return runner.invoke(app, list(args), env=environment)


@pytest.fixture
def admin() -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """A connection to the test server, to look at what a command did there."""
    try:
        connection = psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as error:
        reason = f"PostgreSQL unavailable at {POSTGRES_URL}: {error}"
        skip_or_fail(reason, "the postgres tests must run")
    with connection:
        yield connection


@pytest.fixture
def schema_url(admin: psycopg.Connection[tuple[object, ...]]) -> Iterator[str]:
    """The URL of a fresh schema name on the test server (nothing is created); whatever a
    test creates under that name is dropped afterwards."""
    schema = f"test_{uuid.uuid4().hex[:16]}"
    try:
        yield f"{POSTGRES_URL}?schema={schema}"
    finally:
        admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def schema_exists(admin: psycopg.Connection[tuple[object, ...]], url: str) -> bool:
    schema = url.rpartition("schema=")[2]
    found = admin.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,))
    return found.fetchone() is not None


def snapshot(directory: Path) -> dict[str, str]:
    """Every file under ``directory`` and a hash of its bytes: what "nothing was created
    or changed" is checked against."""
    return {
        str(each.relative_to(directory)): hashlib.sha256(each.read_bytes()).hexdigest()
        for each in sorted(directory.rglob("*"))
        if each.is_file()
    }


def one_line_error(result: Result) -> str:
    """The single line a failed command printed, checked to be all it printed."""
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def process_environment(**extra: str) -> dict[str, str]:
    """The environment of a child process that runs the eventcore under test (and can
    import ``tests``), whatever is installed, and not the current directory."""
    source = Path(eventcore.__file__).resolve().parents[1]
    root = Path(__file__).resolve().parents[2]
    path = os.pathsep.join([str(source), str(root)])
    nothing = {"EVENTCORE_STORE": "", "EVENTCORE_BUS": "", "EVENTCORE_TARGET": ""}
    return {**os.environ, "PYTHONPATH": path, "COLUMNS": "200", **nothing, **extra}


def run_eventcore(
    args: list[bytes], cwd: Path, *, before: str = ""
) -> subprocess.CompletedProcess[bytes]:
    """The command line in a process of its own, with real argv bytes (a test runner
    cannot pass ones that are not UTF-8). Started like the console script: ``-P`` keeps
    Python from putting the current directory on the path. ``before`` runs first."""
    return subprocess.run(
        [sys.executable, "-P", "-c", f"{before}\nfrom eventcore.cli import main\nmain()", *args],
        capture_output=True,
        cwd=cwd,
        env=process_environment(),
        timeout=120,
        check=False,
    )
