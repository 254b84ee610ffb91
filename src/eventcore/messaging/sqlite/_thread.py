"""The SQLite bus's worker: one thread, one connection, jobs from the event loop.

It reuses the event store's ``ConnectionThread`` (batched hand-over both ways); a job
here is a plain function of the connection, run on its own. Driver errors become
``BusUnavailable`` at this one boundary.

Taking the write lock: another process (a relay publishing, another service's
consumer acking) holds it for about a millisecond at a time. SQLite's own busy
handler sleeps 1, 2, 5, 10, 15, 20, 25… ms between looks, so a writer that meets the
lock a few times in a row waits tens of milliseconds for a lock that was free after
one. ``write`` takes it through the store's turnstile (``eventcore._sqlite.turns``): short
jittered pauses (0.1 ms doubling to 0.5 ms) for up to the busy timeout, and writers of
different processes take turns instead of the fastest starving the others.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Final, TypeVar

from eventcore._sqlite.thread import ConnectionThread, Outcome, failure, success
from eventcore._sqlite.turns import begin_in_turn
from eventcore.errors import BusClosed, BusUnavailable, EventcoreError
from eventcore.messaging.sqlite._schema import BUSY_TIMEOUT

__all__ = ["Job", "Worker", "write"]

T = TypeVar("T")

#: A function run on the worker thread with the bus's connection.
Job = Callable[[sqlite3.Connection], object]

_BUSY_CODES: Final = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})
#: Jobs one wake-up of the thread takes at most (a fairness bound, not a transaction).
_MAX_BATCH: Final = 64


def write(connection: sqlite3.Connection, body: Callable[[sqlite3.Connection], T]) -> T:
    """Run ``body`` in one ``BEGIN IMMEDIATE`` transaction (taking the write lock up
    front, so it never fails half-way on a lock upgrade); commit, or roll back."""
    _begin_immediate(connection)
    try:
        result = body(connection)
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
    return result


def _begin_immediate(connection: sqlite3.Connection) -> None:
    """Take the write lock in turn with the file's other writers (``eventcore._sqlite.turns``);
    ``sqlite3.OperationalError`` (busy) once the busy timeout has passed."""
    begin_in_turn(connection, BUSY_TIMEOUT)


def _is_busy(error: sqlite3.Error) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in _BUSY_CODES


def _run_batch(connection: sqlite3.Connection, jobs: list[Job]) -> list[Outcome]:
    outcomes: list[Outcome] = []
    for job in jobs:
        try:
            outcomes.append(success(job(connection)))
        except EventcoreError as error:
            outcomes.append(failure(error))
        except sqlite3.Error as error:
            wrapped = BusUnavailable(f"SQLite bus: {error}")
            wrapped.__cause__ = error
            outcomes.append(failure(wrapped))
        except Exception as error:
            wrapped = BusUnavailable(f"SQLite bus worker failed: {error!r}")
            wrapped.__cause__ = error
            outcomes.append(failure(wrapped))
    return outcomes


class Worker:
    """The event loop's handle on the worker thread."""

    def __init__(self, name: str, connect: Callable[[], sqlite3.Connection]) -> None:
        self._thread: ConnectionThread[Job] = ConnectionThread(
            name, connect, _run_batch, max_batch=_MAX_BATCH
        )
        self.closed = False

    async def start(self) -> None:
        await self._thread.start()

    async def run(self, job: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``job`` on the thread and return its result (or raise its error)."""
        if self.closed:
            raise BusClosed()
        result: T = await self._thread.submit(job)
        return result

    async def stop(self) -> None:
        self.closed = True
        await self._thread.stop(within=10.0)
