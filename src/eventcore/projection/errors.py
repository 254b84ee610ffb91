"""Errors of the read side, under the tree drawn in ``eventcore.errors``::

    EventcoreError
    ├── InvalidInput
    │   └── InvalidProjection        a projection class or handler is wrong; fix the code
    ├── NotFound
    │   └── ProjectionNotFound       no such projection (or version) in the target
    └── ProjectionError
        └── VersionRetired           another version went live; follow the live one

They live here rather than in ``eventcore.errors`` because only the read side raises
them; each still derives from the one root.
"""

from __future__ import annotations

from eventcore.errors import EventcoreError, InvalidInput, NotFound

__all__ = ["InvalidProjection", "ProjectionError", "ProjectionNotFound", "VersionRetired"]


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
