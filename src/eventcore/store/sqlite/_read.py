"""Read jobs for the reader threads, and turning rows into ``StoredEvent``s.

A job is a plain function of a connection. It runs on a reader thread and returns
finished values, so decoding a batch never occupies the event loop.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable, Collection
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Final

import msgspec

from eventcore._sqlite.thread import Outcome, failure, success
from eventcore.errors import StoreUnavailable
from eventcore.store.protocol import AppendResult
from eventcore.types import EMPTY_METADATA, Metadata, StoredEvent, StreamHead, StreamId

__all__ = ["ReadJob", "Reads", "run_each", "wanted_types"]

#: Something for a reader thread to do with its connection.
ReadJob = Callable[[sqlite3.Connection], Any]

_COLUMNS: Final = (
    "position, stream_id, version, event_id, type, schema_version, data, metadata, recorded_at"
)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
#: MessagePack header of a 16-byte ``bin 8`` value (an event id; see ``Reads.decode``).
_BIN16: Final = b"\xc4\x10"
#: Up to this many types, a filtered read merges one index range per type; past it,
#: walking the log in position order and skipping other types costs less.
_MAX_MERGED_TYPES: Final = 16


def run_each(connection: sqlite3.Connection, jobs: list[ReadJob]) -> list[Outcome]:
    """Run each job on its own; one failing does not affect the others."""
    outcomes: list[Outcome] = []
    for job in jobs:
        try:
            outcomes.append(success(job(connection)))
        except sqlite3.Error as error:
            unavailable = StoreUnavailable(f"reading from SQLite failed: {error}")
            unavailable.__cause__ = error
            outcomes.append(failure(unavailable))
        except Exception as error:
            outcomes.append(failure(error))
    return outcomes


class Reads:
    """Builds the read jobs of one store."""

    def __init__(self) -> None:
        self._decode_metadata = msgspec.json.Decoder(Metadata).decode
        self._decode_event_ids = msgspec.msgpack.Decoder(list[uuid.UUID]).decode
        self._decode_result = msgspec.json.Decoder(AppendResult).decode

    def stream(self, stream_id: StreamId, from_version: int) -> ReadJob:
        sql = f"SELECT {_COLUMNS} FROM events WHERE stream_id = ? AND version >= ? ORDER BY version"
        return partial(self._events, sql, (stream_id, from_version))

    def log(self, after: int, size: int, types: tuple[str, ...] | None) -> ReadJob:
        """At most ``size`` events after position ``after``, of ``types`` when given."""
        if types is None:
            sql = f"SELECT {_COLUMNS} FROM events WHERE position > ? ORDER BY position LIMIT ?"
            return partial(self._events, sql, (after, size))
        if len(types) == 1:
            sql = (
                f"SELECT {_COLUMNS} FROM events WHERE type = ? AND position > ?"
                " ORDER BY position LIMIT ?"
            )
            return partial(self._events, sql, (types[0], after, size))
        if len(types) <= _MAX_MERGED_TYPES:
            # One range of the (type, position) index per type, merged in position order
            # by SQLite's compound-select merge, which reads each range lazily and stops
            # at the LIMIT: no sort, and no rows of other types are touched.
            part = f"SELECT {_COLUMNS} FROM events WHERE type = ? AND position > ?"
            sql = " UNION ALL ".join([part] * len(types)) + " ORDER BY position LIMIT ?"
            params: list[object] = []
            for name in types:
                params += (name, after)
            params.append(size)
            return partial(self._events, sql, tuple(params))
        # Many types: walk the log by position; "+type" keeps SQLite from choosing the
        # type index, which would need a sort of every match to honour ORDER BY.
        marks = ", ".join("?" * len(types))
        sql = (
            f"SELECT {_COLUMNS} FROM events WHERE position > ? AND +type IN ({marks})"
            " ORDER BY position LIMIT ?"
        )
        return partial(self._events, sql, (after, *types, size))

    @staticmethod
    def stream_version(stream_id: StreamId) -> ReadJob:
        return partial(_scalar, "SELECT version FROM streams WHERE stream_id = ?", (stream_id,))

    def append_result(self, key: str) -> ReadJob:
        return partial(self._append_result, key)

    def _append_result(self, key: str, connection: sqlite3.Connection) -> AppendResult | None:
        row = connection.execute("SELECT result FROM idempotency WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        return msgspec.structs.replace(self._decode_result(row[0]), deduplicated=True)

    @staticmethod
    def last_position() -> ReadJob:
        return partial(_scalar, "SELECT max(position) FROM events", ())

    @staticmethod
    def streams(after: StreamId | None, limit: int) -> ReadJob:
        return partial(_heads, after, limit)

    def _events(
        self, sql: str, params: tuple[object, ...], connection: sqlite3.Connection
    ) -> list[StoredEvent]:
        return self.decode(connection.execute(sql, params).fetchall())

    def decode(self, rows: list[Any]) -> list[StoredEvent]:
        """Rows of ``_COLUMNS`` as events: the hot loop of every read."""
        decode_metadata = self._decode_metadata
        trusted = StreamId._trusted
        # ``uuid.UUID(bytes=...)`` costs more than everything else per row put together;
        # msgspec builds the same UUIDs in C from one MessagePack array of 16-byte bins.
        event_ids = self._decode_event_ids(
            b"\xdd%b%b"
            % (len(rows).to_bytes(4, "big"), b"".join([_BIN16 + row[3] for row in rows]))
        )
        # Neighbouring rows mostly share a stream and, committed in one group, a time:
        # build each of those values once per batch.
        # The events of one command share their metadata: decode each distinct blob once.
        stream_ids: dict[str, StreamId] = {}
        times: dict[int, datetime] = {}
        metadatas: dict[bytes | None, Metadata] = {None: EMPTY_METADATA}
        events: list[StoredEvent] = []
        append = events.append
        for row, event_id in zip(rows, event_ids, strict=True):
            position, stream, version, _, type_, schema, data, blob, at = row
            stream_id = stream_ids.get(stream)
            if stream_id is None:
                stream_id = stream_ids[stream] = trusted(stream)
            recorded_at = times.get(at)
            if recorded_at is None:
                recorded_at = times[at] = _EPOCH + timedelta(microseconds=at)
            metadata = metadatas.get(blob)
            if metadata is None:
                metadata = metadatas[blob] = decode_metadata(blob)
            # Positional: measurably cheaper than keywords in the hottest loop of a read.
            append(
                StoredEvent(
                    position,
                    stream_id,
                    version,
                    event_id,
                    type_,
                    schema,
                    data,
                    metadata,
                    recorded_at,
                )
            )
        return events


def _scalar(sql: str, params: tuple[object, ...], connection: sqlite3.Connection) -> int:
    row = connection.execute(sql, params).fetchone()
    return 0 if row is None or row[0] is None else int(row[0])


def _heads(after: StreamId | None, limit: int, connection: sqlite3.Connection) -> list[StreamHead]:
    # Binary collation compares UTF-8 bytes, which orders like Python compares str.
    if after is None:
        rows = connection.execute(
            "SELECT stream_id, version, last_position FROM streams ORDER BY stream_id LIMIT ?",
            (limit,),
        ).fetchall()
    else:
        rows = connection.execute(
            "SELECT stream_id, version, last_position FROM streams WHERE stream_id > ?"
            " ORDER BY stream_id LIMIT ?",
            (after, limit),
        ).fetchall()
    trusted = StreamId._trusted
    return [
        StreamHead(stream_id=trusted(name), version=version, last_position=last)
        for name, version, last in rows
    ]


def wanted_types(types: Collection[str] | None) -> tuple[str, ...] | None:
    """The type filter in a stable order (so SQLite's statement cache can reuse it)."""
    return None if types is None else tuple(sorted(set(types)))
