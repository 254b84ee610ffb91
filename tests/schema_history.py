"""Files of an earlier schema version, made by the code itself with its later migrations
held back: the SQLite store and bus keep ``_MIGRATIONS`` and ``LATEST_VERSION``."""

from __future__ import annotations

from types import ModuleType

import pytest

__all__ = ["as_of_version"]


def as_of_version(patch: pytest.MonkeyPatch, schema: ModuleType, version: int) -> None:
    """Make ``schema`` (a module of numbered migrations) know only those up to
    ``version``, as the eventcore of that version did, until ``patch`` is undone."""
    patch.setattr(schema, "_MIGRATIONS", tuple(m for m in schema._MIGRATIONS if m[0] <= version))
    patch.setattr(schema, "LATEST_VERSION", version)
