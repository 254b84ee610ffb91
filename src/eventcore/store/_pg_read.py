"""The PostgreSQL read path: queries and turning rows into ``StoredEvent``s.

The global log is read in position order with keyset pagination (``position > cursor``),
one short statement per batch, so no connection or snapshot is held while the caller
works through a batch. Each row comes with ``settled``: whether its transaction is below
the statement's snapshot xmin. Only a leading run of settled rows may be returned — the
argument is in ``_pg_append``; in short, a settled row's position can never be undercut by
a row that commits later. An unsettled row is committed but may still have an older
transaction in flight ahead of it, so the reader waits for that transaction and asks
again: a long open transaction delays readers, it never makes them skip.

Transaction ids are cluster-wide, so the writing transaction that delays a reader may
belong to another schema or database on the same server (a long migration, a
``CREATE INDEX CONCURRENTLY``). ``xid8`` values never wrap around, so the comparison
holds for the life of the cluster. A logical dump restored into another cluster carries
transaction ids that mean nothing there: reset them (``UPDATE events SET transaction_id
= '3'``, older than any live transaction) after such a restore.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final
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
    "STORED_EVENT_IDS",
    "STREAM_VERSION",
    "STREAM_VERSIONS",
    "settled_events",
]

_COLUMNS: Final = (
    "e.position, e.stream_id, e.version, e.event_id, e.type, e.schema_version, e.data,"
    " e.metadata::text, e.recorded_at"
)

READ_STREAM: Final = (
    f"SELECT {_COLUMNS}, true FROM __schema__.events AS e"
    " WHERE e.stream_id = %s AND e.version >= %s ORDER BY e.version"
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

_decode_metadata = msgspec.json.Decoder(Metadata).decode

Row = tuple[int, str, int, UUID, str, int, bytes, str, datetime, bool]


def _stored(row: Row) -> StoredEvent:
    metadata = row[7]
    return StoredEvent(
        position=row[0],
        stream_id=StreamId._trusted(row[1]),
        version=row[2],
        event_id=row[3],
        type=row[4],
        schema_version=row[5],
        data=row[6],
        metadata=EMPTY_METADATA if metadata == "{}" else _decode_metadata(metadata),
        recorded_at=row[8],
    )


def settled_events(rows: list[Any]) -> tuple[list[StoredEvent], bool]:
    """The leading settled rows as events, and whether an unsettled row stopped the run."""
    events: list[StoredEvent] = []
    for row in rows:
        if not row[9]:
            return events, True
        events.append(_stored(row))
    return events, False
