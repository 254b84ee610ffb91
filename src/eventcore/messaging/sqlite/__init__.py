"""The SQLite message bus: one file shared by the processes of one machine."""

from eventcore.messaging.sqlite.bus import DEFAULT_LEASE_TTL, SqliteBus, SqliteConsumer

__all__ = ["DEFAULT_LEASE_TTL", "SqliteBus", "SqliteConsumer"]
