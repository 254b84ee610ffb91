"""The one migration runner of eventcore's SQLite files (event store and bus).

Each migration runs in its own ``BEGIN IMMEDIATE`` transaction together with the record
of its version: several processes opening one new file at the same moment queue on the
write lock, and the later ones, looking again under the lock, find the work done.
Where the version is recorded is the file kind's ``Ledger``, kept as first shipped so
that existing files keep opening: ``PRAGMA user_version`` for the bus, a
``schema_migrations`` table for the store. The connection must be in autocommit mode
(``isolation_level=None``).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Final, Protocol

from eventcore._schema_version import Migration, latest, refuse_newer
from eventcore._sqlite.file import immediate
from eventcore.errors import EventcoreError

__all__ = ["MIGRATIONS_TABLE", "USER_VERSION", "Ledger", "migrate"]


class Ledger(Protocol):
    """Where a file records the newest migration applied to it."""

    def prepare(self, connection: sqlite3.Connection) -> None:
        """Make the record exist (outside any transaction); nothing when it always does."""
        ...

    def applied(self, connection: sqlite3.Connection) -> int:
        """The newest version applied (0: none); the record must exist."""
        ...

    def record(self, connection: sqlite3.Connection, version: int) -> None:
        """Record ``version`` as applied, inside the migration's transaction."""
        ...


class _UserVersion:
    """The file header's ``user_version``: written in the same transaction as the
    migration, so a crash leaves the file at the old version with none of its changes."""

    def prepare(self, connection: sqlite3.Connection) -> None:
        pass

    def applied(self, connection: sqlite3.Connection) -> int:
        return int(connection.execute("PRAGMA user_version").fetchone()[0])

    def record(self, connection: sqlite3.Connection, version: int) -> None:
        connection.execute(f"PRAGMA user_version = {int(version)}")


class _MigrationsTable:
    """A ``schema_migrations (version, applied_at)`` table, ``applied_at`` in whole
    microseconds since the epoch."""

    def prepare(self, connection: sqlite3.Connection) -> None:
        connection.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)"
        )

    def applied(self, connection: sqlite3.Connection) -> int:
        row = connection.execute(
            "SELECT coalesce(max(version), 0) FROM schema_migrations"
        ).fetchone()
        return int(row[0])

    def record(self, connection: sqlite3.Connection, version: int) -> None:
        connection.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
            (version, time.time_ns() // 1000),
        )


USER_VERSION: Final[Ledger] = _UserVersion()
MIGRATIONS_TABLE: Final[Ledger] = _MigrationsTable()


def migrate(
    connection: sqlite3.Connection,
    migrations: Sequence[Migration],
    ledger: Ledger,
    *,
    what: str,
    unavailable: Callable[[str], EventcoreError],
) -> None:
    """Apply the ``migrations`` the file lacks, each once; refuse a file a newer eventcore
    wrote (``what`` names the thing in the error ``unavailable`` builds)."""
    ledger.prepare(connection)
    for version, statements in migrations:
        if ledger.applied(connection) >= version:
            continue
        with immediate(connection):
            # Again under the write lock: another process may have just applied it.
            if ledger.applied(connection) < version:
                for statement in statements:
                    connection.execute(statement)
                ledger.record(connection, version)
    refuse_newer(ledger.applied(connection), latest(migrations), what=what, unavailable=unavailable)
