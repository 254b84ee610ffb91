"""``eventcore events``: read and follow the global log."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.console import Console

from eventcore.cli import json_lines, render
from eventcore.cli.errors import reported
from eventcore.cli.options import (
    MAX_POSITION,
    JsonOutput,
    StoreUrl,
    inspected_store,
    nonempty,
    required,
)
from eventcore.store.follower import LogFollower
from eventcore.store.protocol import EventStore
from eventcore.types import StoredEvent

__all__ = ["POLL_SECONDS", "app"]

app = typer.Typer(help="Read the global log.", no_args_is_help=True)

#: How often ``tail --follow`` reads anyway when the store has not said the log has grown
#: (appends by another process to a SQLite file).
POLL_SECONDS = 0.5


@app.command("tail")
def tail(
    store: StoreUrl = None,
    from_position: Annotated[
        int,
        typer.Option(
            "--from", metavar="POSITION", min=1, max=MAX_POSITION, help="Start at this position."
        ),
    ] = 1,
    types: Annotated[
        list[str] | None,
        typer.Option(
            "--type",
            metavar="TYPE",
            callback=nonempty,
            help="Only events of this type (repeatable).",
        ),
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow/--no-follow", help="Keep printing new events until Ctrl-C.")
    ] = False,
    limit: Annotated[
        int | None,
        typer.Option(
            "--limit",
            min=1,
            max=MAX_POSITION,
            help="Stop after this many events, following or not.",
        ),
    ] = None,
    as_json: JsonOutput = False,
) -> None:
    """The global log, one event per line: position, stream@version, type, payload.

    With --json, one object per event: position, stream_id, version, event_id, type,
    schema_version, recorded_at, metadata, and data (or data_base64 if not JSON).
    """
    url = required(store)
    with reported():
        try:
            asyncio.run(_tail(url, from_position - 1, types or None, follow, limit, as_json))
        except KeyboardInterrupt:
            # Ctrl-C is how a follow ends; asyncio.run has already cancelled the tail and
            # closed the store by the time it re-raises the interrupt here.
            return


async def _tail(
    url: str, after: int, types: list[str] | None, follow: bool, limit: int | None, as_json: bool
) -> None:
    console = render.stdout()
    async with inspected_store(url) as store:
        if not follow:
            await _print_after(store, console, after, types, limit, as_json)
            return
        # Following goes through the projections' follower: it moves on only to what the
        # store says is settled, never to the head, so an append that commits after later
        # ones (PostgreSQL) is still printed, with or without a type filter.
        follower = LogFollower(store, after=after, types=types, poll_interval=POLL_SECONDS)
        remaining = limit
        async for batch in follower.batches():
            shown = batch if remaining is None else batch[:remaining]
            _print(console, shown, as_json)
            if remaining is not None:
                remaining -= len(shown)
                if remaining == 0:
                    follower.stop()


async def _print_after(
    store: EventStore,
    console: Console,
    after: int,
    types: list[str] | None,
    limit: int | None,
    as_json: bool,
) -> None:
    """Print the log after ``after``, up to its head."""
    async for batch in store.read_all(after=after, types=types, limit=limit):
        _print(console, batch, as_json)


def _print(console: Console, events: list[StoredEvent], as_json: bool) -> None:
    for event in events:
        if as_json:
            json_lines.emit(json_lines.event_record(event))
            continue
        # soft_wrap keeps one event per line whatever the terminal width, so the output
        # can be piped to grep or cut.
        console.print(render.event_line(event), soft_wrap=True)
