"""Helpers that read a whole store back, for the contract's assertions."""

from __future__ import annotations

from typing import Any

import msgspec

from eventcore.store import EventStore
from eventcore.types import StoredEvent, StreamHead


async def read_log(store: EventStore, **options: Any) -> list[StoredEvent]:
    """The global log (or the part ``options`` select), flattened."""
    return [event async for batch in store.read_all(**options) for event in batch]


async def all_heads(store: EventStore) -> list[StreamHead]:
    """Every stream head, paging through ``list_streams``."""
    heads: list[StreamHead] = []
    after = None
    while page := await store.list_streams(after=after, limit=100):
        # A page that does not start past ``after`` would make this loop forever.
        assert after is None or page[0].stream_id > after, f"list_streams repeated {after!r}"
        heads.extend(page)
        after = page[-1].stream_id
    return heads


class Snapshot(msgspec.Struct, frozen=True):
    """Everything a reader can see; two equal snapshots mean nothing was written between."""

    last_position: int
    heads: list[StreamHead]
    log: list[StoredEvent]
    streams: dict[str, list[StoredEvent]]


async def snapshot(store: EventStore) -> Snapshot:
    heads = await all_heads(store)
    return Snapshot(
        last_position=await store.last_position(),
        heads=heads,
        log=await read_log(store),
        streams={head.stream_id: await store.read_stream(head.stream_id) for head in heads},
    )
