"""A ``Target`` in a SQL database, on its own thread: the part SQLite and PostgreSQL share.

All database work runs on one thread that owns the connection (the drivers block, and
a batch's handlers are synchronous). Each operation is one job and one transaction.
The bookkeeping tables:

* ``eventcore_projections (name, version, state, tables, created_at)`` — one row per
  version; ``state`` is building, live or retired; ``tables`` (JSON) lets reset and
  the CLI drop or inspect a version without the projection's code;
* ``eventcore_checkpoints (name, version, source, position, events, events_per_second,
  updated_at, store_id)`` — one row per source of a version; ``store_id`` is the store
  whose log ``position`` counts (NULL in rows saved before it was kept);
* ``eventcore_target_schema (version, applied_at)`` — the migrations applied
  (``_target_schema``).

``commit`` reads its version's row inside the batch's transaction (locked against a
concurrent switch on PostgreSQL), so a batch either lands before a switch or fails with
``VersionRetired`` after it: a retired version never gains writes. The same lock makes
commits to one version from several processes take turns (SQLite's single writer does
that by itself), so the checkpoint a batch checks (``Batch.after``) is the one it
replaces: of two runners that overlap, one commits and the other gets
``CheckpointMoved`` with nothing written.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, TypeVar

from eventcore._closing import Closing
from eventcore._schema_version import require_current
from eventcore.errors import DatabaseNotFound, StoreClosed, StoreUnavailable
from eventcore.projection._target_schema import LATEST_VERSION, applied_version, migrate
from eventcore.projection.errors import CheckpointMoved, ProjectionNotFound, VersionRetired
from eventcore.projection.projection import Projection
from eventcore.projection.target import (
    BUILDING,
    LIVE,
    RETIRED,
    Batch,
    SourceProgress,
    VersionInfo,
    apply_batch,
)
from eventcore.projection.transaction import SqlTransaction
from eventcore.store.checkpoint import Checkpoint

__all__ = ["Dialect", "SqlTarget", "physical_tables"]

C = TypeVar("C")
T = TypeVar("T")

_UPSERT_CHECKPOINT = (
    "INSERT INTO eventcore_checkpoints"
    " (name, version, source, position, events, events_per_second, updated_at, store_id)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name, version, source) DO UPDATE SET"
    " position = excluded.position,"
    " events = eventcore_checkpoints.events + excluded.events,"
    " events_per_second = excluded.events_per_second, updated_at = excluded.updated_at,"
    " store_id = excluded.store_id"
)


_CHECKPOINT_AT = (
    "SELECT position FROM eventcore_checkpoints WHERE name = ? AND version = ? AND source = ?"
)


def physical_tables(tables: Sequence[str], version: int) -> dict[str, str]:
    """Declared table name → this version's table."""
    return {table: f"{table}_v{version}" for table in tables}


class Dialect(Generic[C]):
    """What differs between databases. Every method runs on the target's thread."""

    #: Statement that opens a write transaction.
    begin = "BEGIN"
    #: Where the target is, as errors name it (a path or a URL).
    where = ""
    #: Appended to the version check in ``commit``: holds off a switch, and any other
    #: writer of the version (whose checkpoint check must see this commit), until commit.
    version_lock = ""

    def connect(self) -> C:
        raise NotImplementedError

    def run(self, conn: C, sql: str, params: Any = ()) -> Any:
        raise NotImplementedError

    def bind(self, conn: C) -> Callable[[str, Any], Any]:
        """``run`` with the connection bound: handlers call it once per statement."""
        return lambda sql, params: self.run(conn, sql, params)

    def bind_many(self, conn: C) -> Callable[[str, list[Any]], object] | None:
        """One statement for many parameter sets (``SqlTransaction`` groups runs of one
        statement into it); None runs them one at a time."""
        return None

    def rewrite(self, sql: str) -> str:
        return sql

    def pipeline(self, conn: C) -> contextlib.AbstractContextManager[object]:
        """Around a whole batch: statements may be sent without waiting for each answer
        (a read still waits for its own); errors surface by the end of the block."""
        return contextlib.nullcontext()

    def in_transaction(self, conn: C) -> bool:
        """Whether a transaction is open (and so needs a ROLLBACK after an error)."""
        return True

    def serialize(self, conn: C, name: str) -> None:
        """Inside a transaction: wait out other processes changing ``name``'s versions."""

    def has_table(self, conn: C, name: str) -> bool:
        """Whether the target's database holds the bookkeeping table ``name``."""
        raise NotImplementedError

    def close(self, conn: C) -> None:
        raise NotImplementedError


class SqlTarget(Closing, Generic[C]):
    """A ``Target`` whose state and checkpoints share one database (see module doc)."""

    def __init__(self, dialect: Dialect[C], thread_name: str, *, create: bool = True) -> None:
        self._dialect = dialect
        #: False: only look. The bookkeeping must be there already and is never created.
        self._create = create
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=thread_name)
        self._conn: C | None = None
        self._closed = False

    async def _start(self) -> None:
        await self._call(self._open)

    def _open(self) -> None:
        self._conn = self._dialect.connect()
        if not self._create:
            if not self._dialect.has_table(self._conn, "eventcore_projections"):
                raise DatabaseNotFound(self._dialect.where, "it holds no projections yet")
            self._transaction(self._require_current, None)
            return
        # Serialised: two processes creating the tables at once must not collide.
        self._transaction(migrate, "eventcore_bookkeeping")

    def _require_current(self, run: Callable[..., Any]) -> None:
        """Only looking: the bookkeeping must be at this eventcore's version already (a
        target from before ``eventcore_target_schema`` is version 1), since migrating it
        would be a write."""
        found = 1
        if self._dialect.has_table(self._conn, "eventcore_target_schema"):  # type: ignore[arg-type]
            found = applied_version(run)
        require_current(
            found,
            LATEST_VERSION,
            url=self._dialect.where,
            what="projection target",
            unavailable=StoreUnavailable,
        )

    async def _call(self, job: Callable[[], T]) -> T:
        if self._closed:
            raise StoreClosed()
        return await asyncio.get_running_loop().run_in_executor(self._executor, job)

    async def aclose(self) -> None:
        """Close the connection (after jobs already queued). Idempotent."""
        if self._closed:
            return
        self._closed = True
        conn, self._conn = self._conn, None
        if conn is not None:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._executor, self._dialect.close, conn)
        self._executor.shutdown(wait=False)

    # --- transactions, on the thread ---------------------------------------------------

    def _transaction(
        self,
        body: Callable[[Callable[..., Any]], T],
        serialize: str | None,
        *,
        pipelined: bool = False,
    ) -> T:
        conn = self._conn
        if conn is None:
            raise StoreClosed()
        dialect = self._dialect

        def run(sql: str, params: Any = ()) -> Any:
            return dialect.run(conn, dialect.rewrite(sql), params)

        try:
            # Pipelined (PostgreSQL, a batch's commit): BEGIN goes out with the version
            # check, which waits for its answer; the handlers' statements, the checkpoint
            # and COMMIT then go out together — two round trips a batch, not one each.
            with dialect.pipeline(conn) if pipelined else contextlib.nullcontext():
                dialect.run(conn, dialect.begin)
                if serialize is not None:
                    dialect.serialize(conn, serialize)
                result = body(run)
                dialect.run(conn, "COMMIT")
        except BaseException:
            # A pipelined statement's error can surface after COMMIT was queued (which the
            # server then skipped), so ask the connection whether a transaction is open.
            if dialect.in_transaction(conn):
                dialect.run(conn, "ROLLBACK")
            raise
        return result

    def _tx_for(self, tables: Sequence[str], version: int) -> SqlTransaction:
        conn = self._conn
        if conn is None:
            raise StoreClosed()
        dialect = self._dialect
        return SqlTransaction(
            dialect.bind(conn),
            physical_tables(tables, version),
            version,
            dialect.rewrite,
            dialect.bind_many(conn),
        )

    def _create_version(self, run: Callable[..., Any], projection: Projection, state: str) -> int:
        row = run(
            "SELECT coalesce(max(version), 0) FROM eventcore_projections WHERE name = ?",
            (projection.name,),
        ).fetchone()
        version = int(row[0]) + 1
        tx = self._tx_for(projection.tables, version)
        projection.setup(tx)
        tx.flush()
        run(
            "INSERT INTO eventcore_projections (name, version, state, tables, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (projection.name, version, state, json.dumps(list(projection.tables)), time.time()),
        )
        if state == LIVE:
            self._point_views(run, projection.tables, version)
        return version

    def _point_views(self, run: Callable[..., Any], tables: Sequence[str], version: int) -> None:
        # The plain name always shows the live version, so queries never name a version.
        for table, physical in physical_tables(tables, version).items():
            run(f"DROP VIEW IF EXISTS {table}")
            run(f"CREATE VIEW {table} AS SELECT * FROM {physical}")

    def _drop_version(self, run: Callable[..., Any], name: str, version: int, tables: str) -> None:
        for physical in physical_tables(json.loads(tables), version).values():
            run(f"DROP TABLE IF EXISTS {physical}")
        run("DELETE FROM eventcore_checkpoints WHERE name = ? AND version = ?", (name, version))
        run("DELETE FROM eventcore_projections WHERE name = ? AND version = ?", (name, version))

    # --- the Target protocol -----------------------------------------------------------

    async def live_version(self, projection: Projection) -> int:
        def body(run: Callable[..., Any]) -> int:
            row = run(
                "SELECT version FROM eventcore_projections WHERE name = ? AND state = ?",
                (projection.name, LIVE),
            ).fetchone()
            return int(row[0]) if row is not None else self._create_version(run, projection, LIVE)

        return await self._call(lambda: self._transaction(body, projection.name))

    async def new_version(self, projection: Projection) -> int:
        return await self._call(
            lambda: self._transaction(
                lambda run: self._create_version(run, projection, BUILDING), projection.name
            )
        )

    async def checkpoints(self, name: str, version: int) -> dict[str, Checkpoint]:
        def body(run: Callable[..., Any]) -> dict[str, Checkpoint]:
            rows = run(
                "SELECT source, position, store_id FROM eventcore_checkpoints"
                " WHERE name = ? AND version = ?",
                (name, version),
            ).fetchall()
            return {
                str(source): Checkpoint(position=int(position), store_id=store_id)
                for source, position, store_id in rows
            }

        return await self._call(lambda: self._transaction(body, None))

    async def bind_checkpoint(self, name: str, version: int, source: str, store_id: str) -> None:
        def body(run: Callable[..., Any]) -> None:
            run(
                "UPDATE eventcore_checkpoints SET store_id = ?"
                " WHERE name = ? AND version = ? AND source = ? AND store_id IS NULL",
                (store_id, name, version, source),
            )

        await self._call(lambda: self._transaction(body, None))

    async def commit(self, projection: Projection, version: int, batch: Batch) -> None:
        name, source = projection.name, batch.source
        check = (
            "SELECT state FROM eventcore_projections WHERE name = ? AND version = ?"
            + self._dialect.version_lock
        )

        def body(run: Callable[..., Any]) -> None:
            # Both reads go out before either answer is awaited (one round trip when
            # pipelined); the checkpoint's is run after the version row is locked, so
            # it sees the last committed position of any other writer of this version.
            versions = run(check, (name, version))
            stored = None if batch.after is None else run(_CHECKPOINT_AT, (name, version, source))
            row = versions.fetchone()
            if row is None or row[0] == RETIRED:
                raise VersionRetired(name, version)
            if stored is not None:
                found = stored.fetchone()
                position = 0 if found is None else int(found[0])
                if position != batch.after:
                    raise CheckpointMoved(name, version, source, batch.after or 0, position)
            tx = self._tx_for(projection.tables, version)
            apply_batch(tx, batch)
            tx.flush()  # the handlers' last grouped statements, before the checkpoint
            run(
                _UPSERT_CHECKPOINT,
                (
                    name,
                    version,
                    batch.source,
                    batch.position,
                    len(batch.events),
                    batch.events_per_second,
                    time.time(),
                    batch.store_id,
                ),
            )

        await self._call(lambda: self._transaction(body, None, pipelined=True))

    async def switch(self, projection: Projection, version: int, *, keep_old: bool) -> None:
        name = projection.name

        def body(run: Callable[..., Any]) -> None:
            rows = run(
                "SELECT version, state, tables FROM eventcore_projections WHERE name = ?",
                (name,),
            ).fetchall()
            states = {int(v): (str(s), str(t)) for v, s, t in rows}
            if version not in states or states[version][0] == RETIRED:
                raise ProjectionNotFound(name, version)
            run(
                "UPDATE eventcore_projections SET state = ? WHERE name = ? AND state = ?",
                (RETIRED, name, LIVE),
            )
            run(
                "UPDATE eventcore_projections SET state = ? WHERE name = ? AND version = ?",
                (LIVE, name, version),
            )
            self._point_views(run, projection.tables, version)
            if not keep_old:
                for old, (state, tables) in states.items():
                    if old != version and state != BUILDING:
                        self._drop_version(run, name, old, tables)

        await self._call(lambda: self._transaction(body, name))

    async def reset(self, name: str) -> None:
        def body(run: Callable[..., Any]) -> None:
            rows = run(
                "SELECT version, state, tables FROM eventcore_projections WHERE name = ?",
                (name,),
            ).fetchall()
            if not rows:
                raise ProjectionNotFound(name)
            for version, state, tables in rows:
                if state == LIVE:
                    for table in json.loads(tables):
                        run(f"DROP VIEW IF EXISTS {table}")
                self._drop_version(run, name, int(version), tables)

        await self._call(lambda: self._transaction(body, name))

    async def versions(self, name: str | None = None) -> list[VersionInfo]:
        def body(run: Callable[..., Any]) -> list[VersionInfo]:
            sql = "SELECT name, version, state, tables, created_at FROM eventcore_projections"
            rows = (
                run(sql + " WHERE name = ? ORDER BY name, version", (name,))
                if name is not None
                else run(sql + " ORDER BY name, version")
            ).fetchall()
            return [
                VersionInfo(
                    name=n,
                    version=int(v),
                    state=s,
                    tables=tuple(json.loads(t)),
                    created_at=float(c),
                )
                for n, v, s, t, c in rows
            ]

        return await self._call(lambda: self._transaction(body, None))

    async def progress(self, name: str | None = None) -> list[SourceProgress]:
        def body(run: Callable[..., Any]) -> list[SourceProgress]:
            sql = (
                "SELECT name, version, source, position, events, events_per_second, updated_at,"
                " store_id FROM eventcore_checkpoints"
            )
            rows = (
                run(sql + " WHERE name = ? ORDER BY name, version, source", (name,))
                if name is not None
                else run(sql + " ORDER BY name, version, source")
            ).fetchall()
            return [
                SourceProgress(
                    name=n,
                    version=int(v),
                    source=s,
                    position=int(p),
                    events=int(e),
                    events_per_second=float(r),
                    updated_at=float(u),
                    store_id=i,
                )
                for n, v, s, p, e, r, u, i in rows
            ]

        return await self._call(lambda: self._transaction(body, None))
