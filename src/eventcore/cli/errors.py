"""How the command line reports failure: one line on stderr and an exit code.

A user's mistake (a bad URL, a missing file, an unknown stream, an option it does not
take) is not a bug, so it never shows a traceback. Anything that is not an eventcore
error is a bug and keeps its traceback.

Exit codes: 0 success; 1 the thing asked for failed or does not exist (also: the demo's
checks failed); 2 bad input, as for a usage error; 3 the store, the bus or the registry
failed; 130 interrupted.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NoReturn

import typer
from typer.core import TyperGroup

from eventcore.cli import render
from eventcore.errors import BusError, EventcoreError, InvalidInput, RegistryError, StoreError

__all__ = [
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "EXIT_STORE",
    "EXIT_USAGE",
    "OneLineErrors",
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
    if isinstance(error, StoreError | BusError | RegistryError):
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


def _shown(text: str) -> str:
    """``text`` as it can be printed: an argument that is not valid UTF-8 (its bad bytes
    arrive as lone surrogates) with those bytes written as ``\\xff``."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that no byte of argv can produce
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _not_utf8(args: Sequence[str]) -> str | None:
    for arg in args:
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            return _shown(arg)
    return None


class OneLineErrors(TyperGroup):
    """The root command. A mistake typer itself finds (an unknown option, a value out of
    range, a missing argument) ends like the commands' own errors: one line on stderr
    naming it, then exit 2, instead of a usage block and a framed panel.

    Every argument must be valid UTF-8: stream ids, names and URLs are text, and a byte
    sequence that is not would otherwise fail deep inside a driver."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        given = list(sys.argv[1:] if args is None else args)
        code = self._run(given, prog_name, complete_var, windows_expand_args, extra)
        if standalone_mode:
            sys.exit(code)
        return code

    def _run(
        self,
        args: list[str],
        prog_name: str | None,
        complete_var: str | None,
        windows_expand_args: bool,
        extra: dict[str, Any],
    ) -> int:
        bad = _not_utf8(args)
        if bad is not None:
            render.error(f"argument {bad!r} is not valid UTF-8")
            return EXIT_USAGE
        try:
            returned = super().main(
                args,
                prog_name,
                complete_var,
                standalone_mode=False,
                windows_expand_args=windows_expand_args,
                **extra,
            )
        except typer.TyperException as error:
            # typer has already printed the help for a bare group ("eventcore streams").
            if type(error).__name__ != "NoArgsIsHelpError":
                render.error(_usage_message(error))
            return error.exit_code
        except typer.Abort:
            render.error("aborted")
            return EXIT_FAILURE
        # Without standalone mode typer returns the code of a typer.Exit, or what the
        # command returned (ours return nothing).
        return returned if isinstance(returned, int) else 0


def _usage_message(error: typer.TyperException) -> str:
    context = getattr(error, "ctx", None)
    command = getattr(context, "command_path", None)
    hint = f" (see '{command} --help')" if command else ""
    return f"{error.format_message()}{hint}"
