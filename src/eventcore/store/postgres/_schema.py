"""The PostgreSQL store's schema: numbered migrations and the code that applies them.

Every object lives in one schema per store (``?schema=orders``, default ``eventcore``), so
several services share a cluster without seeing each other's events. Migrations are
applied in order, each once, recorded in ``<schema>.schema_migrations``; the whole run
holds a transaction-scoped advisory lock keyed by the schema, so two processes opening
the same store at once apply each migration exactly once (the second waits, then finds
nothing left to do). Migration SQL names the schema through the ``__schema__`` token,
replaced by the quoted identifier before it runs.

Advisory lock keys used by this backend (two int4 keys and one bigint key never collide:
PostgreSQL keeps the two key spaces apart):

* ``(MIGRATION_LOCK_CLASS, hashtext(schema))`` — held while migrating;
* ``(POSITION_LOCK_CLASS, hashtext(schema))`` — the position mutex (see ``_pg_append``);
* ``hashtextextended(schema || '/' || stream_id, 0)`` — one per stream an append names;
* ``hashtextextended(schema || '#' || key, 0)`` — one per idempotency key a batch uses.
"""

from __future__ import annotations

import re
from typing import Any, Final

import msgspec
import psycopg
from psycopg import sql

from eventcore.store.postgres._append import APPEND_FUNCTION_SQL
from eventcore.store.postgres._append_batch import APPEND_BATCH_FUNCTION_SQL

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


_EVENTS_TABLES: Final = """
-- Migration 1 enforces:
--   * a (stream, version) pair is written once        (events_stream_version_key)
--   * an event id is stored once                       (events_event_id_key)
--   * a position is used once                          (primary key)
--   * each event records the transaction that wrote it (transaction_id), which the
--     global-log reader compares with the snapshot's xmin (see _pg_read)
--   * stream names sort by code point, as Python sorts str (COLLATE "C")
--   * an idempotency key is used once and keeps the first append's result

-- CACHE 1 is load-bearing: a session-local cache would hand out positions out of the
-- order in which the position mutex is taken, breaking the ordering argument.
CREATE SEQUENCE IF NOT EXISTS __schema__.positions AS bigint START 1 CACHE 1;

CREATE TABLE IF NOT EXISTS __schema__.events (
    position        bigint      PRIMARY KEY,
    transaction_id  xid8        NOT NULL DEFAULT pg_current_xact_id(),
    stream_id       text        COLLATE "C" NOT NULL,
    version         bigint      NOT NULL CHECK (version >= 1),
    event_id        uuid        NOT NULL,
    type            text        NOT NULL,
    schema_version  integer     NOT NULL,
    data            bytea       NOT NULL,
    metadata        jsonb       NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT events_stream_version_key UNIQUE (stream_id, version),
    CONSTRAINT events_event_id_key UNIQUE (event_id)
);

-- read_all(types=...) walks this index once per wanted type, in position order.
CREATE INDEX IF NOT EXISTS events_type_position_idx ON __schema__.events (type, position);

-- One row per stream with at least one event: its version and newest position.
CREATE TABLE IF NOT EXISTS __schema__.streams (
    stream_id       text    COLLATE "C" PRIMARY KEY,
    version         bigint  NOT NULL CHECK (version >= 1),
    last_position   bigint  NOT NULL
);

-- The result of the first append made with each key; parallel arrays keep the
-- caller's order of streams and events.
CREATE TABLE IF NOT EXISTS __schema__.idempotency_keys (
    key             text        PRIMARY KEY,
    stream_ids      text[]      NOT NULL,
    stream_versions bigint[]    NOT NULL,
    positions       bigint[]    NOT NULL,
    event_ids       uuid[]      NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now()
);
"""

_STORE_IDENTITY: Final = """
-- The store's identity (EventStore.store_id): one row, made once per schema — with the
-- schema, or when a schema of an earlier version is first migrated — so that a
-- checkpoint counted in this schema is never taken for a position in another store.
CREATE TABLE IF NOT EXISTS __schema__.store_identity (
    one         boolean     PRIMARY KEY DEFAULT true CHECK (one),
    store_id    uuid        NOT NULL DEFAULT gen_random_uuid(),
    created_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO __schema__.store_identity DEFAULT VALUES ON CONFLICT DO NOTHING;
"""

MIGRATIONS: Final[tuple[Migration, ...]] = (
    Migration(1, "events, streams and idempotency keys", _EVENTS_TABLES),
    Migration(2, "append_events(): the one-round-trip write path", APPEND_FUNCTION_SQL),
    Migration(3, "append_batch(): many appends in one transaction", APPEND_BATCH_FUNCTION_SQL),
    Migration(4, "store_identity: the id checkpoints are bound to", _STORE_IDENTITY),
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
