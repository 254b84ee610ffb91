"""The read side: follow stores' global logs into checkpointed projections.

* ``LogFollower`` — one store's log from a checkpoint: catch up, then live;
* ``Projection`` and ``@handles`` — what a view is made of;
* targets — where its state and checkpoints live: ``SqliteTarget``, ``PostgresTarget``
  (one transaction per batch: effectively once) and ``MemoryTarget``;
* ``ProjectionRunner`` — one projection from one or more sources;
* ``rebuild`` — a new version beside the live one, switched in when caught up.

``PostgresTarget`` is imported from ``eventcore.projection.postgres`` (it needs psycopg).
"""

from __future__ import annotations

from eventcore.projection.errors import (
    CheckpointMismatch,
    InvalidProjection,
    ProjectionError,
    ProjectionNotFound,
    VersionRetired,
)
from eventcore.projection.memory import MemoryTarget
from eventcore.projection.projection import Projection, handles
from eventcore.projection.rebuild import rebuild
from eventcore.projection.runner import ProjectionRunner, ProjectionStatus, Source, SourceStatus
from eventcore.projection.sqlite import SqliteTarget
from eventcore.projection.target import Batch, SourceProgress, Target, VersionInfo
from eventcore.projection.transaction import MemoryTransaction, SqlTransaction
from eventcore.store.follower import Lag, LogFollower

__all__ = [
    "Batch",
    "CheckpointMismatch",
    "InvalidProjection",
    "Lag",
    "LogFollower",
    "MemoryTarget",
    "MemoryTransaction",
    "Projection",
    "ProjectionError",
    "ProjectionNotFound",
    "ProjectionRunner",
    "ProjectionStatus",
    "Source",
    "SourceProgress",
    "SourceStatus",
    "SqlTransaction",
    "SqliteTarget",
    "Target",
    "VersionInfo",
    "VersionRetired",
    "handles",
    "rebuild",
]
