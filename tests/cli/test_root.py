"""The root command: version, help, and the installed console script."""

from __future__ import annotations

import subprocess
import sysconfig
from pathlib import Path

from typer.testing import CliRunner

from eventcore import __version__
from tests.cli.conftest import invoke


def test_version_prints_the_package_version(runner: CliRunner) -> None:
    result = invoke(runner, "--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"eventcore {__version__}"


def test_help_lists_every_command_group(runner: CliRunner) -> None:
    result = invoke(runner, "--help")
    assert result.exit_code == 0
    for group in ("streams", "events", "demo"):
        assert group in result.stdout


def test_installed_console_script_runs_main() -> None:
    script = Path(sysconfig.get_path("scripts")) / "eventcore"
    assert script.exists(), f"the console script is not installed at {script}"
    done = subprocess.run(
        [str(script), "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"eventcore {__version__}"
