"""``SqliteTarget``: a projection's tables and checkpoints in one SQLite file.

It may be the event store's own file or another one. Each batch is one ``BEGIN
IMMEDIATE … COMMIT`` holding the handlers' writes and the checkpoint, so a process
killed at any moment leaves the state exactly at its checkpoint.

``synchronous=NORMAL`` by default: in WAL mode a commit survives the process being
killed; only a power cut can lose the last commits, and then state and checkpoint roll
back *together*, so the batches are simply applied again. Derived state does not need
an fsync per batch; ``synchronous="FULL"`` is there for those who want it.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from typing import Any, Final

from eventcore.errors import InvalidInput
from eventcore.projection._sql_target import Dialect, SqlTarget

__all__ = ["SqliteTarget"]

_SYNCHRONOUS: Final = ("FULL", "NORMAL", "OFF")


class _Sqlite(Dialect[sqlite3.Connection]):
    # Take the write lock up front: a batch that starts reading and then writes could
    # otherwise fail with SQLITE_BUSY half-way when another process writes the file.
    begin = "BEGIN IMMEDIATE"

    def __init__(self, path: str, synchronous: str, busy_timeout: float) -> None:
        self._path = path
        self._synchronous = synchronous
        self._busy_timeout = busy_timeout

    def connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self._path, timeout=self._busy_timeout, isolation_level=None, cached_statements=256
        )
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
        except BaseException:
            conn.close()
            raise
        return conn

    def run(self, conn: sqlite3.Connection, sql: str, params: Any = ()) -> Any:
        return conn.execute(sql, params)

    def bind(self, conn: sqlite3.Connection) -> Callable[[str, Any], Any]:
        return conn.execute  # the hot path: no wrapper per statement

    def bind_many(self, conn: sqlite3.Connection) -> Callable[[str, list[Any]], object]:
        return conn.executemany

    def in_transaction(self, conn: sqlite3.Connection) -> bool:
        return conn.in_transaction

    def close(self, conn: sqlite3.Connection) -> None:
        conn.close()


class SqliteTarget(SqlTarget[sqlite3.Connection]):
    """Open with ``await SqliteTarget.open(path)``; close with ``aclose()``."""

    def __init__(self, path: str, synchronous: str, busy_timeout: float) -> None:
        super().__init__(_Sqlite(path, synchronous, busy_timeout), "eventcore-projection-sqlite")
        self.path = path

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str],
        *,
        synchronous: str = "NORMAL",
        busy_timeout: float = 5.0,
    ) -> SqliteTarget:
        mode = synchronous.upper()
        if mode not in _SYNCHRONOUS:
            raise InvalidInput(f"synchronous={synchronous!r} is not one of {_SYNCHRONOUS}")
        # A relative path is taken against the current directory, once, here.
        target = cls(os.path.abspath(os.fspath(path)), mode, busy_timeout)  # noqa: ASYNC240
        try:
            await target._start()
        except BaseException:
            await target.aclose()
            raise
        return target

    async def __aenter__(self) -> SqliteTarget:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()
