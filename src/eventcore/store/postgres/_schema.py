"""The PostgreSQL store's schema: numbered migrations and the code that applies them.

Every object lives in one schema per store (``?schema=orders``, default ``eventcore``), so
several services share a cluster without seeing each other's events. Migrations are applied
in order, each once (one ``.sql`` file per migration in ``migrations/``), recorded in
``<schema>.schema_migrations``; the whole run holds a transaction-scoped advisory lock keyed
by the schema, so two processes opening the same store at once apply each migration exactly
once (the second waits, then finds nothing left to do). Migration SQL names the schema
through the ``__schema__`` token, replaced by the quoted identifier before it runs.

Advisory lock keys used by this backend (two int4 keys and one bigint key never collide:
PostgreSQL keeps the two key spaces apart):

* ``(MIGRATION_LOCK_CLASS, hashtext(schema))`` — held while migrating;
* ``(POSITION_LOCK_CLASS, hashtext(schema))`` — the position mutex (see
  ``migrations/0002_append_events.sql``);
* ``hashtextextended(schema || '/' || stream_id, 0)`` — one per stream an append names;
* ``hashtextextended(schema || '#' || key, 0)`` — one per idempotency key a batch uses.
"""

from __future__ import annotations

import re
from importlib.resources import files
from typing import Any, Final

import msgspec
import psycopg
from psycopg import sql

__all__ = [
    "MIGRATIONS",
    "MIGRATION_LOCK_CLASS",
    "POSITION_LOCK_CLASS",
    "STORE_ID",
    "Migration",
    "apply_migrations",
    "channel_name",
    "render",
    "valid_schema_name",
]

MIGRATION_LOCK_CLASS: Final = 0x45430001
POSITION_LOCK_CLASS: Final = 0x45430002

# Lower-case identifiers only: they need no quoting surprises, and the notification
# channel ``<schema>_events`` stays within PostgreSQL's 63-byte identifier limit.
_SCHEMA_NAME: Final = re.compile(r"[a-z_][a-z0-9_]{0,47}")


def valid_schema_name(name: str) -> bool:
    return _SCHEMA_NAME.fullmatch(name) is not None


class Migration(msgspec.Struct, frozen=True):
    version: int
    description: str
    sql: str


def _migration(version: int, description: str, file: str) -> Migration:
    sql_text = (files(__package__) / "migrations" / file).read_text(encoding="utf-8")
    return Migration(version, description, sql_text)


# One file per migration under ``migrations/``, shipped in the package. Append new ones;
# never edit one that has shipped (a database records versions, not text).
MIGRATIONS: Final[tuple[Migration, ...]] = (
    _migration(1, "events, streams and idempotency keys", "0001_events.sql"),
    _migration(2, "append_events(): the one-round-trip write path", "0002_append_events.sql"),
    _migration(3, "append_batch(): many appends in one transaction", "0003_append_batch.sql"),
    _migration(4, "store_identity: the id checkpoints are bound to", "0004_store_identity.sql"),
)

#: The store's id, as text (``EventStore.store_id``).
STORE_ID: Final = "SELECT store_id::text FROM __schema__.store_identity"


def channel_name(schema: str) -> str:
    """The channel each append notifies with its last position (for live followers)."""
    return f"{schema}_events"


def render(template: str, schema: str) -> str:
    """``template`` with its schema tokens filled in.

    ``__schema__`` becomes the quoted identifier, ``__schema_text__`` the bare name (for
    lock keys) and ``__channel__`` the notification channel. The name was checked by
    ``valid_schema_name``, so it is safe inside a string literal.
    """
    return (
        template.replace("__position_lock__", f"{POSITION_LOCK_CLASS}, hashtext('{schema}')")
        .replace("__schema_text__", schema)
        .replace("__channel__", channel_name(schema))
        .replace("__schema__", sql.Identifier(schema).as_string())
    )


async def apply_migrations(conn: psycopg.AsyncConnection[Any], schema: str) -> list[int]:
    """Bring ``schema`` up to date; return the versions applied by this call (often none).

    Safe to run from several processes at once and as often as you like.
    """
    applied_now: list[int] = []
    async with conn.transaction():
        # Serialise concurrent migrators of this schema until commit: CREATE ... IF NOT
        # EXISTS is not safe against a concurrent creator, and each migration must run once.
        await conn.execute(
            "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (MIGRATION_LOCK_CLASS, schema)
        )
        await conn.execute(
            render(
                """
                CREATE SCHEMA IF NOT EXISTS __schema__;
                CREATE TABLE IF NOT EXISTS __schema__.schema_migrations (
                    version     integer     PRIMARY KEY,
                    description text        NOT NULL,
                    applied_at  timestamptz NOT NULL DEFAULT now()
                );
                """,
                schema,
            )
        )
        cursor = await conn.execute(
            render("SELECT version FROM __schema__.schema_migrations", schema)
        )
        done = {int(row[0]) for row in await cursor.fetchall()}
        for migration in MIGRATIONS:
            if migration.version in done:
                continue
            await conn.execute(render(migration.sql, schema))
            await conn.execute(
                render(
                    "INSERT INTO __schema__.schema_migrations (version, description)"
                    " VALUES (%s, %s)",
                    schema,
                ),
                (migration.version, migration.description),
            )
            applied_now.append(migration.version)
    return applied_now
