"""``Leases`` in an SQLite file: member heartbeats and claims.

Expiry is wall-clock time (``time.time()``), the one clock every process on the
machine shares. Each call is one short write transaction, run by the owner of the file
(today the SQLite bus, whose schema holds the ``bus_members`` and ``bus_leases`` tables)
through its ``Writes``.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import Protocol, TypeVar

from eventcore.leases.protocol import check_ttl

__all__ = ["SqliteLeases", "Writes"]

T = TypeVar("T")


class Writes(Protocol):
    """Runs ``body`` in one write transaction on the connection that holds the lease
    tables, off the event loop, and returns its result."""

    async def write(self, body: Callable[[sqlite3.Connection], T]) -> T: ...


class SqliteLeases:
    """The ``Leases`` protocol over the ``bus_members`` and ``bus_leases`` tables.

    ``on_change`` runs when a claim or member goes away on purpose, so consumers of
    this process waiting to take over look again at once.
    """

    def __init__(self, writes: Writes, on_change: Callable[[], None] | None = None) -> None:
        self._writes = writes
        self._on_change = on_change or (lambda: None)

    async def heartbeat(self, scope: str, member: str, ttl: float) -> list[str]:
        ttl = check_ttl(ttl)

        def body(connection: sqlite3.Connection) -> list[str]:
            now = time.time()
            # Dead members are swept here, by whoever heartbeats next in the scope.
            connection.execute(
                "DELETE FROM bus_members WHERE scope = ? AND expires_at <= ?", (scope, now)
            )
            connection.execute(
                "INSERT INTO bus_members (scope, member, expires_at) VALUES (?, ?, ?)"
                " ON CONFLICT (scope, member) DO UPDATE SET expires_at = excluded.expires_at",
                (scope, member, now + ttl),
            )
            rows = connection.execute(
                "SELECT member FROM bus_members WHERE scope = ? ORDER BY member", (scope,)
            ).fetchall()
            return [str(row[0]) for row in rows]

        return await self._writes.write(body)

    async def members(self, scope: str) -> list[str]:
        """The live members of ``scope``, sorted, without joining it."""

        def body(connection: sqlite3.Connection) -> list[str]:
            rows = connection.execute(
                "SELECT member FROM bus_members WHERE scope = ? AND expires_at > ? ORDER BY member",
                (scope, time.time()),
            ).fetchall()
            return [str(row[0]) for row in rows]

        return await self._writes.write(body)

    async def acquire(self, scope: str, partition: int, member: str, ttl: float) -> bool:
        ttl = check_ttl(ttl)

        def body(connection: sqlite3.Connection) -> bool:
            now = time.time()
            # One statement: take a free or expired claim, or renew our own; a live
            # claim of another member makes the upsert's WHERE false (no row changes).
            cursor = connection.execute(
                "INSERT INTO bus_leases (scope, partition, member, expires_at)"
                " VALUES (?, ?, ?, ?)"
                " ON CONFLICT (scope, partition) DO UPDATE"
                " SET member = excluded.member, expires_at = excluded.expires_at"
                " WHERE bus_leases.member = excluded.member OR bus_leases.expires_at <= ?",
                (scope, partition, member, now + ttl, now),
            )
            return cursor.rowcount == 1

        return await self._writes.write(body)

    async def holder(self, scope: str, partition: int) -> str | None:
        def body(connection: sqlite3.Connection) -> str | None:
            row = connection.execute(
                "SELECT member FROM bus_leases"
                " WHERE scope = ? AND partition = ? AND expires_at > ?",
                (scope, partition, time.time()),
            ).fetchone()
            return None if row is None else str(row[0])

        return await self._writes.write(body)

    async def release(self, scope: str, partition: int, member: str) -> None:
        def body(connection: sqlite3.Connection) -> None:
            connection.execute(
                "DELETE FROM bus_leases WHERE scope = ? AND partition = ? AND member = ?",
                (scope, partition, member),
            )

        await self._writes.write(body)
        self._on_change()

    async def leave(self, scope: str, member: str) -> None:
        def body(connection: sqlite3.Connection) -> None:
            connection.execute(
                "DELETE FROM bus_members WHERE scope = ? AND member = ?", (scope, member)
            )

        await self._writes.write(body)
        self._on_change()
