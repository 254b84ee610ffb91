"""Event stores: the contract and its backends, picked by URL."""

from __future__ import annotations

from eventcore.errors import DatabaseNotFound, MissingDependency
from eventcore.instrumentation import Hooks
from eventcore.store.checkpoint import Checkpoint
from eventcore.store.protocol import AppendResult, EventStore
from eventcore.store.request import DEFAULT_MAX_PAYLOAD_BYTES
from eventcore.store.url import StoreUrl

__all__ = ["AppendResult", "Checkpoint", "EventStore", "StoreUrl", "open_store"]

_MEMORY_IS_NEW = "a memory:// store lives in the process that opened it: each open is a new one"


async def open_store(
    url: str,
    *,
    create: bool = True,
    max_payload_bytes: int | None = None,
    hooks: Hooks | None = None,
) -> EventStore:
    """Open the store a URL names (``memory://``, ``sqlite:///path.db``, ``postgresql://…``).

    ``create=False`` is for tools that only look: opening then creates and migrates
    nothing (no SQLite file, no PostgreSQL schema or table). A store that is not there is
    ``DatabaseNotFound``; a file of another kind (a bus, a projection target) is refused.
    ``max_payload_bytes`` overrides the URL's option of that name. A backend whose driver
    is not installed is ``MissingDependency``, which names the extra to install.
    ``hooks``: the instrumentation the store calls (``eventcore.instrumentation``); by
    default the process default's.
    """
    parsed = StoreUrl.parse(url)
    limit = max_payload_bytes or parsed.int_option("max_payload_bytes", DEFAULT_MAX_PAYLOAD_BYTES)
    if parsed.backend == "memory":
        from eventcore.store.memory import MemoryStore

        parsed.reject_unknown_options({"max_payload_bytes"})
        if not create:
            raise DatabaseNotFound(url, _MEMORY_IS_NEW)
        return MemoryStore(max_payload_bytes=limit, hooks=hooks)
    if parsed.backend == "sqlite":
        from eventcore.store.sqlite import SqliteStore

        sqlite = await SqliteStore.open_url(parsed, create=create, max_payload_bytes=limit)
        if hooks is not None:
            sqlite.use_hooks(hooks)
        return sqlite
    try:
        from eventcore.store.postgres import PostgresStore
    except ImportError as error:
        raise MissingDependency.of(error, "postgresql:// stores") from error

    postgres = await PostgresStore.open_url(parsed, max_payload_bytes=limit, create=create)
    if hooks is not None:
        postgres.use_hooks(hooks)
    store: EventStore = postgres
    return store
