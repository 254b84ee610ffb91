"""Group commit: the single writer runs every waiting append in one transaction.

With ``synchronous=FULL`` each COMMIT costs an fsync, which is far slower than the SQL
of an append. The writer thread therefore takes all appends queued while it was busy
(up to a cap) and commits them together: one fsync for the lot.

Each append runs inside its own SAVEPOINT, so appends stay independent although they
share a transaction: a conflicting or duplicate append rolls back to its savepoint and
fails alone, and the others still commit. Appends later in the batch see the writes of
earlier ones (same transaction), so conflict checks stay exact.

One writer per store, and ``BEGIN IMMEDIATE`` (the file's write lock) across processes,
means positions are handed out and committed in the same order: a reader following the
global log can never pass a position that commits later.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Final

import msgspec

from eventcore.errors import (
    ConcurrencyConflict,
    DuplicateEventId,
    EventcoreError,
    StoreUnavailable,
)
from eventcore.store._sqlite_thread import Outcome, failure, success
from eventcore.store.protocol import AppendResult
from eventcore.store.request import AppendRequest
from eventcore.types import EMPTY_METADATA, EventId

__all__ = ["MAX_GROUP", "GroupCommitter"]

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

    def __init__(self) -> None:
        #: Transactions committed and appends written; tests read these to prove batching.
        self.commits = 0
        self.appends = 0
        self._metadata_encoder = msgspec.json.Encoder()
        # StreamId is a str subclass, which msgspec does not encode as a key by itself.
        self._result_encoder = msgspec.json.Encoder(enc_hook=str)
        self._result_decoder = msgspec.json.Decoder(AppendResult)

    def run_batch(
        self, connection: sqlite3.Connection, requests: list[AppendRequest]
    ) -> list[Outcome]:
        try:
            # IMMEDIATE takes the write lock now, waiting up to busy_timeout for another
            # process to let go, instead of failing midway when the first write upgrades.
            connection.execute("BEGIN IMMEDIATE")
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
        row = connection.execute("SELECT coalesce(max(position), 0) FROM events").fetchone()
        next_position: int = row[0] + 1
        # One timestamp for the whole batch: its events become visible at the same instant.
        recorded_at = time.time_ns() // 1000
        outcomes: list[Outcome] = []
        for request in requests:
            connection.execute("SAVEPOINT append")
            try:
                result = self._append(connection, request, next_position, recorded_at)
            except sqlite3.Error:
                # Not a verdict on this append but on the database: let the whole batch fail.
                raise
            except Exception as error:
                # A conflict, a duplicate id, or a bug confined to this append: undo just
                # its writes and carry on with the rest of the batch.
                connection.execute("ROLLBACK TO append")
                connection.execute("RELEASE append")
                outcomes.append(failure(error))
                continue
            connection.execute("RELEASE append")
            if not result.deduplicated:
                next_position = result.positions[-1] + 1
            outcomes.append(success(result))
        return outcomes

    def _append(
        self,
        connection: sqlite3.Connection,
        request: AppendRequest,
        next_position: int,
        recorded_at: int,
    ) -> AppendResult:
        key = request.idempotency_key
        if key is not None:
            found = connection.execute(
                "SELECT result FROM idempotency WHERE key = ?", (key,)
            ).fetchone()
            if found is not None:
                earlier = self._result_decoder.decode(found[0])
                return msgspec.structs.replace(earlier, deduplicated=True)

        for stream_id, expected in request.expected:
            head = connection.execute(
                "SELECT version FROM streams WHERE stream_id = ?", (stream_id,)
            ).fetchone()
            actual = head[0] if head is not None else 0
            if actual != expected:
                raise ConcurrencyConflict(stream_id, expected, actual)

        # Every declared stream is where the caller expected it, so each written stream
        # continues from its expected version.
        expected_of = dict(request.expected)
        encode_metadata = self._metadata_encoder.encode
        rows: list[tuple[object, ...]] = []
        heads: list[tuple[str, int, int]] = []
        versions: dict[str, int] = {}
        event_ids: list[EventId] = []
        position = next_position
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
            versions[stream_id] = version
            heads.append((stream_id, version, position - 1))

        try:
            connection.executemany(_INSERT_EVENT, rows)
        except sqlite3.IntegrityError as error:
            raise _already_stored(connection, event_ids, error) from error
        connection.executemany(_UPSERT_STREAM, heads)
        result = AppendResult(
            stream_versions=versions,
            positions=tuple(range(next_position, position)),
            event_ids=tuple(event_ids),
        )
        if key is not None:
            connection.execute(
                "INSERT INTO idempotency (key, result) VALUES (?, ?)",
                (key, self._result_encoder.encode(result)),
            )
        return result


def _already_stored(
    connection: sqlite3.Connection, event_ids: list[EventId], error: sqlite3.IntegrityError
) -> EventcoreError:
    """Name the event id that broke a uniqueness rule, by asking the table, not the message."""
    # Undo this append's own rows first, or the lookup would find them.
    connection.execute("ROLLBACK TO append")
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
