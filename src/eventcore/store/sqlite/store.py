"""The embedded event store: one SQLite file (``sqlite:///path/to/events.db``).

Layout of the work::

    event loop ──append──▶ writer thread  (one connection; group commit, _write)
               ──reads───▶ reader threads (one connection each; WAL lets them read
                                           while the writer writes, _read)

No SQLite call ever runs on the event loop. Several processes may open the same file:
their writers take turns on SQLite's write lock (``BEGIN IMMEDIATE``, waiting up to the
busy timeout), so positions still commit in order.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import AsyncIterator, Collection
from functools import partial
from typing import Any, Final

import msgspec

from eventcore._sqlite.thread import ConnectionThread
from eventcore.instrumentation import resolve
from eventcore.store._front import StoreFront
from eventcore.store._head_signal import HeadSignal
from eventcore.store._observed import announce_connections
from eventcore.store.protocol import AppendResult
from eventcore.store.request import DEFAULT_MAX_PAYLOAD_BYTES, AppendRequest
from eventcore.store.sqlite._connect import (
    DEFAULT_BUSY_TIMEOUT,
    SqliteConfig,
    connect_reader,
    connect_writer,
)
from eventcore.store.sqlite._read import ReadJob, Reads, run_each, wanted_types
from eventcore.store.sqlite._schema import read_store_id
from eventcore.store.sqlite._watch import CommitWatch
from eventcore.store.sqlite._write import MAX_GROUP, GroupCommitter, WriterJob
from eventcore.store.url import StoreUrl
from eventcore.types import StoredEvent, StreamHead, StreamId

__all__ = ["SqliteStore"]

#: Reader threads per store. Decoding rows holds the GIL, so more would not read faster.
_READERS: Final = 2
#: Read jobs a reader takes per wake-up.
_MAX_READ_BATCH: Final = 64
#: How long ``aclose`` waits for each thread to finish its queued work.
_CLOSE_WITHIN: Final = 10.0


class SqliteStore(StoreFront):
    """An ``EventStore`` in one SQLite file. Open with ``open_url`` or ``open``."""

    backend = "sqlite"

    def __init__(
        self,
        config: SqliteConfig,
        writer: ConnectionThread[WriterJob],
        committer: GroupCommitter,
        readers: list[ConnectionThread[ReadJob]],
        reads: Reads,
        max_payload_bytes: int,
    ) -> None:
        """Use ``open_url`` or ``open``: they start the threads this takes."""
        self._config = config
        self._writer = writer
        self._committer = committer
        self._readers = readers
        self._next_reader = itertools.cycle(readers).__next__
        self._reads = reads
        self._max_payload_bytes = max_payload_bytes
        # Appends through this store wake followers at once; appends by other processes
        # sharing the file are noticed by the watch while anyone waits (_watch).
        self._head = HeadSignal()
        self._watch = CommitWatch(
            "eventcore-sqlite-watch", partial(connect_reader, config), self._head
        )
        self._closed = False
        self._hooks = resolve(None)
        announce_connections(None, self._hooks, "sqlite", self, self._connections)

    def _connections(self) -> int:
        # The writer's and each reader's, held from opening to closing.
        return 0 if self._closed else 1 + len(self._readers)

    # --- opening and closing -------------------------------------------------------------

    @classmethod
    async def open_url(
        cls, parsed: StoreUrl, *, create: bool, max_payload_bytes: int
    ) -> SqliteStore:
        """Open the file a ``sqlite://`` URL names (options: synchronous, max_payload_bytes)."""
        return await cls._start(SqliteConfig.from_url(parsed, create=create), max_payload_bytes)

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str],
        *,
        synchronous: str = "FULL",
        create: bool = True,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
    ) -> SqliteStore:
        """Open a file by path; ``busy_timeout`` is how long to wait for another process."""
        location = os.fspath(path)
        parsed = StoreUrl(
            raw=f"sqlite://{location}",
            backend="sqlite",
            path=location,
            options={"synchronous": synchronous},
        )
        config = SqliteConfig.from_url(parsed, create=create)
        config = msgspec.structs.replace(config, busy_timeout=busy_timeout)
        return await cls._start(config, max_payload_bytes)

    @classmethod
    async def _start(cls, config: SqliteConfig, max_payload_bytes: int) -> SqliteStore:
        committer = GroupCommitter(config.busy_timeout)
        writer: ConnectionThread[WriterJob] = ConnectionThread(
            "eventcore-sqlite-writer",
            partial(connect_writer, config),
            committer.run_jobs,
            max_batch=MAX_GROUP,
        )
        readers: list[ConnectionThread[ReadJob]] = [
            ConnectionThread(
                f"eventcore-sqlite-reader-{n}",
                partial(connect_reader, config),
                run_each,
                max_batch=_MAX_READ_BATCH,
            )
            for n in range(_READERS)
        ]
        started: list[ConnectionThread[Any]] = []
        try:
            # The writer first: it creates the file and its tables, which readers open.
            await writer.start()
            started.append(writer)
            for reader in readers:
                await reader.start()
                started.append(reader)
        except BaseException:
            for thread in started:
                await thread.stop(within=_CLOSE_WITHIN)
            raise
        return cls(config, writer, committer, readers, Reads(), max_payload_bytes)

    async def aclose(self) -> None:
        """Finish queued work (bounded), stop the threads, close the file. Idempotent."""
        if self._closed:
            return
        self._closed = True
        announce_connections(self._hooks, None, "sqlite", self, self._connections)
        self._head.close()
        # Readers first, the writer last: the last connection to close folds the WAL back
        # into the file and removes it, which none does when they all close at once (each
        # sees the others still open), leaving -wal and -shm files behind.
        await asyncio.gather(
            self._watch.stop(within=_CLOSE_WITHIN),
            *(reader.stop(within=_CLOSE_WITHIN) for reader in self._readers),
        )
        await self._writer.stop(within=_CLOSE_WITHIN)

    @property
    def path(self) -> str:
        return self._config.path

    @property
    def _commit_count(self) -> int:
        """Write transactions committed so far (tests use it to see group commit work)."""
        return self._committer.commits

    async def _on_writer(self, job: ReadJob) -> Any:
        """Run a function on the writer's connection, between transactions (diagnostics)."""
        self._check_open()
        return await self._writer.submit(job)

    # --- writing -------------------------------------------------------------------------

    async def _append(self, request: AppendRequest) -> AppendResult:
        result: AppendResult = await self._writer.submit(request)
        self._head.advance(result.last_position)
        return result

    async def find_append(self, idempotency_key: str) -> AppendResult | None:
        self._check_open()
        result: AppendResult | None = await self._read(self._reads.append_result(idempotency_key))
        return result

    # --- reading -------------------------------------------------------------------------

    def _read(self, job: ReadJob) -> asyncio.Future[Any]:
        """Hand a read to the next reader thread, in turn."""
        return self._next_reader().submit(job)

    async def _read_stream(self, stream_id: StreamId, from_version: int) -> list[StoredEvent]:
        events: list[StoredEvent] = await self._read(self._reads.stream(stream_id, from_version))
        return events

    async def _read_all(
        self, after: int, types: Collection[str] | None, batch_size: int, limit: int | None
    ) -> AsyncIterator[list[StoredEvent]]:
        self._check_open()
        wanted = wanted_types(types)
        if wanted == ():
            return
        remaining = limit
        size = batch_size if remaining is None else min(batch_size, remaining)
        if size <= 0:
            return
        # One batch is always in flight: while the caller works through a batch, a reader
        # thread fetches the next. Memory stays bounded by two batches.
        pending = self._next_reader().submit(self._reads.log(max(after, 0), size, wanted))
        try:
            while True:
                batch: list[StoredEvent] = await pending
                if not batch:
                    return
                if remaining is not None:
                    remaining -= len(batch)
                # A short batch reached the head of the log as it was when fetched.
                more = len(batch) == size and (remaining is None or remaining > 0)
                if more:
                    size = batch_size if remaining is None else min(batch_size, remaining)
                    pending = self._next_reader().submit(
                        self._reads.log(batch[-1].position, size, wanted)
                    )
                yield batch
                if not more:
                    return
        finally:
            _discard(pending)

    async def stream_version(self, stream_id: StreamId) -> int:
        self._check_open()
        version: int = await self._read(self._reads.stream_version(StreamId(stream_id)))
        return version

    async def list_streams(
        self, *, after: StreamId | None = None, limit: int = 100
    ) -> list[StreamHead]:
        self._check_open()
        start = StreamId(after) if after is not None else None
        if limit <= 0:
            return []
        heads: list[StreamHead] = await self._read(self._reads.streams(start, limit))
        return heads

    async def store_id(self) -> str:
        self._check_open()
        store_id: str = await self._read(read_store_id)
        return store_id

    async def last_position(self) -> int:
        self._check_open()
        position: int = await self._read(self._reads.last_position())
        self._head.advance(position)
        return position

    async def settled_position(self) -> int:
        # One writer at a time, each commit whole: what a reader sees is final.
        return await self.last_position()

    async def wait_for_events(self, after: int, timeout: float) -> bool:  # noqa: ASYNC109
        self._check_open()
        with self._watch.watching():
            return await self._head.wait(after, timeout)


def _discard(future: asyncio.Future[Any]) -> None:
    """Drop a prefetch nobody will read, without an "exception never retrieved" warning."""
    if not future.done():
        future.cancel()
    elif not future.cancelled():
        future.exception()
