"""What the commands' options share: the store (or bus) a command works on and opening
it, the bounds of numeric options, and the check that a text option is not empty.

Every numeric option is bounded, and its ``--help`` says so: an unbounded number is
either an overflow deep in a driver or a loop that never ends (a demo asked for 10**20
accounts), and both must be a usage error instead."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import typer

from eventcore.cli.errors import EXIT_USAGE, fail
from eventcore.messaging import open_bus
from eventcore.messaging.bus import Bus
from eventcore.store import EventStore, open_store

__all__ = [
    "BUS_ENVVAR",
    "CONNECT_TIMEOUT",
    "ENVVAR",
    "MAX_PAGE",
    "MAX_POSITION",
    "REGISTRY_ENVVAR",
    "BusOption",
    "JsonOutput",
    "RegistryOption",
    "StoreUrl",
    "inspected_bus",
    "inspected_store",
    "nonempty",
    "page_after",
    "page_limit",
    "required",
    "required_bus",
    "required_registry",
    "required_url",
    "url_option",
    "with_connect_timeout",
]

#: The largest position, version or event count: both backends keep them in 64 bits.
MAX_POSITION = 2**63 - 1
#: The most rows a listing shows at once; more are paged with ``--after``.
MAX_PAGE = 100_000


def page_after(what: str) -> Any:
    """``--after ID``: where a paged listing of ``what`` (e.g. "letter") starts."""
    return typer.Option(
        "--after", metavar="ID", callback=nonempty, help=f"Start after this {what} (to page)."
    )


def page_limit(what: str) -> Any:
    """``--limit N``: the size of a page of ``what`` (e.g. "letters"), up to ``MAX_PAGE``."""
    return typer.Option(
        "--limit", min=1, max=MAX_PAGE, help=f"Show at most this many {what} (a page)."
    )


#: ``--json``: records for scripts instead of tables for people (fields: ``json_lines``).
JsonOutput = Annotated[
    bool,
    typer.Option("--json", help="One JSON object per line instead of a table (fields: see above)."),
]


def nonempty(value: str | list[str] | None) -> str | list[str] | None:
    """An option's callback: an empty name, id or filter is a mistake, never "match all"."""
    values = value if isinstance(value, list) else [value]
    if any(each is not None and not each.strip() for each in values):
        raise typer.BadParameter("must not be empty")
    return value


def url_option(flag: str, envvar: str, help: str) -> Any:
    """``--store URL``, ``--bus URL``…: optional to typer, so that a missing one gets our
    own message (``required_url``), which names both ways to give it."""
    return typer.Option(
        flag, envvar=envvar, callback=nonempty, metavar="URL", show_envvar=True, help=help
    )


def required_url(url: str | None, flag: str, envvar: str, example: str | None = None) -> str:
    """The URL given, or leave with a message that says how to give one."""
    if not url:
        what = flag.removeprefix("--")
        hint = f" (e.g. {example})" if example else ""
        fail(f"no {what} given: pass {flag} URL or set {envvar}{hint}", EXIT_USAGE)
    return url


ENVVAR = "EVENTCORE_STORE"

#: The store to inspect.
StoreUrl = Annotated[
    str | None, url_option("--store", ENVVAR, "The store to read, e.g. sqlite:///tmp/events.db.")
]


def required(url: str | None) -> str:
    """The store URL given, or leave with a message that says how to give one."""
    return required_url(url, "--store", ENVVAR, "sqlite:///tmp/events.db")


#: Seconds the command line waits for a PostgreSQL server that does not answer, unless
#: the URL says otherwise (``?connect_timeout=N``): a person is waiting, and a server
#: that has not answered in this long is most likely the wrong address.
CONNECT_TIMEOUT = 5


def with_connect_timeout(url: str) -> str:
    """``url`` with ``connect_timeout=CONNECT_TIMEOUT`` added if it is a PostgreSQL URL
    that does not give one."""
    scheme, _, rest = url.partition("://")
    if scheme.lower() not in {"postgresql", "postgres"}:
        return url
    query = rest.partition("?")[2]
    if any(pair.partition("=")[0] == "connect_timeout" for pair in query.split("&")):
        return url
    return f"{url}{'&' if query else '?'}connect_timeout={CONNECT_TIMEOUT}"


@asynccontextmanager
async def inspected_store(url: str) -> AsyncIterator[EventStore]:
    """Open the store at ``url`` for reading, and close it however the block ends.

    Inspection creates and migrates nothing: a mistyped SQLite path or PostgreSQL schema
    is "not found", never a new empty store.
    """
    store = await open_store(with_connect_timeout(url), create=False)
    try:
        yield store
    finally:
        await store.aclose()


BUS_ENVVAR = "EVENTCORE_BUS"

#: The bus to inspect.
BusOption = Annotated[
    str | None,
    url_option(
        "--bus",
        BUS_ENVVAR,
        "The message bus, e.g. sqlite:///tmp/bus.db or nats://127.0.0.1:4222.",
    ),
]


def required_bus(url: str | None) -> str:
    """The bus URL given, or leave with a message that says how to give one."""
    return required_url(url, "--bus", BUS_ENVVAR, "sqlite:///tmp/bus.db")


@asynccontextmanager
async def inspected_bus(url: str) -> AsyncIterator[Bus]:
    """Open the bus at ``url`` and close it however the block ends; like a store, a
    mistyped SQLite path is an error, never a new empty bus file."""
    bus = await open_bus(url, create=False)
    try:
        yield bus
    finally:
        await bus.aclose()


REGISTRY_ENVVAR = "EVENTCORE_REGISTRY"

#: The service registry to read.
RegistryOption = Annotated[
    str | None,
    url_option(
        "--registry",
        REGISTRY_ENVVAR,
        "The service registry, e.g. sqlite:///tmp/registry.db or nats://127.0.0.1:4222.",
    ),
]


def required_registry(url: str | None) -> str:
    """The registry URL given, or leave with a message that says how to give one."""
    return required_url(url, "--registry", REGISTRY_ENVVAR, "sqlite:///tmp/registry.db")
