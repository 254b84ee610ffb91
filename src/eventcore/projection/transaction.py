"""What a handler writes through: ``SqlTransaction`` (SQLite, PostgreSQL) or
``MemoryTransaction``.

Why handlers are plain synchronous functions of a transaction: a whole batch — decoding,
every handler, the checkpoint row — runs on the target's own thread as one database
transaction. That makes a batch atomic with its checkpoint (effectively once), keeps the
event loop free while it runs, and costs one thread hop per batch instead of one per
statement (the difference between ~100,000 and ~10,000 events/s). The same handler code
runs on SQLite and PostgreSQL: SQL uses ``?`` placeholders on both (rewritten to
psycopg's ``%s`` on PostgreSQL) and names the projection's tables as ``{orders}``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Protocol

__all__ = ["MemoryTransaction", "SqlTransaction"]

_TABLE: Final = re.compile(r"\{([a-z_][a-z0-9_]*)\}")

Params = Sequence[Any] | Mapping[str, Any]


class _Cursor(Protocol):
    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class SqlTransaction:
    """The open transaction of one batch (or of a version's ``setup``).

    ``{table}`` in SQL becomes this version's table (``orders`` → ``orders_v3``);
    other braces are left alone. ``version`` is the version being written.

    Runs of one statement are grouped: ``execute`` with the same SQL as the statement
    before it only notes its parameters, and the run goes to the driver as one
    ``executemany`` when a different statement comes, before any read (``fetchone``,
    ``fetchall``) and before the batch's checkpoint. A handler issuing one upsert per
    event then costs one driver call per batch instead of one per event (about a
    quarter of the per-event cost on SQLite, and on PostgreSQL the rows travel
    pipelined). Statements still run in the order issued and every read sees every
    write before it, so the state is the same as one at a time. What differs: an
    error of a grouped statement surfaces at the next read or at the end of the batch
    (failing the batch all the same), not inside the handler that issued it; and the
    parameters are read then, so pass values the handler does not mutate afterwards.
    """

    def __init__(
        self,
        run: Callable[[str, Params], _Cursor],
        tables: Mapping[str, str],
        version: int,
        rewrite: Callable[[str], str] | None = None,
        run_many: Callable[[str, list[Params]], object] | None = None,
    ) -> None:
        self._run = run
        self._run_many = run_many
        self._tables = tables
        self._rewrite = rewrite
        # Handlers run the same few statements for every event: translate each once.
        self._translated: dict[str, str] = {}
        # The run being grouped: its SQL as the handler wrote it, and its parameters.
        self._pending_sql: str | None = None
        self._pending: list[Params] = []
        self.version = version

    def _sql(self, sql: str) -> str:
        done = self._translated.get(sql)
        if done is None:
            done = _TABLE.sub(lambda m: self._tables.get(m.group(1), m.group(0)), sql)
            if self._rewrite is not None:
                done = self._rewrite(done)
            self._translated[sql] = done
        return done

    def execute(self, sql: str, params: Params = ()) -> None:
        if self._run_many is None:
            self._run(self._sql(sql), params)
        elif sql == self._pending_sql:
            self._pending.append(params)
        else:
            self.flush()
            self._pending_sql = sql
            self._pending = [params]

    def flush(self) -> None:
        """Send the grouped run to the database (reads and commits call it first)."""
        sql, pending = self._pending_sql, self._pending
        if sql is None:
            return
        # Cleared first: a failing run is not sent again by a later flush.
        self._pending_sql, self._pending = None, []
        if len(pending) == 1 or self._run_many is None:
            for params in pending:
                self._run(self._sql(sql), params)
        else:
            self._run_many(self._sql(sql), pending)

    def fetchone(self, sql: str, params: Params = ()) -> tuple[Any, ...] | None:
        self.flush()
        row = self._run(self._sql(sql), params).fetchone()
        return None if row is None else tuple(row)

    def fetchall(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
        self.flush()
        return [tuple(row) for row in self._run(self._sql(sql), params).fetchall()]


class MemoryTransaction:
    """In-memory state of one projection version: ``tx.state`` is a dict kept for it.

    Nothing rolls back: a batch that fails half-way keeps what its handlers did, and is
    handled again from the checkpoint (at least once). Handlers use ``stored.position``
    to stay idempotent when that matters.
    """

    def __init__(self, state: dict[str, Any], version: int) -> None:
        self.state = state
        self.version = version
