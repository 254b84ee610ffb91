"""``eventcore contracts export module:service``: the service's contracts as JSON, the
OpenAPI document of its HTTP face and the AsyncAPI document of its topics and bus
commands, without running it (nothing is opened)."""

from __future__ import annotations

import json

import typer

from eventcore.cli.errors import reported
from eventcore.cli.serve import ServiceSpec
from eventcore.service import load_service

__all__ = ["app"]

app = typer.Typer(help="The contracts of a service: OpenAPI and AsyncAPI.", no_args_is_help=True)


@app.command("export")
def export(spec: ServiceSpec) -> None:
    """Print SERVICE's contracts as one JSON object: {"openapi": …, "asyncapi": …}."""
    from eventcore.web import asyncapi, openapi

    with reported():
        service = load_service(spec)
        documents = {"openapi": openapi(service), "asyncapi": asyncapi(service)}
    typer.echo(json.dumps(documents, indent=2, sort_keys=True))
