"""The raw driver on PostgreSQL: ``psycopg`` doing the equivalent statements, no library code.

Same server, a fresh schema with eventcore's tables and indexes (its migration 1, so the
index maintenance is the same), one connection. A command is two round trips, as in
eventcore: read the stream, then ONE autocommit statement that checks the head, inserts
the event and moves the head. It leaves out what a real store needs under concurrency (the
per-stream locks, the xid/position mutex, the notification): the ceiling for one client.
Reads fetch the rows and stop there (no payload decoding).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from bench.common import Context, PostgresBackend, Stopwatch
from eventcore.store.postgres._schema import MIGRATIONS, render

__all__ = ["DESCRIPTIONS", "WORKLOADS", "run"]

DESCRIPTIONS: dict[str, str] = {
    "a_new_streams_sequential": (
        "psycopg, one connection: SELECT the stream, then one autocommit statement (head "
        "check + INSERT + head UPSERT in CTEs); no stream locks, position mutex or NOTIFY"
    ),
    "c_append_one_stream": "psycopg: SELECT the newer events, then one statement as in a",
    "e_read_fold_stream": "psycopg SELECT + fetchall, no decoding",
    "f_read_global_log": "psycopg paged SELECT (LIMIT 1,000) + fetchall, no decoding",
}

_COLUMNS = (
    "position, stream_id, version, event_id, type, schema_version, data, metadata::text,"
    " recorded_at"
)
_READ = (
    f"SELECT {_COLUMNS} FROM __schema__.events WHERE stream_id = %s AND version > %s"
    " ORDER BY version"
)
_PAGE = f"SELECT {_COLUMNS} FROM __schema__.events WHERE position > %s ORDER BY position LIMIT 1000"
# The head check, the insert and the head's move in one statement (one round trip, one
# transaction in autocommit); nothing is written when the head is not ``expected``.
_WRITE = """
WITH head AS (
    SELECT coalesce((SELECT version FROM __schema__.streams WHERE stream_id = %(stream)s), 0)
           AS version
), event AS (
    INSERT INTO __schema__.events
           (position, stream_id, version, event_id, type, schema_version, data, metadata)
    SELECT nextval('__schema__.positions'), %(stream)s, head.version + 1, %(id)s, %(type)s, 1,
           %(data)s, %(metadata)s::jsonb
      FROM head WHERE head.version = %(expected)s
    RETURNING position, version
)
INSERT INTO __schema__.streams AS h (stream_id, version, last_position)
SELECT %(stream)s, event.version, event.position FROM event
ON CONFLICT (stream_id) DO UPDATE
   SET version = EXCLUDED.version, last_position = EXCLUDED.last_position
RETURNING version
"""
# Set-up only: a history written server-side in one statement.
_BULK = """
INSERT INTO __schema__.events
       (position, stream_id, version, event_id, type, schema_version, data, metadata)
SELECT nextval('__schema__.positions'), %(prefix)s || ((g - 1) / %(per)s), (g - 1) %% %(per)s + 1,
       gen_random_uuid(), CASE WHEN (g - 1) %% %(per)s = 0 THEN 'Opened' ELSE 'Deposited' END, 1,
       CASE WHEN (g - 1) %% %(per)s = 0 THEN %(opened)s ELSE %(deposited)s END,
       %(metadata)s::jsonb
  FROM generate_series(1, %(count)s) AS g
"""
_HEADS = (
    "INSERT INTO __schema__.streams SELECT stream_id, max(version), max(position)"
    " FROM __schema__.events GROUP BY stream_id"
)
METADATA = '{"correlation_id": "00000000-0000-0000-0000-000000000000"}'
OPENED = b'{"owner":"bench","balance":0}'
DEPOSITED = b'{"amount":1}'


class Raw:
    """One connection to the measurement's schema and its statements."""

    def __init__(self, conn: psycopg.Connection[Any], schema: str) -> None:
        self.conn = conn
        self.read = render(_READ, schema)
        self.page = render(_PAGE, schema)
        self.write = render(_WRITE, schema)
        self.bulk = render(_BULK, schema)
        self.heads = render(_HEADS, schema)

    def command(self, stream: str, after: int, kind: str, data: bytes) -> int:
        """Read ``stream`` after version ``after``, then write one event; the new version."""
        self.conn.execute(self.read, (stream, after), prepare=True).fetchall()
        row = self.conn.execute(
            self.write,
            {
                "stream": stream,
                "expected": after,
                "id": uuid.uuid4(),
                "type": kind,
                "data": data,
                "metadata": METADATA,
            },
            prepare=True,
        ).fetchone()
        if row is None:
            raise RuntimeError(f"{stream} moved under the raw writer")
        return int(row[0])

    def history(self, prefix: str, count: int, per_stream: int) -> None:
        """``count`` events in streams ``<prefix>0``, ``<prefix>1``, … of ``per_stream``."""
        with self.conn.transaction():
            self.conn.execute(
                self.bulk,
                {
                    "prefix": prefix,
                    "per": per_stream,
                    "count": count,
                    "opened": OPENED,
                    "deposited": DEPOSITED,
                    "metadata": METADATA,
                },
            )
            self.conn.execute(self.heads)


@contextmanager
def connected(ctx: Context) -> Iterator[Raw]:
    backend = ctx.backend
    if not isinstance(backend, PostgresBackend):
        raise TypeError(f"raw_postgres runs on the postgres backend, not {backend.name}")
    schema = backend.schema(ctx.workdir)
    with psycopg.connect(backend.url, autocommit=True) as conn:
        conn.execute(render(MIGRATIONS[0].sql, schema))
        yield Raw(conn, schema)


def a_new_streams_sequential(ctx: Context) -> float:
    count = ctx.sizes.new_streams
    with connected(ctx) as raw:
        clock = Stopwatch()
        with clock.running():
            for index in range(count):
                raw.command(f"account-{index}", 0, "Opened", OPENED)
        return clock.rate(count)


def c_append_one_stream(ctx: Context) -> float:
    count = ctx.sizes.appends
    stream = "account-0"
    with connected(ctx) as raw:
        known = raw.command(stream, 0, "Opened", OPENED)
        clock = Stopwatch()
        with clock.running():
            for _ in range(count):
                known = raw.command(stream, known, "Deposited", DEPOSITED)
        if known != count + 1:
            raise RuntimeError(f"expected version {count + 1}, found {known}")
        return clock.rate(count)


def e_read_fold_stream(ctx: Context) -> float:
    count = ctx.sizes.stream_events
    with connected(ctx) as raw:
        raw.history("account-", count, count)
        clock = Stopwatch()
        with clock.running():
            rows = raw.conn.execute(raw.read, ("account-0", 0)).fetchall()
        if len(rows) != count:
            raise RuntimeError(f"read {len(rows)} rows, expected {count}")
        return clock.rate(count)


def f_read_global_log(ctx: Context) -> float:
    count = ctx.sizes.log_events
    with connected(ctx) as raw:
        raw.history("log-", count, ctx.sizes.populate_batch)
        seen, after = 0, 0
        clock = Stopwatch()
        with clock.running():
            while True:
                rows = raw.conn.execute(raw.page, (after,), prepare=True).fetchall()
                if not rows:
                    break
                seen += len(rows)
                after = rows[-1][0]
        if seen != count:
            raise RuntimeError(f"read {seen} rows, expected {count}")
        return clock.rate(count)


WORKLOADS: dict[str, Callable[[Context], float]] = {
    "a_new_streams_sequential": a_new_streams_sequential,
    "c_append_one_stream": c_append_one_stream,
    "e_read_fold_stream": e_read_fold_stream,
    "f_read_global_log": f_read_global_log,
}


def run(name: str, ctx: Context) -> float:
    return WORKLOADS[name](ctx)
