"""An eventcore SQLite file: opening it, and which kind of file it is — an event store, a
message bus, a projection target or a service registry. Every opener (``connect_file``,
then ``claim``) checks the kind before it writes anything, so a file of one kind is never
migrated into a mix of two (``--bus events.db`` once created bus tables inside an event store).

A file says its kind in the SQLite header's ``application_id``, stamped when the file is
created. Files written before the stamp existed hold 0 there and are recognised by their
tables; the first opener allowed to write stamps them. A file that holds two kinds' tables
(possible only before the stamp) stays unstamped and opens as either, as it always did.

An opener with ``create=False`` only looks: it never stamps, and an empty file is
``DatabaseNotFound`` rather than a new one.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import msgspec

from eventcore._sqlite.turns import FileConnection
from eventcore.errors import DatabaseNotFound, InvalidUrl

__all__ = [
    "BUS",
    "KINDS",
    "REGISTRY",
    "STORE",
    "TARGET",
    "FileKind",
    "claim",
    "connect_file",
    "immediate",
]


class FileKind(msgspec.Struct, frozen=True):
    #: How errors name a file of this kind ("an event store").
    noun: str
    #: The same, bare ("event store").
    name: str
    #: The header stamp; each kind's spells four letters ("ECST", "ECBU", "ECPT", "ECRG").
    application_id: int
    #: Tables that only a file of this kind has: how an unstamped file is recognised.
    tables: frozenset[str]


STORE: Final = FileKind(
    "an event store", "event store", 0x45435354, frozenset({"events", "streams"})
)
BUS: Final = FileKind(
    "a message bus", "message bus", 0x45434255, frozenset({"bus_messages", "bus_topics"})
)
TARGET: Final = FileKind(
    "a projection target", "projection target", 0x45435054, frozenset({"eventcore_projections"})
)
REGISTRY: Final = FileKind(
    "a service registry", "service registry", 0x45435247, frozenset({"registry_instances"})
)
KINDS: Final = (STORE, BUS, TARGET, REGISTRY)


def connect_file(
    path: str, *, url: str, create: bool, busy_timeout: float, cached_statements: int
) -> sqlite3.Connection:
    """A connection to the file at ``path`` (absolute), in autocommit mode: the opener
    issues BEGIN and COMMIT itself, so it alone decides what one transaction holds.
    The file is created only if ``create``; else a missing one is ``DatabaseNotFound``.
    ``url`` is how errors name the file."""
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        raise InvalidUrl(url, f"directory {directory} does not exist")
    exists = os.path.exists(path)
    if exists and not os.path.isfile(path):
        raise InvalidUrl(url, f"{path} is not a file")
    if not exists and not create:
        raise DatabaseNotFound(url, f"no such file: {path}")
    uri = f"{Path(path).as_uri()}?mode={'rwc' if create else 'rw'}"
    try:
        return sqlite3.connect(
            uri,
            uri=True,
            timeout=busy_timeout,
            isolation_level=None,
            cached_statements=cached_statements,
            factory=FileConnection,
        )
    except sqlite3.Error as error:
        raise InvalidUrl(url, f"cannot open {path}: {error}") from error


@contextlib.contextmanager
def immediate(connection: sqlite3.Connection) -> Iterator[None]:
    """One ``BEGIN IMMEDIATE … COMMIT`` transaction (rolled back if the block raises):
    the write lock is taken first, so what the block reads stays true until commit."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise


def claim(connection: sqlite3.Connection, kind: FileKind, *, url: str, create: bool) -> None:
    """Refuse a file that is not of ``kind`` and, when ``create``, stamp a new (or
    unstamped) one as ``kind``. Runs before anything else writes to the file; the
    connection must be in autocommit mode. Raises ``InvalidUrl`` for a file of another
    kind and ``DatabaseNotFound`` for an empty one that may not be created."""
    if not _needs_stamp(connection, kind, url, create=create) or not create:
        return
    with immediate(connection):
        # Again under the write lock: another process may have claimed the file meanwhile.
        if _needs_stamp(connection, kind, url, create=True):
            connection.execute(f"PRAGMA application_id = {kind.application_id}")


def _needs_stamp(connection: sqlite3.Connection, kind: FileKind, url: str, *, create: bool) -> bool:
    """Whether the file may be opened as ``kind`` but is not stamped as one yet."""
    stamp = int(connection.execute("PRAGMA application_id").fetchone()[0])
    if stamp == kind.application_id:
        return False
    if stamp != 0:
        owner = next((each for each in KINDS if each.application_id == stamp), None)
        what = owner.noun if owner is not None else f"not an eventcore file ({stamp:#x})"
        raise InvalidUrl(url, f"the file is {what}, not {kind.noun}")
    tables = {
        row[0]
        for row in connection.execute(
            "SELECT name FROM sqlite_master"
            " WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
        )
    }
    present = [each for each in KINDS if each.tables <= tables]
    if kind in present:
        # An unstamped file of two kinds is stamped as neither.
        return len(present) == 1
    if present:
        nouns = " and ".join(each.noun for each in present)
        raise InvalidUrl(url, f"the file is {nouns}, not {kind.noun}")
    if tables:
        raise InvalidUrl(url, f"the file holds other tables than {kind.noun}'s ({len(tables)})")
    if not create:
        raise DatabaseNotFound(url, f"the file is empty: not {kind.noun} yet")
    return True
