"""``eventcore federate``: run a federation hub, check its configuration, and show what
its rules make of an event.

``run`` (or ``eventcore federate --config hub.toml``) runs the hub as a process
(``eventcore.cli.hub``); ``check`` and ``explain`` open no bus. ``check`` loads the
configuration as the hub will (the environment variables it names included) and prints
one line per problem. ``explain`` routes one event, read from a file holding its
CloudEvents JSON, and prints which rules matched and the exact copies they make. A
``function`` step's module is imported with the current directory first on the import
path, as ``projections rebuild --app`` does.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.text import Text

from eventcore.cli import json_lines, render
from eventcore.cli.errors import EXIT_USAGE, fail, reported
from eventcore.cli.hub import serve
from eventcore.cli.options import JsonOutput, nonempty
from eventcore.errors import InvalidConfig, InvalidInput, InvalidMessage
from eventcore.federation import DEFAULT_GROUP, HubConfig, Origin, Routing, load_config, route
from eventcore.messaging.bus import DEFAULT_ACK_WAIT
from eventcore.messaging.envelope import (
    DEFAULT_MAX_MESSAGE_BYTES,
    DistributedEvent,
    decode_envelope,
    encode_envelope,
)
from eventcore.messaging.names import check_name

__all__ = ["app"]

app = typer.Typer(
    help="Run a federation hub, check its configuration, explain its routing.",
    no_args_is_help=True,
)

Group = Annotated[
    str,
    typer.Option(
        "--group", metavar="NAME", help="The consumer group the hub reads its sources as."
    ),
]
Member = Annotated[
    str | None,
    typer.Option(
        "--member",
        metavar="NAME",
        help="This hub's member name in each group; a hub restarted under the same name "
        "takes its partitions back at once (default: a fresh name).",
    ),
]
BatchSize = Annotated[
    int, typer.Option("--batch", min=1, metavar="N", help="Messages fetched per batch.")
]
AckWait = Annotated[
    float,
    typer.Option(
        "--ack-wait",
        min=0.001,
        metavar="SECONDS",
        help="How long a batch may stay unacknowledged before the source delivers it again.",
    ),
]
StatusEvery = Annotated[
    float,
    typer.Option(
        "--status-every", min=0.01, metavar="SECONDS", help="How often to print a status line."
    ),
]


@app.callback(invoke_without_command=True)
def federate(
    context: typer.Context,
    config: Annotated[
        str | None,
        typer.Option(
            "--config",
            metavar="CONFIG",
            callback=nonempty,
            help="Run the hub of this configuration (the same as: federate run CONFIG).",
        ),
    ] = None,
    group: Group = DEFAULT_GROUP,
    member: Member = None,
    batch: BatchSize = 500,
    ack_wait: AckWait = DEFAULT_ACK_WAIT,
    status_every: StatusEvery = 10.0,
) -> None:
    """Run a federation hub (--config), or one of the commands below."""
    if context.invoked_subcommand is not None:
        return
    if config is None:
        typer.echo(context.get_help())
        raise typer.Exit(EXIT_USAGE)
    run(config, group, member, batch, ack_wait, status_every)


@app.command("run")
def run(
    config: ConfigFile,
    group: Group = DEFAULT_GROUP,
    member: Member = None,
    batch: BatchSize = 500,
    ack_wait: AckWait = DEFAULT_ACK_WAIT,
    status_every: StatusEvery = 10.0,
) -> None:
    """Run the hub of CONFIG until SIGTERM or SIGINT, then stop cleanly (exit 0).

    Prints "federate: ready: ..." once every source is read, then a status line every
    --status-every seconds while anything changed.
    """
    loaded = _loaded(config)
    with reported():
        asyncio.run(
            serve(
                loaded,
                group=group,
                member=member,
                batch_size=batch,
                ack_wait=ack_wait,
                status_every=status_every,
            )
        )


ConfigFile = Annotated[
    str,
    typer.Argument(
        metavar="CONFIG", callback=nonempty, help="The hub's configuration (TOML), e.g. hub.toml."
    ),
]


@app.command("check")
def check(config: ConfigFile) -> None:
    """Load CONFIG as the hub would and report every problem, one line each (exit 2)."""
    loaded = _loaded(config)
    targets = {str(target) for rule in loaded.rules for target in rule.targets}
    plural = "" if len(loaded.rules) == 1 else "s"
    render.stdout().print(
        Text(
            f"{config}: ok: {len(loaded.rules)} rule{plural}, "
            f"{len(loaded.origins)} source topic(s), {len(targets)} target topic(s)"
        ),
        soft_wrap=True,
    )


@app.command("explain")
def explain(
    config: ConfigFile,
    event: Annotated[
        str,
        typer.Argument(
            metavar="EVENT",
            callback=nonempty,
            help="A file holding one event as CloudEvents JSON (an eventcore envelope).",
        ),
    ],
    origin: Annotated[
        str | None,
        typer.Option(
            "--origin",
            metavar="BUS/TOPIC",
            callback=nonempty,
            help="Where the event was read (a bus alias of CONFIG and a topic); "
            "by default each rule is taken to have read it at its own source.",
        ),
    ] = None,
    as_json: JsonOutput = False,
) -> None:
    """Which rules of CONFIG take EVENT, and the exact copies they make.

    With --json, one object: event_id, matched (rule names, in order), routed (each
    rule, targets and envelope), failed (each rule, step and reason), stopped_by.
    """
    where = _origin(origin)
    loaded = _loaded(config)
    envelope = _read_event(event)
    routing = route(envelope, where, loaded.rules)
    if as_json:
        json_lines.emit(_record(envelope, routing))
    else:
        _show(loaded, envelope, routing)


def _loaded(config: str) -> HubConfig:
    here = os.getcwd()
    if sys.path[:1] != [here]:
        sys.path.insert(0, here)
    try:
        return load_config(config)
    except InvalidConfig as error:
        _refuse(error)


def _refuse(error: InvalidConfig) -> NoReturn:
    for problem in error.problems:
        render.error(str(problem))
    raise typer.Exit(EXIT_USAGE)


def _origin(text: str | None) -> Origin | None:
    if text is None:
        return None
    bus, slash, topic = text.partition("/")
    try:
        if not slash:
            raise InvalidInput("expected BUS/TOPIC, e.g. main/users")
        return Origin(check_name("bus alias", bus), check_name("topic", topic))
    except InvalidInput as error:
        fail(f"--origin {text!r}: {error}", EXIT_USAGE)


def _read_event(path: str) -> DistributedEvent:
    try:
        with Path(path).open("rb") as handle:
            body = handle.read(DEFAULT_MAX_MESSAGE_BYTES + 1)
    except (OSError, ValueError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        fail(f"{path}: cannot be read: {reason}", EXIT_USAGE)
    try:
        return decode_envelope(body)
    except InvalidMessage as error:
        fail(f"{path}: {error}", EXIT_USAGE)


def _envelope_json(envelope: DistributedEvent) -> Any:
    return json.loads(encode_envelope(envelope))


def _record(envelope: DistributedEvent, routing: Routing) -> dict[str, Any]:
    return {
        "event_id": envelope.id,
        "matched": list(routing.matched),
        "routed": [
            {
                "rule": each.rule,
                "targets": [str(target) for target in each.targets],
                "envelope": _envelope_json(each.envelope),
            }
            for each in routing.routed
        ],
        "failed": [
            {"rule": failure.rule, "step": failure.step, "reason": failure.reason}
            for failure in routing.failed
        ],
        "stopped_by": routing.stopped_by,
    }


def _show(config: HubConfig, envelope: DistributedEvent, routing: Routing) -> None:
    console = render.stdout()
    head = f"event {envelope.id} ({envelope.type} from {envelope.source})"
    console.print(Text(head, style="bold"), soft_wrap=True)
    routed = {each.rule: each for each in routing.routed}
    failed = {failure.rule: failure for failure in routing.failed}
    for rule in config.rules:
        if rule.name not in routing.matched:
            tried = routing.stopped_by is None or config.rules.index(rule) < _index(
                config, routing.stopped_by
            )
            verdict = "no match" if tried else "not tried (an earlier rule stopped)"
            console.print(Text(f"rule {rule.name}: {verdict}", style="dim"), soft_wrap=True)
            continue
        if rule.name in failed:
            failure = failed[rule.name]
            line = f"rule {rule.name}: matched, failed at {failure.step}: {failure.reason}"
            console.print(Text(line, style="red"), soft_wrap=True)
        else:
            copy = routed[rule.name]
            targets = ", ".join(str(target) for target in copy.targets)
            console.print(Text(f"rule {rule.name}: matched -> {targets}"), soft_wrap=True)
            pretty = json.dumps(_envelope_json(copy.envelope), indent=2, ensure_ascii=False)
            console.print(Text(pretty), soft_wrap=True)
        if rule.stop:
            console.print(Text(f"rule {rule.name} stops the evaluation"), soft_wrap=True)


def _index(config: HubConfig, name: str) -> int:
    return next(i for i, rule in enumerate(config.rules) if rule.name == name)
