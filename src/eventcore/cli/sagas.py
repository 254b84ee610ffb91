"""``eventcore sagas``: list a service's sagas, show one's timeline, retry or abort a
stuck one.

``list`` and ``show`` read the saga streams of the owner's store and need no user code:
a saga's stream says everything about it (its planned steps included). ``retry`` and
``abort`` decide what to do next, which only the saga's definition knows, so they
import the definitions from an explicit ``--sagas module:attribute`` (a ``Saga``, or a
list, tuple or dict of them), as ``projections rebuild`` imports its projections.

A retry made here is one append to the saga's stream, as one made by the service
itself: the requests it decides are stored beside it and leave through the service's
relay, and the service's saga worker takes the replies. So the service must be running
for a retried saga to move on; this command returns once the retry is recorded.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Annotated, Any, Final, get_args

import typer
from rich.console import Group as Lines
from rich.table import Table
from rich.text import Text

from eventcore.cli import json_lines, render
from eventcore.cli.errors import EXIT_USAGE, fail, reported
from eventcore.cli.options import JsonOutput, StoreUrl, inspected_store, nonempty, required
from eventcore.cli.projections import load_reference
from eventcore.errors import InvalidInput, SagaNotFound
from eventcore.events import EventRegistry
from eventcore.messaging.commands import COMMAND_EVENTS, CommandRequested
from eventcore.saga import (
    SAGA_EVENTS,
    Saga,
    SagaDriver,
    SagaManager,
    SagaState,
    SagaStatus,
    SagaView,
    saga_replies_topic,
)
from eventcore.saga.streams import SAGA_EVENT_TYPES
from eventcore.store.protocol import EventStore
from eventcore.types import StreamId

__all__ = ["STATUSES", "app"]

app = typer.Typer(help="List, show, retry and abort sagas.", no_args_is_help=True)

#: The statuses ``--status`` takes, in the order a saga may reach them.
STATUSES: Final[tuple[str, ...]] = get_args(SagaStatus)
#: The service name ``list`` and ``show`` give the manager: they send nothing.
_READER: Final = "eventcore-cli"
#: What a saga's reply topic ends with, when its service chose the default one.
_REPLIES_SUFFIX: Final = saga_replies_topic("x")[1:]


def _statuses(values: list[str] | None) -> list[str] | None:
    nonempty(values)
    for value in values or ():
        if value not in STATUSES:
            raise typer.BadParameter(f"{value!r} is not one of {', '.join(STATUSES)}")
    return values


def _check_text(value: str | None) -> str | None:
    """A name or a note must be printable: it is shown to the next operator."""
    nonempty(value)
    if value is not None and not value.isprintable():
        raise typer.BadParameter("must not contain control characters")
    return value


SagaType = Annotated[
    str | None,
    typer.Option(
        "--type",
        metavar="TYPE",
        callback=_check_text,
        help="The saga type (needed when sagas of several types share the id).",
    ),
]
SagaId = Annotated[str, typer.Argument(metavar="ID", callback=nonempty, help="The saga's id.")]
SagasReference = Annotated[
    str,
    typer.Option(
        "--sagas",
        metavar="MODULE:ATTR",
        callback=nonempty,
        help="The service's saga definitions: a Saga, or a list or dict of them.",
    ),
]
Service = Annotated[
    str | None,
    typer.Option(
        "--service",
        metavar="NAME",
        callback=_check_text,
        help="The service that owns the sagas; by default the one the saga's requests name.",
    ),
]
Operator = Annotated[
    str | None,
    typer.Option(
        "--operator", metavar="NAME", callback=_check_text, help="Who did it, for the record."
    ),
]


def _registry() -> EventRegistry:
    return EventRegistry([*SAGA_EVENTS, *COMMAND_EVENTS])


# --- list -------------------------------------------------------------------------------


@app.command("list")
def list_sagas(
    store: StoreUrl = None,
    status: Annotated[
        list[str] | None,
        typer.Option(
            "--status",
            metavar="STATUS",
            callback=_statuses,
            help=f"Only sagas in this status (repeatable): {', '.join(STATUSES)}.",
        ),
    ] = None,
    saga_type: SagaType = None,
    as_json: JsonOutput = False,
) -> None:
    """The sagas in the store, oldest first: type, id, status, the step it is on, when
    it started, how long it took, why it is stuck.

    With --json, one object per saga: saga_type, saga_id, status, stream, started_at,
    ended_at (null while it runs), step and phase (what it waits on or undoes next;
    null once ended), stuck_reason, events.
    """
    url = required(store)
    with reported():
        asyncio.run(_list(url, status, saga_type, as_json))


async def _list(url: str, status: list[str] | None, saga_type: str | None, as_json: bool) -> None:
    async with inspected_store(url) as opened:
        manager = SagaManager.over(opened, _registry(), service=_READER)
        found = await manager.list(status=status or None, saga_type=saga_type)  # type: ignore[arg-type]
    if not found:
        render.note("no sagas")
        return
    if as_json:
        for summary in found:
            json_lines.emit(json_lines.saga_record(summary))
        return
    # A line per saga (two for a stuck one: why), not a table: ids and reasons are long,
    # and a table squeezed into a terminal cuts the very cells an operator came for.
    lines: list[Text] = []
    for summary in found:
        line = Text(summary.saga_id, style="bold")
        line.append(f"  {summary.saga_type}", style="magenta")
        line.append(f"  {summary.status}", style=_STATUS_STYLE.get(summary.status, ""))
        if summary.step is not None:
            line.append(f"  on {_on(summary.step, summary.phase)}")
        line.append(f"  {_time(summary.started_at)}", style="dim")
        if summary.ended_at is not None:
            line.append(f"  took {_took(summary.started_at, summary.ended_at)}", style="dim")
        lines.append(line)
        if summary.stuck_reason:
            lines.append(Text("  " + render.one_line(summary.stuck_reason)))
    render.stdout().print(Lines(*lines), soft_wrap=True)


_STATUS_STYLE: Final = {
    "completed": "green",
    "compensated": "yellow",
    "stuck": "bold red",
    "aborted": "red",
}


def _on(step: str | None, phase: str | None) -> str:
    if step is None:
        return ""
    return step if phase == "action" else f"{step} (undo)"


# --- show -------------------------------------------------------------------------------


@app.command("show")
def show_saga(
    saga_id: SagaId,
    store: StoreUrl = None,
    saga_type: SagaType = None,
    as_json: JsonOutput = False,
) -> None:
    """One saga's timeline: its steps with every attempt (action and compensation), how
    each ended and how long it took, late replies, and every event in order.

    With --json, one object: saga_type, saga_id, status, started_at, ended_at,
    duration (seconds), data, stuck_reason, steps (each name, status, compensable,
    attempts, late_replies, result) and timeline (each at, event, step, detail).
    """
    url = required(store)
    with reported():
        asyncio.run(_show(url, saga_id, saga_type, as_json))


async def _show(url: str, saga_id: str, saga_type: str | None, as_json: bool) -> None:
    async with inspected_store(url) as opened:
        manager = SagaManager.over(opened, _registry(), service=_READER)
        view = await manager.show(saga_id, saga_type=saga_type)
    if as_json:
        json_lines.emit(json_lines.saga_view_record(view))
        return
    render.stdout().print(_view(view), soft_wrap=True)


def _view(view: SagaView) -> Lines:
    head = Table(show_header=False, box=None, pad_edge=False)
    head.add_column(style="bold", no_wrap=True)
    head.add_column(overflow="fold")
    rows: list[tuple[str, str]] = [
        ("saga", f"{view.saga_type} {view.saga_id}"),
        ("status", view.status),
        ("started", _time(view.started_at)),
        ("ended", _time(view.ended_at) if view.ended_at is not None else "—"),
        ("took", _took(view.started_at, view.ended_at)),
        ("data", _json(view.data)),
    ]
    if view.stuck_reason:
        rows.append(("stuck because", view.stuck_reason))
    for name, value in rows:
        head.add_row(name, Text(render.one_line(value)))

    steps = Table(title=Text("steps", style="bold"), header_style="bold", title_justify="left")
    steps.add_column("step", overflow="fold")
    steps.add_column("status", no_wrap=True)
    steps.add_column("attempt", no_wrap=True)
    steps.add_column("outcome", no_wrap=True)
    steps.add_column("took", justify="right", no_wrap=True)
    steps.add_column("reason / result", overflow="fold", ratio=1)
    for step in view.steps:
        status = step.status + ("" if step.compensable else " (no undo)")
        if not step.attempts:
            steps.add_row(Text(step.name), status, "", "", "", "")
        for index, attempt in enumerate(step.attempts):
            said = attempt.reason
            if not said and attempt.phase == "action" and attempt.outcome == "succeeded":
                said = _json(step.result)
            if attempt.retry_at is not None:
                said += f" (again at {_time(attempt.retry_at)})"
            steps.add_row(
                Text(step.name) if index == 0 else "",
                status if index == 0 else "",
                f"{'undo' if attempt.phase == 'compensation' else 'do'} #{attempt.attempt}",
                attempt.outcome,
                _seconds(attempt.duration),
                Text(render.one_line(said)),
            )
        for late in step.late_replies:
            said = "succeeded" if late.succeeded else f"failed: {late.reason}"
            if late.compensate:
                said += " (to be undone)"
            steps.add_row(
                "", "", "late reply", "", "", Text(render.one_line(f"{_time(late.at)} {said}"))
            )

    timeline = Table(
        title=Text("timeline", style="bold"), header_style="bold", title_justify="left"
    )
    timeline.add_column("at", no_wrap=True)
    timeline.add_column("+s", justify="right", no_wrap=True)
    timeline.add_column("event", style="magenta", no_wrap=True)
    timeline.add_column("step", overflow="fold")
    timeline.add_column("detail", overflow="fold", ratio=1)
    for entry in view.timeline:
        timeline.add_row(
            _time(entry.at),
            f"{entry.at - view.started_at:.3f}",
            entry.event,
            Text(entry.step or ""),
            Text(render.one_line(entry.detail)),
        )
    return Lines(head, steps, timeline)


# --- retry and abort --------------------------------------------------------------------


@app.command("retry")
def retry_saga(
    saga_id: SagaId,
    sagas_ref: SagasReference,
    store: StoreUrl = None,
    saga_type: SagaType = None,
    service: Service = None,
    operator: Operator = None,
    note: Annotated[
        str | None,
        typer.Option("--note", metavar="TEXT", callback=_check_text, help="Why, for the record."),
    ] = None,
) -> None:
    """Resume a stuck saga: its compensation gets a fresh set of attempts, sent through
    the service's relay; its running saga worker takes the replies."""
    url = required(store)
    definitions = _definitions(sagas_ref)
    with reported():
        state = asyncio.run(
            _repair(
                url, definitions, saga_id, saga_type, service, retry=(operator or "", note or "")
            )
        )
    render.stdout().print(Text(f"retried: {state.saga_type} {state.saga_id} ({state.status})"))
    render.note("the service's saga worker carries it on")


@app.command("abort")
def abort_saga(
    saga_id: SagaId,
    sagas_ref: SagasReference,
    reason: Annotated[
        str,
        typer.Option(
            "--reason",
            metavar="TEXT",
            callback=_check_text,
            help="Why it is given up; what was not undone is now the operator's.",
        ),
    ],
    store: StoreUrl = None,
    saga_type: SagaType = None,
    service: Service = None,
    operator: Operator = None,
) -> None:
    """End a stuck saga as aborted: nothing more is sent, what was not undone is left
    to the operator (late replies are only recorded)."""
    url = required(store)
    definitions = _definitions(sagas_ref)
    with reported():
        state = asyncio.run(
            _repair(url, definitions, saga_id, saga_type, service, abort=(operator or "", reason))
        )
    render.stdout().print(Text(f"aborted: {state.saga_type} {state.saga_id}"))
    left = [step for step in state.completed if step not in state.compensated]
    if left:
        render.note(f"not undone: {', '.join(left)}")


def _definitions(reference: str) -> list[Saga[Any]]:
    found = load_reference(reference)
    if isinstance(found, dict):
        found = list(found.values())
    candidates = list(found) if isinstance(found, list | tuple) else [found]
    for candidate in candidates:
        if not isinstance(candidate, Saga):
            fail(f"{reference} holds {type(candidate).__name__}, not a Saga", EXIT_USAGE)
    if not candidates:
        fail(f"{reference} holds no saga", EXIT_USAGE)
    return candidates


async def _repair(
    url: str,
    definitions: list[Saga[Any]],
    saga_id: str,
    saga_type: str | None,
    service: str | None,
    *,
    retry: tuple[str, str] | None = None,
    abort: tuple[str, str] | None = None,
) -> SagaState:
    async with inspected_store(url) as opened:
        registry = _registry()
        reader = SagaManager.over(opened, registry, service=_READER)
        stream = await reader.find(saga_id, saga_type=saga_type)
        owner = await _owner(opened, registry, stream, service, saga_id)
        # The index the lookup read, not a second read of the whole log.
        driver = SagaDriver(opened, registry, definitions, service=owner, run_requests=False)
        manager = SagaManager(driver, reader.index)
        if retry is not None:
            operator, note = retry
            return await manager.retry(saga_id, saga_type=saga_type, operator=operator, note=note)
        assert abort is not None
        operator, reason = abort
        return await manager.abort(saga_id, saga_type=saga_type, reason=reason, operator=operator)


async def _owner(
    store: EventStore, registry: EventRegistry, stream: StreamId, given: str | None, saga_id: str
) -> str:
    """The service the saga's replies go to: the one its earlier requests named. A
    retry sent under another name would have its replies go where no worker reads."""
    named: set[str] = set()
    stored_events = await store.read_stream(stream)
    if not any(stored.type in SAGA_EVENT_TYPES for stored in stored_events):
        raise SagaNotFound(saga_id, f"no saga of that id is in the store ({stream})")
    for stored in stored_events:
        if stored.type == CommandRequested.__event_type__:
            request = registry.decode(stored)
            assert isinstance(request, CommandRequested)
            named.add(request.reply_to)
    owners = {topic[: -len(_REPLIES_SUFFIX)] for topic in named if topic.endswith(_REPLIES_SUFFIX)}
    if given is not None:
        if named and saga_replies_topic(given) not in named:
            raise InvalidInput(
                f"the saga's requests were answered on {', '.join(sorted(named))},"
                f" not on {saga_replies_topic(given)!r}: is {given!r} its service?"
            )
        return given
    if len(owners) != 1 or len(named) != 1:
        raise InvalidInput(
            "cannot tell which service owns this saga from its stream: pass --service NAME"
        )
    return owners.pop()


def _time(seconds: float) -> str:
    return render.timestamp(datetime.fromtimestamp(seconds, UTC))


def _took(started: float, ended: float | None) -> str:
    return "—" if ended is None else _seconds(ended - started)


def _seconds(duration: float | None) -> str:
    if duration is None:
        return "—"
    return f"{duration * 1000:.0f} ms" if duration < 1 else f"{duration:.2f} s"


def _json(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError):
        return repr(value)
