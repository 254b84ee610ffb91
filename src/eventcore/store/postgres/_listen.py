"""Live wake-ups for the PostgreSQL store: one dedicated ``LISTEN`` connection.

Every append notifies the store's channel with its last position after commit (see
``migrations/0002_append_events.sql``). A ``Listener`` holds its own connection — outside
the pool, because a pooled connection is handed to other statements and would drop the
subscription — and turns each notification into ``HeadSignal.advance``.

It starts lazily, on the first ``wait_for_events``: a store nobody follows opens no
extra connection. After ``LISTEN`` it reads the newest position once, so an event that
committed before the subscription existed is not waited for in vain. When the
connection is lost it reconnects with a capped backoff, and reads the head again for the
same reason; meanwhile waiters fall back to their timeouts (the follower's poll).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Final

import psycopg
from psycopg import sql

from eventcore.store._head_signal import HeadSignal

__all__ = ["Listener", "application_name"]

_FIRST_RETRY: Final = 0.05
_LONGEST_RETRY: Final = 5.0
#: TCP keepalives, so a server that vanished without closing the socket is noticed.
_KEEPALIVES: Final = "keepalives=1 keepalives_idle=10 keepalives_interval=5 keepalives_count=3"


def _keepalives() -> dict[str, str]:
    return dict(item.split("=") for item in _KEEPALIVES.split())


def application_name(channel: str) -> str:
    """How the listening connection names itself in ``pg_stat_activity``."""
    return f"eventcore-listen-{channel}"[:63]


class Listener:
    """Feeds a ``HeadSignal`` from a channel's notifications. Owned by one store."""

    def __init__(
        self, conninfo: str, channel: str, last_position_sql: str, signal: HeadSignal
    ) -> None:
        self._conninfo = conninfo
        self._channel = channel
        self._last_position_sql = last_position_sql
        self._signal = signal
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        #: Connections made so far (tests read it to see a reconnect happen).
        self.connections = 0

    def ensure_started(self) -> None:
        """Start listening if not yet started (or if the listening task ended)."""
        if self._closed or (self._task is not None and not self._task.done()):
            return
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"eventcore-listen-{self._channel}"
        )

    async def aclose(self) -> None:
        """Stop listening and close the connection. Idempotent."""
        self._closed = True
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        # asyncio.wait neither raises the task's cancellation here nor absorbs our own.
        await asyncio.wait([task])

    async def _run(self) -> None:
        pause = _FIRST_RETRY
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    psycopg.conninfo.make_conninfo(
                        self._conninfo,
                        application_name=application_name(self._channel),
                        **_keepalives(),
                    ),
                    autocommit=True,
                )
            except psycopg.OperationalError:
                await asyncio.sleep(pause)
                pause = min(pause * 2, _LONGEST_RETRY)
                continue
            self.connections += 1
            try:
                await self._listen(conn)
            except psycopg.OperationalError:
                # The connection broke (server restart, network): subscribe again.
                pass
            finally:
                await _close_quietly(conn)
            pause = _FIRST_RETRY

    async def _listen(self, conn: psycopg.AsyncConnection[Any]) -> None:
        await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
        cursor = await conn.execute(self._last_position_sql)
        row = await cursor.fetchone()
        if row is not None:
            self._signal.advance(int(row[0]))
        async for notify in conn.notifies():
            try:
                position = int(notify.payload)
            except ValueError:
                continue  # not one of ours; every append sends a bare position
            self._signal.advance(position)


async def _close_quietly(conn: psycopg.AsyncConnection[Any]) -> None:
    # Closing a broken connection can itself fail; there is nothing left to release.
    with contextlib.suppress(psycopg.Error):
        await conn.close()
