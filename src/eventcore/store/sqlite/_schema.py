"""The SQLite store's tables, and the numbered migrations that create them.

Applied by the runner every SQLite file shares (``eventcore._sqlite.migrations``), each
once per file, recorded in the ``schema_migrations`` table.
"""

from __future__ import annotations

import sqlite3
from typing import Final

from eventcore._schema_version import Migration, latest, require_current
from eventcore._sqlite.file import STORE
from eventcore._sqlite.migrations import MIGRATIONS_TABLE
from eventcore._sqlite.migrations import migrate as run_migrations
from eventcore.errors import StoreUnavailable

__all__ = ["LATEST_VERSION", "check_current", "migrate", "read_store_id"]

#: (version, statements). Append new migrations; never edit one that has shipped.
_MIGRATIONS: Final[tuple[Migration, ...]] = (
    (
        1,
        (
            # ``position INTEGER PRIMARY KEY`` is the rowid itself, without AUTOINCREMENT:
            # the writer hands out max(position) + 1, so an append rolled back to its
            # savepoint leaves no gap in the global log for a reader to wait on.
            """
            CREATE TABLE events (
                position       INTEGER PRIMARY KEY,
                stream_id      TEXT    NOT NULL,
                version        INTEGER NOT NULL,
                event_id       BLOB    NOT NULL UNIQUE,
                type           TEXT    NOT NULL,
                schema_version INTEGER NOT NULL,
                data           BLOB    NOT NULL,
                metadata       BLOB,
                recorded_at    INTEGER NOT NULL,
                UNIQUE (stream_id, version)
            )
            """,
            # Serves ``read_all(types=...)``: one index range per type, already in
            # position order, so a filtered read never sorts or scans other types.
            "CREATE INDEX events_type_position ON events (type, position)",
            # One row per stream: the head that conflict checks and list_streams read,
            # so neither has to aggregate over events.
            """
            CREATE TABLE streams (
                stream_id     TEXT    PRIMARY KEY,
                version       INTEGER NOT NULL,
                last_position INTEGER NOT NULL
            ) WITHOUT ROWID
            """,
            # The first result of each idempotency key (msgspec JSON of AppendResult).
            """
            CREATE TABLE idempotency (
                key    TEXT PRIMARY KEY,
                result BLOB NOT NULL
            ) WITHOUT ROWID
            """,
        ),
    ),
    (
        2,
        (
            # The store's identity (``EventStore.store_id``): one row, made once per file
            # — with the file, or when a file of version 1 is first opened — so that a
            # checkpoint counted here is never taken for a position in another file.
            """
            CREATE TABLE store_identity (
                one      INTEGER PRIMARY KEY CHECK (one = 1),
                store_id TEXT    NOT NULL
            )
            """,
            # A random (version 4) UUID in its usual text form, made by SQLite itself so
            # the migration stays plain SQL.
            """
            INSERT INTO store_identity (one, store_id)
            SELECT 1, substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-4' || substr(h, 14, 3)
                      || '-' || substr('89ab', 1 + (random() & 3), 1) || substr(h, 18, 3)
                      || '-' || substr(h, 21, 12)
            FROM (SELECT lower(hex(randomblob(16))) AS h)
            """,
        ),
    ),
)

LATEST_VERSION: Final = latest(_MIGRATIONS)


def migrate(connection: sqlite3.Connection) -> None:
    """Bring the file's schema up to ``LATEST_VERSION``; a no-op when it is there.

    The connection must be in autocommit mode (``isolation_level=None``).
    """
    run_migrations(
        connection, _MIGRATIONS, MIGRATIONS_TABLE, what=STORE.name, unavailable=StoreUnavailable
    )


def read_store_id(connection: sqlite3.Connection) -> str:
    """The file's store id (made by migration 2)."""
    row = connection.execute("SELECT store_id FROM store_identity WHERE one = 1").fetchone()
    if row is None:
        raise StoreUnavailable("the store file has no identity row (store_identity is empty)")
    return str(row[0])


def check_current(connection: sqlite3.Connection, url: str) -> None:
    """For an opener that may not write (``create=False``): the file's store must be there
    and at ``LATEST_VERSION`` already, since migrating it is a write."""
    known = connection.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
    ).fetchone()
    found = MIGRATIONS_TABLE.applied(connection) if known else 0
    require_current(found, LATEST_VERSION, url=url, what=STORE.name, unavailable=StoreUnavailable)
