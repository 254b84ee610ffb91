"""``MemoryTarget``: projection state in the process, for tests and derived caches.

Handlers get a ``MemoryTransaction`` whose ``state`` dict belongs to the version; they
may be plain or ``async`` functions and run on the event loop. State and checkpoints
vanish with the process, so a restart rebuilds from the start of the log. The batch is
applied, then its checkpoint moves: a handler with effects outside (a search index, a
cache server) sees an event again after a failure — at least once — and uses
``stored.position`` to stay idempotent.
"""

from __future__ import annotations

import inspect
import time
from typing import Any

import msgspec

from eventcore.errors import StoreClosed
from eventcore.projection.errors import CheckpointMoved, ProjectionNotFound, VersionRetired
from eventcore.projection.projection import Projection
from eventcore.projection.target import (
    BUILDING,
    LIVE,
    RETIRED,
    Batch,
    SourceProgress,
    VersionInfo,
)
from eventcore.projection.transaction import MemoryTransaction
from eventcore.store.checkpoint import Checkpoint

__all__ = ["MemoryTarget"]


class MemoryTarget:
    def __init__(self) -> None:
        self._versions: dict[tuple[str, int], VersionInfo] = {}
        self._states: dict[tuple[str, int], dict[str, Any]] = {}
        self._checkpoints: dict[tuple[str, int, str], SourceProgress] = {}
        self._applying: set[tuple[str, int, str]] = set()
        self._closed = False

    def state(self, name: str, version: int | None = None) -> dict[str, Any]:
        """The state dict of ``version`` (the live one by default)."""
        if version is None:
            version = next(
                (v for (n, v), info in self._versions.items() if n == name and info.state == LIVE),
                None,
            )
        if version is None or (name, version) not in self._states:
            raise ProjectionNotFound(name, version)
        return self._states[(name, version)]

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed()

    def _create(self, projection: Projection, state: str) -> int:
        version = 1 + max((v for n, v in self._versions if n == projection.name), default=0)
        key = (projection.name, version)
        self._states[key] = {}
        projection.setup(MemoryTransaction(self._states[key], version))
        self._versions[key] = VersionInfo(
            name=projection.name,
            version=version,
            state=state,
            tables=projection.tables,
            created_at=time.time(),
        )
        return version

    async def live_version(self, projection: Projection) -> int:
        self._check_open()
        for (name, version), info in self._versions.items():
            if name == projection.name and info.state == LIVE:
                return version
        return self._create(projection, LIVE)

    async def new_version(self, projection: Projection) -> int:
        self._check_open()
        return self._create(projection, BUILDING)

    async def checkpoints(self, name: str, version: int) -> dict[str, Checkpoint]:
        self._check_open()
        return {
            source: Checkpoint(position=progress.position, store_id=progress.store_id)
            for (n, v, source), progress in self._checkpoints.items()
            if (n, v) == (name, version)
        }

    async def bind_checkpoint(self, name: str, version: int, source: str, store_id: str) -> None:
        self._check_open()
        progress = self._checkpoints.get((name, version, source))
        if progress is not None and progress.store_id is None:
            self._checkpoints[(name, version, source)] = msgspec.structs.replace(
                progress, store_id=store_id
            )

    async def commit(self, projection: Projection, version: int, batch: Batch) -> None:
        self._check_open()
        key = (projection.name, version)
        info = self._versions.get(key)
        if info is None or info.state == RETIRED:
            raise VersionRetired(projection.name, version)
        source = (*key, batch.source)
        done = self._checkpoints.get(source)
        if batch.after is not None:
            position = 0 if done is None else done.position
            # An async handler lets another commit of the source start meanwhile: the
            # one that is already applying wins, whatever the second one read.
            if position != batch.after or source in self._applying:
                raise CheckpointMoved(projection.name, version, batch.source, batch.after, position)
        self._applying.add(source)
        try:
            tx = MemoryTransaction(self._states[key], version)
            decode = batch.registry.decode
            for stored in batch.events:
                handler = batch.handlers.get(stored.type)
                if handler is not None:
                    outcome = handler(tx, decode(stored), stored)
                    if inspect.isawaitable(outcome):
                        await outcome
        finally:
            self._applying.discard(source)
        done = self._checkpoints.get(source)
        self._checkpoints[source] = SourceProgress(
            name=projection.name,
            version=version,
            source=batch.source,
            position=batch.position,
            events=(done.events if done else 0) + len(batch.events),
            events_per_second=batch.events_per_second,
            updated_at=time.time(),
            store_id=batch.store_id,
        )

    async def switch(self, projection: Projection, version: int, *, keep_old: bool) -> None:
        self._check_open()
        name = projection.name
        info = self._versions.get((name, version))
        if info is None or info.state == RETIRED:
            raise ProjectionNotFound(name, version)
        for (n, v), other in list(self._versions.items()):
            if n == name and other.state == LIVE:
                self._versions[(n, v)] = _with_state(other, RETIRED)
        self._versions[(name, version)] = _with_state(info, LIVE)
        if not keep_old:
            for (n, v), other in list(self._versions.items()):
                if n == name and other.state == RETIRED:
                    self._forget(n, v)

    async def reset(self, name: str) -> None:
        self._check_open()
        found = [v for n, v in self._versions if n == name]
        if not found:
            raise ProjectionNotFound(name)
        for version in found:
            self._forget(name, version)

    def _forget(self, name: str, version: int) -> None:
        self._versions.pop((name, version), None)
        self._states.pop((name, version), None)
        for key in [k for k in self._checkpoints if k[:2] == (name, version)]:
            del self._checkpoints[key]

    async def versions(self, name: str | None = None) -> list[VersionInfo]:
        self._check_open()
        return sorted(
            (i for i in self._versions.values() if name is None or i.name == name),
            key=lambda i: (i.name, i.version),
        )

    async def progress(self, name: str | None = None) -> list[SourceProgress]:
        self._check_open()
        return sorted(
            (p for p in self._checkpoints.values() if name is None or p.name == name),
            key=lambda p: (p.name, p.version, p.source),
        )

    async def aclose(self) -> None:
        self._closed = True


def _with_state(info: VersionInfo, state: str) -> VersionInfo:
    return VersionInfo(
        name=info.name,
        version=info.version,
        state=state,
        tables=info.tables,
        created_at=info.created_at,
    )
