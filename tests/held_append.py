"""An append left in flight on PostgreSQL: the store's own SQL run in a transaction held
open on another connection, so later appends commit around it (out of position order)."""

from __future__ import annotations

from typing import Any

import psycopg

from eventcore.store.postgres._append_batch import BATCH_STATEMENT, batch_params
from eventcore.store.postgres._schema import render
from eventcore.store.request import AppendRequest
from eventcore.types import NewEvent, StreamId
from tests.builders import events

__all__ = ["hold_append_open"]


async def hold_append_open(
    conn: psycopg.AsyncConnection[Any],
    schema: str,
    stream: StreamId,
    *,
    count: int = 3,
    event_type: str = "Held",
) -> list[NewEvent]:
    """Append ``count`` events to the new ``stream`` in a transaction left open on the
    autocommit connection ``conn`` (``COMMIT`` or ``ROLLBACK`` on it ends the hold)."""
    held = events(count, event_type)
    request = AppendRequest.build({stream: held}, {stream: 0}, None, 1024)
    await conn.execute("BEGIN")
    cursor = await conn.execute(render(BATCH_STATEMENT, schema), batch_params([request]))
    rows = await cursor.fetchall()
    assert [row[:2] for row in rows] == [(0, "appended")]
    return held
