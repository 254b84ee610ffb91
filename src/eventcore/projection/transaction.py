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
    """

    def __init__(
        self,
        run: Callable[[str, Params], _Cursor],
        tables: Mapping[str, str],
        version: int,
        rewrite: Callable[[str], str] | None = None,
    ) -> None:
        self._run = run
        self._tables = tables
        self._rewrite = rewrite
        # Handlers run the same few statements for every event: translate each once.
        self._translated: dict[str, str] = {}
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
        self._run(self._sql(sql), params)

    def fetchone(self, sql: str, params: Params = ()) -> tuple[Any, ...] | None:
        row = self._run(self._sql(sql), params).fetchone()
        return None if row is None else tuple(row)

    def fetchall(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
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
