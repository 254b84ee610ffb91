"""``SqliteDirectory``: the registry in one SQLite file, shared by the processes of a
machine (``sqlite:///path/registry.db``).

Liveness is ``SqliteLeases`` on the file's ``bus_members`` table (expiry by wall clock,
the one clock the processes share); the records are in ``registry_instances``. One
thread owns the connection (``eventcore._sqlite.thread``); every job is one short write
transaction taken in turn with the file's other writers. The SQL is in ``sql/``.
"""

from __future__ import annotations

import os
import re
import sqlite3
import time
from collections.abc import Callable
from importlib.resources import files
from typing import Final, TypeVar

import msgspec

from eventcore._schema_version import Migration, latest, require_current
from eventcore._sqlite.file import REGISTRY, claim, connect_file
from eventcore._sqlite.migrations import USER_VERSION, migrate
from eventcore._sqlite.thread import ConnectionThread, Outcome, failure, success
from eventcore._sqlite.turns import begin_in_turn
from eventcore.errors import (
    EventcoreError,
    InvalidUrl,
    RegistryClosed,
    RegistryUnavailable,
    StoreClosed,
)
from eventcore.leases.sqlite import SqliteLeases
from eventcore.registry.directory import STALE_AFTER, Record, record_decoder
from eventcore.registry.instance import Instance
from eventcore.registry.url import RegistryUrl

__all__ = ["SqliteDirectory"]

T = TypeVar("T")
Job = Callable[[sqlite3.Connection], object]

#: Seconds a writer waits for another process's write lock before giving up.
BUSY_TIMEOUT: Final = 5.0
_CLOSE_WITHIN: Final = 5.0


def _sql(name: str) -> str:
    return (files(__package__) / "sql" / name).read_text(encoding="utf-8")


def _statements(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(";") if part.strip())


def _queries(text: str) -> dict[str, str]:
    """The ``-- name: x`` sections of a query file, by name."""
    found: dict[str, str] = {}
    for section in re.split(r"^-- name: ", text, flags=re.MULTILINE)[1:]:
        name, _, body = section.partition("\n")
        found[name.strip()] = body.strip().rstrip(";")
    return found


#: (version, statements). Append new migrations; never edit one that has shipped.
_MIGRATIONS: Final[tuple[Migration, ...]] = ((1, _statements(_sql("0001_registry.sql"))),)
_Q: Final = _queries(_sql("queries.sql"))


def _connect(url: RegistryUrl, path: str, *, create: bool) -> sqlite3.Connection:
    """Open the file, refuse one of another kind, bring its schema up to date. Blocks:
    runs on the directory's thread."""
    connection = connect_file(
        path, url=url.raw, create=create, busy_timeout=BUSY_TIMEOUT, cached_statements=32
    )
    try:
        connection.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
        claim(connection, REGISTRY, url=url.raw, create=create)
        mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise RegistryUnavailable(f"{path}: SQLite refused write-ahead logging ({mode})")
        # Registrations are renewed every few seconds: a power cut loses at most one.
        connection.execute("PRAGMA synchronous = NORMAL")
        if create:
            migrate(
                connection,
                _MIGRATIONS,
                USER_VERSION,
                what=REGISTRY.name,
                unavailable=RegistryUnavailable,
            )
        else:
            # Looking only: migrating would be a write.
            require_current(
                USER_VERSION.applied(connection),
                latest(_MIGRATIONS),
                url=url.raw,
                what=REGISTRY.name,
                unavailable=RegistryUnavailable,
            )
    except sqlite3.Error as error:
        connection.close()
        if getattr(error, "sqlite_errorcode", None) == sqlite3.SQLITE_NOTADB:
            raise InvalidUrl(url.raw, f"{path} is not an SQLite database") from error
        raise RegistryUnavailable(f"{path}: {error}") from error
    except BaseException:
        connection.close()
        raise
    return connection


def _run_batch(connection: sqlite3.Connection, jobs: list[Job]) -> list[Outcome]:
    """Each job in its own write transaction: a registry writes little and rarely."""
    return [_run_job(connection, job) for job in jobs]


def _run_job(connection: sqlite3.Connection, job: Job) -> Outcome:
    try:
        begin_in_turn(connection, BUSY_TIMEOUT)
        try:
            result = job(connection)
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        return success(result)
    except EventcoreError as error:
        return failure(error)
    except sqlite3.Error as error:
        wrapped = RegistryUnavailable(f"SQLite registry: {error}")
        wrapped.__cause__ = error
        return failure(wrapped)


def _registry_path(url: RegistryUrl) -> str:
    if url.location == ":memory:" or url.location.startswith("file:"):
        # Every process would see a different database.
        raise InvalidUrl(url.raw, "expected a file path; for a throwaway registry use memory://")
    # Relative paths are taken against the current directory, once, at open time.
    return os.path.abspath(url.location)


class _Writes:
    """The lease tables' transactions, on the directory's thread (``leases.sqlite.Writes``)."""

    def __init__(self, thread: ConnectionThread[Job]) -> None:
        self._thread = thread

    async def write(self, body: Callable[[sqlite3.Connection], T]) -> T:
        try:
            future = self._thread.submit(body)
        except StoreClosed:
            raise RegistryClosed() from None
        result: T = await future
        return result


class SqliteDirectory:
    """Open with ``await SqliteDirectory.open(RegistryUrl.parse("sqlite:///path"))``."""

    def __init__(self, thread: ConnectionThread[Job]) -> None:
        self._thread = thread
        self._writes = _Writes(thread)
        self._leases = SqliteLeases(self._writes)
        self._closed = False

    @classmethod
    async def open(cls, url: RegistryUrl, *, create: bool = True) -> SqliteDirectory:
        """The registry file, created unless ``create`` is False (then a missing file is
        ``DatabaseNotFound``); a file of another kind is ``InvalidUrl``."""
        path = _registry_path(url)
        thread: ConnectionThread[Job] = ConnectionThread(
            f"eventcore-sqlite-registry:{os.path.basename(path)}",
            lambda: _connect(url, path, create=create),
            _run_batch,
            max_batch=16,
        )
        await thread.start()
        return cls(thread)

    def _check_open(self) -> None:
        if self._closed:
            raise RegistryClosed()

    async def announce(self, instance: Instance, ttl: float) -> None:
        self._check_open()
        # The lease first: a record is never listed without a live lease anyway, and an
        # instance whose lease exists is listed as soon as its record lands.
        await self._leases.heartbeat(instance.service, instance.instance_id, ttl)
        now = time.time()
        body = msgspec.json.encode(Record(instance, now, ttl))

        def put(connection: sqlite3.Connection) -> None:
            connection.execute(
                _Q["put"],
                (instance.service, instance.instance_id, body, now, now + STALE_AFTER * ttl),
            )
            connection.execute(_Q["sweep"], (now,))

        await self._writes.write(put)

    async def withdraw(self, instance: Instance) -> None:
        self._check_open()
        await self._leases.leave(instance.service, instance.instance_id)

        def remove(connection: sqlite3.Connection) -> None:
            connection.execute(_Q["remove"], (instance.service, instance.instance_id))

        await self._writes.write(remove)

    async def live(self, service: str) -> list[Instance]:
        self._check_open()
        members = set(await self._leases.members(service))

        def read(connection: sqlite3.Connection) -> list[bytes]:
            return [bytes(row[0]) for row in connection.execute(_Q["records"], (service,))]

        found: list[Instance] = []
        for raw in await self._writes.write(read):
            try:
                record = record_decoder.decode(raw)
            except msgspec.DecodeError:
                continue  # written by a newer eventcore, or damaged: not a usable instance
            if record.instance.instance_id in members:
                found.append(record.instance)
        return found

    async def listed(self) -> list[str]:
        self._check_open()

        def read(connection: sqlite3.Connection) -> list[str]:
            return [str(row[0]) for row in connection.execute(_Q["services"])]

        return [s for s in await self._writes.write(read) if await self._leases.members(s)]

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await self._thread.stop(within=_CLOSE_WITHIN)
