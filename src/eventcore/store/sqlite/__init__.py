"""The SQLite event store: one file, one writer thread, readers beside it."""

from eventcore.store.sqlite.store import SqliteStore

__all__ = ["SqliteStore"]
