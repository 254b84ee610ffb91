"""A SQL target's bookkeeping tables, and the numbered migrations that create them.

The tables are those ``_sql_target`` describes. The migrations applied are recorded in
``eventcore_target_schema`` (not ``schema_migrations``: a SQLite target may share its file
with an event store, whose table that is). They run inside the transaction the target
opens with, serialised against other processes opening the same target, so each runs once
(the version scheme is ``eventcore._schema_version``'s, like the store's and the bus's;
the runner differs because a target migrates through its own transaction, on SQLite or
PostgreSQL). Targets made before versions were kept have no record; migration 1 creates
only what is missing, so it finds their tables and records them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Final

from eventcore._schema_version import Migration, latest, refuse_newer
from eventcore.errors import StoreUnavailable

__all__ = ["LATEST_VERSION", "applied_version", "migrate"]

#: (version, statements). Append new migrations; never edit one that has shipped.
_MIGRATIONS: Final[tuple[Migration, ...]] = (
    (
        1,
        (
            "CREATE TABLE IF NOT EXISTS eventcore_projections ("
            " name TEXT NOT NULL, version INTEGER NOT NULL, state TEXT NOT NULL,"
            " tables TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL,"
            " PRIMARY KEY (name, version))",
            "CREATE TABLE IF NOT EXISTS eventcore_checkpoints ("
            " name TEXT NOT NULL, version INTEGER NOT NULL, source TEXT NOT NULL,"
            " position BIGINT NOT NULL, events BIGINT NOT NULL,"
            " events_per_second DOUBLE PRECISION NOT NULL, updated_at DOUBLE PRECISION NOT NULL,"
            " PRIMARY KEY (name, version, source))",
        ),
    ),
    (
        2,
        (
            # The store whose log a checkpoint counts (``Checkpoint.store_id``); NULL in
            # rows saved before it was kept.
            "ALTER TABLE eventcore_checkpoints ADD COLUMN store_id TEXT",
        ),
    ),
)

LATEST_VERSION: Final = latest(_MIGRATIONS)


def migrate(run: Callable[..., Any]) -> None:
    """Bring the bookkeeping up to ``LATEST_VERSION`` with ``run`` (the target's statement
    runner, inside its open transaction); refuse a target of a newer eventcore."""
    run(
        "CREATE TABLE IF NOT EXISTS eventcore_target_schema ("
        " version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)"
    )
    applied = applied_version(run)
    refuse_newer(applied, LATEST_VERSION, what="projection target", unavailable=StoreUnavailable)
    for version, statements in _MIGRATIONS:
        if version > applied:
            for statement in statements:
                run(statement)
            run(
                "INSERT INTO eventcore_target_schema (version, applied_at) VALUES (?, ?)",
                (version, time.time()),
            )


def applied_version(run: Callable[..., Any]) -> int:
    """The newest migration the target has recorded (0: none; its ``eventcore_target_schema``
    must exist)."""
    row = run("SELECT coalesce(max(version), 0) FROM eventcore_target_schema").fetchone()
    return int(row[0])
