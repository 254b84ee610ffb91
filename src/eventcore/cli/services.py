"""``eventcore services``: what the service registry lists."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Annotated

import typer
from rich.table import Table

from eventcore.cli import json_lines, render
from eventcore.cli.errors import reported
from eventcore.cli.options import JsonOutput, RegistryOption, nonempty, required_registry
from eventcore.registry import Instance, open_registry
from eventcore.resilience import check_service

__all__ = ["app"]

app = typer.Typer(help="Inspect the service registry.", no_args_is_help=True)

Service = Annotated[
    str | None,
    typer.Option("--service", metavar="NAME", callback=nonempty, help="Only this service's."),
]


@app.command("list")
def list_services(
    registry: RegistryOption = None,
    service: Service = None,
    as_json: JsonOutput = False,
) -> None:
    """The live instances of every service (or of --service), by service: service,
    instance id, address, version, metadata.

    With --json, one object per instance: service, instance_id, address, version,
    metadata.
    """
    url = required_registry(registry)
    with reported():
        if service is not None:
            check_service(service)
        instances = asyncio.run(_live(url, service))
    if not instances:
        render.note("no live instances" + (f" of {service!r}" if service else ""))
        return
    if as_json:
        for instance in instances:
            json_lines.emit(json_lines.instance_record(instance))
    else:
        render.stdout().print(_table(instances), soft_wrap=True)


async def _live(url: str, service: str | None) -> list[Instance]:
    # Looking creates nothing: a mistyped path is an error, never a new empty registry.
    registry = await open_registry(url, create=False)
    try:
        services = [service] if service is not None else await registry.services()
        return [instance for name in services for instance in await registry.discover(name)]
    finally:
        await registry.aclose()


def _table(instances: Sequence[Instance]) -> Table:
    table = Table(title=None, header_style="bold")
    table.add_column("service", overflow="fold")
    table.add_column("instance", overflow="fold")
    table.add_column("address", overflow="fold")
    table.add_column("version", overflow="fold")
    table.add_column("metadata", overflow="fold")
    for each in instances:
        metadata = " ".join(f"{key}={value}" for key, value in sorted(each.metadata.items()))
        table.add_row(each.service, each.instance_id, each.address, each.version, metadata)
    return table
