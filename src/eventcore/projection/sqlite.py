"""``SqliteTarget``: a projection's tables and checkpoints in one SQLite file.

The file is the target's alone, stamped as one (``eventcore._sqlite.file``): an event store's
file or a bus's is refused before anything is written to it. Each batch is one ``BEGIN
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

from eventcore._sqlite.file import TARGET, claim, connect_file
from eventcore.errors import InvalidInput, InvalidUrl, StoreUnavailable
from eventcore.projection._sql_target import Dialect, SqlTarget

__all__ = ["SqliteTarget"]

_SYNCHRONOUS: Final = ("FULL", "NORMAL", "OFF")


class _Sqlite(Dialect[sqlite3.Connection]):
    # Take the write lock up front: a batch that starts reading and then writes could
    # otherwise fail with SQLITE_BUSY half-way when another process writes the file.
    begin = "BEGIN IMMEDIATE"

    def __init__(self, path: str, synchronous: str, busy_timeout: float, create: bool) -> None:
        self._path = path
        self._synchronous = synchronous
        self._busy_timeout = busy_timeout
        self._create = create
        self.where = path

    def connect(self) -> sqlite3.Connection:
        path = self._path
        conn = connect_file(
            path,
            url=path,
            create=self._create,
            busy_timeout=self._busy_timeout,
            cached_statements=256,
        )
        try:
            # Before anything writes: a file of another kind is refused untouched.
            claim(conn, TARGET, url=path, create=self._create)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
        except sqlite3.Error as error:
            conn.close()
            if getattr(error, "sqlite_errorcode", None) == sqlite3.SQLITE_NOTADB:
                raise InvalidUrl(path, "not an SQLite database") from error
            raise StoreUnavailable(f"{path}: {error}") from error
        except BaseException:
            conn.close()
            raise
        return conn

    def has_table(self, conn: sqlite3.Connection, name: str) -> bool:
        found = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
        ).fetchone()
        return found is not None

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

    def __init__(
        self, path: str, synchronous: str, busy_timeout: float, *, create: bool = True
    ) -> None:
        super().__init__(
            _Sqlite(path, synchronous, busy_timeout, create),
            "eventcore-projection-sqlite",
            create=create,
        )
        self.path = path

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str],
        *,
        synchronous: str = "NORMAL",
        busy_timeout: float = 5.0,
        create: bool = True,
    ) -> SqliteTarget:
        """Open the target file, creating it unless ``create`` is False: then the file
        must already be a target, and opening writes nothing (for tools that only look)."""
        mode = synchronous.upper()
        if mode not in _SYNCHRONOUS:
            raise InvalidInput(f"synchronous={synchronous!r} is not one of {_SYNCHRONOUS}")
        # A relative path is taken against the current directory, once, here.
        location = os.path.abspath(os.fspath(path))  # noqa: ASYNC240
        target = cls(location, mode, busy_timeout, create=create)
        try:
            await target._start()
        except BaseException:
            await target.aclose()
            raise
        return target
