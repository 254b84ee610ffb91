"""A test that hangs fails, and the run goes on or ends: it never waits for CI's limit.

Each case runs pytest on a small test file of its own, with this suite's configuration
(pyproject.toml) and hooks (tests/conftest.py), with the limits shortened so that a
hang takes seconds.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: The suite's hooks, with the teardown watchdog shortened.
CONFTEST = """
import tests.conftest as suite

suite.TEARDOWN_PATIENCE = 2.0
pytest_configure = suite.pytest_configure
pytest_unconfigure = suite.pytest_unconfigure
pytest_runtest_teardown = suite.pytest_runtest_teardown
"""

HANGS = """
import asyncio
import time

import pytest


async def test_awaits_forever() -> None:
    await asyncio.Event().wait()


async def test_awaits_a_task_that_never_ends() -> None:
    await asyncio.create_task(asyncio.Event().wait())


def test_sleeps_forever() -> None:
    time.sleep(3600)


async def test_runs_after_the_hangs() -> None:
    await asyncio.sleep(0)
"""

STUCK_TEARDOWN = """
import asyncio

import pytest


@pytest.fixture
async def never_closes():
    yield
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            pass


async def test_hangs_and_so_does_its_teardown(never_closes: None) -> None:
    await asyncio.Event().wait()


def test_never_reached() -> None:
    pass
"""


def run_pytest(tmp_path: Path, tests: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_sample.py").write_text(tests)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    command = [sys.executable, "-m", "pytest", "-c", str(ROOT / "pyproject.toml")]
    options = ["--rootdir", str(tmp_path), "-p", "no:cacheprovider", "-o", "timeout=1"]
    return subprocess.run(
        [*command, *options, "-q", str(tmp_path / "test_sample.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_hung_test_fails_and_the_run_goes_on(tmp_path: Path) -> None:
    done = run_pytest(tmp_path, HANGS)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "3 failed, 1 passed" in done.stdout, done.stdout
    assert done.stdout.count("Timeout (>1.0s) from pytest-timeout") >= 3, done.stdout


def test_a_teardown_that_hangs_after_the_timeout_ends_the_run(tmp_path: Path) -> None:
    done = run_pytest(tmp_path, STUCK_TEARDOWN)
    assert done.returncode == 1, done.stdout + done.stderr
    # The watchdog's dump of the stacks shows the run stuck in a teardown.
    assert "Timeout (0:00:02)!" in done.stderr, done.stderr
    assert "in pytest_runtest_teardown" in done.stderr, done.stderr
    assert "passed" not in done.stdout, done.stdout
