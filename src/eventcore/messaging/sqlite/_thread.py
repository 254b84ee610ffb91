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

__all__ = ["Job", "Light", "Worker", "write"]

T = TypeVar("T")

#: A function run on the worker thread with the bus's connection.
Job = Callable[[sqlite3.Connection], object]

_BUSY_CODES: Final = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})
#: Jobs one wake-up of the thread takes at most (a fairness bound, not a transaction).
_MAX_BATCH: Final = 64


def write(connection: sqlite3.Connection, body: Callable[[sqlite3.Connection], T]) -> T:
    """Run ``body`` in one ``BEGIN IMMEDIATE`` transaction (taking the write lock up
    front, so it never fails half-way on a lock upgrade); commit, or roll back.

    Inside a group commit (``_run_batch`` holds a transaction for several jobs) it runs
    under a savepoint instead: its failure undoes its own writes only, and it commits
    with the batch."""
    if connection.in_transaction:
        connection.execute("SAVEPOINT job")
        try:
            result = body(connection)
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK TO job")
                connection.execute("RELEASE job")
            raise
        connection.execute("RELEASE job")
        return result
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


def _run_job(connection: sqlite3.Connection, job: Job) -> Outcome:
    try:
        return success(job(connection))
    except EventcoreError as error:
        return failure(error)
    except sqlite3.Error as error:
        return failure(_unavailable(f"SQLite bus: {error}", error))
    except Exception as error:
        return failure(_unavailable(f"SQLite bus worker failed: {error!r}", error))


def _unavailable(message: str, cause: BaseException) -> BusUnavailable:
    wrapped = BusUnavailable(message)
    wrapped.__cause__ = cause
    return wrapped


class Light:
    """A job whose writes need not reach the disk before its caller hears back: claims
    of deliveries, acks, naks, lease renewals. Lost by a power cut (never by a process
    crash: the WAL is in the OS's cache), they only make the bus deliver again what it
    delivered before — which at-least-once delivery and the subscribers' inboxes absorb.
    Publishes, checkpoints and dead letters stay durable, and a durable commit makes
    every earlier one in the WAL durable with it (the log is synced as a whole)."""

    __slots__ = ("job",)

    def __init__(self, job: Job) -> None:
        self.job = job

    def __call__(self, connection: sqlite3.Connection) -> object:
        return self.job(connection)


def _set_synchronous(connection: sqlite3.Connection, jobs: list[Job]) -> None:
    durable = any(not isinstance(job, Light) for job in jobs)
    connection.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")


def _run_batch(connection: sqlite3.Connection, jobs: list[Job]) -> list[Outcome]:
    """The jobs one wake-up of the thread took, group-committed: one transaction (one
    fsync at ``synchronous=FULL``) for all of them rather than one each. Publishes,
    fetches and acks of every relay and subscriber of the process are small and come
    close together; committed one by one they queued behind each other's fsync.

    Each job's ``write`` runs under a savepoint (its failure undoes only its writes).
    No outcome leaves before the commit; should the commit fail — or a job's error end
    the transaction, taking the batch's earlier writes with it — every job of that
    transaction fails (reads too: they saw writes that did not commit)."""
    try:
        _set_synchronous(connection, jobs)
    except sqlite3.Error as error:
        return [failure(_unavailable(f"SQLite bus: {error}", error))] * len(jobs)
    if len(jobs) == 1:
        return [_run_job(connection, jobs[0])]
    outcomes: list[Outcome] = []
    since = 0  # the first job of the transaction in hand
    try:
        _begin_immediate(connection)
    except sqlite3.Error as error:
        return [failure(_unavailable(f"SQLite bus: {error}", error))] * len(jobs)
    for job in jobs:
        if not connection.in_transaction:
            # A job's error ended the transaction: the rest start a new one.
            try:
                _begin_immediate(connection)
            except sqlite3.Error as error:
                lost = failure(_unavailable(f"SQLite bus: {error}", error))
                return outcomes + [lost] * (len(jobs) - len(outcomes))
            since = len(outcomes)
        outcome = _run_job(connection, job)
        if not connection.in_transaction:
            lost = outcome if not outcome[0] else failure(BusUnavailable("SQLite bus: rolled back"))
            outcomes[since:] = [lost] * (len(outcomes) - since)
            outcome = lost
        outcomes.append(outcome)
    if connection.in_transaction:
        try:
            connection.execute("COMMIT")
        except sqlite3.Error as error:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            lost = failure(_unavailable(f"SQLite bus: {error}", error))
            outcomes[since:] = [lost] * (len(outcomes) - since)
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

    async def run(self, job: Callable[[sqlite3.Connection], T], *, durable: bool = True) -> T:
        """Run ``job`` on the thread and return its result (or raise its error);
        ``durable=False``: its commit need not be synced first (see ``Light``)."""
        if self.closed:
            raise BusClosed()
        result: T = await self._thread.submit(job if durable else Light(job))
        return result

    async def stop(self) -> None:
        self.closed = True
        await self._thread.stop(within=10.0)
