"""Event stores: the contract and its backends, picked by URL."""

from __future__ import annotations

from eventcore.store.checkpoint import Checkpoint
from eventcore.store.protocol import AppendResult, EventStore
from eventcore.store.request import DEFAULT_MAX_PAYLOAD_BYTES
from eventcore.store.url import StoreUrl

__all__ = ["AppendResult", "Checkpoint", "EventStore", "StoreUrl", "open_store"]


async def open_store(
    url: str,
    *,
    create: bool = True,
    max_payload_bytes: int | None = None,
) -> EventStore:
    """Open the store a URL names (``memory://``, ``sqlite:///path.db``, ``postgresql://…``).

    ``create=False`` refuses to create a SQLite file that does not exist yet (for tools
    that only inspect). ``max_payload_bytes`` overrides the URL's option of that name.
    """
    parsed = StoreUrl.parse(url)
    limit = max_payload_bytes or parsed.int_option("max_payload_bytes", DEFAULT_MAX_PAYLOAD_BYTES)
    if parsed.backend == "memory":
        from eventcore.store.memory import MemoryStore

        parsed.reject_unknown_options({"max_payload_bytes"})
        return MemoryStore(max_payload_bytes=limit)
    if parsed.backend == "sqlite":
        from eventcore.store.sqlite import SqliteStore

        return await SqliteStore.open_url(parsed, create=create, max_payload_bytes=limit)
    from eventcore.store.postgres import PostgresStore

    store: EventStore = await PostgresStore.open_url(parsed, max_payload_bytes=limit)
    return store
