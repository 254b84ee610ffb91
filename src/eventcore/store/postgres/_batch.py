"""Group commit for the PostgreSQL store: appends queue up, one writer commits them together.

A commit costs a WAL flush (and, with notifications on, a turn at a cluster-wide lock),
which is far slower than an append's SQL. So ``append()`` does not run its own
transaction: it queues its validated request and waits. One writer task per store takes
everything queued (up to ``MAX_APPENDS`` appends and ``MAX_BYTES`` of payload) and runs
it as one ``append_batch`` statement — one transaction, one round trip, one flush, one
notification (``_append_batch``). While that batch commits, new appends collect for
the next one, so batches grow with the load by themselves.

Why ONE writer per store rather than several connections writing in parallel:

* correctness does not need it — the ordering proof holds per transaction, whoever runs
  it, and every batch takes its locks in one ascending order, so batches of several
  processes neither skip readers nor deadlock;
* but a single writer decides every in-process race in memory: two appends to the same
  stream in one batch are settled by the batch's own bookkeeping, where parallel
  writers would queue on each other's stream locks and split the load into smaller
  batches, i.e. more flushes for the same work. It also never contends for the
  position mutex with itself.

What the writer does when the statement fails (a batch is all or nothing on the server,
but each append must fail or succeed on its own):

* the connection died: whether it committed is unknown, so every append of the batch
  fails with ``StoreUnavailable`` (a caller's idempotency key makes its retry safe);
* the server refused the statement (it has a SQLSTATE): the transaction rolled back and
  nothing of the batch was written, so running it again is safe —
  a race with a writer outside our locks (unique violation, ``EC002``, deadlock,
  serialization failure) is run once more, when the checks see the winner's rows;
  a bad value in one append (class 22, or the driver refusing to send it) spoils the
  statement for all, so each append is then run alone and only the culprit fails.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, NamedTuple

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout

from eventcore.errors import (
    ConcurrencyConflict,
    DuplicateEventId,
    EventcoreError,
    InvalidAppend,
    StoreClosed,
)
from eventcore.store.postgres._append_batch import KEY_RACE, Outcome, batch_params, batch_results
from eventcore.store.postgres._errors import is_connection_failure, translate
from eventcore.store.protocol import AppendResult
from eventcore.store.request import AppendRequest

__all__ = ["MAX_APPENDS", "MAX_BYTES", "AppendBatcher", "BatchRunner"]

#: The most appends one transaction holds: bounds the statement's size, how long it holds
#: its locks, and how much work a lost connection fails at once.
MAX_APPENDS: Final = 256
#: The most payload bytes one batch carries (a batch always takes at least one append).
MAX_BYTES: Final = 8 * 1024 * 1024

#: ``fetch(operation, query, params)``: the store's read, for explaining a failure.
Fetch = Callable[[str, str, Sequence[Any]], Awaitable[list[Any]]]


class BatchRunner:
    """Runs one batch on a pooled connection; one outcome per append, never a raise."""

    def __init__(
        self,
        pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]],
        statement: str,
        *,
        notify: bool,
        fetch: Fetch,
        stored_event_ids: str,
        stream_versions: str,
    ) -> None:
        self._pool = pool
        self._statement = statement
        self._notify = notify
        self._fetch = fetch
        self._stored_event_ids = stored_event_ids
        self._stream_versions = stream_versions
        #: Statements run; tests read it to prove that appends share transactions.
        self.statements = 0

    async def run(self, requests: list[AppendRequest]) -> list[Outcome]:
        for _ in range(2):
            try:
                return await self._attempt(requests)
            except psycopg.Error as error:
                failed = error
            if not _rolled_back(failed):
                return await self._all_failed(requests, failed)
            if not _is_race(failed):
                break
            # A race, the first time: nothing of the batch was written; the rival's rows
            # are committed now (the server waited for them before reporting), so the
            # checks of a second attempt will see them.
        if len(requests) == 1:
            return [await self._explain(requests[0], failed)]
        if not (_is_bad_value(failed) or _is_race(failed)):
            return await self._all_failed(requests, failed)
        # One append spoils the statement for all: run each alone, so only it fails.
        return [outcome for request in requests for outcome in await self.run([request])]

    async def _attempt(self, requests: list[AppendRequest]) -> list[Outcome]:
        params = batch_params(requests, notify=self._notify)
        self.statements += 1
        async with self._pool.connection() as conn:
            cursor = await conn.execute(self._statement, params, prepare=True)
            rows = await cursor.fetchall()
        return batch_results(requests, rows)

    async def _all_failed(
        self, requests: list[AppendRequest], error: psycopg.Error
    ) -> list[Outcome]:
        if isinstance(error, PoolClosed):
            return [_caused(StoreClosed(), error) for _ in requests]
        if is_connection_failure(error) and not isinstance(error, PoolTimeout):
            # After a server restart every idle pooled connection is dead: drop them all
            # now rather than failing once per connection.
            await self._pool.check()
        # One exception per caller: each one's traceback is its own.
        return [_caused(translate(error, "append", InvalidAppend), error) for _ in requests]

    async def _explain(self, request: AppendRequest, error: psycopg.Error) -> Outcome:
        """The typed error of one append that failed alone."""
        if not isinstance(error, psycopg.errors.UniqueViolation):
            return _caused(translate(error, "append", InvalidAppend), error)
        try:
            return _caused(await self._explain_unique_violation(request, error), error)
        except EventcoreError as failure:
            return failure

    async def _explain_unique_violation(
        self, request: AppendRequest, error: psycopg.errors.UniqueViolation
    ) -> EventcoreError:
        """The typed error for a unique violation that persisted, from what is stored now.

        The violating row belongs to a transaction that has committed (PostgreSQL waits
        for it before reporting), so reading again finds the evidence.
        """
        constraint = error.diag.constraint_name
        if constraint == "events_event_id_key":
            ours = [event.event_id for _, events in request.writes for event in events]
            rows = await self._fetch("append", self._stored_event_ids, (ours,))
            stored = {row[0] for row in rows}
            for event_id in ours:
                if event_id in stored:
                    return DuplicateEventId(event_id, already_stored=True)
        elif constraint in {"events_stream_version_key", "streams_pkey"}:
            streams = [stream for stream, _ in request.expected]
            rows = await self._fetch("append", self._stream_versions, (streams,))
            actual = {row[0]: int(row[1]) for row in rows}
            for stream, version in request.expected:
                if actual.get(stream, 0) != version:
                    return ConcurrencyConflict(stream, version, actual.get(stream, 0))
        return translate(error, "append")


def _rolled_back(error: psycopg.Error) -> bool:
    """True when the batch provably wrote nothing: the server refused the statement (its
    transaction rolled back) or the driver refused to send it."""
    if is_connection_failure(error):
        return False
    return error.sqlstate is not None or isinstance(error, psycopg.DataError)


def _is_race(error: psycopg.Error) -> bool:
    state = error.sqlstate or ""
    return state in {"23505", KEY_RACE} or state.startswith("40")


def _is_bad_value(error: psycopg.Error) -> bool:
    return (error.sqlstate or "22").startswith("22")


def _caused(error: EventcoreError, cause: BaseException) -> EventcoreError:
    error.__cause__ = cause
    return error


class _Pending(NamedTuple):
    request: AppendRequest
    size: int
    future: asyncio.Future[AppendResult]


class AppendBatcher:
    """The queue of appends and the one task that writes them (see the module docstring)."""

    def __init__(
        self,
        run: Callable[[list[AppendRequest]], Awaitable[list[Outcome]]],
        *,
        name: str,
        max_appends: int = MAX_APPENDS,
        max_bytes: int = MAX_BYTES,
    ) -> None:
        self._run = run
        self._name = name
        self._max_appends = max_appends
        self._max_bytes = max_bytes
        self._queue: deque[_Pending] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    async def submit(self, request: AppendRequest) -> AppendResult:
        """Queue ``request`` and wait for its outcome.

        A caller cancelled while its append waits in the queue takes it out; once the
        batch is sent, the append may commit whether or not anyone waits for it.
        """
        if self._closing:
            raise StoreClosed()
        if self._task is None:
            # Started on first use, on the loop the store is used from.
            self._task = asyncio.get_running_loop().create_task(self._write(), name=self._name)
        size = sum(len(event.data) for _, events in request.writes for event in events)
        future: asyncio.Future[AppendResult] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(request, size, future))
        self._wake.set()
        return await future

    async def aclose(self) -> None:
        """Stop taking appends, write those already queued, and stop the writer."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task

    async def _write(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                # One pass of the event loop, so that the callers woken by the previous
                # batch's results queue their next appends before this batch is taken.
                await asyncio.sleep(0)
                while self._queue:
                    await self._write_batch(self._take())
                if self._closing:
                    return
        finally:
            # Left early (the loop is shutting down): nobody will write what is queued.
            while self._queue:
                _settle(self._queue.popleft().future, StoreClosed())

    def _take(self) -> list[_Pending]:
        taken: list[_Pending] = []
        size = 0
        queue = self._queue
        while queue and len(taken) < self._max_appends:
            pending = queue[0]
            if pending.future.done():  # its caller was cancelled before it was sent
                queue.popleft()
                continue
            if taken and size + pending.size > self._max_bytes:
                break
            queue.popleft()
            taken.append(pending)
            size += pending.size
        return taken

    async def _write_batch(self, taken: list[_Pending]) -> None:
        if not taken:
            return
        try:
            outcomes = await self._run([pending.request for pending in taken])
        except Exception as error:  # a bug: fail this batch, keep the writer going
            outcomes = [error] * len(taken)
        except BaseException:
            for pending in taken:
                _settle(pending.future, StoreClosed())
            raise
        for pending, outcome in zip(taken, outcomes, strict=True):
            _settle(pending.future, outcome)


def _settle(future: asyncio.Future[AppendResult], outcome: Outcome) -> None:
    if future.done():
        return
    if isinstance(outcome, AppendResult):
        future.set_result(outcome)
    else:
        future.set_exception(outcome)
