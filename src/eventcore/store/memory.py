"""The in-memory event store: a real backend for unit tests and throwaway runs.

Every method runs without awaiting in the middle, so on one event loop each append
is atomic by construction; no lock is needed.
"""

from __future__ import annotations

import asyncio
import bisect
import uuid
from collections.abc import AsyncIterator, Collection
from datetime import UTC, datetime

import msgspec

from eventcore.errors import ConcurrencyConflict, DuplicateEventId
from eventcore.instrumentation import Hooks, resolve
from eventcore.store._front import StoreFront
from eventcore.store._head_signal import HeadSignal
from eventcore.store.protocol import AppendResult
from eventcore.store.request import DEFAULT_MAX_PAYLOAD_BYTES, AppendRequest
from eventcore.types import EventId, StoredEvent, StreamHead, StreamId

__all__ = ["MemoryStore"]


class MemoryStore(StoreFront):
    backend = "memory"

    def __init__(
        self, *, max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES, hooks: Hooks | None = None
    ) -> None:
        self._max_payload_bytes = max_payload_bytes
        self._hooks = resolve(hooks)
        self._log: list[StoredEvent] = []
        self._streams: dict[StreamId, list[StoredEvent]] = {}
        self._event_ids: set[EventId] = set()
        self._idempotency: dict[str, AppendResult] = {}
        self._head = HeadSignal()
        self._closed = False
        # Every MemoryStore is a log of its own, gone with the object.
        self._store_id = str(uuid.uuid4())

    async def _append(self, request: AppendRequest) -> AppendResult:
        return self._commit(request)

    def _commit(self, request: AppendRequest) -> AppendResult:
        if request.idempotency_key is not None:
            earlier = self._idempotency.get(request.idempotency_key)
            if earlier is not None:
                return earlier
        for stream_id, version in request.expected:
            actual = len(self._streams.get(stream_id, ()))
            if actual != version:
                raise ConcurrencyConflict(stream_id, version, actual)
        for _, events in request.writes:
            for event in events:
                if event.event_id in self._event_ids:
                    raise DuplicateEventId(event.event_id, already_stored=True)
        # Every check has passed; from here on nothing can fail, so the append is atomic.
        now = datetime.now(UTC)
        versions: dict[str, int] = {}
        positions: list[int] = []
        event_ids: list[EventId] = []
        for stream_id, events in request.writes:
            stream = self._streams.setdefault(stream_id, [])
            for event in events:
                stored = StoredEvent(
                    position=len(self._log) + 1,
                    stream_id=stream_id,
                    version=len(stream) + 1,
                    event_id=event.event_id,
                    type=event.type,
                    schema_version=event.schema_version,
                    data=event.data,
                    metadata=event.metadata,
                    recorded_at=now,
                )
                self._log.append(stored)
                stream.append(stored)
                self._event_ids.add(event.event_id)
                positions.append(stored.position)
                event_ids.append(event.event_id)
            versions[stream_id] = len(stream)
        result = AppendResult(
            stream_versions=versions, positions=tuple(positions), event_ids=tuple(event_ids)
        )
        if request.idempotency_key is not None:
            self._idempotency[request.idempotency_key] = msgspec.structs.replace(
                result, deduplicated=True
            )
        self._head.advance(len(self._log))
        return result

    async def find_append(self, idempotency_key: str) -> AppendResult | None:
        self._check_open()
        return self._idempotency.get(idempotency_key)

    async def _read_stream(self, stream_id: StreamId, from_version: int) -> list[StoredEvent]:
        return list(self._streams.get(stream_id, ())[max(from_version, 1) - 1 :])

    async def _read_all(
        self, after: int, types: Collection[str] | None, batch_size: int, limit: int | None
    ) -> AsyncIterator[list[StoredEvent]]:
        self._check_open()
        wanted = frozenset(types) if types is not None else None
        remaining = limit
        index = max(after, 0)  # position p lives at index p - 1
        while remaining is None or remaining > 0:
            size = batch_size if remaining is None else min(batch_size, remaining)
            batch: list[StoredEvent] = []
            while index < len(self._log) and len(batch) < size:
                event = self._log[index]
                index += 1
                if wanted is None or event.type in wanted:
                    batch.append(event)
            if not batch:
                return
            if remaining is not None:
                remaining -= len(batch)
            yield batch
            # Let other tasks run between batches, as a real backend would.
            await asyncio.sleep(0)

    async def stream_version(self, stream_id: StreamId) -> int:
        self._check_open()
        return len(self._streams.get(StreamId(stream_id), ()))

    async def list_streams(
        self, *, after: StreamId | None = None, limit: int = 100
    ) -> list[StreamHead]:
        self._check_open()
        names = sorted(self._streams)
        start = bisect.bisect_right(names, after) if after is not None else 0
        return [
            StreamHead(
                stream_id=name,
                version=len(self._streams[name]),
                last_position=self._streams[name][-1].position,
            )
            for name in names[start : start + limit]
        ]

    async def store_id(self) -> str:
        self._check_open()
        return self._store_id

    async def last_position(self) -> int:
        self._check_open()
        return len(self._log)

    async def settled_position(self) -> int:
        # Appends commit whole and in position order: the head is final.
        return await self.last_position()

    async def wait_for_events(self, after: int, timeout: float) -> bool:  # noqa: ASYNC109
        self._check_open()
        return await self._head.wait(after, timeout)

    async def aclose(self) -> None:
        self._closed = True
        self._head.close()
