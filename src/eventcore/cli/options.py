"""The store (or bus) a command works on: the ``--store`` and ``--bus`` options and
opening them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import typer

from eventcore.cli.errors import EXIT_USAGE, fail
from eventcore.messaging.bus import Bus
from eventcore.messaging.url import open_bus
from eventcore.store import EventStore, open_store

__all__ = [
    "BUS_ENVVAR",
    "ENVVAR",
    "BusOption",
    "StoreUrl",
    "inspected_bus",
    "inspected_store",
    "required",
    "required_bus",
]

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


BUS_ENVVAR = "EVENTCORE_BUS"

#: The bus to inspect; optional to typer for the same reason as ``StoreUrl``.
BusOption = Annotated[
    str | None,
    typer.Option(
        "--bus",
        envvar=BUS_ENVVAR,
        metavar="URL",
        show_envvar=True,
        help="The message bus, e.g. sqlite:///tmp/bus.db or nats://127.0.0.1:4222.",
    ),
]


def required_bus(url: str | None) -> str:
    """The bus URL given, or leave with a message that says how to give one."""
    if not url:
        fail(
            f"no bus given: pass --bus URL or set {BUS_ENVVAR} (e.g. sqlite:///tmp/bus.db)",
            EXIT_USAGE,
        )
    return url


@asynccontextmanager
async def inspected_bus(url: str) -> AsyncIterator[Bus]:
    """Open the bus at ``url`` and close it however the block ends; like a store, a
    mistyped SQLite path is an error, never a new empty bus file."""
    bus = await open_bus(url, create=False)
    try:
        yield bus
    finally:
        await bus.aclose()
