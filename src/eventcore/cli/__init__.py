"""The ``eventcore`` command line: inspect stores, follow the global log, run the demo."""

from __future__ import annotations

from typing import Annotated

import typer

from eventcore._version import __version__
from eventcore.cli import db, demo, dlq, events, federate, projections, sagas, services, streams
from eventcore.cli.errors import OneLineErrors

__all__ = ["app", "main"]

app = typer.Typer(
    name="eventcore",
    cls=OneLineErrors,
    help="Distributed, event-sourced services for asyncio.",
    no_args_is_help=True,
    add_completion=False,
    # A bug's traceback must not print local variables: they may hold URLs with secrets.
    pretty_exceptions_show_locals=False,
)
app.add_typer(streams.app, name="streams")
app.add_typer(events.app, name="events")
app.add_typer(db.app, name="db")
app.add_typer(projections.app, name="projections")
app.add_typer(dlq.app, name="dlq")
app.add_typer(federate.app, name="federate")
app.add_typer(sagas.app, name="sagas")
app.add_typer(services.app, name="services")
app.command("demo")(demo.demo)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"eventcore {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Inspect event stores, follow the global log, repair sagas, check federation rules,
    list the services in a registry, run the demo."""


def main() -> None:
    # Named here: ``python -m eventcore.cli`` would otherwise call itself "__main__.py".
    app(prog_name="eventcore")
