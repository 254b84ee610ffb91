"""The PostgreSQL event store."""

from eventcore.store.postgres.store import PostgresConfig, PostgresStore, migrate

__all__ = ["PostgresConfig", "PostgresStore", "migrate"]
