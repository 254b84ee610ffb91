"""The front every store backend shares: ``append``, ``read_stream`` and ``read_all``
refuse a closed store and bad input the same way on every backend, and report to the
hooks seam, before handing the backend its own part (the ``_``-named methods).

Without hooks the seam costs one ``is not None`` per call: records are built and times
taken only in ``_observed``, when a hook is installed.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from typing import ClassVar

from eventcore._closing import Closing
from eventcore.errors import StoreClosed
from eventcore.instrumentation import FanOut, Hooks, resolve
from eventcore.store._observed import announce_connections, observe_append, observe_read
from eventcore.store.protocol import AppendResult
from eventcore.store.request import AppendRequest
from eventcore.types import NewEvent, StoredEvent, StreamId

__all__ = ["StoreFront"]


class StoreFront(Closing):
    #: The backend's name in the hooks' records ("memory", "sqlite", "postgresql").
    backend: ClassVar[str]

    _closed: bool
    _hooks: FanOut | None
    _max_payload_bytes: int

    def use_hooks(self, hooks: Hooks | None) -> None:
        """Call ``hooks`` from now on (None: the process default; ``NO_HOOKS``: none)."""
        old, self._hooks = self._hooks, resolve(hooks)
        if not self._closed and self._connections() is not None:
            announce_connections(old, self._hooks, self.backend, self, self._connections)

    def _connections(self) -> int | None:
        """The connections the store holds open now, read when a hook asks (a scrape);
        None for a backend that holds none."""
        return None

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed()

    async def append(
        self,
        writes: Mapping[StreamId, Sequence[NewEvent]],
        *,
        expected: Mapping[StreamId, int],
        idempotency_key: str | None = None,
    ) -> AppendResult:
        self._check_open()
        request = AppendRequest.build(writes, expected, idempotency_key, self._max_payload_bytes)
        if self._hooks is not None:
            return await observe_append(self._hooks, self.backend, request, self._append)
        return await self._append(request)

    async def read_stream(self, stream_id: StreamId, *, from_version: int = 1) -> list[StoredEvent]:
        self._check_open()
        # Validated here, before any backend queues it: a bad id fails its caller alone.
        stream_id = StreamId(stream_id)
        if self._hooks is not None:
            return await observe_read(
                self._hooks, self.backend, stream_id, from_version, self._read_stream
            )
        return await self._read_stream(stream_id, from_version)

    def read_all(
        self,
        *,
        after: int = 0,
        types: Collection[str] | None = None,
        batch_size: int = 1000,
        limit: int | None = None,
    ) -> AsyncIterator[list[StoredEvent]]:
        return self._read_all(after, types, batch_size, limit)

    @abstractmethod
    async def _append(self, request: AppendRequest) -> AppendResult:
        """Commit ``request`` (checked, the store open)."""

    @abstractmethod
    async def _read_stream(self, stream_id: StreamId, from_version: int) -> list[StoredEvent]:
        """The events of ``stream_id`` from ``from_version`` (the id checked, the store open)."""

    @abstractmethod
    def _read_all(
        self, after: int, types: Collection[str] | None, batch_size: int, limit: int | None
    ) -> AsyncIterator[list[StoredEvent]]:
        """``read_all``'s batches; an async generator that checks the store is open when
        first iterated."""
