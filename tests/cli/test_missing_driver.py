"""A backend whose driver is not installed says which extra to install: from
``open_store`` and ``open_bus`` themselves (library users see it too), and in one line
on the command line (issue 9, defect 16).

Each case runs in a fresh interpreter where importing the driver fails, as it does
where the extra was never installed (``sys.modules[name] = None`` makes Python refuse
the import).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.cli.conftest import process_environment

HIDE = "import sys\nfor name in {hidden!r}:\n    sys.modules[name] = None\n"


def python(code: str, hidden: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-P", "-c", HIDE.format(hidden=hidden) + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=process_environment(),
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("hidden", "opening", "extra", "package"),
    [
        (["psycopg"], "open_store('postgresql://u@127.0.0.1/db')", "postgres", "psycopg"),
        (["psycopg_pool"], "open_store('postgresql://u@127.0.0.1/db')", "postgres", "psycopg-pool"),
        (["nats"], "open_bus('nats://127.0.0.1:4222')", "nats", "nats-py"),
    ],
    ids=["psycopg", "psycopg-pool", "nats-py"],
)
def test_the_library_raises_a_typed_error_naming_the_extra(
    tmp_path: Path, hidden: list[str], opening: str, extra: str, package: str
) -> None:
    done = python(
        f"""
        import asyncio
        from eventcore import MissingDependency, open_bus, open_store
        try:
            asyncio.run({opening})
        except MissingDependency as error:
            assert isinstance(error, ImportError)
            print(error.package, error.extra)
            print(error)
        """,
        hidden,
        tmp_path,
    )

    assert done.returncode == 0, done.stderr
    first, message = done.stdout.splitlines()
    assert first == f"{package} {extra}"
    assert f"pip install 'eventcore[{extra}]'" in message


@pytest.mark.parametrize(
    ("hidden", "args", "extra"),
    [
        (["psycopg"], ["streams", "list", "--store", "postgresql://u@127.0.0.1/db"], "postgres"),
        (["psycopg"], ["db", "migrate", "postgresql://u@127.0.0.1/db"], "postgres"),
        (["psycopg"], ["projections", "list", "--target", "postgresql://u@h/db"], "postgres"),
        (["nats"], ["dlq", "list", "--bus", "nats://127.0.0.1:4222"], "nats"),
    ],
    ids=["streams", "db-migrate", "projections", "dlq"],
)
def test_the_command_line_says_it_in_one_line(
    tmp_path: Path, hidden: list[str], args: list[str], extra: str
) -> None:
    done = python(
        f"from eventcore.cli import main\nsys.argv[1:] = {args!r}\nmain()", hidden, tmp_path
    )

    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ")
    assert f"pip install 'eventcore[{extra}]'" in lines[0]


def test_a_bug_inside_a_backend_is_not_mistaken_for_a_missing_driver() -> None:
    from eventcore.errors import MissingDependency

    missing_driver = ModuleNotFoundError("No module named 'psycopg'", name="psycopg")
    assert isinstance(MissingDependency.of(missing_driver, "x"), MissingDependency)
    ours = ModuleNotFoundError(
        "No module named 'eventcore.store.nope'", name="eventcore.store.nope"
    )
    assert MissingDependency.of(ours, "x") is ours
