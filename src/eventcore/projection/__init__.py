"""The read side: follow stores' global logs into checkpointed projections.

* ``LogFollower`` — one store's log from a checkpoint: catch up, then live;
* ``Projection`` and ``@handles`` — what a view is made of;
* targets — where its state and checkpoints live: ``SqliteTarget``, ``PostgresTarget``
  (one transaction per batch: effectively once) and ``MemoryTarget``;
* ``ProjectionRunner`` — one projection from one or more sources;
* ``rebuild`` — a new version beside the live one, switched in when caught up;
* ``open_target(url)`` — the target a URL names, as ``open_store`` and ``open_bus`` do.

``PostgresTarget`` is imported from ``eventcore.projection.postgres`` (it needs psycopg),
by ``open_target`` only when a ``postgresql://`` URL names it.

The log follower lives in the store layer (``eventcore.store.follower``); it is
re-exported here, where it was first published.
"""

from __future__ import annotations

import os

from eventcore.errors import DatabaseNotFound, InvalidUrl, MissingDependency
from eventcore.projection.errors import (
    CheckpointMismatch,
    CheckpointMoved,
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
from eventcore.store.url import split_url

__all__ = [
    "Batch",
    "CheckpointMismatch",
    "CheckpointMoved",
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
    "open_target",
    "rebuild",
]

_SCHEMES = {
    "memory": "memory",
    "sqlite": "sqlite",
    "postgresql": "postgres",
    "postgres": "postgres",
}
_SQLITE_OPTIONS = {"synchronous"}


async def open_target(url: str, *, create: bool = True) -> Target:
    """Open the projection target a URL names: ``memory://`` (a new, empty one),
    ``sqlite:///path/views.db`` (option ``synchronous``: FULL, NORMAL, OFF) or
    ``postgresql://user@host/db?schema=views`` (options ``schema``,
    ``synchronous_commit``, and the driver's own).

    URLs are parsed as store and bus URLs are (one parser, ``eventcore.store.url``).
    ``create=False`` is for tools that only look: nothing is created, and a target that
    is not there is ``DatabaseNotFound``. Without psycopg a ``postgresql://`` URL is
    ``MissingDependency``, which names the extra to install."""
    backend, location, options = split_url(
        url, _SCHEMES, example="sqlite:///var/views.db", noun="target scheme"
    )
    if backend == "memory":
        if options:
            raise InvalidUrl(url, "a memory:// target takes no options")
        if not create:
            raise DatabaseNotFound(url, "a memory:// target lives in the process that opened it")
        return MemoryTarget()
    if backend == "sqlite":
        unknown = sorted(set(options) - _SQLITE_OPTIONS)
        if unknown:
            raise InvalidUrl(url, f"unknown option(s) {', '.join(unknown)}; known: synchronous")
        if not create and not os.path.exists(location):  # noqa: ASYNC240 (one stat, first)
            raise DatabaseNotFound(url, f"no such file: {location}")
        return await SqliteTarget.open(
            location, synchronous=options.get("synchronous", "NORMAL"), create=create
        )
    try:
        from eventcore.projection.postgres import PostgresTarget
    except ImportError as error:
        raise MissingDependency.of(error, "postgresql:// targets") from error
    return await PostgresTarget.open(url, create=create)
