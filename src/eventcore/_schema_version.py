"""Opening without migrating (``create=False``, for tools that only look): the schema must
be the one this eventcore writes already, since migrating it would be a write."""

from __future__ import annotations

from collections.abc import Callable

from eventcore.errors import DatabaseNotFound, EventcoreError

__all__ = ["require_current"]


def require_current(
    found: int,
    latest: int,
    *,
    url: str,
    what: str,
    unavailable: Callable[[str], EventcoreError],
) -> None:
    """``found`` is the schema version ``url`` holds (0: none); ``what`` names the thing
    ("event store", "message bus"); ``unavailable`` builds the error for a version that
    is not ``latest``."""
    if found == 0:
        raise DatabaseNotFound(url, f"no {what} there yet")
    if found < latest:
        raise unavailable(
            f"the {what} is at schema version {found}, older than this eventcore's ({latest});"
            " opening it to write migrates it (a store: eventcore db migrate URL)"
        )
    if found > latest:
        raise unavailable(
            f"the {what} is at schema version {found}, newer than this eventcore understands"
            f" ({latest}); upgrade eventcore to open it"
        )
