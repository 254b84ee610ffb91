"""Where a projection's state and checkpoints live: the ``Target`` protocol.

A target keeps, per projection name, its versions (one ``live``, at most a few being
``building`` beside it, ``retired`` ones kept on request) and, per (name, version,
source), a checkpoint: the last position of that source whose effects are in the state.

``commit`` applies one batch and moves its checkpoint. SQL targets do both in one
transaction (effectively once, whatever kills the process); the memory target keeps
state and checkpoint in the process (at least once for effects elsewhere). A batch
names the checkpoint it was read after, and is refused unless that is still the stored
one, so two runners that overlap on one projection (a leader that has not yet noticed
its lease ran out, see ``eventcore.singleton``) can never both apply an event.

A checkpoint keeps the id of the store whose log it counts (``Checkpoint.store_id``,
written with each batch), so that a runner pointed at another store finds out instead
of skipping that store's first events (``CheckpointMismatch``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec

from eventcore.events import EventRegistry
from eventcore.projection.projection import Handler, Projection
from eventcore.store.checkpoint import Checkpoint
from eventcore.types import StoredEvent

__all__ = [
    "BUILDING",
    "LIVE",
    "RETIRED",
    "Batch",
    "SourceProgress",
    "Target",
    "VersionInfo",
    "apply_batch",
]

LIVE = "live"
BUILDING = "building"
RETIRED = "retired"


@dataclass(frozen=True, slots=True)
class Batch:
    """Events of one source to apply, with what it takes to apply them."""

    source: str
    events: list[StoredEvent]
    handlers: Mapping[str, Handler]
    registry: EventRegistry
    #: Events per second the source has been processed at lately (kept for status).
    events_per_second: float = 0.0
    #: The id of the store the events come from, kept with the checkpoint (None: unknown).
    store_id: str | None = None
    #: The checkpoint the events were read after (0: from the start). ``commit`` refuses
    #: the batch with ``CheckpointMoved`` unless it is still the one stored: the fence
    #: that keeps two runners of one projection from applying an event twice. None:
    #: not checked (a caller that owns the target alone).
    after: int | None = None

    @property
    def position(self) -> int:
        return self.events[-1].position


class VersionInfo(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    version: int
    state: str
    tables: tuple[str, ...]
    created_at: float


class SourceProgress(msgspec.Struct, frozen=True, kw_only=True):
    """A checkpoint as the target stores it."""

    name: str
    version: int
    source: str
    position: int
    events: int
    events_per_second: float
    updated_at: float
    #: The store whose log ``position`` counts; None if saved before checkpoints kept it.
    store_id: str | None = None


def apply_batch(tx: Any, batch: Batch) -> None:
    """Decode each event and call its handler: the inner loop of every target."""
    decode = batch.registry.decode
    handlers = batch.handlers
    for stored in batch.events:
        handler = handlers.get(stored.type)
        if handler is not None:
            handler(tx, decode(stored), stored)


class Target(Protocol):
    async def live_version(self, projection: Projection) -> int:
        """The live version, created (set up, made live) when there is none."""
        ...

    async def new_version(self, projection: Projection) -> int:
        """A new version beside the live one, set up and ``building``."""
        ...

    async def checkpoints(self, name: str, version: int) -> dict[str, Checkpoint]:
        """Source name → the last position applied to this version, and its store."""
        ...

    async def bind_checkpoint(self, name: str, version: int, source: str, store_id: str) -> None:
        """Bind ``source``'s checkpoint of ``version``, saved without a store id, to
        ``store_id`` (its position stays). Nothing if it has a store id or there is none."""
        ...

    async def commit(self, projection: Projection, version: int, batch: Batch) -> None:
        """Apply ``batch`` to ``version`` and move its checkpoint.

        Raises ``VersionRetired`` (writing nothing) when the version is neither live nor
        building any more, and ``CheckpointMoved`` (writing nothing) when ``batch.after``
        is given and the source's stored checkpoint is another position: checked in the
        batch's own transaction, and held against other writers of the version until it
        commits.
        """
        ...

    async def switch(self, projection: Projection, version: int, *, keep_old: bool) -> None:
        """Make ``version`` live and retire the old one, atomically; drop the old
        versions unless ``keep_old``."""
        ...

    async def reset(self, name: str) -> None:
        """Forget every version of ``name``: state and checkpoints. A runner still on it
        starts over on a fresh version."""
        ...

    async def versions(self, name: str | None = None) -> list[VersionInfo]: ...

    async def progress(self, name: str | None = None) -> list[SourceProgress]: ...

    async def aclose(self) -> None: ...
