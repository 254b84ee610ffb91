"""The store a command works on: the ``--store`` option and opening it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import typer

from eventcore.cli.errors import EXIT_USAGE, fail
from eventcore.store import EventStore, open_store

__all__ = ["ENVVAR", "StoreUrl", "inspected_store", "required"]

ENVVAR = "EVENTCORE_STORE"

#: The store to inspect. Optional to typer, so that a missing one gets our own message,
#: which names both ways to give it.
StoreUrl = Annotated[
    str | None,
    typer.Option(
        "--store",
        envvar=ENVVAR,
        metavar="URL",
        show_envvar=True,
        help="The store to read, e.g. sqlite:///tmp/events.db.",
    ),
]


def required(url: str | None) -> str:
    """The URL given, or leave with a message that says how to give one."""
    if not url:
        fail(
            f"no store given: pass --store URL or set {ENVVAR} (e.g. sqlite:///tmp/events.db)",
            EXIT_USAGE,
        )
    return url


@asynccontextmanager
async def inspected_store(url: str) -> AsyncIterator[EventStore]:
    """Open the store at ``url`` for reading, and close it however the block ends.

    Inspection never creates a store: a mistyped SQLite path is an error, not a new
    empty file.
    """
    store = await open_store(url, create=False)
    try:
        yield store
    finally:
        await store.aclose()
