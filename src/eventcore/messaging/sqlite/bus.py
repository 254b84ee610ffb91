"""``SqliteBus``: the embedded default bus, one SQLite file per machine.

``sqlite:///path/bus.db`` is shared safely by every process on the machine: the
file is in WAL mode with ``synchronous=FULL`` (an accepted publish survives a power
cut; claims, acks and lease renewals commit without a sync of their own, see
``_thread.Light``; the jobs one wake-up of the worker takes share one transaction),
every write is one ``BEGIN IMMEDIATE`` transaction that waits out another process's
lock, and leases expire by the wall clock all processes share.

No ``sqlite3`` call runs on the event loop: each bus has one worker thread that owns
its connection (``_thread``). Tables and migrations: ``_schema``;
publishing and group progress: ``_log``; consumers:
``_consumer``; leases: ``eventcore.leases.sqlite``; dead letters: ``_letters``.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable, Sequence
from typing import TypeVar

from eventcore.errors import InvalidInput, InvalidUrl
from eventcore.leases.sqlite import SqliteLeases
from eventcore.messaging._backend import BusFront
from eventcore.messaging.assignment import PartitionAssignment
from eventcore.messaging.bus import OutgoingMessage
from eventcore.messaging.sqlite import _log as log
from eventcore.messaging.sqlite._consumer import SqliteConsumer
from eventcore.messaging.sqlite._letters import SqliteDeadLetterBox
from eventcore.messaging.sqlite._schema import connect
from eventcore.messaging.sqlite._thread import Worker, write
from eventcore.messaging.url import BusUrl
from eventcore.redaction import redact
from eventcore.store.checkpoint import Checkpoint

__all__ = ["DEFAULT_LEASE_TTL", "SqliteBus", "SqliteConsumer"]

#: Seconds a member's claim on a partition lives without renewal.
DEFAULT_LEASE_TTL = 10.0

T = TypeVar("T")


class _Writes:
    """The leases' write transactions, run by the bus's worker on the bus file (whose
    schema holds the lease tables)."""

    def __init__(self, worker: Worker) -> None:
        self._worker = worker

    async def write(self, body: Callable[[sqlite3.Connection], T]) -> T:
        # Lease claims and renewals: a power cut loses at most a renewal, and every
        # member claims afresh after one anyway.
        return await self._worker.run(lambda connection: write(connection, body), durable=False)


class SqliteBus(BusFront[SqliteConsumer, SqliteDeadLetterBox]):
    """Open with ``await SqliteBus.open(BusUrl.parse("sqlite:///path/bus.db"))`` (or
    ``open_bus``). ``lease_ttl`` is how long a member's claim on a partition lives
    without renewal: how soon others take over from a member that died."""

    def __init__(self, url: BusUrl, worker: Worker, *, lease_ttl: float) -> None:
        self._url = url
        self._worker = worker
        self._partitions = url.partitions
        self._lease_ttl = lease_ttl
        self._leases = SqliteLeases(_Writes(worker), on_change=self._wake)
        self._dead_letters = SqliteDeadLetterBox(worker)
        self._consumers: set[SqliteConsumer] = set()
        self._closed = False

    @classmethod
    async def open(
        cls, url: BusUrl, *, create: bool = True, lease_ttl: float = DEFAULT_LEASE_TTL
    ) -> SqliteBus:
        """Open the bus file, creating it unless ``create`` is False (then a missing
        file is ``DatabaseNotFound`` and nothing is written). A file that is no SQLite
        database, or one of another kind (an event store), is ``InvalidUrl``
        too; a schema newer than this eventcore is ``BusUnavailable``."""
        if url.backend != "sqlite":
            raise InvalidUrl(url.raw, "not a sqlite:// URL")
        if not isinstance(lease_ttl, int | float) or not lease_ttl > 0:
            raise InvalidInput(f"lease_ttl must be positive, got {lease_ttl!r}")
        path = _bus_path(url)
        worker = Worker(
            f"eventcore-sqlite-bus:{os.path.basename(path)}",
            lambda: connect(url.raw, path, create=create),
        )
        await worker.start()
        return cls(url, worker, lease_ttl=float(lease_ttl))

    @property
    def url(self) -> str:
        return redact(self._url.raw)

    @property
    def leases(self) -> SqliteLeases:
        return self._leases

    async def _publish(self, messages: Sequence[OutgoingMessage]) -> None:
        batch = list(messages)
        partitions = self._partitions
        await self._worker.run(
            lambda connection: write(
                connection, lambda connection: log.publish(connection, batch, partitions)
            )
        )
        self._wake({message.topic for message in batch})

    def _wake(self, topics: set[str] | None = None) -> None:
        """Wake this process's waiting fetchers (of ``topics``, or all)."""
        for consumer in self._consumers:
            if topics is None or consumer.topic in topics:
                consumer.wake()

    async def _join(self, topic: str, group: str, member: str, ack_wait: float) -> SqliteConsumer:
        default = self._partitions
        count: int = await self._worker.run(
            lambda connection: write(
                connection, lambda connection: log.ensure_topic(connection, topic, default)
            )
        )
        assignment = PartitionAssignment(
            self._leases,
            scope=f"{group}:{topic}",
            member=member,
            partitions=count,
            ttl=self._lease_ttl,
        )
        consumer = SqliteConsumer(
            worker=self._worker,
            check_bus_open=self._check_open,
            on_close=self._consumers.discard,
            topic=topic,
            group=group,
            partition_count=count,
            assignment=assignment,
            ack_wait=ack_wait,
        )
        self._consumers.add(consumer)
        try:
            await consumer._join()
        except BaseException:
            self._consumers.discard(consumer)
            raise
        return consumer

    async def _load_checkpoint(self, name: str) -> Checkpoint | None:
        def body(connection: sqlite3.Connection) -> Checkpoint | None:
            row = connection.execute(
                "SELECT position, store_id FROM bus_checkpoints WHERE name = ?", (name,)
            ).fetchone()
            return None if row is None else Checkpoint(position=int(row[0]), store_id=row[1])

        checkpoint: Checkpoint | None = await self._worker.run(body)
        return checkpoint

    async def _save_checkpoint(self, name: str, checkpoint: Checkpoint) -> None:
        def body(connection: sqlite3.Connection) -> None:
            connection.execute(
                "INSERT INTO bus_checkpoints (name, position, store_id) VALUES (?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE"
                " SET position = excluded.position, store_id = excluded.store_id",
                (name, checkpoint.position, checkpoint.store_id),
            )

        await self._worker.run(lambda connection: write(connection, body))

    async def aclose(self) -> None:
        if self._closed:
            return
        for consumer in list(self._consumers):
            # Closing goes on whatever one consumer's goodbye did; its leases expire anyway.
            with contextlib.suppress(Exception):
                await consumer.aclose()
        self._closed = True
        await self._worker.stop()


def _bus_path(url: BusUrl) -> str:
    if url.location == ":memory:" or url.location.startswith("file:"):
        # Every process (and every bus object) would see a different database.
        raise InvalidUrl(url.raw, "expected a file path; for a throwaway bus use memory://")
    # Relative paths are taken against the current directory, once, at open time.
    return os.path.abspath(url.location)
