"""Group commit: the single writer runs every waiting append in one transaction.

With ``synchronous=FULL`` each COMMIT costs an fsync, which is far slower than the SQL
of an append. The writer thread therefore takes all appends queued while it was busy
(up to a cap) and commits them together: one fsync for the lot.

Appends stay independent although they share a transaction: each one's rows go in
as one unit (inside its own SAVEPOINT when it has several events), so a conflicting or
duplicate append undoes only its own writes and fails alone, and the others still
commit. An error of the database itself (one that is no verdict on an append's rows, or
one on which SQLite ends the transaction) fails every append of the batch. Appends later
in the batch see the writes of earlier ones (same transaction, and the batch's view of
stream heads moves on with each success), so conflict checks stay exact.

One writer per store, and ``BEGIN IMMEDIATE`` (the file's write lock) across processes,
means positions are handed out and committed in the same order: a reader following the
global log can never pass a position that commits later.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any, Final

import msgspec

from eventcore._sqlite.thread import Outcome, failure, success
from eventcore._sqlite.turns import begin_in_turn
from eventcore.errors import (
    ConcurrencyConflict,
    DuplicateEventId,
    EventcoreError,
    StoreUnavailable,
)
from eventcore.store.protocol import AppendResult
from eventcore.store.request import AppendRequest
from eventcore.store.sqlite._connect import DEFAULT_BUSY_TIMEOUT
from eventcore.store.sqlite._read import ReadJob, run_each
from eventcore.types import EMPTY_METADATA, EventId

__all__ = ["MAX_GROUP", "GroupCommitter", "WriterJob"]

#: What the writer thread takes: appends, or a function to run on its connection.
WriterJob = AppendRequest | ReadJob

#: The most appends one transaction holds: bounds how long a batch keeps the lock
#: and how much work one failed COMMIT throws away.
MAX_GROUP: Final = 256

_INSERT_EVENT: Final = (
    "INSERT INTO events (position, stream_id, version, event_id, type, schema_version,"
    " data, metadata, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_UPSERT_STREAM: Final = (
    "INSERT INTO streams (stream_id, version, last_position) VALUES (?, ?, ?)"
    " ON CONFLICT (stream_id) DO UPDATE"
    " SET version = excluded.version, last_position = excluded.last_position"
)


class GroupCommitter:
    """Runs batches of appends on the writer's connection (see the module docstring)."""

    def __init__(self, busy_timeout: float = DEFAULT_BUSY_TIMEOUT) -> None:
        self._busy_timeout = busy_timeout
        #: Transactions committed and appends written; tests read these to prove batching.
        self.commits = 0
        self.appends = 0
        self._metadata_encoder = msgspec.json.Encoder()
        # StreamId is a str subclass, which msgspec does not encode as a key by itself.
        self._result_encoder = msgspec.json.Encoder(enc_hook=str)
        self._result_decoder = msgspec.json.Decoder(AppendResult)

    def run_jobs(self, connection: sqlite3.Connection, jobs: list[WriterJob]) -> list[Outcome]:
        """The writer thread's batch: appends are group-committed; any other job (a function
        of the connection, such as reading a pragma back) runs on its own afterwards."""
        appends = [job for job in jobs if isinstance(job, AppendRequest)]
        if len(appends) == len(jobs):
            return self.run_batch(connection, appends)
        appended = iter(self.run_batch(connection, appends) if appends else ())
        others = iter(
            run_each(connection, [job for job in jobs if not isinstance(job, AppendRequest)])
        )
        return [next(appended if isinstance(job, AppendRequest) else others) for job in jobs]

    def run_batch(
        self, connection: sqlite3.Connection, requests: list[AppendRequest]
    ) -> list[Outcome]:
        """Run ``requests`` in one transaction; one outcome per request, in order."""
        try:
            # IMMEDIATE takes the write lock now, waiting up to busy_timeout for another
            # process to let go, instead of failing midway when the first write upgrades;
            # in turn with the file's other writers, so none of them starves.
            begin_in_turn(connection, self._busy_timeout)
        except sqlite3.Error as error:
            return _all_failed(len(requests), "could not take the database's write lock", error)
        try:
            outcomes = self._run_in_transaction(connection, requests)
            if any(ok for ok, _ in outcomes):
                self._commit(connection)
                self.commits += 1
            else:
                connection.execute("ROLLBACK")
        except sqlite3.Error as error:
            # The transaction as a whole failed (the COMMIT itself, or the database under
            # a savepoint). Roll everything back so that none of the batch is visible, and
            # fail every append: none of them was written.
            if connection.in_transaction:
                try:
                    connection.execute("ROLLBACK")
                except sqlite3.Error as rollback_error:
                    error.add_note(f"rolling back failed too: {rollback_error}")
            return _all_failed(len(requests), "the write transaction failed", error)
        self.appends += sum(1 for ok, _ in outcomes if ok)
        return outcomes

    def _commit(self, connection: sqlite3.Connection) -> None:
        """A seam of its own so tests can make COMMIT fail."""
        connection.execute("COMMIT")

    def _run_in_transaction(
        self, connection: sqlite3.Connection, requests: list[AppendRequest]
    ) -> list[Outcome]:
        batch = _Batch(self, connection, requests)
        outcomes: list[Outcome] = []
        for request in requests:
            try:
                outcomes.append(success(batch.append(request)))
            except sqlite3.Error:
                # Not a verdict on this append but on the database: fail the whole batch.
                raise
            except Exception as error:
                if not connection.in_transaction:
                    # SQLite ended the whole transaction on this append's error (a
                    # constraint whose resolution is ROLLBACK): the earlier appends went
                    # with it, and what follows would run outside any transaction, each
                    # statement committing alone. None of the batch stands.
                    raise sqlite3.OperationalError(
                        f"the database rolled the transaction back: {error}"
                    ) from error
                # A conflict, a duplicate id, or a bug confined to this append: it wrote
                # nothing (see _Batch.append), and the rest of the batch carries on.
                outcomes.append(failure(error))
        batch.finish()
        return outcomes


class _Batch:
    """The state of one write transaction, read once under the write lock.

    Holding ``BEGIN IMMEDIATE`` means no other connection can change the file until
    COMMIT, so the heads of the streams involved and the idempotency keys used are
    read in one query each at the start, then kept here as appends succeed. Only the
    events are written per append; the heads and keys are written once at the end.
    """

    def __init__(
        self,
        committer: GroupCommitter,
        connection: sqlite3.Connection,
        requests: list[AppendRequest],
    ) -> None:
        self._connection = connection
        self._encode_metadata = committer._metadata_encoder.encode
        self._encode_result = committer._result_encoder.encode
        row = connection.execute("SELECT coalesce(max(position), 0) FROM events").fetchone()
        self._next_position: int = row[0] + 1
        # One timestamp for the whole batch: its events become visible at the same instant.
        self._recorded_at = time.time_ns() // 1000
        names = {stream_id for request in requests for stream_id, _ in request.expected}
        self._versions: dict[str, int] = dict(
            _select_in(connection, "SELECT stream_id, version FROM streams", "stream_id", names)
        )
        keys = {request.idempotency_key for request in requests} - {None}
        decode = committer._result_decoder.decode
        self._results: dict[str, AppendResult] = {
            key: decode(blob)
            for key, blob in _select_in(
                connection, "SELECT key, result FROM idempotency", "key", keys
            )
        }
        self._heads: dict[str, tuple[str, int, int]] = {}
        self._new_results: list[tuple[str, bytes]] = []

    def append(self, request: AppendRequest) -> AppendResult:
        """Write one append, or raise having written nothing of it."""
        key = request.idempotency_key
        if key is not None:
            earlier = self._results.get(key)
            if earlier is not None:
                return msgspec.structs.replace(earlier, deduplicated=True)

        versions = self._versions
        for stream_id, expected in request.expected:
            actual = versions.get(stream_id, 0)
            if actual != expected:
                raise ConcurrencyConflict(stream_id, expected, actual)

        # Every declared stream is where the caller expected it, so each written stream
        # continues from its expected version.
        expected_of = dict(request.expected)
        encode_metadata = self._encode_metadata
        recorded_at = self._recorded_at
        rows: list[tuple[object, ...]] = []
        heads: list[tuple[str, int, int]] = []
        event_ids: list[EventId] = []
        first = position = self._next_position
        for stream_id, events in request.writes:
            version = expected_of[stream_id]
            for event in events:
                version += 1
                metadata = event.metadata
                rows.append(
                    (
                        position,
                        stream_id,
                        version,
                        event.event_id.bytes,
                        event.type,
                        event.schema_version,
                        event.data,
                        None if metadata == EMPTY_METADATA else encode_metadata(metadata),
                        recorded_at,
                    )
                )
                event_ids.append(event.event_id)
                position += 1
            heads.append((stream_id, version, position - 1))

        result = AppendResult(
            stream_versions={stream_id: version for stream_id, version, _ in heads},
            positions=tuple(range(first, position)),
            event_ids=tuple(event_ids),
        )
        encoded = self._encode_result(result) if key is not None else b""

        self._insert(rows, event_ids)

        # Written. Only bookkeeping that cannot fail follows, so an append never fails
        # after its rows went in.
        self._next_position = position
        for head in heads:
            versions[head[0]] = head[1]
            self._heads[head[0]] = head
        if key is not None:
            self._results[key] = result
            self._new_results.append((key, encoded))
        return result

    def _insert(self, rows: list[tuple[object, ...]], event_ids: list[EventId]) -> None:
        """Insert one append's events: all of them, or (raising) none."""
        connection = self._connection
        if len(rows) == 1:
            # A single statement is atomic by itself: SQLite undoes a failed statement
            # with its statement journal, so a savepoint would add two round trips for
            # nothing.
            try:
                connection.execute(_INSERT_EVENT, rows[0])
            except sqlite3.IntegrityError as error:
                raise _already_stored(connection, event_ids, error) from error
            return
        # Several rows are several statements: the savepoint makes them one unit that a
        # duplicate id in the last row undoes entirely.
        connection.execute("SAVEPOINT append")
        try:
            connection.executemany(_INSERT_EVENT, rows)
        except sqlite3.IntegrityError as error:
            connection.execute("ROLLBACK TO append")
            connection.execute("RELEASE append")
            raise _already_stored(connection, event_ids, error) from error
        connection.execute("RELEASE append")

    def finish(self) -> None:
        """Write the heads and keys the successful appends left behind."""
        if self._heads:
            self._connection.executemany(_UPSERT_STREAM, self._heads.values())
        if self._new_results:
            self._connection.executemany(
                "INSERT INTO idempotency (key, result) VALUES (?, ?)", self._new_results
            )


#: Query parameters per ``IN (...)`` list; lists are padded to a power of two so that
#: only a handful of distinct statements reach SQLite's statement cache.
_IN_CHUNK: Final = 256


def _select_in(
    connection: sqlite3.Connection, select: str, column: str, values: set[Any]
) -> list[Any]:
    """``select`` restricted to rows whose ``column`` is one of ``values``."""
    ordered = sorted(values)
    rows: list[Any] = []
    for start in range(0, len(ordered), _IN_CHUNK):
        chunk = ordered[start : start + _IN_CHUNK]
        width = 1 << (len(chunk) - 1).bit_length()
        chunk += [chunk[0]] * (width - len(chunk))
        marks = ", ".join("?" * width)
        rows += connection.execute(f"{select} WHERE {column} IN ({marks})", chunk).fetchall()
    return rows


def _already_stored(
    connection: sqlite3.Connection, event_ids: list[EventId], error: sqlite3.IntegrityError
) -> EventcoreError:
    """Name the event id that broke a uniqueness rule, by asking the table, not the message.

    Called once the append's own rows are undone, or the lookup would find them.
    """
    for event_id in event_ids:
        hit = connection.execute(
            "SELECT 1 FROM events WHERE event_id = ?", (event_id.bytes,)
        ).fetchone()
        if hit is not None:
            return DuplicateEventId(event_id, already_stored=True)
    # Stream versions are checked under the write lock, so no other constraint can fire;
    # if one does, the file was changed behind the store's back.
    return StoreUnavailable(f"unexpected constraint violation while appending: {error}")


def _all_failed(count: int, what: str, error: sqlite3.Error) -> list[Outcome]:
    outcomes: list[Outcome] = []
    for _ in range(count):
        # One exception object per caller: each one's traceback is its own.
        unavailable = StoreUnavailable(f"{what}: {error}")
        unavailable.__cause__ = error
        outcomes.append(failure(unavailable))
    return outcomes
