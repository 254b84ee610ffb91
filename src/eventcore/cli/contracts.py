"""``eventcore contracts export module:service``: the service's contracts as JSON, the
OpenAPI document of its HTTP face and the AsyncAPI document of its topics and bus
commands, without running it (nothing is opened)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from eventcore.cli.errors import reported
from eventcore.cli.serve import ServiceSpec
from eventcore.service import load_service

__all__ = ["app"]

app = typer.Typer(help="The contracts of a service: OpenAPI and AsyncAPI.", no_args_is_help=True)


@app.command("export")
def export(
    spec: ServiceSpec,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            metavar="DIR",
            help="Write openapi.json and asyncapi.json into DIR instead of printing both.",
        ),
    ] = None,
) -> None:
    """Print (or write) SERVICE's OpenAPI and AsyncAPI documents."""
    from eventcore.web import asyncapi, openapi

    with reported():
        service = load_service(spec)
        documents = {"openapi": openapi(service), "asyncapi": asyncapi(service)}
    if out is None:
        typer.echo(json.dumps(documents, indent=2, sort_keys=True))
        return
    out.mkdir(parents=True, exist_ok=True)
    for name, document in documents.items():
        (out / f"{name}.json").write_text(
            json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
        typer.echo(str(out / f"{name}.json"))
