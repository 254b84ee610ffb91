"""How the command line reports failure: one line on stderr and an exit code.

A user's mistake (a bad URL, a missing file, an unknown stream) is not a bug, so it
never shows a traceback. Anything that is not an eventcore error is a bug and keeps
its traceback.

Exit codes: 0 success; 1 the thing asked for failed or does not exist (also: the demo's
checks failed); 2 bad input, as for a usage error; 3 the store or the bus failed; 130 interrupted.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import typer

from eventcore.cli import render
from eventcore.errors import BusError, EventcoreError, InvalidInput, StoreError

__all__ = [
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "EXIT_STORE",
    "EXIT_USAGE",
    "exit_code",
    "fail",
    "reported",
]

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_STORE = 3
EXIT_INTERRUPTED = 130


def exit_code(error: EventcoreError) -> int:
    if isinstance(error, InvalidInput):
        return EXIT_USAGE
    if isinstance(error, StoreError | BusError):
        return EXIT_STORE
    return EXIT_FAILURE


def fail(message: str, code: int = EXIT_FAILURE) -> NoReturn:
    """Report ``message`` and leave with ``code``."""
    render.error(message)
    raise typer.Exit(code)


@contextmanager
def reported() -> Iterator[None]:
    """Turn an eventcore error raised inside into its message and exit code."""
    try:
        yield
    except EventcoreError as error:
        fail(str(error), exit_code(error))
