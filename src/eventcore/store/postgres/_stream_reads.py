"""Batched stream reads for the PostgreSQL store: concurrent ``read_stream`` calls share a query.

Every command reads its streams before it decides. With many commands in flight (16
coroutines running transfers, each reading two accounts) one statement per read would
cost a round trip and a turn at a pooled connection each. So ``read_stream`` queues its
(stream, from_version) and waits; everything queued during one pass of the event loop
goes out as ONE statement (``_read.READ_STREAMS``), whose rows carry the index of the
read they answer and are split per read on the way back. A lone read keeps the plain
one-stream statement.

No xmin horizon is needed here (unlike the global log): every version of a stream is
written under that stream's lock, held to commit, so version n+1 commits after version
n, and a snapshot that sees a stream's newest rows sees all the older ones. A statement
sees only committed rows, so batching changes nothing about what a reader can observe.

Failures stay with their reader. A bad value in one read (a version out of ``bigint``
range) would fail the whole statement, so a failed batch of several is run again one read
at a time — reads are safe to repeat — and only the culprit fails. A read cancelled while
queued is dropped before its batch is sent; one cancelled later is simply not answered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, NamedTuple

from eventcore.errors import StoreClosed
from eventcore.store.postgres._read import Fetch, to_events
from eventcore.types import StoredEvent, StreamId

__all__ = ["MAX_READS", "ReadBatcher", "ReadOutcome", "StreamRead", "stream_reads"]

#: The most reads one statement answers: bounds its parameters and its result; a larger
#: pass is split into several statements, sent concurrently.
MAX_READS: Final = 256

#: A read: the stream and the first version wanted.
StreamRead = tuple[StreamId, int]
#: One read's outcome: its events, or the error to raise in its caller.
ReadOutcome = list[StoredEvent] | BaseException
#: ``run(reads)``: one outcome per read, in order; never raises for a single read's failure.
RunReads = Callable[[list[StreamRead]], Awaitable[list[ReadOutcome]]]


class _Queued(NamedTuple):
    read: StreamRead
    future: asyncio.Future[list[StoredEvent]]


class ReadBatcher:
    """Collects the reads of one loop pass and sends them together (see the module doc)."""

    def __init__(self, run: RunReads, *, max_reads: int = MAX_READS) -> None:
        self._run = run
        self._max_reads = max_reads
        self._queue: list[_Queued] = []
        self._scheduled = False
        # Strong references: the loop keeps only weak ones to running tasks.
        self._tasks: set[asyncio.Task[None]] = set()
        #: Statements sent; tests read it to prove that reads share statements.
        self.batches = 0

    async def read(self, stream_id: StreamId, from_version: int) -> list[StoredEvent]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[StoredEvent]] = loop.create_future()
        self._queue.append(_Queued((stream_id, from_version), future))
        if not self._scheduled:
            # Behind every callback already ready: the other coroutines woken in this
            # pass queue their reads before the batch is taken.
            self._scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._scheduled = False
        queued, self._queue = self._queue, []
        live = [item for item in queued if not item.future.done()]  # cancelled: dropped
        loop = asyncio.get_running_loop()
        for start in range(0, len(live), self._max_reads):
            task = loop.create_task(self._send(live[start : start + self._max_reads]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: list[_Queued]) -> None:
        self.batches += 1
        try:
            outcomes = await self._run([item.read for item in batch])
        except Exception as error:  # a bug in run: fail this batch, not the batcher
            outcomes = [error] * len(batch)
        except BaseException:
            for item in batch:
                item.future.cancel()
            raise
        for item, outcome in zip(batch, outcomes, strict=True):
            if item.future.done():
                continue
            if isinstance(outcome, BaseException):
                item.future.set_exception(outcome)
            else:
                item.future.set_result(outcome)


def stream_reads(fetch: Fetch, one: str, many: str) -> RunReads:
    """The batch runner: ``one`` (``READ_STREAM``) for a lone read, ``many`` (``READ_STREAMS``)
    for several, and each read alone again when a batch of several fails."""

    async def read_one(read: StreamRead) -> list[StoredEvent]:
        return to_events(await fetch("read_stream", one, read, binary=True))

    async def run(reads: list[StreamRead]) -> list[ReadOutcome]:
        if len(reads) == 1:
            try:
                return [await read_one(reads[0])]
            except Exception as error:
                return [error]
        params = ([stream for stream, _ in reads], [version for _, version in reads])
        try:
            rows = await fetch("read_stream", many, params, binary=True)
        except StoreClosed:
            return [StoreClosed() for _ in reads]
        except Exception:
            # Most likely one bad value spoiling the statement for all (or the server
            # going away, which each read will then report for itself).
            return list(await asyncio.gather(*map(read_one, reads), return_exceptions=True))
        return _split(rows, len(reads))

    return run


def _split(rows: Sequence[Any], count: int) -> list[ReadOutcome]:
    """The rows of a batch, each to the read whose number it carries (in version order)."""
    results: list[list[StoredEvent]] = [[] for _ in range(count)]
    for row, event in zip(rows, to_events(rows), strict=True):
        results[row[9] - 1].append(event)
    return list(results)
