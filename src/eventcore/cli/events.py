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
from eventcore.store.protocol import EventStore

__all__ = ["POLL_SECONDS", "app"]

app = typer.Typer(help="Read the global log.", no_args_is_help=True)

#: How often ``tail --follow`` asks the store whether the log has grown.
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
    remaining = limit
    async with inspected_store(url) as store:
        while True:
            head = await store.last_position()
            if head > after:
                printed, last = await _print_after(store, console, after, types, remaining, as_json)
                # Everything up to the head read before this pass has been seen, printed
                # or filtered out; starting the next pass there skips re-reading events
                # that did not match. ``last`` may lie beyond it (the log grew meanwhile).
                after = max(head, last)
                if remaining is not None:
                    remaining -= printed
            if not follow or remaining == 0:
                return
            await asyncio.sleep(POLL_SECONDS)


async def _print_after(
    store: EventStore,
    console: Console,
    after: int,
    types: list[str] | None,
    limit: int | None,
    as_json: bool,
) -> tuple[int, int]:
    """Print the log after ``after``; return how many were printed and the last position."""
    printed, last = 0, after
    async for batch in store.read_all(after=after, types=types, limit=limit):
        for event in batch:
            if as_json:
                json_lines.emit(json_lines.event_record(event))
                continue
            # soft_wrap keeps one event per line whatever the terminal width, so the
            # output can be piped to grep or cut.
            console.print(render.event_line(event), soft_wrap=True)
        printed += len(batch)
        last = batch[-1].position
    return printed, last
