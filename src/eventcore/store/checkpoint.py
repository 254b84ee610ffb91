"""``Checkpoint``: a position in one store's global log, and which store's log it is.

A position alone says nothing about which log it counts. A relay's checkpoint lives in
the bus and a projection's in its target, and either can outlive the store it was
counted in: a service moved from SQLite to PostgreSQL, given a new schema, or started
on a wiped file keeps its bus and its views. Taken as a position in the new store, the
old checkpoint would skip that store's first events without a trace. So a checkpoint
keeps the store's id (``EventStore.store_id``) beside the position, and whoever resumes
from it asks ``counts`` first.
"""

from __future__ import annotations

import msgspec

from eventcore.errors import InvalidInput

__all__ = ["Checkpoint"]


class Checkpoint(msgspec.Struct, frozen=True, kw_only=True):
    """Everything up to ``position`` of the log of store ``store_id`` is done.

    ``store_id`` is None for a checkpoint saved before checkpoints kept their store
    (see ``counts`` for how such a legacy checkpoint is judged).
    """

    position: int
    store_id: str | None = None

    def __post_init__(self) -> None:
        position = self.position
        if isinstance(position, bool) or not isinstance(position, int) or position < 0:
            raise InvalidInput(f"a checkpoint's position is a whole number >= 0, got {position!r}")
        if self.store_id is not None and (not isinstance(self.store_id, str) or not self.store_id):
            raise InvalidInput(
                f"a checkpoint's store id is a non-empty string or None, got {self.store_id!r}"
            )

    def counts(self, store_id: str, head: int) -> bool:
        """Whether this can be a position in the log of store ``store_id``, whose newest
        position is ``head`` now.

        Not when it names another store; and not when it lies past the head, whatever it
        names: a log only grows, so a checkpoint beyond it was counted in another log (or
        in this one before it lost its tail: restored from an older copy, or a commit not
        yet on disk at a power cut), and the positions between will be taken by events
        it has never seen. A legacy checkpoint (no store id) is taken as this store's up
        to the head — there is nothing to tell it apart from one counted here — and is
        proof of another log above it.
        """
        return self.store_id in (None, store_id) and self.position <= head
