"""The type checker and the linter hold for the whole project, as CI runs it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)


# mypy --strict over all of src and tools from a cold cache: 34 s measured on a busy machine.
@pytest.mark.timeout(180)
def test_mypy_strict_is_clean_on_src_and_tools() -> None:
    result = run(sys.executable, "-m", "mypy", "--strict", "src", "tools")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is not installed")
def test_ruff_is_clean() -> None:
    result = run("ruff", "check", "src", "tests", "bench", "tools")
    assert result.returncode == 0, result.stdout + result.stderr
