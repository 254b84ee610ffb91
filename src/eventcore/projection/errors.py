"""Errors of the read side, under the tree drawn in ``eventcore.errors``::

    EventcoreError
    ├── InvalidInput
    │   └── InvalidProjection        a projection class or handler is wrong; fix the code
    ├── NotFound
    │   └── ProjectionNotFound       no such projection (or version) in the target
    └── ProjectionError
        ├── VersionRetired           another version went live; follow the live one
        ├── CheckpointMismatch       the view was built from another log; rebuild it
        └── CheckpointMoved          another runner wrote the same source meanwhile

They live here rather than in ``eventcore.errors`` because only the read side raises
them; each still derives from the one root.
"""

from __future__ import annotations

from eventcore.errors import EventcoreError, InvalidInput, NotFound
from eventcore.store.checkpoint import Checkpoint

__all__ = [
    "CheckpointMismatch",
    "CheckpointMoved",
    "InvalidProjection",
    "ProjectionError",
    "ProjectionNotFound",
    "VersionRetired",
]


class InvalidProjection(InvalidInput):
    """A projection's declaration is wrong (name, tables, handlers)."""


class ProjectionNotFound(NotFound):
    def __init__(self, name: str, version: int | None = None) -> None:
        self.name = name
        self.version = version
        what = f"projection {name!r}" + ("" if version is None else f" version {version}")
        super().__init__(f"{what} is not in the target")


class ProjectionError(EventcoreError):
    """The read side could not go on as asked."""


class VersionRetired(ProjectionError):
    """A batch was for a version that is no longer live or being built.

    Nothing of the batch was written. The runner reloads the live version and carries
    on from its checkpoints: this is how a rebuild takes over from the old version.
    """

    def __init__(self, name: str, version: int) -> None:
        self.name = name
        self.version = version
        super().__init__(f"projection {name!r} version {version} was retired")


class CheckpointMismatch(ProjectionError):
    """A version's checkpoint of a source does not count the log of that source's store.

    The state holds the effects of another log's events (another store's, or of events
    this store no longer has), so continuing would mix two logs and skip this store's
    events up to the checkpoint; starting over would apply them on top of the other
    log's. Nothing was written. Rebuild the projection from this store
    (``eventcore.projection.rebuild``, or ``eventcore projections rebuild``): the new
    version starts from position 0 and replaces this one when it has caught up.
    """

    def __init__(
        self,
        name: str,
        version: int,
        source: str,
        checkpoint: Checkpoint,
        store_id: str,
        head: int,
    ) -> None:
        self.name = name
        self.version = version
        self.source = source
        self.checkpoint = checkpoint
        self.store_id = store_id
        self.head = head
        if checkpoint.store_id not in (None, store_id):
            why = (
                f"was built from store {checkpoint.store_id} (up to position"
                f" {checkpoint.position}), but source {source!r} is now store {store_id}"
            )
        else:
            saved = "" if checkpoint.store_id is not None else " (a checkpoint without a store id)"
            why = (
                f"has applied source {source!r} up to position {checkpoint.position}{saved},"
                f" but its store {store_id} holds events only up to position {head}"
            )
        super().__init__(
            f"projection {name!r} version {version} {why}: the view was built from another"
            " log; rebuild it from this store (eventcore.projection.rebuild, or"
            " `eventcore projections rebuild`)"
        )


class CheckpointMoved(ProjectionError):
    """A batch was read after position ``expected`` of ``source``, but the checkpoint
    stored when it came to commit was ``found``: another runner applied that source to
    this version meanwhile (an old leader that did not yet know its lease had run out,
    or two runners started where one was meant). Nothing of the batch was written, so
    no event is applied twice; ``ProjectionRunner`` logs it, reloads its checkpoints and
    goes on from the stored one.
    """

    def __init__(self, name: str, version: int, source: str, expected: int, found: int) -> None:
        self.name = name
        self.version = version
        self.source = source
        self.expected = expected
        self.found = found
        super().__init__(
            f"projection {name!r} version {version}: a batch of source {source!r} read after"
            f" position {expected} found the checkpoint at {found}: another runner is applying"
            " this source; nothing was written"
        )
