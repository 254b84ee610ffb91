"""Where the SQLite file is, how to open it, and the connection settings every role needs.

``SqliteConfig.from_url`` checks everything that can be checked without touching the
file. The ``connect_*`` functions run on the connection's own thread (they block).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from typing import Final

import msgspec

from eventcore._sqlite.file import STORE, claim, connect_file
from eventcore.errors import InvalidUrl, StoreUnavailable
from eventcore.store.sqlite._schema import check_current, migrate
from eventcore.store.url import StoreUrl

__all__ = ["KNOWN_OPTIONS", "SqliteConfig", "connect_reader", "connect_writer"]

KNOWN_OPTIONS: Final = {"synchronous", "max_payload_bytes"}
_SYNCHRONOUS: Final = ("FULL", "NORMAL", "OFF")
#: Several processes may share a file; a writer waits this long for another's lock.
DEFAULT_BUSY_TIMEOUT: Final = 5.0
#: Page cache per connection, in KiB (a negative ``cache_size`` means KiB to SQLite).
#: The writer's keeps the hot parts of the indexes it updates (event ids, stream heads);
#: a reader mostly streams through the log once, which the OS page cache serves, so a
#: small one keeps memory flat while replaying a long log.
_WRITER_CACHE_KIB: Final = 16 * 1024
_READER_CACHE_KIB: Final = 4 * 1024


class SqliteConfig(msgspec.Struct, frozen=True, kw_only=True):
    url: str
    path: str
    synchronous: str
    create: bool
    busy_timeout: float = DEFAULT_BUSY_TIMEOUT

    @classmethod
    def from_url(cls, parsed: StoreUrl, *, create: bool) -> SqliteConfig:
        parsed.reject_unknown_options(KNOWN_OPTIONS)
        synchronous = parsed.option("synchronous", "FULL").upper()
        if synchronous not in _SYNCHRONOUS:
            raise InvalidUrl(
                parsed.raw,
                f"option synchronous={parsed.options['synchronous']!r} is not one of "
                f"{', '.join(_SYNCHRONOUS)}",
            )
        if parsed.path == ":memory:" or parsed.path.startswith("file:"):
            # Each of the store's connections would see a different database.
            raise InvalidUrl(
                parsed.raw, "expected a file path; for a throwaway store use memory://"
            )
        # Relative paths are taken against the current directory, once, at open time.
        path = os.path.abspath(parsed.path)
        return cls(url=parsed.raw, path=path, synchronous=synchronous, create=create)


def connect_writer(config: SqliteConfig) -> sqlite3.Connection:
    """The one connection that writes: checks the file is a store, creates it if allowed,
    sets WAL, migrates (or, with ``create=False``, checks that nothing needs migrating)."""
    connection = _open(config, config.create, _WRITER_CACHE_KIB)
    try:
        with _translated(config):
            # Before anything writes: a file of another kind is refused untouched.
            claim(connection, STORE, url=config.url, create=config.create)
            mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreUnavailable(
                    f"{config.path}: SQLite refused write-ahead logging (journal_mode={mode})"
                )
            connection.execute(f"PRAGMA synchronous = {config.synchronous}")
            if config.create:
                migrate(connection)
            else:
                check_current(connection, config.url)
    except BaseException:
        connection.close()
        raise
    return connection


def connect_reader(config: SqliteConfig) -> sqlite3.Connection:
    """A read-only connection; WAL lets it read while the writer writes."""
    connection = _open(config, False, _READER_CACHE_KIB)
    try:
        with _translated(config):
            # Belt and braces: nothing on a reader's thread may ever write.
            connection.execute("PRAGMA query_only = ON")
    except BaseException:
        connection.close()
        raise
    return connection


def _open(config: SqliteConfig, create: bool, cache_kib: int) -> sqlite3.Connection:
    connection = connect_file(
        config.path,
        url=config.url,
        create=create,
        busy_timeout=config.busy_timeout,
        cached_statements=256,
    )
    try:
        with _translated(config):
            connection.execute(f"PRAGMA busy_timeout = {int(config.busy_timeout * 1000)}")
            connection.execute(f"PRAGMA cache_size = -{cache_kib}")
    except BaseException:
        connection.close()
        raise
    return connection


@contextlib.contextmanager
def _translated(config: SqliteConfig) -> Iterator[None]:
    """Turns a driver error while setting up a connection into one of ours."""
    try:
        yield
    except sqlite3.Error as error:
        if getattr(error, "sqlite_errorcode", None) == sqlite3.SQLITE_NOTADB:
            raise InvalidUrl(config.url, f"{config.path} is not an SQLite database") from error
        raise StoreUnavailable(f"{config.path}: {error}") from error
