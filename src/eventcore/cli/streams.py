"""``eventcore streams``: list the streams of a store, show one stream's events."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from eventcore.cli import json_lines, render
from eventcore.cli.errors import reported
from eventcore.cli.options import (
    MAX_POSITION,
    JsonOutput,
    StoreUrl,
    inspected_store,
    page_after,
    page_limit,
    required,
)
from eventcore.errors import StreamNotFound
from eventcore.types import StreamId

__all__ = ["app"]

app = typer.Typer(help="Inspect a store's streams.", no_args_is_help=True)


@app.command("list")
def list_streams(
    store: StoreUrl = None,
    after: Annotated[str | None, page_after("stream id")] = None,
    limit: Annotated[int, page_limit("streams")] = 100,
    as_json: JsonOutput = False,
) -> None:
    """Streams in name order, with their version and the position of their last event.

    With --json, one object per stream: stream_id, version, last_position.
    """
    url = required(store)
    with reported():
        start = StreamId(after) if after is not None else None
        asyncio.run(_list(url, start, limit, as_json))


async def _list(url: str, after: StreamId | None, limit: int, as_json: bool) -> None:
    async with inspected_store(url) as store:
        heads = await store.list_streams(after=after, limit=limit)
    if not heads:
        render.note("no streams" if after is None else f"no streams after {after!r}")
        return
    if as_json:
        for head in heads:
            json_lines.emit(json_lines.stream_record(head))
    else:
        render.stdout().print(render.streams_table(heads))
    if len(heads) == limit:
        # A full page may not be the last one; say how to get the next.
        render.note(f"more may follow: --after {heads[-1].stream_id!r}")


@app.command("show")
def show_stream(
    stream_id: Annotated[str, typer.Argument(metavar="ID", help="The stream to show.")],
    store: StoreUrl = None,
    from_version: Annotated[
        int,
        typer.Option(
            "--from-version",
            min=1,
            max=MAX_POSITION,
            help="Show events from this version on.",
        ),
    ] = 1,
    as_json: JsonOutput = False,
) -> None:
    """One stream's events: version, position, type, time, id, payload, correlation.

    With --json, one object per event: position, stream_id, version, event_id, type,
    schema_version, recorded_at, metadata, and data (or data_base64 if not JSON).
    """
    url = required(store)
    with reported():
        asyncio.run(_show(url, StreamId(stream_id), from_version, as_json))


async def _show(url: str, stream_id: StreamId, from_version: int, as_json: bool) -> None:
    async with inspected_store(url) as store:
        events = await store.read_stream(stream_id, from_version=from_version)
        # An empty read is either an unknown stream or a version past its end; only the
        # first is an error.
        version = events[-1].version if events else await store.stream_version(stream_id)
    if version == 0:
        raise StreamNotFound(stream_id)
    if not events:
        render.note(f"{stream_id!r} is at version {version}; nothing from {from_version} on")
        return
    if as_json:
        for event in events:
            json_lines.emit(json_lines.event_record(event))
    else:
        console = render.stdout()
        console.print(render.events_table(stream_id, events, console.width))
