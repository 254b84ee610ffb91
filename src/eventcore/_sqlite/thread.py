"""A thread that owns one SQLite connection and runs jobs for the event loop.

``sqlite3`` calls block, so none of them may run on the event loop. Each connection
lives on its own thread for its whole life (opened there, used only there, closed
there), which also keeps ``sqlite3``'s same-thread check meaningful.

The loop hands jobs over through a queue and gets each answer back through an
``asyncio.Future``. Crossing threads costs a wake-up each way, so both sides batch:

* the loop collects the jobs submitted during one pass of the event loop and queues
  them as one list (one wake-up of the thread, not one per job), so the many tasks
  woken by one answer batch go back to the thread together;
* the thread takes *every* job waiting when it wakes (up to ``max_batch``), runs them
  as one batch, and settles all their futures with one ``call_soon_threadsafe`` per
  loop.

Under load that turns many round trips into one; the writer also uses the batch to
commit many appends in one transaction (``eventcore.store.sqlite._write``).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Final, Generic, TypeVar

from eventcore.errors import StoreClosed, StoreUnavailable

__all__ = ["ConnectionThread", "Outcome", "failure", "success"]

J = TypeVar("J")

#: How one job ended: ``(True, value)`` or ``(False, exception)``.
Outcome = tuple[bool, Any]


def success(value: object) -> Outcome:
    return (True, value)


def failure(error: BaseException) -> Outcome:
    return (False, error)


#: Runs a batch of jobs on the thread's connection; one outcome per job, in order.
BatchRunner = Callable[[sqlite3.Connection, list[J]], list[Outcome]]


class _Stop:
    """Queued by ``stop``: everything queued before it runs first."""


_STOP: Final = _Stop()

#: A submitted job and the future its outcome goes to.
_Entry = tuple[asyncio.Future[Any], J]


def _entries(item: list[_Entry[J]] | _Stop) -> Sequence[_Entry[J] | _Stop]:
    return (item,) if isinstance(item, _Stop) else item


class ConnectionThread(Generic[J]):
    """One daemon thread, one connection, a queue of jobs.

    Daemon, so a store that is never closed cannot keep the interpreter from exiting;
    ``stop`` is the orderly way out.
    """

    def __init__(
        self,
        name: str,
        connect: Callable[[], sqlite3.Connection],
        run_batch: BatchRunner[J],
        *,
        max_batch: int,
    ) -> None:
        self._connect = connect
        self._run_batch = run_batch
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[list[_Entry[J]] | _Stop] = queue.SimpleQueue()
        # Jobs submitted during the current pass of the loop, not yet handed over.
        self._pending: list[_Entry[J]] = []
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._accepting = False
        self._ready: asyncio.Future[None] | None = None
        self._finished: asyncio.Future[None] | None = None

    # --- the event loop's side -----------------------------------------------------------

    async def start(self) -> None:
        """Start the thread; return once its connection is open, or raise why it is not."""
        loop = asyncio.get_running_loop()
        self._ready = loop.create_future()
        self._finished = loop.create_future()
        self._thread.start()
        try:
            await self._ready
        except BaseException:
            # Failed or cancelled: if the connection opens after all, close it again.
            self._queue.put(_STOP)
            raise
        self._accepting = True

    def submit(self, job: J) -> asyncio.Future[Any]:
        """Queue a job; the future resolves to its result on the caller's loop."""
        if not self._accepting:
            raise StoreClosed()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._pending:
            # Runs after every callback already ready in this pass (they are FIFO), so
            # the jobs those callbacks submit travel with this one.
            loop.call_soon(self._hand_over)
        self._pending.append((future, job))
        return future

    def _hand_over(self) -> None:
        if self._pending:
            entries, self._pending = self._pending, []
            self._queue.put(entries)

    async def stop(self, *, within: float) -> None:
        """Let queued jobs finish, then close the connection; wait at most ``within`` s.

        Past the bound the thread is left to finish on its own (it is a daemon).
        Idempotent.
        """
        if self._finished is None:
            return
        if self._accepting:
            self._accepting = False
            self._hand_over()
            self._queue.put(_STOP)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._finished), within)

    # --- the thread's side ---------------------------------------------------------------

    def _main(self) -> None:
        try:
            try:
                connection = self._connect()
            except BaseException as error:
                self._notify(self._ready, error)
                return
            self._notify(self._ready, None)
            try:
                self._serve(connection)
            finally:
                with contextlib.suppress(sqlite3.Error):
                    connection.close()
        finally:
            self._notify(self._finished, None)

    def _serve(self, connection: sqlite3.Connection) -> None:
        get, get_nowait = self._queue.get, self._queue.get_nowait
        # Entries taken off the queue but beyond the last batch's cap.
        backlog: deque[_Entry[J] | _Stop] = deque()
        while True:
            if not backlog:
                backlog.extend(_entries(get()))
            while True:
                try:
                    backlog.extend(_entries(get_nowait()))
                except queue.Empty:
                    break
            futures: list[asyncio.Future[Any]] = []
            jobs: list[J] = []
            stopping = False
            while backlog and len(jobs) < self._max_batch:
                entry = backlog.popleft()
                if isinstance(entry, _Stop):
                    stopping = True
                    break
                future, job = entry
                # A caller that gave up before its job started gets nothing done for it.
                # (Reading the state from this thread is a plain attribute read.)
                if not future.cancelled():
                    futures.append(future)
                    jobs.append(job)
            if jobs:
                try:
                    outcomes = self._run_batch(connection, jobs)
                except Exception as error:
                    # A bug in a batch runner must not leave its callers waiting forever.
                    outcomes = [_crashed(error) for _ in jobs]
                _deliver(futures, outcomes)
            if stopping:
                return

    @staticmethod
    def _notify(future: asyncio.Future[None] | None, error: BaseException | None) -> None:
        if future is None:
            return
        _deliver([future], [success(None) if error is None else failure(error)])


def _crashed(error: Exception) -> Outcome:
    wrapped = StoreUnavailable(f"the SQLite worker failed unexpectedly: {error!r}")
    wrapped.__cause__ = error
    return failure(wrapped)


def _deliver(futures: Sequence[asyncio.Future[Any]], outcomes: Sequence[Outcome]) -> None:
    """Hand a batch's outcomes to the loop(s) that wait for them: one wake-up per loop."""
    groups: dict[asyncio.AbstractEventLoop, tuple[list[asyncio.Future[Any]], list[Outcome]]] = {}
    for future, outcome in zip(futures, outcomes, strict=True):
        pending, results = groups.setdefault(future.get_loop(), ([], []))
        pending.append(future)
        results.append(outcome)
    for loop, (pending, results) in groups.items():
        # A loop that is already closed has nobody left to tell.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_settle, pending, results)


def _settle(futures: Sequence[asyncio.Future[Any]], outcomes: Sequence[Outcome]) -> None:
    """Runs on the loop. A future cancelled meanwhile keeps its cancellation."""
    for future, (ok, value) in zip(futures, outcomes, strict=True):
        if future.done():
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)
