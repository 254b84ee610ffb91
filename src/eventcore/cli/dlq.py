"""``eventcore dlq``: list, show, retry and drop the messages consumer groups gave up on.

``retry`` only marks a letter: the group's running subscriber takes it back within its
``retry_poll`` and handles it again (and parks it anew if it fails again).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated

import typer
from rich.console import Group as Lines
from rich.table import Table
from rich.text import Text

from eventcore.cli import json_lines, render
from eventcore.cli.errors import EXIT_FAILURE, EXIT_USAGE, fail, reported
from eventcore.cli.options import (
    BusOption,
    JsonOutput,
    inspected_bus,
    nonempty,
    page_after,
    page_limit,
    required_bus,
)
from eventcore.errors import InvalidMessage
from eventcore.messaging.bus import DeadLetter, DeadLetterBox
from eventcore.messaging.envelope import DistributedEvent, decode_envelope
from eventcore.messaging.names import check_name

__all__ = ["app"]

app = typer.Typer(help="Inspect, retry and drop dead letters.", no_args_is_help=True)

#: Letters read per call when going through all of a group's.
_PAGE = 500

Group = Annotated[
    str | None,
    typer.Option("--group", metavar="GROUP", callback=nonempty, help="Only this consumer group's."),
]
Topic = Annotated[
    str | None,
    typer.Option("--topic", metavar="TOPIC", callback=nonempty, help="Only this topic's."),
]
LetterId = Annotated[
    str | None,
    typer.Argument(metavar="[ID]", callback=nonempty, help="The letter (group:topic:message id)."),
]
All = Annotated[bool, typer.Option("--all", help="Every letter of --group (and --topic).")]


@app.command("list")
def list_letters(
    bus: BusOption = None,
    group: Group = None,
    topic: Topic = None,
    after: Annotated[str | None, page_after("letter")] = None,
    limit: Annotated[int, page_limit("letters")] = 100,
    as_json: JsonOutput = False,
) -> None:
    """Dead letters, oldest first: id, group, topic, type, stream, attempts, when, why.

    A letter a subscriber took back for retry shows as claimed, by whom and until when
    (past that moment, its claimer is taken for dead and the letter is claimed again).

    With --json, one object per letter: letter_id, group, topic, message_id, key,
    status, claimed_by, claimed_until (null unless claimed), attempts, failed_at,
    error_type, reason, event_type (null if the body is not an eventcore envelope).
    """
    url = required_bus(bus)
    with reported():
        _check_filters(group, topic)
        asyncio.run(_list(url, group, topic, after, limit, as_json))


async def _list(
    url: str, group: str | None, topic: str | None, after: str | None, limit: int, as_json: bool
) -> None:
    async with inspected_bus(url) as opened:
        letters = await opened.dead_letters.letters(
            group=group, topic=topic, after=after, limit=limit
        )
    if not letters:
        render.note("no dead letters" if after is None else f"no dead letters after {after!r}")
        return
    if as_json:
        for letter in letters:
            json_lines.emit(json_lines.letter_record(letter, _event_type(letter)))
    else:
        # A head line and a reason line per letter whatever the width, so the output
        # stays easy to grep.
        render.stdout().print(_letters_list(letters), soft_wrap=True)
    if len(letters) == limit:
        render.note(f"more may follow: --after {letters[-1].letter_id!r}")


@app.command("show")
def show_letter(
    letter_id: Annotated[
        str, typer.Argument(metavar="ID", callback=nonempty, help="The letter to show.")
    ],
    bus: BusOption = None,
    as_json: JsonOutput = False,
) -> None:
    """Everything about one letter, with its message body (pretty-printed if JSON).

    With --json, one object: the fields of dlq list --json, and body (or body_base64
    if the body is not JSON).
    """
    url = required_bus(bus)
    with reported():
        asyncio.run(_show(url, letter_id, as_json))


async def _show(url: str, letter_id: str, as_json: bool) -> None:
    async with inspected_bus(url) as opened:
        letter = await opened.dead_letters.get(letter_id)
    if as_json:
        json_lines.emit(json_lines.letter_record(letter, _event_type(letter), body=True))
        return
    envelope = _envelope(letter)
    fields: list[tuple[str, str]] = [
        ("letter", letter.letter_id),
        ("group", letter.group),
        ("topic", letter.topic),
        ("message id", letter.message_id),
        ("stream", letter.key),
        ("status", _status(letter)),
        ("attempts", str(letter.attempts)),
        ("failed at", render.timestamp(letter.failed_at)),
        ("error type", letter.error_type),
        ("reason", letter.reason),
    ]
    if envelope is not None:
        fields += [
            ("event type", envelope.type),
            ("event id", envelope.id),
            ("source", envelope.source),
            ("stream version", envelope.streamversion),
            ("schema version", envelope.schemaversion),
            ("correlation id", envelope.correlationid or ""),
        ]
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for name, value in fields:
        table.add_row(name, Text(value))
    console = render.stdout()
    console.print(table)
    console.print(Text(f"body ({len(letter.body)} bytes):", style="bold"))
    console.print(Text(_pretty(letter.body)), soft_wrap=True)


@app.command("retry")
def retry_letters(
    letter_id: LetterId = None,
    bus: BusOption = None,
    every: All = False,
    group: Group = None,
    topic: Topic = None,
) -> None:
    """Mark a letter (or --all of a group's) for its group's subscriber to run again."""
    url = required_bus(bus)
    with reported():
        asyncio.run(_apply(url, _target(letter_id, every, group, topic), retry=True))


@app.command("drop")
def drop_letters(
    letter_id: LetterId = None,
    bus: BusOption = None,
    every: All = False,
    group: Group = None,
    topic: Topic = None,
    yes: Annotated[bool, typer.Option("--yes", help="Drop --all without asking.")] = False,
) -> None:
    """Delete a letter (or --all of a group's, with --yes or a confirmation) for good."""
    url = required_bus(bus)
    with reported():
        target = _target(letter_id, every, group, topic)
        if isinstance(target, tuple) and not yes:
            scope = f"group {target[0]!r}" + (f", topic {target[1]!r}" if target[1] else "")
            if not _confirmed(f"Drop every dead letter of {scope} for good?"):
                fail("nothing dropped (pass --yes to drop without asking)", EXIT_FAILURE)
        asyncio.run(_apply(url, target, retry=False))


def _confirmed(question: str) -> bool:
    try:
        return typer.confirm(question, default=False)
    except typer.Abort:  # no answer at all (stdin closed)
        return False


def _target(
    letter_id: str | None, every: bool, group: str | None, topic: str | None
) -> str | tuple[str, str | None]:
    """One letter id, or (group, topic) for --all."""
    if every:
        if letter_id is not None:
            fail("give a letter id or --all, not both", EXIT_USAGE)
        if group is None:
            fail("--all needs --group GROUP", EXIT_USAGE)
        _check_filters(group, topic)
        return (group, topic)
    if letter_id is None:
        fail("give a letter id, or --all --group GROUP", EXIT_USAGE)
    if group is not None or topic is not None:
        fail("--group and --topic go with --all, not with a letter id", EXIT_USAGE)
    return letter_id


async def _apply(url: str, target: str | tuple[str, str | None], *, retry: bool) -> None:
    done = "marked for retry" if retry else "dropped"
    count = 0
    async with inspected_bus(url) as opened:
        box = opened.dead_letters
        async for letter_id in _ids(box, target):
            if retry:
                await box.request_retry(letter_id)
            else:
                await box.drop(letter_id)
            render.stdout().print(Text(f"{done}: {letter_id}"), soft_wrap=True)
            count += 1
    if isinstance(target, tuple):
        render.note(f"{count} dead letter{'' if count == 1 else 's'} {done}")
    if retry and count:
        render.note("the group's running subscriber takes them back within its retry_poll")


async def _ids(box: DeadLetterBox, target: str | tuple[str, str | None]) -> AsyncIterator[str]:
    if isinstance(target, str):
        yield target
        return
    group, topic = target
    # Collected before changing any: a changed letter may move in the box's order.
    found: list[str] = []
    after: str | None = None
    while True:
        page = await box.letters(group=group, topic=topic, after=after, limit=_PAGE)
        found += [letter.letter_id for letter in page]
        if len(page) < _PAGE:
            break
        after = page[-1].letter_id
    for letter_id in found:
        yield letter_id


def _check_filters(group: str | None, topic: str | None) -> None:
    if group is not None:
        check_name("group", group)
    if topic is not None:
        check_name("topic", topic)


def _envelope(letter: DeadLetter) -> DistributedEvent | None:
    try:
        return decode_envelope(letter.body)
    except InvalidMessage:
        return None


def _event_type(letter: DeadLetter) -> str | None:
    envelope = _envelope(letter)
    return envelope.type if envelope is not None else None


def _pretty(body: bytes) -> str:
    """The body as indented JSON when it is JSON, else as text with odd bytes escaped."""
    try:
        return json.dumps(json.loads(body), indent=2, ensure_ascii=False)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the stack
        text = body.decode("utf-8", errors="backslashreplace")
        return "".join(
            ch if ch.isprintable() or ch in "\n\t" else ch.encode("unicode_escape").decode()
            for ch in text
        )


def _status(letter: DeadLetter) -> str:
    if letter.status != "claimed":
        return letter.status
    until = "" if letter.claimed_until is None else render.timestamp(letter.claimed_until)
    return f"claimed by {render.one_line(letter.claimed_by or '?')} until {until}"


def _letters_list(letters: list[DeadLetter]) -> Lines:
    """Two lines per letter rather than a table: a letter's id alone (group, topic and
    a 36-character message id) fills most of a terminal, and a table squeezed to fit
    cut the very columns that say what went wrong."""
    lines: list[Text] = []
    for letter in letters:
        head = Text(letter.letter_id, style="bold")
        head.append(f"  {_event_type(letter) or '?'}", style="magenta")
        head.append(f"  stream {letter.key}  attempts {letter.attempts}  {_status(letter)}")
        head.append(f"  {render.timestamp(letter.failed_at)}", style="dim")
        lines.append(head)
        # The whole reason, however long: it is what the reader came for. Control
        # characters are escaped, so it stays one line.
        lines.append(Text("  " + render.one_line(letter.reason)))
    return Lines(*lines)
