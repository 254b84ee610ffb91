"""The raw driver: stdlib ``sqlite3`` doing the equivalent inserts and selects.

Same pragmas as the libraries (WAL, synchronous=FULL), one transaction per command, one
connection, no library code: the ceiling a Python event store on SQLite can approach.
Reads fetch the rows and stop there (no payload decoding).
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.common import Context, Stopwatch
from eventcore.store.sqlite._schema import migrate

__all__ = ["DESCRIPTIONS", "WORKLOADS", "run"]

DESCRIPTIONS: dict[str, str] = {
    "a_new_streams_sequential": (
        "SELECT the stream, then BEGIN IMMEDIATE, head check, INSERT, head UPSERT, COMMIT"
    ),
    "c_append_one_stream": "SELECT newer, then one transaction as in a",
    "e_read_fold_stream": "SELECT + fetchall, no decoding",
    "f_read_global_log": "paged SELECT + fetchall, no decoding",
}

COLUMNS = (
    "position, stream_id, version, event_id, type, schema_version, data, metadata, recorded_at"
)
INSERT = (
    "INSERT INTO events (stream_id, version, event_id, type, schema_version, data, metadata,"
    " recorded_at) VALUES (?, ?, ?, ?, 1, ?, ?, ?)"
)
UPSERT_STREAM = (
    "INSERT INTO streams (stream_id, version, last_position) VALUES (?, ?, ?)"
    " ON CONFLICT (stream_id) DO UPDATE"
    " SET version = excluded.version, last_position = excluded.last_position"
)
METADATA = b'{"correlation_id":"00000000-0000-0000-0000-000000000000"}'
OPENED = b'{"owner":"bench","balance":0}'
DEPOSITED = b'{"amount":1}'


@contextmanager
def connected(path: Path, synchronous: str) -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(f"PRAGMA synchronous={synchronous}")
        # eventcore's own migrations, so the raw side maintains exactly the same tables
        # and indexes (a copy of the DDL here could drift from the store's).
        migrate(connection)
        yield connection
    finally:
        connection.close()


def _synchronous(ctx: Context) -> str:
    return str(getattr(ctx.backend, "synchronous", "FULL"))


def _row(stream: str, version: int, kind: str, data: bytes) -> tuple[object, ...]:
    return (stream, version, uuid.uuid4().bytes, kind, data, METADATA, time.time_ns() // 1000)


def _command(db: sqlite3.Connection, stream: str, after: int, kind: str, data: bytes) -> int:
    """One command as eventcore's SQL does it: read the stream (from ``after``), then in one
    transaction check the head, insert the event, move the head. Returns the new version."""
    db.execute(
        f"SELECT {COLUMNS} FROM events WHERE stream_id = ? AND version > ? ORDER BY version",
        (stream, after),
    ).fetchall()
    db.execute("BEGIN IMMEDIATE")
    head = db.execute("SELECT version FROM streams WHERE stream_id = ?", (stream,)).fetchone()
    version = (head[0] if head else 0) + 1
    position = db.execute(INSERT, _row(stream, version, kind, data)).lastrowid
    db.execute(UPSERT_STREAM, (stream, version, position))
    db.execute("COMMIT")
    return version


def a_new_streams_sequential(ctx: Context) -> float:
    count = ctx.sizes.new_streams
    with connected(ctx.backend.raw_path(ctx.workdir), _synchronous(ctx)) as db:
        clock = Stopwatch()
        with clock.running():
            for index in range(count):
                _command(db, f"account-{index}", 0, "Opened", OPENED)
        return clock.rate(count)


def c_append_one_stream(ctx: Context) -> float:
    count = ctx.sizes.appends
    stream = "account-0"
    with connected(ctx.backend.raw_path(ctx.workdir), _synchronous(ctx)) as db:
        known = _command(db, stream, 0, "Opened", OPENED)
        clock = Stopwatch()
        with clock.running():
            for _ in range(count):
                # Like a cached state: read only what came after the version last seen.
                known = _command(db, stream, known, "Deposited", DEPOSITED)
        if known != count + 1:
            raise RuntimeError(f"expected version {count + 1}, found {known}")
        return clock.rate(count)


def _bulk_history(db: sqlite3.Connection, streams: list[tuple[str, int]]) -> None:
    def rows() -> Iterator[tuple[object, ...]]:
        for stream, size in streams:
            yield _row(stream, 1, "Opened", OPENED)
            for version in range(2, size + 1):
                yield _row(stream, version, "Deposited", DEPOSITED)

    db.execute("BEGIN")
    db.executemany(INSERT, rows())
    db.execute(
        "INSERT INTO streams SELECT stream_id, max(version), max(position) FROM events"
        " GROUP BY stream_id"
    )
    db.execute("COMMIT")


def e_read_fold_stream(ctx: Context) -> float:
    count = ctx.sizes.stream_events
    with connected(ctx.backend.raw_path(ctx.workdir), _synchronous(ctx)) as db:
        _bulk_history(db, [("account-0", count)])
        clock = Stopwatch()
        with clock.running():
            rows = db.execute(
                f"SELECT {COLUMNS} FROM events WHERE stream_id = ? AND version >= 1"
                " ORDER BY version",
                ("account-0",),
            ).fetchall()
        if len(rows) != count:
            raise RuntimeError(f"read {len(rows)} rows, expected {count}")
        return clock.rate(count)


def f_read_global_log(ctx: Context) -> float:
    count = ctx.sizes.log_events
    per_stream = ctx.sizes.populate_batch
    streams, rest = divmod(count, per_stream)
    sizes = [per_stream] * streams + ([rest] if rest else [])
    with connected(ctx.backend.raw_path(ctx.workdir), _synchronous(ctx)) as db:
        _bulk_history(db, [(f"log-{index}", size) for index, size in enumerate(sizes)])
        seen, after = 0, 0
        clock = Stopwatch()
        with clock.running():
            while True:
                rows = db.execute(
                    f"SELECT {COLUMNS} FROM events WHERE position > ? ORDER BY position LIMIT 1000",
                    (after,),
                ).fetchall()
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
