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
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from eventcore.cli import render
from eventcore.cli.errors import EXIT_USAGE, fail, reported
from eventcore.cli.options import StoreUrl, inspected_store, required
from eventcore.errors import InvalidInput, InvalidUrl
from eventcore.events import EventRegistry
from eventcore.projection import (
    Projection,
    ProjectionNotFound,
    ProjectionStatus,
    Source,
    SqliteTarget,
    rebuild,
)
from eventcore.projection.target import LIVE, Target

__all__ = ["app", "load_reference"]

app = typer.Typer(help="List, inspect and rebuild projections.", no_args_is_help=True)

TARGET_ENVVAR = "EVENTCORE_TARGET"

TargetUrl = Annotated[
    str | None,
    typer.Option(
        "--target",
        envvar=TARGET_ENVVAR,
        metavar="URL",
        show_envvar=True,
        help="Where projections live: sqlite:///path/views.db or postgresql://…?schema=…",
    ),
]


def _required_target(url: str | None) -> str:
    if not url:
        fail(f"no target given: pass --target URL or set {TARGET_ENVVAR}", EXIT_USAGE)
    return url


@asynccontextmanager
async def opened_target(url: str) -> AsyncIterator[Target]:
    """Open an existing target (never creates a SQLite file) and close it after."""
    target: Target
    if url.startswith("sqlite://"):
        path = url.removeprefix("sqlite://")
        if not os.path.exists(path):  # noqa: ASYNC240 (one stat, before any I/O of ours)
            raise InvalidUrl(url, f"no such file: {path}")
        target = await SqliteTarget.open(path)
    elif url.startswith(("postgresql://", "postgres://")):
        from eventcore.projection.postgres import PostgresTarget

        target = await PostgresTarget.open(url)
    else:
        raise InvalidUrl(url, "expected sqlite:///path or postgresql://…")
    try:
        yield target
    finally:
        await target.aclose()


def load_reference(reference: str) -> Any:
    """The object ``module:attribute`` names (``attribute`` may be dotted)."""
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        fail(f"expected module:attribute, got {reference!r}", EXIT_USAGE)
    try:
        value: Any = importlib.import_module(module_name)
    except ImportError as error:
        fail(f"cannot import {module_name!r}: {error}", EXIT_USAGE)
    for part in attribute.split("."):
        if not hasattr(value, part):
            fail(f"{module_name!r} has no attribute {attribute!r}", EXIT_USAGE)
        value = getattr(value, part)
    return value


@app.command("list")
def list_projections(target: TargetUrl = None) -> None:
    """Every projection version in the target: state, sources, positions, events."""
    url = _required_target(target)
    with reported():
        asyncio.run(_list(url))


async def _list(url: str) -> None:
    async with opened_target(url) as target:
        versions = await target.versions()
        progress = await target.progress()
    if not versions:
        render.note("no projections")
        return
    table = Table("name", "version", "state", "tables", "sources", "events")
    for info in versions:
        mine = [p for p in progress if (p.name, p.version) == (info.name, info.version)]
        table.add_row(
            info.name,
            str(info.version),
            info.state,
            ", ".join(info.tables),
            ", ".join(f"{p.source}@{p.position}" for p in mine) or "—",
            str(sum(p.events for p in mine)),
        )
    render.stdout().print(table)


@app.command("status")
def status(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The projection.")],
    target: TargetUrl = None,
    store: StoreUrl = None,
) -> None:
    """Position, lag (with --store) and events/s of each source of each version."""
    url = _required_target(target)
    with reported():
        asyncio.run(_status(url, name, store))


async def _status(url: str, name: str, store_url: str | None) -> None:
    async with opened_target(url) as target:
        versions = await target.versions(name)
        progress = await target.progress(name)
    if not versions:
        raise ProjectionNotFound(name)
    head: int | None = None
    if store_url:
        async with inspected_store(store_url) as store:
            head = await store.last_position()
    table = Table(
        "version", "state", "source", "position", "lag (positions)", "events", "events/s", "updated"
    )
    for info in versions:
        rows = [p for p in progress if p.version == info.version]
        if not rows:
            table.add_row(str(info.version), info.state, "—", "0", _lag(head, 0), "0", "—", "—")
        for p in rows:
            table.add_row(
                str(info.version),
                info.state,
                p.source,
                str(p.position),
                _lag(head, p.position),
                str(p.events),
                f"{p.events_per_second:,.0f}",
                f"{time.time() - p.updated_at:,.1f}s ago",
            )
    render.stdout().print(table)


def _lag(head: int | None, position: int) -> str:
    return "—" if head is None else str(max(head - position, 0))


@app.command("rebuild")
def rebuild_command(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The projection to rebuild.")],
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
    async with inspected_store(store_url) as store, opened_target(target_url) as target:
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
