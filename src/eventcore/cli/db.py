"""``eventcore db``: bring a store's database up to date before a service starts."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from eventcore.cli import render
from eventcore.cli.errors import EXIT_USAGE, fail, reported
from eventcore.cli.options import with_connect_timeout
from eventcore.errors import MissingDependency
from eventcore.store import open_store
from eventcore.store.url import StoreUrl

__all__ = ["app"]

app = typer.Typer(help="Set up a store's database.", no_args_is_help=True)


@app.command("migrate")
def migrate(
    url: Annotated[
        str,
        typer.Argument(
            metavar="URL", help="The store, e.g. postgresql://user@host/db?schema=orders."
        ),
    ],
) -> None:
    """Apply the migrations a store is missing and print which ones ran.

    PostgreSQL stores also migrate when opened; running this first (in a deploy step)
    keeps schema changes out of the services' start-up. SQLite files migrate when
    opened, so this opens the file (creating it when missing).
    """
    with reported():
        parsed = StoreUrl.parse(url)
        if parsed.backend == "postgres":
            applied = asyncio.run(_migrate_postgres(with_connect_timeout(url)))
            if not applied:
                render.note("the schema is up to date: no migration applied")
            for version in applied:
                typer.echo(f"applied migration {version}")
        elif parsed.backend == "sqlite":
            asyncio.run(_open_sqlite(url))
            render.note("SQLite stores apply their migrations when opened: the file is up to date")
        else:
            fail(f"a {parsed.backend}:// store keeps no schema: nothing to migrate", EXIT_USAGE)


async def _migrate_postgres(url: str) -> list[int]:
    # Imported here: the PostgreSQL driver is only needed for PostgreSQL URLs.
    try:
        from eventcore.store.postgres import migrate as migrate_postgres
    except ImportError as error:
        raise MissingDependency.of(error, "postgresql:// stores") from error

    return await migrate_postgres(url)


async def _open_sqlite(url: str) -> None:
    store = await open_store(url)
    await store.aclose()
