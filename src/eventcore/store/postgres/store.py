"""The PostgreSQL event store (``postgresql://user@host:port/db?schema=orders``).

Layout of the work::

    append ──▶ queue ──▶ one writer task ──▶ SELECT * FROM <schema>.append_batch(...)
                         (group commit: every append queued while the last batch
                          committed goes in one statement = one transaction = one round
                          trip; _batch runs it, _append_batch decides each append,
                          migrations/0002_append_events.sql: the ordering proof)
    read_stream ──▶ queue ──▶ one statement per loop pass for every stream read queued
                              (_stream_reads: READ_STREAMS, rows split per read)
    read_all ──▶ keyset pages of PAGE_ROWS, one fetched ahead, cut at the xmin
                 horizon (_log; queries and row decoding in _read)

URL options (anything else is rejected before connecting):

* ``schema`` — where this store's tables live (default ``eventcore``); services sharing
  a cluster use one schema each;
* ``pool_size`` — most connections the store opens (default 10);
* ``pool_timeout`` — seconds to wait for a connection before ``StoreUnavailable`` (10);
* ``max_payload_bytes`` — the largest event payload accepted;
* ``notify`` — ``on`` (default) or ``off``: whether each committed batch of appends
  notifies the channel ``<schema>_events`` with its last position. PostgreSQL commits
  notifying transactions one at a time, so a store without live followers may turn it off;
* ``connect_timeout`` — whole seconds to wait for the server when connecting (default 10;
  libpq counts 1 as 2): an unreachable server is ``StoreUnavailable`` after this long, once;
* ``sslmode``, ``application_name`` — passed to libpq, as is the rest of the URL (user,
  password, host, port, database).

Migrations run on open; ``migrate(url)`` runs them alone (for ``eventcore db migrate``).
Opened with ``create=False`` (for tools that only look) the store creates and migrates
nothing: a schema without a store is ``DatabaseNotFound``, one that needs migrating is
``StoreUnavailable``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from typing import Any, Final, NoReturn
from urllib.parse import urlencode, urlsplit, urlunsplit

import msgspec
import psycopg
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout

from eventcore._schema_version import require_current
from eventcore.errors import (
    InvalidInput,
    InvalidUrl,
    StoreClosed,
    StoreUnavailable,
)
from eventcore.instrumentation import resolve
from eventcore.redaction import redact
from eventcore.store._front import StoreFront
from eventcore.store._head_signal import HeadSignal
from eventcore.store._observed import announce_connections
from eventcore.store.postgres import _read as q
from eventcore.store.postgres._append_batch import BATCH_STATEMENT
from eventcore.store.postgres._batch import AppendBatcher, BatchRunner
from eventcore.store.postgres._errors import is_connection_failure, translate
from eventcore.store.postgres._listen import Listener
from eventcore.store.postgres._log import LogQueries, read_log
from eventcore.store.postgres._schema import (
    MIGRATIONS,
    STORE_ID,
    apply_migrations,
    channel_name,
    render,
    valid_schema_name,
)
from eventcore.store.postgres._stream_reads import ReadBatcher, stream_reads
from eventcore.store.protocol import AppendResult
from eventcore.store.request import DEFAULT_MAX_PAYLOAD_BYTES, AppendRequest
from eventcore.store.url import StoreUrl
from eventcore.types import StoredEvent, StreamHead, StreamId

__all__ = ["PostgresConfig", "PostgresStore", "migrate"]

DEFAULT_SCHEMA: Final = "eventcore"
DEFAULT_POOL_SIZE: Final = 10
DEFAULT_POOL_TIMEOUT: Final = 10.0
DEFAULT_CONNECT_TIMEOUT: Final = 10
_MAX_SECONDS: Final = 3600
#: PostgreSQL's own default max_connections is 100.
_MAX_POOL_SIZE: Final = 1000
# libpq's own, passed through as given: TLS (``sslmode=verify-full`` with ``sslrootcert``,
# a client certificate with ``sslcert``/``sslkey``/``sslpassword``) among them.
_LIBPQ_OPTIONS: Final = frozenset(
    {
        "connect_timeout",
        "application_name",
        "sslmode",
        "sslrootcert",
        "sslcert",
        "sslkey",
        "sslpassword",
        "sslcrl",
        "sslnegotiation",
    }
)
_OWN_OPTIONS: Final = frozenset(
    {"schema", "pool_size", "pool_timeout", "max_payload_bytes", "notify"}
)
_SWITCH: Final = {"on": True, "true": True, "1": True, "off": False, "false": False, "0": False}


class PostgresConfig(msgspec.Struct, frozen=True):
    """Where and how to connect, parsed from a store URL."""

    conninfo: str
    schema: str = DEFAULT_SCHEMA
    pool_size: int = DEFAULT_POOL_SIZE
    pool_timeout: float = DEFAULT_POOL_TIMEOUT
    notify: bool = True
    connect_timeout: int = DEFAULT_CONNECT_TIMEOUT

    def __repr__(self) -> str:
        # The connection string carries the password.
        return f"PostgresConfig({redact(self.conninfo)!r}, schema={self.schema!r})"

    @classmethod
    def from_url(cls, parsed: StoreUrl) -> PostgresConfig:
        if parsed.backend != "postgres":
            raise InvalidUrl(parsed.raw, "not a postgresql:// URL")
        parsed.reject_unknown_options(set(_OWN_OPTIONS | _LIBPQ_OPTIONS))
        schema = parsed.option("schema", DEFAULT_SCHEMA)
        if not valid_schema_name(schema):
            raise InvalidUrl(
                parsed.raw,
                f"schema {schema!r} must be 1-48 characters of a-z, 0-9 and _, not starting"
                " with a digit",
            )
        timeout_text = parsed.option("pool_timeout", str(DEFAULT_POOL_TIMEOUT))
        try:
            pool_timeout = float(timeout_text)
        except ValueError:
            raise InvalidUrl(parsed.raw, f"pool_timeout={timeout_text!r} is not a number") from None
        if not 0 < pool_timeout <= _MAX_SECONDS:
            raise InvalidUrl(
                parsed.raw, f"pool_timeout must be above 0 and at most {_MAX_SECONDS} seconds"
            )
        connect_timeout = parsed.int_option(
            "connect_timeout", DEFAULT_CONNECT_TIMEOUT, maximum=_MAX_SECONDS
        )
        notify_text = parsed.option("notify", "on")
        notify = _SWITCH.get(notify_text.lower())
        if notify is None:
            raise InvalidUrl(parsed.raw, f"notify={notify_text!r} must be on or off")
        parts = urlsplit(parsed.raw)
        passed = {k: v for k, v in parsed.options.items() if k in _LIBPQ_OPTIONS}
        # Always given: without it libpq waits for the operating system's TCP timeout.
        passed["connect_timeout"] = str(connect_timeout)
        conninfo = urlunsplit(
            ("postgresql", parts.netloc, parts.path, urlencode(passed), parts.fragment)
        )
        return cls(
            conninfo=conninfo,
            schema=schema,
            pool_size=parsed.int_option("pool_size", DEFAULT_POOL_SIZE, maximum=_MAX_POOL_SIZE),
            pool_timeout=pool_timeout,
            notify=notify,
            connect_timeout=connect_timeout,
        )


class _Statements:
    """Every statement the store runs, rendered once for its schema."""

    def __init__(self, schema: str) -> None:
        self.append_batch = render(BATCH_STATEMENT, schema)
        self.read_stream = render(q.READ_STREAM, schema)
        self.read_streams = render(q.READ_STREAMS, schema)
        self.log_page = render(q.LOG_PAGE, schema)
        self.log_page_of_types = render(q.LOG_PAGE_OF_TYPES, schema)
        self.stream_version = render(q.STREAM_VERSION, schema)
        self.stream_versions = render(q.STREAM_VERSIONS, schema)
        self.stored_event_ids = render(q.STORED_EVENT_IDS, schema)
        self.list_streams = render(q.LIST_STREAMS, schema)
        self.list_streams_after = render(q.LIST_STREAMS_AFTER, schema)
        self.last_position = render(q.LAST_POSITION, schema)
        self.settled_position = render(q.SETTLED_POSITION, schema)
        self.append_result = render(q.APPEND_RESULT, schema)
        self.store_id = render(STORE_ID, schema)


class PostgresStore(StoreFront):
    """An ``EventStore`` in one schema of a PostgreSQL database. Open with ``open_url``."""

    backend = "postgresql"

    def __init__(
        self,
        pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]],
        config: PostgresConfig,
        max_payload_bytes: int,
    ) -> None:
        """Use ``open`` or ``open_url``: they open the pool and migrate first."""
        self._pool = pool
        self._config = config
        self._max_payload_bytes = max_payload_bytes
        self._sql = _Statements(config.schema)
        self._closed = False
        self._hooks = resolve(None)
        announce_connections(None, self._hooks, "postgresql", self, self._connections)
        self._writer = BatchRunner(
            pool,
            self._sql.append_batch,
            notify=config.notify,
            fetch=self._fetch,
            stored_event_ids=self._sql.stored_event_ids,
            stream_versions=self._sql.stream_versions,
        )
        self._batcher = AppendBatcher(self._writer.run, name=f"eventcore-{config.schema}-writer")
        self._reads = ReadBatcher(
            stream_reads(self._fetch, self._sql.read_stream, self._sql.read_streams)
        )
        self._log = LogQueries(self._sql.log_page, self._sql.log_page_of_types)
        # Log pages a reader stopped waiting for, left to finish (see _log).
        self._background: set[asyncio.Task[Any]] = set()
        # wait_for_events: our own appends advance the head at once; other processes'
        # reach it through LISTEN on a connection of its own, opened on the first wait.
        self._head = HeadSignal()
        self._listener = Listener(
            config.conninfo, channel_name(config.schema), self._sql.last_position, self._head
        )

    # --- opening and closing -------------------------------------------------------------

    @classmethod
    async def open_url(
        cls, parsed: StoreUrl, *, max_payload_bytes: int, create: bool = True
    ) -> PostgresStore:
        """Open the store a parsed URL names; ``create=False`` creates and migrates nothing."""
        config = PostgresConfig.from_url(parsed)
        # One connection first, alone: an unreachable server or a missing schema fails here,
        # at once and in one error, rather than while the pool retries in the background
        # (logging each try) until pool_timeout.
        try:
            async with await _connect(config) as conn:
                if create:
                    await apply_migrations(conn, config.schema)
                else:
                    await _check_current(conn, config.schema, parsed.raw)
        except psycopg.Error as error:
            raise translate(error, "opening the PostgreSQL store") from error
        return await cls._start(config, max_payload_bytes)

    @classmethod
    async def open(
        cls, url: str, *, max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES, create: bool = True
    ) -> PostgresStore:
        parsed = StoreUrl.parse(url)
        limit = parsed.int_option("max_payload_bytes", max_payload_bytes)
        return await cls.open_url(parsed, max_payload_bytes=limit, create=create)

    @classmethod
    async def _start(cls, config: PostgresConfig, max_payload_bytes: int) -> PostgresStore:
        pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] = AsyncConnectionPool(
            config.conninfo,
            # Connections are opened on demand: a store used by one coroutine holds one.
            min_size=1,
            max_size=config.pool_size,
            timeout=config.pool_timeout,
            # Each statement is its own transaction; append_events relies on that.
            kwargs={"autocommit": True},
            name=f"eventcore-{config.schema}",
            open=False,
        )
        try:
            await pool.open(wait=True, timeout=config.pool_timeout)
        except psycopg.Error as error:
            await pool.close()
            raise translate(error, "opening the PostgreSQL store") from error
        except BaseException:
            await pool.close()
            raise
        return cls(pool, config, max_payload_bytes)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        announce_connections(self._hooks, None, "postgresql", self, self._connections)
        self._head.close()
        try:
            await self._batcher.aclose()  # appends already queued are written first
        finally:
            try:
                await self._listener.aclose()
            finally:
                await self._pool.close()

    @property
    def schema(self) -> str:
        return self._config.schema

    @property
    def channel(self) -> str:
        """The channel every append notifies, after commit, with its last position."""
        return channel_name(self._config.schema)

    # --- running statements --------------------------------------------------------------

    async def _fail(
        self,
        error: psycopg.Error,
        operation: str,
        invalid: Callable[[str], InvalidInput] = InvalidInput,
    ) -> NoReturn:
        if isinstance(error, PoolClosed) or self._closed:
            raise StoreClosed() from error
        if is_connection_failure(error):
            # After a server restart every idle pooled connection is dead: drop them all now
            # rather than failing once per connection.
            await self._pool.check()
        raise translate(error, operation, invalid) from error

    async def _fetch(
        self, operation: str, query: str, params: Sequence[Any], *, binary: bool = False
    ) -> list[Any]:
        """Run a read. A read is safe to repeat, so a dead pooled connection is retried once.

        ``binary`` asks for results in binary form (the event reads: bytea as it is).
        """
        self._check_open()
        for attempt in (1, 2):
            try:
                async with self._pool.connection() as conn:
                    cursor = await conn.execute(query, params, prepare=True, binary=binary)
                    return await cursor.fetchall()
            except psycopg.Error as error:
                # Retry only a connection that died under us, not a wait for one that ran out.
                stale = is_connection_failure(error) and not isinstance(error, PoolTimeout)
                if attempt == 1 and stale and not self._closed:
                    await self._pool.check()
                    continue
                await self._fail(error, operation)
        raise AssertionError("unreachable")

    def _connections(self) -> int:
        # The pool's (opened on demand, closed when idle long); the listener's is apart.
        return 0 if self._closed else int(self._pool.get_stats().get("pool_size", 0))

    # --- writing -------------------------------------------------------------------------

    async def _append(self, request: AppendRequest) -> AppendResult:
        # Queued for the writer's next batch; never retried after a lost connection (the
        # commit may or may not have happened: only the caller's idempotency key makes a
        # second attempt safe).
        result = await self._batcher.submit(request)
        self._head.advance(result.last_position)
        return result

    # --- reading -------------------------------------------------------------------------

    async def _read_stream(self, stream_id: StreamId, from_version: int) -> list[StoredEvent]:
        return await self._reads.read(stream_id, from_version)

    async def _read_all(
        self, after: int, types: Collection[str] | None, batch_size: int, limit: int | None
    ) -> AsyncIterator[list[StoredEvent]]:
        self._check_open()
        async for batch in read_log(
            self._fetch,
            self._log,
            after=after,
            types=types,
            batch_size=batch_size,
            limit=limit,
            background=self._background,
        ):
            yield batch

    async def stream_version(self, stream_id: StreamId) -> int:
        self._check_open()
        rows = await self._fetch("stream_version", self._sql.stream_version, (StreamId(stream_id),))
        return int(rows[0][0]) if rows else 0

    async def list_streams(
        self, *, after: StreamId | None = None, limit: int = 100
    ) -> list[StreamHead]:
        self._check_open()
        limit = max(limit, 0)
        if after is None:
            rows = await self._fetch("list_streams", self._sql.list_streams, (limit,))
        else:
            rows = await self._fetch(
                "list_streams", self._sql.list_streams_after, (str(after), limit)
            )
        return [
            StreamHead(stream_id=StreamId._trusted(row[0]), version=row[1], last_position=row[2])
            for row in rows
        ]

    async def find_append(self, idempotency_key: str) -> AppendResult | None:
        self._check_open()
        rows = await self._fetch("find_append", self._sql.append_result, (idempotency_key,))
        if not rows:
            return None
        streams, versions, positions, event_ids = rows[0]
        return AppendResult(
            stream_versions=dict(zip(streams, (int(v) for v in versions), strict=True)),
            positions=tuple(int(p) for p in positions),
            event_ids=tuple(event_ids),
            deduplicated=True,
        )

    async def store_id(self) -> str:
        self._check_open()
        rows = await self._fetch("store_id", self._sql.store_id, ())
        return str(rows[0][0])

    async def last_position(self) -> int:
        self._check_open()
        rows = await self._fetch("last_position", self._sql.last_position, ())
        return int(rows[0][0])

    async def settled_position(self) -> int:
        self._check_open()
        rows = await self._fetch("settled_position", self._sql.settled_position, ())
        return int(rows[0][0])

    async def wait_for_events(self, after: int, timeout: float) -> bool:  # noqa: ASYNC109
        self._check_open()
        self._listener.ensure_started()
        return await self._head.wait(after, timeout)


async def _connect(config: PostgresConfig) -> psycopg.AsyncConnection[Any]:
    """One connection, or ``StoreUnavailable`` in one line (libpq's own message spans
    several, one per address tried)."""
    try:
        return await psycopg.AsyncConnection.connect(config.conninfo, autocommit=True)
    except psycopg.OperationalError as error:
        detail = " ".join(str(error).split())
        raise StoreUnavailable(f"cannot connect to PostgreSQL: {detail}") from error


async def _check_current(conn: psycopg.AsyncConnection[Any], schema: str, url: str) -> None:
    """For ``create=False``: the schema must hold a store at the latest version already."""
    cursor = await conn.execute(
        "SELECT 1 FROM pg_tables WHERE schemaname = %s AND tablename = 'schema_migrations'",
        (schema,),
    )
    found = 0
    if await cursor.fetchone() is not None:
        cursor = await conn.execute(
            render("SELECT coalesce(max(version), 0) FROM __schema__.schema_migrations", schema)
        )
        row = await cursor.fetchone()
        found = int(row[0]) if row is not None else 0
    what = f"event store in schema {schema!r}"
    latest = MIGRATIONS[-1].version
    require_current(found, latest, url=url, what=what, unavailable=StoreUnavailable)


async def migrate(url: str) -> list[int]:
    """Create or update the schema a ``postgresql://`` URL names; the versions applied.

    Idempotent and safe to run while stores are open or other migrators run.
    """
    config = PostgresConfig.from_url(StoreUrl.parse(url))
    try:
        async with await _connect(config) as conn:
            return await apply_migrations(conn, config.schema)
    except psycopg.Error as error:
        raise translate(error, "migrating the PostgreSQL store") from error
