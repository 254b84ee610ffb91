"""The SQLite bus file: how it is opened, and the numbered migrations of its tables.

The schema version lives in ``PRAGMA user_version``; the migrations are applied by the
runner every SQLite file shares (``eventcore._sqlite.migrations``). The file is a bus's
alone, stamped as one (``eventcore._sqlite.file``): opening an event store's file or a
projection target's as a bus is refused before anything is written. Tables keep the
``bus_`` prefix of the time they could share a file.
"""

from __future__ import annotations

import sqlite3
from typing import Final

from eventcore._schema_version import Migration, latest, require_current
from eventcore._sqlite.file import BUS, claim, connect_file
from eventcore._sqlite.migrations import USER_VERSION
from eventcore._sqlite.migrations import migrate as run_migrations
from eventcore.errors import BusUnavailable, InvalidUrl

__all__ = ["BUSY_TIMEOUT", "LATEST_VERSION", "connect", "migrate", "schema_version"]

#: Seconds a writer waits for another process's write lock before SQLite says busy.
BUSY_TIMEOUT: Final = 5.0

#: (version, statements). Append new migrations; never edit one that has shipped.
_MIGRATIONS: Final[tuple[Migration, ...]] = (
    (
        1,
        (
            # A topic keeps the partition count it was created with, whatever later
            # URLs say, or keys would move between partitions and lose their order.
            """
            CREATE TABLE bus_topics (
                name       TEXT    PRIMARY KEY,
                partitions INTEGER NOT NULL
            ) WITHOUT ROWID
            """,
            # ``seq`` counts 1, 2, 3... per (topic, partition) without gaps: publishers
            # hand out max + 1 under the write lock, so "contiguous" is well defined when
            # a group's acknowledgements are folded into its committed offset.
            """
            CREATE TABLE bus_messages (
                id           INTEGER PRIMARY KEY,
                topic        TEXT    NOT NULL,
                partition    INTEGER NOT NULL,
                seq          INTEGER NOT NULL,
                message_id   TEXT    NOT NULL,
                key          TEXT    NOT NULL,
                body         BLOB    NOT NULL,
                published_at REAL    NOT NULL,
                UNIQUE (topic, partition, seq),
                UNIQUE (topic, message_id)
            )
            """,
            # Everything up to ``committed`` is done for the group.
            """
            CREATE TABLE bus_offsets (
                grp       TEXT    NOT NULL,
                topic     TEXT    NOT NULL,
                partition INTEGER NOT NULL,
                committed INTEGER NOT NULL,
                PRIMARY KEY (grp, topic, partition)
            ) WITHOUT ROWID
            """,
            # One row per message past the offset that the group has seen: how often it
            # was delivered (so ``attempt`` survives restarts), when it may be delivered
            # again (wall clock: the visibility timeout or a nak's delay), and whether it
            # was acknowledged ahead of an earlier message still open.
            """
            CREATE TABLE bus_deliveries (
                grp        TEXT    NOT NULL,
                topic      TEXT    NOT NULL,
                partition  INTEGER NOT NULL,
                seq        INTEGER NOT NULL,
                attempts   INTEGER NOT NULL,
                visible_at REAL    NOT NULL,
                acked      INTEGER NOT NULL DEFAULT 0,
                PRIMARY KEY (grp, topic, partition, seq)
            ) WITHOUT ROWID
            """,
            """
            CREATE TABLE bus_members (
                scope      TEXT NOT NULL,
                member     TEXT NOT NULL,
                expires_at REAL NOT NULL,
                PRIMARY KEY (scope, member)
            ) WITHOUT ROWID
            """,
            """
            CREATE TABLE bus_leases (
                scope      TEXT    NOT NULL,
                partition  INTEGER NOT NULL,
                member     TEXT    NOT NULL,
                expires_at REAL    NOT NULL,
                PRIMARY KEY (scope, partition)
            ) WITHOUT ROWID
            """,
            # ``failed_at`` keeps the datetime as given (ISO text, with its zone);
            # ``failed_order`` is it in whole microseconds since the epoch, the sort key.
            """
            CREATE TABLE bus_dead_letters (
                letter_id    TEXT    PRIMARY KEY,
                grp          TEXT    NOT NULL,
                topic        TEXT    NOT NULL,
                message_id   TEXT    NOT NULL,
                key          TEXT    NOT NULL,
                body         BLOB    NOT NULL,
                reason       TEXT    NOT NULL,
                error_type   TEXT    NOT NULL,
                attempts     INTEGER NOT NULL,
                failed_at    TEXT    NOT NULL,
                status       TEXT    NOT NULL,
                failed_order INTEGER NOT NULL
            )
            """,
            # The sort key of every letter id ever put, so paging ``after`` a letter
            # that was dropped or claimed meanwhile still knows where to go on.
            """
            CREATE TABLE bus_dead_letter_marks (
                letter_id    TEXT    PRIMARY KEY,
                failed_order INTEGER NOT NULL
            ) WITHOUT ROWID
            """,
            "CREATE INDEX bus_dead_letters_order ON bus_dead_letters (failed_order, letter_id)",
            """
            CREATE TABLE bus_checkpoints (
                name     TEXT    PRIMARY KEY,
                position INTEGER NOT NULL
            ) WITHOUT ROWID
            """,
        ),
    ),
    (
        2,
        (
            # The store whose log a relay's checkpoint counts (``Checkpoint.store_id``);
            # NULL in rows saved before it was kept.
            "ALTER TABLE bus_checkpoints ADD COLUMN store_id TEXT",
        ),
    ),
    (
        3,
        (
            # Who holds a letter claimed for retry, and until when (ISO 8601, UTC): the
            # letter stays in the box until it is handled.
            "ALTER TABLE bus_dead_letters ADD COLUMN claimed_by TEXT",
            "ALTER TABLE bus_dead_letters ADD COLUMN claimed_until TEXT",
        ),
    ),
)

LATEST_VERSION: Final = latest(_MIGRATIONS)


def connect(url: str, path: str, *, create: bool) -> sqlite3.Connection:
    """Open (and, if allowed, create) the bus file and bring its schema up to date; with
    ``create=False`` nothing is written: the bus must be there and up to date already.

    Runs on the bus's worker thread: it blocks.
    """
    connection = connect_file(
        path, url=url, create=create, busy_timeout=BUSY_TIMEOUT, cached_statements=128
    )
    try:
        connection.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
        # Before anything writes: a file of another kind is refused untouched.
        claim(connection, BUS, url=url, create=create)
        mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise BusUnavailable(f"{path}: SQLite refused write-ahead logging ({mode})")
        # An acknowledged publish must survive a power cut, not only a crash.
        connection.execute("PRAGMA synchronous = FULL")
        if create:
            migrate(connection)
        else:
            found = schema_version(connection)
            require_current(
                found, LATEST_VERSION, url=url, what=BUS.name, unavailable=BusUnavailable
            )
    except sqlite3.Error as error:
        connection.close()
        if getattr(error, "sqlite_errorcode", None) == sqlite3.SQLITE_NOTADB:
            raise InvalidUrl(url, f"{path} is not an SQLite database") from error
        raise BusUnavailable(f"{path}: {error}") from error
    except BaseException:
        connection.close()
        raise
    return connection


def schema_version(connection: sqlite3.Connection) -> int:
    return USER_VERSION.applied(connection)


def migrate(connection: sqlite3.Connection) -> None:
    """Apply the migrations the file lacks; refuse a file from a newer eventcore."""
    run_migrations(connection, _MIGRATIONS, USER_VERSION, what=BUS.name, unavailable=BusUnavailable)
