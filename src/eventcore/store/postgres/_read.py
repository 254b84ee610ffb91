"""The PostgreSQL read path: queries and turning rows into ``StoredEvent``s.

The global log is read in position order with keyset pagination (``position > cursor``), one
short statement per page (``_log``), so no connection or snapshot is held while the caller
works through a batch. Each row comes with ``settled``: whether its transaction is below the
statement's snapshot xmin. Only a leading run of settled rows may be returned — the argument
is in ``migrations/0002_append_events.sql``; in short, a settled row's position can never be
undercut by a row that commits later. An unsettled row is committed but may still have an
older transaction in flight ahead of it, so the reader waits for that transaction and asks
again: a long open transaction delays readers, it never makes them skip.

Transaction ids are cluster-wide, so the writing transaction that delays a reader may
belong to another schema or database on the same server (a long migration, a
``CREATE INDEX CONCURRENTLY``). ``xid8`` values never wrap around, so the comparison
holds for the life of the cluster. A logical dump restored into another cluster carries
transaction ids that mean nothing there: reset them (``UPDATE events SET transaction_id
= '3'``, older than any live transaction) after such a restore.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Protocol
from uuid import UUID

import msgspec

from eventcore.types import EMPTY_METADATA, Metadata, StoredEvent, StreamId

__all__ = [
    "LAST_POSITION",
    "LIST_STREAMS",
    "LIST_STREAMS_AFTER",
    "LOG_PAGE",
    "LOG_PAGE_OF_TYPES",
    "READ_STREAM",
    "READ_STREAMS",
    "SETTLED_POSITION",
    "STORED_EVENT_IDS",
    "STREAM_VERSION",
    "STREAM_VERSIONS",
    "Fetch",
    "settled_count",
    "to_events",
]

# Every event read fetches these columns, then one more (settled, or which read it answers).
# The event id and the time travel as their binary wire form (bytea), which ``to_events``
# turns into values for a whole batch at once, far cheaper than the driver's per-row
# loaders; metadata as text, decoded by msgspec (once per distinct value in a batch).
_COLUMNS: Final = (
    "e.position, e.stream_id, e.version, uuid_send(e.event_id), e.type, e.schema_version,"
    " e.data, e.metadata::text, timestamptz_send(e.recorded_at)"
)

READ_STREAM: Final = (
    f"SELECT {_COLUMNS}, 1 FROM __schema__.events AS e"
    " WHERE e.stream_id = %s AND e.version >= %s ORDER BY e.version"
)

# Several stream reads in one statement: one index range per read (the LATERAL walk of
# (stream_id, version)), each row tagged with the read's 1-based number.
READ_STREAMS: Final = (
    f"SELECT {_COLUMNS}, r.ord"
    " FROM unnest(%s::text[], %s::bigint[]) WITH ORDINALITY AS r(stream_id, from_version, ord),"
    " LATERAL (SELECT * FROM __schema__.events AS t"
    "          WHERE t.stream_id = r.stream_id AND t.version >= r.from_version) AS e"
    " ORDER BY r.ord, e.version"
)

# The horizon is computed once per statement (an InitPlan), from the same snapshot that
# decides which rows the statement sees.
_HORIZON: Final = "(SELECT pg_snapshot_xmin(pg_current_snapshot()))"

LOG_PAGE: Final = (
    f"SELECT {_COLUMNS}, e.transaction_id < {_HORIZON} FROM __schema__.events AS e"
    " WHERE e.position > %s ORDER BY e.position LIMIT %s"
)

# One walk of (type, position) per wanted type, each stopping after LIMIT rows, merged:
# the cost of a page is bounded by the page size, not by how far the cursor is along.
LOG_PAGE_OF_TYPES: Final = (
    f"SELECT {_COLUMNS}, e.transaction_id < {_HORIZON}"
    " FROM unnest(%s::text[]) AS wanted(type),"
    " LATERAL (SELECT * FROM __schema__.events AS t"
    "          WHERE t.type = wanted.type AND t.position > %s"
    "          ORDER BY t.position LIMIT %s) AS e"
    " ORDER BY e.position LIMIT %s"
)

STREAM_VERSION: Final = "SELECT version FROM __schema__.streams WHERE stream_id = %s"

STREAM_VERSIONS: Final = (
    "SELECT s.stream_id, coalesce(h.version, 0) FROM unnest(%s::text[]) AS s(stream_id)"
    " LEFT JOIN __schema__.streams AS h ON h.stream_id = s.stream_id"
)

STORED_EVENT_IDS: Final = (
    "SELECT e.event_id FROM __schema__.events AS e WHERE e.event_id = ANY(%s::uuid[])"
)

LIST_STREAMS: Final = (
    "SELECT stream_id, version, last_position FROM __schema__.streams ORDER BY stream_id LIMIT %s"
)

LIST_STREAMS_AFTER: Final = (
    "SELECT stream_id, version, last_position FROM __schema__.streams"
    " WHERE stream_id > %s ORDER BY stream_id LIMIT %s"
)

APPEND_RESULT: Final = (
    "SELECT stream_ids, stream_versions, positions, event_ids"
    " FROM __schema__.idempotency_keys WHERE key = %s"
)

LAST_POSITION: Final = "SELECT coalesce(max(position), 0) FROM __schema__.events"

# The newest settled row: every transaction below the snapshot's xmin has finished, and by
# the position mutex (``migrations/0002_append_events.sql``) settledness is a prefix of
# the log, so no append in flight can commit at or below it. Walks the position index
# down from the head, past the (few) rows committed since the oldest transaction still
# open.
SETTLED_POSITION: Final = (
    "SELECT coalesce((SELECT e.position FROM __schema__.events AS e"
    f" WHERE e.transaction_id < {_HORIZON} ORDER BY e.position DESC LIMIT 1), 0)"
)


class Fetch(Protocol):
    """The store's read: run ``query`` on a pooled connection, every row."""

    async def __call__(
        self, operation: str, query: str, params: Sequence[Any], *, binary: bool = False
    ) -> list[Any]: ...


_decode_metadata = msgspec.json.Decoder(Metadata).decode
_decode_event_ids = msgspec.msgpack.Decoder(list[UUID]).decode
#: MessagePack header of a 16-byte ``bin 8`` value (one event id).
_BIN16: Final = b"\xc4\x10"
#: PostgreSQL's timestamps count microseconds from here.
_PG_EPOCH: Final = datetime(2000, 1, 1, tzinfo=UTC)


def to_events(rows: Sequence[Any]) -> list[StoredEvent]:
    """Rows of ``_COLUMNS`` (fetched in binary) as events: the hot loop of every read."""
    if not rows:
        return []
    # ``UUID(bytes=...)`` per row costs more than the rest of the row; msgspec builds the
    # same UUIDs in C from one MessagePack array of 16-byte bins.
    event_ids = _decode_event_ids(
        b"\xdd%b%b" % (len(rows).to_bytes(4, "big"), b"".join([_BIN16 + row[3] for row in rows]))
    )
    trusted = StreamId._trusted
    # Neighbouring rows mostly share a stream, a commit time (one batch, one now()) and
    # metadata (one command's events): build each of those once per batch.
    stream_ids: dict[str, StreamId] = {}
    times: dict[bytes, datetime] = {}
    metadatas: dict[str, Metadata] = {"{}": EMPTY_METADATA}
    events: list[StoredEvent] = []
    append = events.append
    for row, event_id in zip(rows, event_ids, strict=True):
        position, stream, version, _, type_, schema, data, text, at, _ = row
        stream_id = stream_ids.get(stream)
        if stream_id is None:
            stream_id = stream_ids[stream] = trusted(stream)
        recorded_at = times.get(at)
        if recorded_at is None:
            micros = int.from_bytes(at, "big", signed=True)
            recorded_at = times[at] = _PG_EPOCH + timedelta(microseconds=micros)
        metadata = metadatas.get(text)
        if metadata is None:
            metadata = metadatas[text] = _decode_metadata(text)
        append(
            StoredEvent(
                position, stream_id, version, event_id, type_, schema, data, metadata, recorded_at
            )
        )
    return events


def settled_count(rows: Sequence[Any]) -> int:
    """How many leading rows of a log page are settled (their last column is true)."""
    for index, row in enumerate(rows):
        if not row[9]:
            return index
    return len(rows)
