"""``eventcore projections``: list, inspect and rebuild projections.

``list`` and ``status`` read the bookkeeping tables of the target directly, so they
need no user code. ``rebuild`` runs the projection's handlers, so it imports them from
an explicit ``module:attribute`` given on the command line (as ``uvicorn app:app``
does) — never from a dotted name hidden in configuration.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from eventcore.cli import json_lines, render
from eventcore.cli.errors import EXIT_USAGE, fail, reported
from eventcore.cli.options import (
    JsonOutput,
    StoreUrl,
    inspected_store,
    nonempty,
    required,
    required_url,
    url_option,
    with_connect_timeout,
)
from eventcore.errors import InvalidInput, InvalidUrl
from eventcore.events import EventRegistry
from eventcore.projection import (
    Projection,
    ProjectionNotFound,
    ProjectionStatus,
    Source,
    SourceProgress,
    open_target,
    rebuild,
)
from eventcore.projection.target import LIVE, Target
from eventcore.store.url import split_url

__all__ = ["app", "load_reference"]

app = typer.Typer(help="List, inspect and rebuild projections.", no_args_is_help=True)

TARGET_ENVVAR = "EVENTCORE_TARGET"

TargetUrl = Annotated[
    str | None,
    url_option(
        "--target",
        TARGET_ENVVAR,
        "Where projections live: sqlite:///path/views.db or postgresql://…?schema=…",
    ),
]


def _required_target(url: str | None) -> str:
    return required_url(url, "--target", TARGET_ENVVAR)


_TARGET_SCHEMES = {"sqlite": "sqlite", "postgresql": "postgres", "postgres": "postgres"}


@asynccontextmanager
async def opened_target(url: str) -> AsyncIterator[Target]:
    """Open an existing target and close it after. Opening creates nothing, for
    ``rebuild`` too (which then writes a new version into it): a missing or empty file,
    or a schema without projections, is "not found", never a new target."""
    backend, _, options = split_url(
        url, _TARGET_SCHEMES, example="sqlite:///var/views.db", noun="target scheme"
    )
    if backend == "sqlite" and options:
        raise InvalidUrl(url, "a sqlite:// target takes no options")
    target = await open_target(with_connect_timeout(url), create=False)
    try:
        yield target
    finally:
        await target.aclose()


def load_reference(reference: str) -> Any:
    """The object ``module:attribute`` names (``attribute`` may be dotted).

    Like uvicorn, the current directory comes first on the import path, so a module
    beside the user is found without ``PYTHONPATH=.``. It stays there for the rest of
    the command: the handlers it loads run later and may import their neighbours then.
    """
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        fail(f"expected module:attribute, got {reference!r}", EXIT_USAGE)
    here = os.getcwd()
    if sys.path[:1] != [here]:
        sys.path.insert(0, here)
    try:
        value: Any = importlib.import_module(module_name)
    except ImportError as error:
        fail(f"cannot import {module_name!r}: {error}", EXIT_USAGE)
    except Exception as error:
        # The user's module failed as it loaded: their bug, told in one line, not ours.
        fail(f"importing {module_name!r} failed: {type(error).__name__}: {error}", EXIT_USAGE)
    for part in attribute.split("."):
        if not hasattr(value, part):
            fail(f"{module_name!r} has no attribute {attribute!r}", EXIT_USAGE)
        value = getattr(value, part)
    return value


@app.command("list")
def list_projections(target: TargetUrl = None, as_json: JsonOutput = False) -> None:
    """Every projection version in the target: state, sources, positions, events.

    With --json, one object per version: name, version, state, tables, created_at,
    sources (each source, position, events), events.
    """
    url = _required_target(target)
    with reported():
        asyncio.run(_list(url, as_json))


async def _list(url: str, as_json: bool) -> None:
    async with opened_target(url) as target:
        versions = await target.versions()
        progress = await target.progress()
    if not versions:
        render.note("no projections")
        return
    table = Table("name", "version", "state", "tables", "sources", "events")
    for info in versions:
        mine = [p for p in progress if (p.name, p.version) == (info.name, info.version)]
        if as_json:
            json_lines.emit(json_lines.version_record(info, mine))
            continue
        table.add_row(
            info.name,
            str(info.version),
            info.state,
            ", ".join(info.tables),
            ", ".join(f"{p.source}@{p.position}" for p in mine) or "—",
            str(sum(p.events for p in mine)),
        )
    if not as_json:
        render.stdout().print(table)


@app.command("status")
def status(
    name: Annotated[str, typer.Argument(metavar="NAME", callback=nonempty, help="The projection.")],
    target: TargetUrl = None,
    store: StoreUrl = None,
    as_json: JsonOutput = False,
) -> None:
    """Position, lag (with --store) and events/s of each source of each version.

    With --json, one object per source of each version: name, version, state, source,
    position, lag (null without --store), events, events_per_second, updated_at.
    """
    url = _required_target(target)
    with reported():
        asyncio.run(_status(url, name, store, as_json))


async def _status(url: str, name: str, store_url: str | None, as_json: bool) -> None:
    async with opened_target(url) as target:
        versions = await target.versions(name)
        progress = await target.progress(name)
    if not versions:
        raise ProjectionNotFound(name)
    head: int | None = None
    if store_url:
        async with inspected_store(store_url) as store:
            head = await store.last_position()
    # Short cells that must never be cut or wrapped; the lag is counted in positions.
    table = Table()
    for header in ("version", "state", "source", "position", "lag", "events", "events/s"):
        table.add_column(header, no_wrap=True)
    table.add_column("updated", no_wrap=True)
    for info in versions:
        rows = [p for p in progress if p.version == info.version]
        if as_json:
            listed: list[SourceProgress | None] = [*rows] or [None]
            for each in listed:
                lag = _lag(head, each.position if each else 0)
                json_lines.emit(json_lines.progress_record(info, each, lag))
            continue
        if not rows:
            table.add_row(
                str(info.version), info.state, "—", "0", _shown(_lag(head, 0)), "0", "—", "—"
            )
        for p in rows:
            table.add_row(
                str(info.version),
                info.state,
                p.source,
                str(p.position),
                _shown(_lag(head, p.position)),
                str(p.events),
                f"{p.events_per_second:,.0f}",
                f"{time.time() - p.updated_at:,.0f}s ago",
            )
    if not as_json:
        render.stdout().print(table)


def _lag(head: int | None, position: int) -> int | None:
    return None if head is None else max(head - position, 0)


def _shown(lag: int | None) -> str:
    return "—" if lag is None else str(lag)


@app.command("rebuild")
def rebuild_command(
    name: Annotated[
        str,
        typer.Argument(metavar="NAME", callback=nonempty, help="The projection to rebuild."),
    ],
    app_ref: Annotated[
        str,
        typer.Option(
            "--app",
            metavar="MODULE:ATTR",
            help="Your projections: a Projection, or a list or dict of them.",
        ),
    ],
    registry_ref: Annotated[
        str,
        typer.Option("--registry", metavar="MODULE:ATTR", help="The service's EventRegistry."),
    ],
    store: StoreUrl = None,
    target: TargetUrl = None,
    source: Annotated[
        str | None,
        typer.Option(
            "--source",
            callback=nonempty,
            help="The source name the checkpoints are kept under, as in your runner's"
            " Source(NAME, ...); by default the live version's.",
        ),
    ] = None,
    keep_old: Annotated[
        bool, typer.Option("--keep-old/--drop-old", help="Keep the old version's tables.")
    ] = False,
) -> None:
    """Build a new version beside the live one, then switch to it (no downtime)."""
    store_url = required(store)
    target_url = _required_target(target)
    projection = _find(load_reference(app_ref), name)
    registry = load_reference(registry_ref)
    if not isinstance(registry, EventRegistry):
        fail(f"{registry_ref} is not an EventRegistry", EXIT_USAGE)
    with reported():
        version = asyncio.run(
            _rebuild(projection, registry, store_url, target_url, source, keep_old)
        )
    render.note(f"{name}: version {version} is live")


def _find(found: Any, name: str) -> Projection:
    candidates = (
        list(found.values())
        if isinstance(found, dict)
        else (list(found) if isinstance(found, list | tuple) else [found])
    )
    for candidate in candidates:
        if isinstance(candidate, Projection) and candidate.name == name:
            return candidate
    fail(f"no projection named {name!r} in the given --app", EXIT_USAGE)


async def _source_name(target: Target, name: str, given: str | None) -> str:
    """The source to rebuild from: the one the live version follows. Another name would
    leave the service's runner, which follows the live version under its own name, a
    checkpoint of 0: it would apply the whole log again on top of the rebuilt state."""
    live = [info.version for info in await target.versions(name) if info.state == LIVE]
    followed = sorted(await target.checkpoints(name, live[0])) if live else []
    if len(followed) > 1:
        raise InvalidInput(
            f"the live version of {name!r} follows several sources ({', '.join(followed)});"
            " the command line rebuilds from one: use rebuild() in Python"
        )
    if given is None and not followed:
        raise InvalidInput(
            f"name the source {name!r} is built from, as your runner does:"
            " --source NAME for Source(NAME, ...)"
        )
    if given is not None and followed and followed != [given]:
        raise InvalidInput(
            f"the live version of {name!r} follows source {followed[0]!r}, not {given!r}:"
            f" your runner would replay {followed[0]!r} from the start on the rebuilt version"
            f" (pass --source {followed[0]})"
        )
    return given if given is not None else followed[0]


async def _rebuild(
    projection: Projection,
    registry: EventRegistry,
    store_url: str,
    target_url: str,
    source: str | None,
    keep_old: bool,
) -> int:
    async with (
        inspected_store(store_url) as store,
        opened_target(target_url) as target,
    ):
        source = await _source_name(target, projection.name, source)
        head = await store.last_position()
        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]} events/s"),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=render.stderr(), transient=False) as bar:
            task = bar.add_task(f"rebuilding {projection.name}", total=head, rate="0")

            def show(status: ProjectionStatus) -> None:
                state = status.sources[0]
                bar.update(
                    task,
                    completed=max(state.position, state.head - state.lag_events),
                    total=max(state.head, head),
                    rate=f"{state.events_per_second:,.0f}",
                )

            return await rebuild(
                projection,
                target,
                Source(source, store, registry),
                keep_old=keep_old,
                on_progress=show,
            )
